"""The base of the admin API: bearer token (or the console's cookie + XSRF), roles, audit actor."""

from __future__ import annotations

from typing import Any

import tornado.web

from handlers.base import BaseHandler, bearer_token
from wxbackend import errors
from wxbackend.services.admin import sessions as admin_auth
from wxbackend.services.admin.audit import Actor
from wxbackend.services.admin.sessions import Principal

ADMIN_COOKIE = "wxb_admin"
ROLE_RANK = {"viewer": 0, "handler": 1, "center_admin": 2, "superadmin": 3}


def admin_security() -> dict[str, Any]:
    return {"security": [{"admin": []}]}


class AdminHandler(BaseHandler):
    """Every method needs an admin. ``roles`` lists who may write; GETs allow every role
    unless ``read_roles`` narrows them."""

    write_roles: tuple[str, ...] = ("superadmin",)
    read_roles: tuple[str, ...] = ("superadmin", "center_admin", "handler", "viewer")

    async def prepare(self) -> None:  # type: ignore[override]
        super().prepare()
        token = bearer_token(self.request.headers.get("Authorization", ""))
        self._cookie_auth = False
        if token is None:
            token = self.get_cookie(ADMIN_COOKIE)
            self._cookie_auth = token is not None
        if not token:
            raise errors.Unauthenticated("Log in to the console first.")
        principal = await admin_auth.authenticate(self.ctx, token)
        if principal is None:
            raise errors.Unauthenticated("Your console session has ended; log in again.")
        if self._cookie_auth and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            self._check_console_xsrf()
        self.admin: Principal = principal
        self.admin_token = token
        allowed = self.read_roles if self.request.method == "GET" else self.write_roles
        if principal.role not in allowed:
            raise errors.Forbidden()

    def _check_console_xsrf(self) -> None:
        try:
            tornado.web.RequestHandler.check_xsrf_cookie(self)
        except tornado.web.HTTPError:
            raise errors.Forbidden("Missing or wrong XSRF token.") from None

    @property
    def actor(self) -> Actor:
        return Actor(self.admin.admin_id, self.admin.username, self.client_ip())

    def require(self, *roles: str) -> None:
        if self.admin.role not in roles:
            raise errors.Forbidden()
