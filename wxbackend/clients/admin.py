"""The admin console's side of the API: log in, then call ``/admin/api/...`` with the token.

admin = await AdminClient.login(api, "root", password)
ticket = await admin.ticket_of(evaluation_id)
await admin.ticket_step(ticket["id"], "verify", {"valid": True, "note": "…"})
"""

from __future__ import annotations

from typing import Any

from wxbackend.clients.http import ApiClient

#: How many pages of open tickets `AdminClient.ticket_of` reads at most.
TICKET_PAGES = 10


class AdminClient:
    """A logged-in admin: the bearer ``token`` and the login ``answer`` (role, center…)."""

    def __init__(self, api: ApiClient, token: str, answer: dict[str, Any] | None = None) -> None:
        self.api = api
        self.token = token
        self.answer = answer or {}

    @classmethod
    async def login(cls, api: ApiClient, username: str, password: str) -> AdminClient:
        """``POST /admin/api/login`` (`ApiError` unless 200)."""
        answer = await api.expect(
            "POST", "/admin/api/login", {"username": username, "password": password}
        )
        return cls(api, answer["token"], answer)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """``(status, answer)`` of a request with this admin's token."""
        return await self.api(method, path, body, token=self.token, **kw)

    async def expect(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The answer of a request with this admin's token (`ApiError` unless ``status``)."""
        return await self.api.expect(method, path, body, token=self.token, **kw)

    async def set_templates(self, **templates: str) -> dict:
        """``PUT /admin/api/wechat-config`` with the subscribe-message template ids."""
        return await self.expect("PUT", "/admin/api/wechat-config", {"templates": templates})

    async def ticket_of(self, evaluation_id: str | int) -> dict | None:
        """The open ticket of an evaluation (None if not found), from
        ``GET /admin/api/tickets?status=open``."""
        cursor = None
        for _ in range(TICKET_PAGES):
            query = "/admin/api/tickets?status=open" + (f"&cursor={cursor}" if cursor else "")
            answer = await self.expect("GET", query)
            for item in answer["items"]:
                if str(item["evaluation_id"]) == str(evaluation_id):
                    return item
            cursor = answer.get("next_cursor")
            if not cursor:
                break
        return None

    async def ticket_step(self, ticket_id: str | int, step: str, body: dict[str, Any]) -> dict:
        """``POST /admin/api/tickets/{id}/{step}`` (verify, rectify, callback, close)."""
        return await self.expect("POST", f"/admin/api/tickets/{ticket_id}/{step}", body)
