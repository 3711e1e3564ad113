"""make_app(ctx) -> the Tornado application: the one place routes and resources are wired."""

from __future__ import annotations

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


def make_app(ctx: Context) -> tornado.web.Application:
    rules = all_routes()
    return tornado.web.Application(
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
