"""The WeChat sandbox's control API (``/_sandbox/``, see `wxbackend.sandbox.control`):
what the mini-program and WeChat's side would do (login codes, face results, quotas, faults).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from wxbackend.clients.http import ApiError, decode


class SandboxClient:
    """Calls the control API of the sandbox at ``url`` (its API base, ending with ``/``)."""

    def __init__(self, client: AsyncHTTPClient, url: str) -> None:
        self.client = client
        self.url = url if url.endswith("/") else url + "/"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, answer)`` of ``/_sandbox/<path>``."""
        response = await self.client.fetch(
            self.url + "_sandbox/" + path,
            method=method,
            body=json.dumps(body) if body is not None else (None if method == "GET" else b""),
            headers={"Content-Type": "application/json"},
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        return response.code, decode(response)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """The answer of ``/_sandbox/<path>`` whatever its status (None when empty)."""
        answer = (await self.call(method, path, body))[1]
        return None if answer == b"" else answer

    async def expect(self, method: str, path: str, body: Any = None) -> Any:
        """The answer of ``/_sandbox/<path>``, which must be 200 (`ApiError` otherwise)."""
        status, answer = await self.call(method, path, body)
        if status != 200:
            raise ApiError(method, f"/_sandbox/{path}", status, answer)
        return answer

    async def login_code(self, openid: str | None = None, unionid: str | None = None) -> dict:
        """A ``wx.login`` code: ``{code, openid, unionid}`` (a new openid when None)."""
        body = {k: v for k, v in (("openid", openid), ("unionid", unionid)) if v}
        return await self.expect("POST", "login-code", body)

    async def finish_face(self, verify_id: str, verify_ret: int = 10000) -> None:
        """The citizen finishes the face check ``verify_id`` (10000: passed)."""
        await self.expect("POST", "face/finish", {"verify_id": verify_id, "verify_ret": verify_ret})

    async def register_template(self, template_id: str, fields: Any) -> dict:
        """Register a subscribe-message template (``fields``: names or ``{name: type}``)."""
        return await self.expect(
            "POST", "templates", {"template_id": template_id, "fields": fields}
        )

    async def set_quota(self, openid: str, template_id: str, **changes: Any) -> dict:
        """Set ``count`` / ``long_term`` of (openid, template); neither: one more "accept"."""
        body = {"openid": openid, "template_id": template_id, **changes}
        return await self.expect("POST", "quota", body)

    async def messages(self, openid: str | None = None, template_id: str | None = None) -> list:
        """The subscribe messages WeChat delivered, oldest first."""
        query = {k: v for k, v in (("openid", openid), ("template_id", template_id)) if v}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return (await self.expect("GET", "messages" + suffix))["items"]

    async def fault(self, path: str, **kwargs: Any) -> None:
        """Inject a fault into calls to the WeChat ``path`` (see `wxbackend.sandbox.faults`)."""
        await self.expect("POST", "faults", {"path": path, **kwargs})

    async def stats(self) -> dict:
        """``GET /_sandbox/stats``: calls, token fetches, codes, messages, connections."""
        return await self.expect("GET", "stats")
