"""Builds /openapi.json from the route list and each handler's ``openapi`` description."""

from __future__ import annotations

import re
from typing import Any

import tornado.web

HTTP_METHODS = ("get", "post", "put", "delete", "patch")
_PARAM = re.compile(r"\{(\w+)\}")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
}


def json_body(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


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
            if params:
                op.setdefault("parameters", []).extend(params)
            op.setdefault("responses", {"200": {"description": "ok"}})
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
