"""make_app(ctx) -> the Tornado application: the one place routes and resources are wired."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import tornado.httputil
import tornado.web

from handlers.base import BaseHandler
from handlers.openapi import build_document
from handlers.routes import all_routes
from wxbackend import __version__, errors
from wxbackend.cache import make_redis
from wxbackend.context import Context
from wxbackend.settings import Settings

log = logging.getLogger("wxbackend.app")

#: What lives only in Redis, so a restart of a Redis without persistence loses it.
REDIS_ONLY = (
    "rate-limit windows and login lockouts, rating claims, single-use partner nonces, "
    "the case an evaluator screen shows (it idles until the next), caches (WeChat access token, "
    "figures, QR codes)"
)


class NotFoundHandler(BaseHandler):
    """Any unknown path: the contract's JSON 404."""

    def prepare(self) -> None:
        super().prepare()
        raise errors.NotFound("No such endpoint.")


class _BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Answers 413 ``body_too_large`` (and closes the connection) as soon as a body is known
    to be over the limit: at the headers when ``Content-Length`` says so, before any of it is
    read; while streaming a chunked body, at the chunk that crosses it. Nothing over the
    limit is ever buffered: before this, 30 never-finished chunked uploads of 7.5 MiB held
    ~220 MB. Tornado's own cap (:func:`server_options`) then cuts the connection."""

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        connection: tornado.httputil.HTTPConnection,
        limit: int,
    ):
        self.inner = inner
        self.connection = connection
        self.limit = limit
        self.received = 0
        self.refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Any:
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit:
            self._refuse()
            self.connection.finish()  # nothing of the body was read: close at once
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.refused:
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            self._refuse()
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if self.refused:
            self.connection.finish()  # the whole body was read (and dropped): close now
        else:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()

    def _refuse(self) -> None:
        """Send the 413 at once. Mid-body, the connection keeps reading (and dropping) what
        the client still sends, up to Tornado's cap, and closes when the body ends: closing
        with unread bytes would reset the connection, and the client could lose the answer."""
        self.refused = True
        error = errors.BodyTooLarge(f"The request body is over {self.limit} bytes.")
        body = json.dumps(error.body(), ensure_ascii=False).encode()
        self.connection.write_headers(
            tornado.httputil.ResponseStartLine("HTTP/1.1", 413, "Content Too Large"),
            tornado.httputil.HTTPHeaders(
                {
                    "Content-Type": "application/json; charset=UTF-8",
                    "Content-Length": str(len(body)),
                    "Connection": "close",
                }
            ),
            body,
        )


def server_options(settings: Settings) -> dict[str, Any]:
    """The ``HTTPServer`` options every server of the app uses: a body cap 1 MiB over the
    contract's limit (the 413 above answers first; the bytes after it are read and dropped,
    never buffered, so a client still sending can read the 413 before the connection
    closes instead of meeting a reset), a deadline for the headers
    (``server.header_timeout_seconds``: a half-sent request no longer holds a connection
    for minutes) and one for the body (``server.body_timeout_seconds``)."""
    server = settings.server
    return {
        "max_body_size": server.max_body_bytes + (1 << 20),
        "idle_connection_timeout": server.header_timeout_seconds,
        "body_timeout": server.body_timeout_seconds,
    }


class Application(tornado.web.Application):
    """Tornado's application plus the early 413 of :class:`_BodyLimit`."""

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        limit = self.settings["ctx"].settings.server.max_body_bytes
        return _BodyLimit(inner, request_conn, limit)


def make_app(
    ctx: Context, rules: list[tornado.web.URLSpec] | None = None
) -> tornado.web.Application:
    """The application of ``rules`` (default: every route; ``wxbackend live`` serves a few)."""
    rules = all_routes() if rules is None else rules
    return Application(
        rules,
        ctx=ctx,
        openapi=build_document(rules, __version__),
        default_handler_class=NotFoundHandler,
        default_handler_args={"route_template": "unmatched"},
        compress_response=False,
        xsrf_cookies=True,  # enforced only by AdminHandler for cookie (console) sessions
        log_function=lambda handler: None,  # BaseHandler.on_finish logs each request once
        xheaders=False,
    )


async def redis_persistence(redis: Any) -> tuple[str, bool]:
    """One line saying whether Redis persists its data and what its restart loses (sessions
    are durable in the database either way), and whether it is a warning (no persistence, or
    unknown). Never raises: a managed Redis may refuse ``CONFIG``; the line then says so."""
    try:
        appendonly = (await redis.config_get("appendonly")).get("appendonly", "")
        save = (await redis.config_get("save")).get("save", "")
    except Exception as exc:  # noqa: BLE001 - CONFIG disallowed (managed Redis): say so only
        return (
            f"Redis persistence unknown (CONFIG GET failed: {type(exc).__name__}); if it "
            f"has none, a Redis restart loses {REDIS_ONLY}; sessions are kept in the database"
        ), True
    state = f"appendonly={appendonly or 'no'}, save={save!r}"
    if appendonly == "yes" or save.strip():
        return (
            f"Redis persists its data ({state}): a restart keeps what it saved; sessions "
            "are kept in the database either way"
        ), False
    return (
        f"Redis has no persistence ({state}): a Redis restart loses {REDIS_ONLY}; "
        "sessions are kept in the database and survive it"
    ), True


async def log_redis_persistence(settings: Settings) -> None:
    """At start, with a real Redis: log :func:`redis_persistence` once (a warning when there
    is none). Never stops the start."""
    if settings.redis.url == "embedded":
        return
    client = make_redis(settings)
    try:
        line, warn = await redis_persistence(client)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    log.log(logging.WARNING if warn else logging.INFO, line)
