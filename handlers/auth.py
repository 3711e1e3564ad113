"""Citizen login and profile (``/api/v1/auth/login``, ``/api/v1/me``)."""

from __future__ import annotations

from handlers.base import BaseHandler, CitizenHandler, Field, route
from handlers.openapi import bearer, errors_of, json_body
from wxbackend.services.citizens import auth, users


class LoginHandler(BaseHandler):
    openapi = {
        "post": {
            "summary": "Log in with a wx.login code",
            "requestBody": json_body({"code": {"type": "string"}}, required=["code"]),
            "responses": {
                "200": {"description": "{token, expires_in, user:{id, verified, name_masked}}"},
                **errors_of(401, 429, 503),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body({"code": Field(str, required=True)})
        result = await auth.login(self.ctx, body["code"], self.client_ip())
        profile = await self.ctx.db.run(
            users.profile, result.user_id, self.ctx.settings.rating.window_days
        )
        self.send({"token": result.token, "expires_in": result.expires_in, "user": profile["user"]})


class LogoutHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "End this session (the token stops working at once)",
            **bearer(),
            "responses": {"204": {"description": "logged out"}, **errors_of(401)},
        }
    }

    async def post(self) -> None:
        self.json_body({})
        await auth.logout(self.ctx, self.session_token)
        self.no_content()


class MeHandler(CitizenHandler):
    openapi = {
        "get": {
            "summary": "The citizen, their identity and their unrated cases",
            **bearer(),
            "responses": {
                "200": {"description": "{user, identity, pending_cases}"},
                **errors_of(401),
            },
        }
    }

    async def get(self) -> None:
        days = self.ctx.settings.rating.window_days
        self.send(await self.ctx.db.run(users.profile, self.user_id, days))


default_handlers = [
    route("/api/v1/auth/login", LoginHandler),
    route("/api/v1/auth/logout", LogoutHandler),
    route("/api/v1/me", MeHandler),
]
