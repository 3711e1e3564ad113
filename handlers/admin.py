"""Admin login and the WeChat configuration (``/admin/api/login``, ``/admin/api/wechat-config``)."""

from __future__ import annotations

from typing import Any

from handlers.admin_base import ADMIN_COOKIE, ANY_ADMIN, AdminHandler, admin_security
from handlers.base import BaseHandler, Field, route
from handlers.openapi import errors_of, field_schema, json_body
from wxbackend import errors
from wxbackend.services.admin import accounts, wechat_config
from wxbackend.services.admin import messages as messages_admin
from wxbackend.services.admin import sessions as admin_auth
from wxbackend.services.messaging import template_data
from wxbackend.wechat import errors as wx


class AdminLoginHandler(BaseHandler):
    openapi = {
        "post": {
            "summary": "Admin login → bearer token (also sets the console cookie)",
            "requestBody": json_body(
                {"username": {"type": "string"}, "password": {"type": "string"}},
                required=["username", "password"],
            ),
            "responses": {
                "200": {"description": "{token, role, expires_in}"},
                **errors_of(401, 429),
            },
        }
    }

    async def post(self) -> None:
        self._refuse_cross_site()
        body = self.json_body(
            {"username": Field(str, required=True), "password": Field(str, required=True)}
        )
        token, principal = await admin_auth.login(
            self.ctx, body["username"][:64], body["password"][:256], self.client_ip()
        )
        ttl = self.ctx.settings.admin.token_ttl_seconds
        self.set_cookie(
            ADMIN_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            expires_days=ttl / 86400,
            path="/admin",
        )
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the console echoes back
        self.send({"token": token, "role": principal.role, "expires_in": ttl})

    def _refuse_cross_site(self) -> None:
        """Login CSRF: another site's page must not log a console into an account of its
        choosing. A browser says where a request comes from (``Sec-Fetch-Site``, ``Origin``);
        API clients send neither and are served."""
        site = self.request.headers.get("Sec-Fetch-Site", "")
        origin = self.request.headers.get("Origin")
        if site == "cross-site" or (origin is not None and not self._same_origin(origin)):
            raise errors.Forbidden("Log in from this server's own console.")

    def _same_origin(self, origin: str) -> bool:
        """``Origin`` names this server: as the client reached it (behind nginx the Host
        header must be passed on) or as ``server.public_url`` says."""
        here = f"{'https' if self.is_https() else 'http'}://{self.request.host}"
        public = self.ctx.settings.server.public_url.rstrip("/")
        return origin == here or (bool(public) and origin == public)


class AdminLogoutHandler(AdminHandler):
    permissions = {"post": ANY_ADMIN}
    openapi = {
        "post": {
            "summary": "End this admin session",
            **admin_security(),
            "responses": {"204": {"description": "logged out"}, **errors_of(401)},
        }
    }

    async def post(self) -> None:
        self.json_body({})
        await admin_auth.logout(self.ctx, self.admin_token)
        self.clear_cookie(ADMIN_COOKIE, path="/admin")
        self.no_content()


class AdminMeHandler(AdminHandler):
    permissions = {"get": ANY_ADMIN}
    openapi = {
        "get": {
            "summary": "The logged-in administrator, their reach and what they may do",
            "description": "permissions: the actions of the permission table the caller may "
            "do somewhere in their reach (e.g. tickets.read, tickets.work, catalogue.write, "
            "admins.manage); the console shows only those. roles: every role with its label.",
            **admin_security(),
            "responses": {
                "200": {
                    "description": "{id, username, role, role_label, center, department, "
                    "center_id, department_id, staff_no (null), permissions:[action], "
                    "roles:[{role, label}]}"
                },
                **errors_of(401),
            },
        }
    }

    async def get(self) -> None:
        self.send(await self.ctx.db.run(accounts.me_view, self.admin))


CONFIG_FIELDS = {
    "appid": Field(str),
    "secret": Field(str),
    "push_token": Field(str),
    "aes_key": Field(str),
    "templates": Field(dict),
    "api_base": Field(),
    "miniprogram_page": Field(str),
    "env_version": Field(str),
    "check_path": Field(bool),
}


def _field_map(attributes: tuple[str, ...]) -> dict[str, Any]:
    """A template's field map as template_data.check_field_map takes it: 1–20 fields named
    ``<type><n>`` of a type it can fill, each naming one of ``attributes``."""
    kinds = "|".join(template_data.RULES)
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 20,
        "propertyNames": {"pattern": f"^({kinds})[0-9]+$"},
        "additionalProperties": {"enum": list(attributes)},
    }


#: What services.admin.wechat_config checks of each value (400 invalid_config otherwise).
_CONFIG_CHECKED: dict[str, dict] = {
    "appid": {"pattern": "^wx[0-9a-f]{16}$"},
    "secret": {"pattern": "^[0-9a-f]{32}$"},
    "push_token": {"pattern": "^[A-Za-z0-9]{3,32}$"},
    "aes_key": {"pattern": "^[A-Za-z0-9]{43}$"},
    "miniprogram_page": {"pattern": "^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"},
    "env_version": {"enum": ["release", "trial", "develop"]},
    "api_base": {"not": {}, "description": "read-only here: set it in the file or the environment"},
    "templates": {
        "properties": {
            **{
                key: {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
                for key in wechat_config.TEMPLATE_KEYS
            },
            **{key: _field_map(attributes) for key, attributes in wechat_config.FIELD_MAPS.items()},
        },
        "additionalProperties": False,
    },
}


_FIELDS = CONFIG_FIELDS.items()


class WeChatConfigHandler(AdminHandler):
    permissions = {"get": "wechat_config.read", "put": "wechat_config.write"}
    openapi = {
        "get": {
            "summary": "The WeChat configuration in force (secrets masked)",
            **admin_security(),
            "responses": {"200": {"description": "the configuration"}, **errors_of(401, 403)},
        },
        "put": {
            "summary": "Change any subset of the WeChat configuration",
            **admin_security(),
            "requestBody": json_body(
                {k: {**field_schema(f), **_CONFIG_CHECKED.get(k, {})} for k, f in _FIELDS}
            ),
            "responses": {"200": {"description": "the new configuration"}, **errors_of(400, 403)},
        },
    }

    async def get(self) -> None:
        view = self.ctx.wechat_config.config().public_view()
        view["problems"] = await self.ctx.db.run(messages_admin.config_problems)
        # WeChat refusing the AppID or AppSecret in force (40013 / 40125), or None.
        view["problems"]["credentials"] = await self.ctx.wechat.credential_problem()
        self.send(view)

    async def put(self) -> None:
        body = self.json_body(CONFIG_FIELDS)
        try:
            config = await self.ctx.wechat_config.save(self.actor, body)
        except wechat_config.ConfigError as exc:
            raise errors.InvalidConfig(str(exc), field=exc.field) from None
        self.send(config.public_view())


class WeChatConfigTestHandler(AdminHandler):
    permissions = {"post": "wechat_config.write"}
    openapi = {
        "post": {
            "summary": "Fetch an access token with the configuration in force",
            **admin_security(),
            "responses": {"200": {"description": "{ok, errcode?, errmsg?}"}, **errors_of(403)},
        }
    }

    async def post(self) -> None:
        self.json_body({})
        try:
            await self.ctx.wechat.check_credentials()
        except wx.WeChatError as exc:
            self.send({"ok": False, "errcode": exc.errcode, "errmsg": exc.errmsg})
            return
        self.send({"ok": True})


class WeChatConfigHistoryHandler(AdminHandler):
    permissions = {"get": "wechat_config.write"}  # who changes it sees its versions
    openapi = {
        "get": {
            "summary": "Versions of the WeChat configuration: who, when, which fields",
            **admin_security(),
            "responses": {"200": {"description": "{items}"}, **errors_of(403)},
        }
    }

    async def get(self) -> None:
        self.send({"items": await self.ctx.db.run(wechat_config.history)})


default_handlers = [
    route("/admin/api/login", AdminLoginHandler),
    route("/admin/api/logout", AdminLogoutHandler),
    route("/admin/api/me", AdminMeHandler),
    route("/admin/api/wechat-config", WeChatConfigHandler),
    route("/admin/api/wechat-config/test", WeChatConfigTestHandler),
    route("/admin/api/wechat-config/history", WeChatConfigHistoryHandler),
]
