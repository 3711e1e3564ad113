"""The base of the admin API: bearer token (or the console's cookie + XSRF), the permission
of each method (services/admin/permissions.py), the audit actor."""

from __future__ import annotations

from typing import Any

import tornado.web

from handlers.base import BaseHandler, bearer_token
from wxbackend import errors
from wxbackend.services.admin import permissions
from wxbackend.services.admin import sessions as admin_auth
from wxbackend.services.admin.audit import Actor
from wxbackend.services.admin.sessions import Principal

ADMIN_COOKIE = "wxb_admin"
#: In ``AdminHandler.permissions``: any logged-in administrator (``/me``, logout).
ANY_ADMIN = "*"


def admin_security() -> dict[str, Any]:
    return {"security": [{"admin": []}]}


class AdminHandler(BaseHandler):
    """Every method needs an admin with the permission ``permissions`` names for it
    (``{"get": "tickets.read", …}``; :data:`ANY_ADMIN` for any admin): 403 ``forbidden``
    without it. Where the row lies (its center, department) the service checks."""

    permissions: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("get", "post", "put", "patch", "delete"):
            implemented = getattr(cls, method) is not getattr(BaseHandler, method)
            if implemented and method not in cls.permissions:
                raise TypeError(f"{cls.__name__}.{method} has no entry in permissions")
            action = cls.permissions.get(method, ANY_ADMIN)
            if action != ANY_ADMIN and action not in permissions.ACTIONS:
                raise TypeError(f"{cls.__name__}: unknown action {action!r}")
        # /openapi.json names the permission of each operation
        operations = getattr(cls, "openapi", None) or {}
        cls.openapi = {
            method: {**spec, "x-permission": cls.permissions.get(method, ANY_ADMIN)}
            for method, spec in operations.items()
        }

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
        action = self.permissions.get(self.request.method.lower(), ANY_ADMIN)
        if action != ANY_ADMIN:  # (a method not implemented answers 405 next)
            permissions.authorize(principal, action)

    def _check_console_xsrf(self) -> None:
        try:
            tornado.web.RequestHandler.check_xsrf_cookie(self)
        except tornado.web.HTTPError:
            raise errors.Forbidden("Missing or wrong XSRF token.") from None

    @property
    def actor(self) -> Actor:
        return Actor(self.admin.admin_id, self.admin.username, self.client_ip())
