"""The web pages: ``/`` (a landing page linking the others), ``/public/`` (实时评价公示),
``/device/{window_code}`` (评价器 screen), ``/admin/`` (管理后台), their static files under
``/static/``, and the small public window endpoint the evaluator screen reads
(``/api/v1/public/windows/{window_code}``).

Pages are plain HTML shells rendered from ``wxbackend/web/templates``; all behaviour is in
``wxbackend/web/static/*.js`` (no inline script, so the Content-Security-Policy forbids it),
which calls the JSON API. Every page answers with a strict CSP, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.

The evaluator screen pairs once with its window's device key and then shows what
``GET /api/v1/device/stream`` says (handlers/devices.py): the case's one-time code, fetched
from ``/api/v1/device/qrcode.png`` with the device token, so only the paired screen gets it.
The page reads no parameter of its own URL (a ``?qr=`` link once let anyone show their own
code under the official address).

``/favicon.ico`` is the pages' icon (linked from the layout; browsers also ask for it
unprompted), and ``/api/v1/public/indicators`` the active reasons (指标) a rating may carry,
which the console's callback form offers as a list.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import tornado.web

from handlers.admin_base import ADMIN_COOKIE
from handlers.base import BaseHandler, allowed_methods, route
from handlers.openapi import errors_of
from wxbackend import errors
from wxbackend.services.cases.scan import rating_form
from wxbackend.services.public import windows

WEB_DIR = Path(__file__).resolve().parent.parent / "wxbackend" / "web"
TEMPLATE_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _html(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": {"description": "text/html"}},
        }
    }


def asset_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``: cached for long, never stale after a deploy."""
    version = StaticHandler.get_version({"static_path": str(STATIC_DIR)}, path)
    return f"/static/{path}?v={version[:16]}" if version else f"/static/{path}"


class PageHandler(BaseHandler):
    """An HTML page: security headers, templates from ``wxbackend/web/templates``."""

    template_name = ""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def get_template_path(self) -> str:
        return str(TEMPLATE_DIR)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace["asset"] = asset_url
        return namespace

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.ContractError):
            message = "未找到该页面。" if status_code == 404 else "请求无法处理。"
        elif status_code == 404:
            message = "未找到该页面。"
        else:
            message = f"服务暂时不可用（请求编号 {self.request_id}）。"
        if status_code == 405:
            self.set_header("Allow", allowed_methods(type(self)))
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.render("error.html", status=status_code, message=message)


class LandingPageHandler(PageHandler):
    openapi = _html("Page: the landing page — links to /public/, /admin/ and /openapi.json")

    def get(self) -> None:
        self.render("index.html")


class PublicPageHandler(PageHandler):
    openapi = _html("Page: 实时评价公示 — live public ratings and figures (?center= to filter)")

    def get(self) -> None:
        self.render("public.html")


class AdminPageHandler(PageHandler):
    openapi = _html("Page: 管理后台 — the administrators' web console")

    def get(self) -> None:
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the console echoes in X-XSRFToken
        # Without a session cookie the console shows the login form at once instead of asking
        # GET /admin/api/me for a 401 (which the browser logs as an error).
        self.render("admin.html", signed_in=bool(self.get_cookie(ADMIN_COOKIE)))


class DevicePageHandler(PageHandler):
    openapi = {
        "get": {
            "summary": "Page: 评价器 — a window's evaluator screen (staff, the case's QR code "
            "once paired with the window's device key, the center's live ratings)",
            "responses": {"200": {"description": "text/html"}, "404": {"description": "html"}},
        }
    }

    async def get(self, window_code: str) -> None:
        card = await windows.public_window(self.ctx, window_code)
        self.render("device.html", card=card)


class SlashRedirectHandler(PageHandler):
    """``/admin`` → ``/admin/``, ``/public`` → ``/public/``."""

    openapi = _html("Redirect to the page's address with a trailing slash")

    def get(self) -> None:
        target = self.request.path + "/"
        if self.request.query:
            target += "?" + self.request.query
        self.redirect(target, permanent=True)


class StaticHandler(tornado.web.StaticFileHandler):
    """The pages' CSS and JavaScript (``wxbackend/web/static``); long cache with ``?v=``."""

    openapi = _html("Static files of the pages (CSS, JavaScript, images)")

    def initialize(self, route_template: str = "unmatched") -> None:  # type: ignore[override]
        super().initialize(path=str(STATIC_DIR))

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def parse_url_path(self, url_path: str) -> str:
        if any(ord(char) < 32 or char == "\x7f" for char in url_path):  # a NUL made a 500
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The contract's error body (a path outside the folder is a plain 404 too)."""
        if status_code == 403:
            self.set_status(status_code := 404)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status_code, "bad_request")
        if status_code >= 500:
            code = "internal_error"
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        message = "No such file." if code == "not_found" else self._reason
        if status_code == 405:
            self.set_header("Allow", allowed_methods(type(self)))
        error = {"code": code, "message": message, "message_zh": errors.message_zh(code)}
        self.finish(json.dumps({"error": error}, ensure_ascii=False))


class FaviconHandler(BaseHandler):
    """``/favicon.ico``: the pages' icon (``wxbackend/web/favicon.ico``, beside the static files:
    every file of those is linked by a page under ``/static/``)."""

    openapi = {
        "get": {
            "summary": "The pages' icon (image/x-icon)",
            "responses": {"200": {"description": "image/x-icon"}},
        }
    }

    def get(self) -> None:
        self.set_header("Content-Type", "image/x-icon")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(_favicon())


@functools.cache
def _favicon() -> bytes:
    """The icon's bytes, read once (they never change while the process runs)."""
    return (WEB_DIR / "favicon.ico").read_bytes()


class IndicatorsHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "The active reasons (指标) a rating may carry, in display order — public",
            "responses": {"200": {"description": "{items:[{code, label}]}"}},
        }
    }

    async def get(self) -> None:
        form = await self.ctx.db.run(rating_form)
        self.send({"items": form["indicators"]})


class PublicWindowHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "A window as its evaluator screen shows it: the window, its center and "
            "the clerk (name, staff_no, photo_url) or null — public, read-only",
            "responses": {
                "200": {
                    "description": "{window:{code,name}, center:{code,name}, "
                    "staff:{name, staff_no, photo_url}|null}"
                },
                **errors_of(404),
            },
        }
    }

    async def get(self, window_code: str) -> None:
        self.send(await windows.public_window(self.ctx, window_code))


default_handlers = [
    route("/", LandingPageHandler),
    route("/public/", PublicPageHandler),
    route("/public", SlashRedirectHandler),
    route("/admin/", AdminPageHandler),
    route("/admin", SlashRedirectHandler),
    route("/device/{window_code}", DevicePageHandler),
    route("/static/{path}", StaticHandler),
    route("/favicon.ico", FaviconHandler),
    route("/api/v1/public/indicators", IndicatorsHandler),
    route("/api/v1/public/windows/{window_code}", PublicWindowHandler),
]
