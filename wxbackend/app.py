"""make_app(ctx) -> the Tornado application: the one place routes and resources are wired."""

from __future__ import annotations

import json
from typing import Any

import tornado.httputil
import tornado.web

from handlers.base import BaseHandler
from handlers.openapi import build_document
from handlers.routes import all_routes
from wxbackend import __version__, errors
from wxbackend.context import Context


class NotFoundHandler(BaseHandler):
    """Any unknown path: the contract's JSON 404."""

    def prepare(self) -> None:
        super().prepare()
        raise errors.NotFound("No such endpoint.")


class _BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Answers 413 ``body_too_large`` (and closes the connection) as soon as the headers
    announce a body over the limit, before any of it is read: without this, a body over
    Tornado's own cap (``server.SERVER_MAX_BODY``) got Tornado's bare 400, and one under it
    was read into memory only to be refused."""

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        connection: tornado.httputil.HTTPConnection,
        limit: int,
    ):
        self.inner = inner
        self.connection = connection
        self.limit = limit
        self.refused = False

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> Any:
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.limit:
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
            self.connection.finish()
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return None if self.refused else self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()


class Application(tornado.web.Application):
    """Tornado's application plus the early 413 of :class:`_BodyLimit`."""

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        inner = super().start_request(server_conn, request_conn)
        limit = self.settings["ctx"].settings.server.max_body_bytes
        return _BodyLimit(inner, request_conn, limit)


def make_app(ctx: Context) -> tornado.web.Application:
    rules = all_routes()
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
