"""The WeChat side of the sandbox for its own tests: a client that calls the WeChat
endpoints as the gateway would, plus a settable clock (``tests/sandbox/``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from wxbackend.sandbox import DEFAULT_APPID, DEFAULT_SECRET, SandboxState


class FakeClock:
    """A settable clock for expiry tests."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sandbox:
    """A running sandbox plus an HTTP client and small call helpers."""

    state: SandboxState
    client: AsyncHTTPClient

    @property
    def base(self) -> str:
        return self.state.base_url

    async def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HTTPResponse:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        if method in ("POST", "PUT") and data is None:
            data = b""
        return await self.client.fetch(
            self.base + path, method=method, body=data, raise_error=False, **kwargs
        )

    async def get(self, path: str, **params: Any) -> Any:
        query = f"?{urlencode(params)}" if params else ""
        response = await self.raw("GET", path + query)
        return json.loads(response.body)

    async def post(self, path: str, body: Any = None, token: str | None = None) -> Any:
        if token is not None:
            path += f"?access_token={token}"
        response = await self.raw("POST", path, {} if body is None else body)
        return json.loads(response.body)

    async def token(self) -> str:
        answer = await self.post(
            "cgi-bin/stable_token",
            {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET},
        )
        return answer["access_token"]

    async def plain_token(self, **overrides: str) -> Any:
        params = {
            "grant_type": "client_credential",
            "appid": DEFAULT_APPID,
            "secret": DEFAULT_SECRET,
            **overrides,
        }
        return await self.get("cgi-bin/token", **params)

    async def login(self, **body: Any) -> dict[str, Any]:
        return await self.post("_sandbox/login-code", body)

    async def session(self, code: str, **overrides: str) -> Any:
        params = {
            "appid": DEFAULT_APPID,
            "secret": DEFAULT_SECRET,
            "js_code": code,
            "grant_type": "authorization_code",
            **overrides,
        }
        return await self.get("sns/jscode2session", **params)

    async def openid(self) -> str:
        return (await self.login())["openid"]
