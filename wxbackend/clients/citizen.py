"""A citizen of the mini-program: WeChat login (a code from the sandbox), face verification,
the pending cases, scan, rate, like and subscribe, over the real API.

    citizen = await Citizen.login(api, sandbox)          # a fresh WeChat user
    await citizen.verify("黎明", id_number)              # face verification, passed
    status, answer = await citizen.rate(scene=scene, overall=5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wxbackend.clients.http import ApiClient
from wxbackend.clients.sandbox import SandboxClient

VERIFY_RET_OK = 10000


@dataclass
class Citizen:
    """A logged-in citizen: the bearer ``token``, the ``openid`` and the login ``answer``."""

    api: ApiClient
    sandbox: SandboxClient
    token: str
    openid: str
    answer: dict[str, Any]

    @classmethod
    async def login(
        cls, api: ApiClient, sandbox: SandboxClient, openid: str | None = None
    ) -> Citizen:
        """``wx.login`` in the sandbox (a new openid when None), then
        ``POST /api/v1/auth/login``; `ApiError` unless 200."""
        code = await sandbox.login_code(openid)
        answer = await api.expect("POST", "/api/v1/auth/login", {"code": code["code"]})
        return cls(api, sandbox, answer["token"], code["openid"], answer)

    @property
    def user(self) -> dict[str, Any]:
        """The user as the login answered it."""
        return self.answer["user"]

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """``(status, answer)`` of a request with this citizen's token."""
        return await self.api(method, path, body, token=self.token, **kw)

    async def expect(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The answer of a request with this citizen's token (`ApiError` unless ``status``)."""
        return await self.api.expect(method, path, body, token=self.token, **kw)

    async def verify(self, name: str, id_number: str, verify_ret: int = VERIFY_RET_OK) -> dict:
        """Face verification through HTTP: ``POST /api/v1/identity/face/start`` → sandbox
        ``face/finish`` with ``verify_ret`` → ``POST /api/v1/identity/face/finish``."""
        started = await self.expect(
            "POST", "/api/v1/identity/face/start", {"name": name, "id_number": id_number}
        )
        await self.sandbox.finish_face(started["verify_id"], verify_ret)
        return await self.expect(
            "POST", "/api/v1/identity/face/finish", {"verify_id": started["verify_id"]}
        )

    async def me(self) -> dict:
        """``GET /api/v1/me``: identity and pending cases."""
        return await self.expect("GET", "/api/v1/me")

    async def subscribe(self, results: dict[str, str]) -> dict:
        """``POST /api/v1/subscriptions`` (one ``wx.requestSubscribeMessage`` popup)."""
        return await self.expect("POST", "/api/v1/subscriptions", {"results": results})

    async def scan(self, scene: str) -> tuple[int, Any]:
        """``POST /api/v1/scan`` → the case and the form."""
        return await self.call("POST", "/api/v1/scan", {"scene": scene})

    async def rate(self, **body: Any) -> tuple[int, Any]:
        """``POST /api/v1/evaluations`` with ``body`` (e.g. ``scene=..., overall=5``)."""
        return await rate(self.api, self.token, **body)

    async def like(self, evaluation_id: str | int) -> dict:
        """``PUT /api/v1/evaluations/{id}/like``."""
        return await self.expect("PUT", f"/api/v1/evaluations/{evaluation_id}/like")


async def login(
    api: ApiClient, sandbox: SandboxClient, openid: str | None = None
) -> tuple[str, dict]:
    """Log a user in (a fresh openid when None): ``(token, login answer)``."""
    citizen = await Citizen.login(api, sandbox, openid)
    return citizen.token, citizen.answer


async def verified_user(
    api: ApiClient, sandbox: SandboxClient, name: str, id_number: str, openid: str | None = None
) -> str:
    """Log a user in and verify their identity by face (passed), through HTTP; the token."""
    citizen = await Citizen.login(api, sandbox, openid)
    await citizen.verify(name, id_number)
    return citizen.token


async def rate(api: ApiClient, token: str | None, **body: Any) -> tuple[int, Any]:
    """``POST /api/v1/evaluations`` with ``body`` (e.g. ``scene=..., overall=5``)."""
    return await api("POST", "/api/v1/evaluations", body, token=token)
