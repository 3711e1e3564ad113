"""JSON over HTTP to the server: `ApiClient` and `ApiError`."""

from __future__ import annotations

import json
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse


class ApiError(Exception):
    """An answer with another status than expected (``status`` 599: no answer at all)."""

    def __init__(self, method: str, path: str, status: int, answer: Any) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.answer = answer
        super().__init__(f"{method} {path.split('?')[0]} → HTTP {status} ({describe(answer)})")

    @property
    def code(self) -> str | None:
        """The contract's error code (``{"error": {"code"}}``), if the answer has one."""
        error = self.answer.get("error") if isinstance(self.answer, dict) else None
        return error.get("code") if isinstance(error, dict) else None


def describe(answer: Any) -> str:
    """A short text of an answer for messages: the contract's error, else its start."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        return f"{error.get('code')}: {error.get('message')}"
    if isinstance(answer, bytes):
        return answer[:200].decode("utf-8", "replace")
    return json.dumps(answer, ensure_ascii=False)[:200]


def decode(response: HTTPResponse) -> Any:
    """A response's body: decoded JSON when it says JSON, else the raw bytes."""
    ctype = response.headers.get("Content-Type", "")
    if response.body and "json" in ctype:
        try:
            return json.loads(response.body)
        except ValueError:
            return response.body
    return response.body


class ApiClient:
    """Calls the server at ``base_url`` (no trailing ``/``) over real HTTP."""

    def __init__(self, client: AsyncHTTPClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """``(status, answer)`` of one request: ``body`` as JSON (or ``raw`` bytes as they
        are), ``token`` as ``Authorization: Bearer``."""
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if raw is not None:
            payload: bytes | None = raw
        elif body is not None:
            payload = json.dumps(body).encode()
        else:
            payload = None if method in ("GET", "DELETE") else b""
        response = await self.client.fetch(
            self.base_url + path,
            method=method,
            body=payload,
            headers=all_headers,
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=timeout,
        )
        return response.code, decode(response)

    async def expect(
        self, method: str, path: str, body: Any = None, *, status: int = 200, **kwargs: Any
    ) -> Any:
        """The answer of a request that must answer ``status`` (`ApiError` otherwise)."""
        got, answer = await self(method, path, body, **kwargs)
        if got != status:
            raise ApiError(method, path, got, answer)
        return answer
