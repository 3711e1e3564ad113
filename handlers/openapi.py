"""Builds /openapi.json from the route list and each handler's ``openapi`` description."""

from __future__ import annotations

import re
from typing import Any

import tornado.web

from handlers.openapi_shapes import answer_schema

HTTP_METHODS = ("get", "post", "put", "delete", "patch")
_PARAM = re.compile(r"\{(\w+)\}")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "message_zh": {"type": "string", "description": "the message in Chinese"},
            },
            "required": ["code", "message", "message_zh"],
        }
    },
}


#: An empty query parameter (``center=``) means "not given" (services.common.query_args).
_EMPTY = {"type": "string", "maxLength": 0}
#: A calendar day 1970–2999 (query_args.FIRST_YEAR..LAST_YEAR), or empty: no bound.
DAY = {
    "anyOf": [
        {"type": "string", "format": "date", "pattern": "^(19[7-9][0-9]|2[0-9]{3})-"},
        _EMPTY,
    ]
}
#: An ISO 8601 time with offset, or empty.
INSTANT = {"anyOf": [{"type": "string", "format": "date-time"}, _EMPTY]}


def choice(values: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """One of ``values``, or empty (not given)."""
    return {"type": "string", "enum": [*values, ""]}


def page_size(maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": maximum}


#: Query parameters that mean the same wherever they appear, for handlers that describe
#: them as a bare string: what the handler checks (query_args), so the document says it too.
WELL_KNOWN_QUERY = {
    "limit": page_size(200),
    "cursor": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]*$",
        "maxLength": 64,
        "description": "next_cursor of the previous page (opaque: only the server's own)",
    },
    "from": DAY,
    "to": DAY,
    "month": {"type": "string", "pattern": "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"},
    "level": choice(["1", "2", "3", "4", "5"]),
    "active": choice(["true", "false"]),
    "overdue": choice(["true", "false"]),
    "channel": choice(["qr", "miniprogram", "phone", "sms", "default"]),
    "comment_status": choice(["visible", "pending_review", "hidden"]),
    "kind": choice(["reminder", "rectified"]),
}
#: Any other text filter: at most 64 characters (query_args.MAX_TEXT_CHARS).
_TEXT_FILTER = {"type": "string", "maxLength": 64}


def _described_query(parameter: dict[str, Any]) -> dict[str, Any]:
    if parameter.get("in") != "query" or parameter.get("schema") not in (None, {"type": "string"}):
        return parameter
    schema = WELL_KNOWN_QUERY.get(parameter["name"], _TEXT_FILTER)
    return {**parameter, "schema": schema}


def json_body(
    properties: dict[str, Any],
    required: list[str] | None = None,
    one_of: list[list[str]] | None = None,
) -> dict[str, Any]:
    """A JSON object body of ``properties``; ``one_of``: exactly one of these sets present."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    if one_of:
        schema["oneOf"] = [{"required": names} for names in one_of]
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


#: A reason or note that is trimmed before use: it must hold a visible character.
NOT_BLANK = r"\S"

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}


def field_schema(field: Any) -> dict[str, Any]:
    """The JSON schema of a ``handlers.base.Field`` (any value when it names no type)."""
    types = [_JSON_TYPES[t] for t in field.types if t in _JSON_TYPES]
    if list in field.types:
        types.append("array")
    if field.nullable:
        types.append("null")
    if not types:
        return {}
    return {"type": types[0] if len(types) == 1 else types}


def errors_of(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def bearer() -> dict[str, Any]:
    return {"security": [{"citizen": []}]}


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class really implements."""
    return [
        m
        for m in HTTP_METHODS
        if getattr(handler, m, None) is not getattr(tornado.web.RequestHandler, m)
    ]


def _always_possible(op: dict[str, Any], has_path_params: bool) -> list[int]:
    """The error statuses any operation of its kind can answer, whatever its handler says:
    400 (a body that is not valid JSON) and 413 for a body, 401 behind a login, 404 for a
    path with parameters (no such row or file)."""
    statuses = []
    if "requestBody" in op:
        statuses += [400, 413]
    if op.get("security"):
        statuses.append(401)
    if has_path_params:
        statuses.append(404)
    return statuses


def _with_shape(answer: dict[str, Any]) -> dict[str, Any]:
    """A success described in the contract's notation gets its JSON schema (a copy: the
    handler's own description stays as written)."""
    if "content" in answer:
        return answer
    schema = answer_schema(answer.get("description", ""))
    if schema is None:
        return answer
    return {**answer, "content": {"application/json": {"schema": schema}}}


def build_document(rules: list[tornado.web.URLSpec], version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rule in rules:
        template = rule.name
        handler = rule.target
        described = getattr(handler, "openapi", {}) or {}
        entry: dict[str, Any] = {}
        for method in implemented_methods(handler):
            op = dict(described.get(method) or {"summary": (handler.__doc__ or "").strip()})
            params = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in _PARAM.findall(template)
            ]
            # a new list: the handler's own description stays as written (built per app)
            parameters = [*op.get("parameters", []), *params]
            if parameters:
                op["parameters"] = [_described_query(p) for p in parameters]
            op.setdefault("responses", {"200": {"description": "ok"}})
            op["responses"] = {
                **errors_of(*_always_possible(op, bool(params))),
                **{c: _with_shape(a) if c[0] == "2" else a for c, a in op["responses"].items()},
            }
            entry[method] = op
        paths[template] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "wxbackend — 政务服务好差评 API", "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "citizen": {"type": "http", "scheme": "bearer"},
                "admin": {"type": "http", "scheme": "bearer"},
                "device": {"type": "http", "scheme": "bearer"},
                "partner": {"type": "apiKey", "in": "header", "name": "X-Partner-Key"},
            },
        },
    }
