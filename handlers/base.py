"""The base handler: strict JSON in, JSON out, contract errors, request ids, one log line.

Handlers stay thin: parse and validate the request, call one service, write JSON.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

import tornado.web

from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.citizens import auth as auth_service
from wxbackend.services.common import outages
from wxbackend.services.common.clientaddr import client_address, is_https

log = logging.getLogger("wxbackend.access")
app_log = logging.getLogger("wxbackend")

_PARAM = re.compile(r"\{(\w+)\}")


def route(template: str, handler: type[tornado.web.RequestHandler]) -> tornado.web.URLSpec:
    """A URL rule from an OpenAPI-style template: ``/cases/{case_id}`` → a named regex group."""
    pattern = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", template) + "$"
    return tornado.web.url(pattern, handler, {"route_template": template}, name=template)


class Field:
    """One JSON body field: its type(s) and whether it must be present."""

    def __init__(self, *types: type, required: bool = False, nullable: bool = False):
        self.types = types
        self.required = required
        self.nullable = nullable

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) and bool not in self.types:
            return False
        return not self.types or isinstance(value, self.types)


class BaseHandler(tornado.web.RequestHandler):
    """JSON API handler. Subclasses describe themselves for /openapi.json in ``openapi``."""

    openapi: Mapping[str, Mapping[str, Any]] = {}
    #: /wechat/push accepts fields it does not know (WeChat adds fields over time).
    strict_fields = True

    def initialize(self, route_template: str = "unmatched") -> None:
        self.ctx: Context = self.application.settings["ctx"]
        self.route_template = route_template
        self.request_id = ""
        self._started = time.monotonic()

    # ---- lifecycle -----------------------------------------------------------------------

    def prepare(self) -> None:
        self.request_id = self.request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        self.set_header("X-Request-Id", self.request_id)
        limit = self.ctx.settings.server.max_body_bytes
        if len(self.request.body or b"") > limit:
            raise errors.BodyTooLarge(f"The request body is over {limit} bytes.")

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self) -> None:
        """The JSON API authenticates with bearer tokens and signatures, not cookies."""

    def on_finish(self) -> None:
        seconds = time.monotonic() - self._started
        route_name = self.route_template
        status = self.get_status()
        self.ctx.metrics.observe_request(route_name, self.request.method or "", status, seconds)
        log.info(
            "request",
            extra={
                "fields": {
                    "request_id": self.request_id,
                    "method": self.request.method,
                    "route": route_name,
                    "status": status,
                    "ms": round(seconds * 1000, 1),
                }
            },
        )

    # ---- output --------------------------------------------------------------------------

    def send(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.ContractError):
            body = exc.body()
            if "retry_after" in exc.extra:
                self.set_header("Retry-After", str(exc.extra["retry_after"]))
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
                status_code, "bad_request"
            )
            body = {"error": {"code": code, "message": exc.log_message or self._reason}}
        else:
            body = {
                "error": {
                    "code": "internal_error",
                    "message": f"Something went wrong (request {self.request_id}).",
                }
            }
        body["error"].setdefault("message_zh", errors.message_zh(body["error"]["code"]))
        if status_code == 405:  # RFC 9110: a 405 names the methods the resource has
            self.set_header("Allow", allowed_methods(type(self)))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, ensure_ascii=False))

    def _handle_request_exception(self, e: BaseException) -> None:
        # Redis, the database or the disk down: 503 naming it, one log line per outage
        # (common.outages), never a 500 with a traceback per request.
        e = outages.handle(self.ctx, e) or e
        if isinstance(e, errors.ContractError):
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        if isinstance(value, errors.ContractError | tornado.web.HTTPError):
            return
        app_log.error(
            "unhandled error",
            exc_info=(typ, value, tb),
            extra={"fields": {"request_id": self.request_id, "route": self.route_template}},
        )

    # ---- input ---------------------------------------------------------------------------

    def json_body(self, fields: Mapping[str, Field]) -> dict[str, Any]:
        """The JSON object body, checked against ``fields`` (unknown → 400 invalid_body).

        An empty body is ``{}``. Values are type-checked; domain rules stay in services.
        """
        raw = self.request.body or b""
        if not raw.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise errors.InvalidBody("The body is not valid JSON.") from None
            except RecursionError:  # thousands of nested brackets
                raise errors.InvalidBody("The body is nested too deeply.") from None
        if not isinstance(data, dict):
            raise errors.InvalidBody("The body must be a JSON object.")
        if self.strict_fields:
            unknown = sorted(set(data) - set(fields))
            if unknown:
                raise errors.InvalidBody(f"Unknown field: {unknown[0]}.", field=unknown[0])
        for name, spec in fields.items():
            if name not in data:
                if spec.required:
                    raise errors.InvalidBody(f"Missing field: {name}.", field=name)
                continue
            if not spec.accepts(data[name]):
                raise errors.InvalidBody(f"Field {name} has the wrong type.", field=name)
        return data

    def is_https(self) -> bool:
        """The client's own connection is TLS (see :func:`clientaddr.is_https`)."""
        server = self.ctx.settings.server
        return is_https(
            self.request.protocol,
            self.request.remote_ip or "",
            self.request.headers.get("X-Forwarded-Proto"),
            server.trusted_proxies,
            server.public_url,
        )

    def set_cookie(self, name: str, value: str | bytes, **kwargs: Any) -> None:  # type: ignore[override]
        """Every cookie of ours is Secure when the client came over TLS (behind a proxy too)
        and SameSite=Strict unless said otherwise: the console's ``_xsrf`` cookie included."""
        kwargs["secure"] = self.is_https()
        kwargs.setdefault("samesite", "Strict")
        super().set_cookie(name, value, **kwargs)

    def client_ip(self) -> str:
        return client_address(
            self.request.remote_ip or "",
            self.request.headers.get("X-Forwarded-For"),
            self.ctx.settings.server.trusted_proxies,
        )


class CitizenHandler(BaseHandler):
    """A handler for the citizen API: every method needs the bearer token of a login."""

    async def prepare(self) -> None:  # type: ignore[override]
        super().prepare()
        token = bearer_token(self.request.headers.get("Authorization", ""))
        if not token:
            raise errors.Unauthenticated()
        user_id = await auth_service.session_user(self.ctx, token)
        if user_id is None:
            raise errors.Unauthenticated("Your session has ended; log in again.")
        self.user_id = user_id
        self.session_token = token


def allowed_methods(handler: type[tornado.web.RequestHandler]) -> str:
    """The ``Allow`` header of a handler class: the methods it implements."""
    methods = [
        m.upper()
        for m in ("get", "head", "post", "put", "delete", "patch", "options")
        if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)
    ]
    return ", ".join(methods)


def bearer_token(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
