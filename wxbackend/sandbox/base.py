"""The base of every WeChat endpoint's handler: call counting, faults, the access token, JSON.

Like WeChat, every WeChat endpoint answers errors with HTTP 200 and ``{"errcode": N, "errmsg":
"<text> rid: <request id>"}``. JSON bodies are read whatever the Content-Type (wechatpy sends
none); a body that is not a JSON object answers ``47001``. Every call except the token and
login endpoints (``needs_access_token = False``) needs ``?access_token=`` (see
`wxbackend.sandbox.token`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

import tornado.web

from wxbackend.sandbox.errors import JSONDict, WeChatError
from wxbackend.sandbox.faults import Fault


class SandboxHandler(tornado.web.RequestHandler):
    """Shared by WeChat and control handlers: the state and JSON answers."""

    @property
    def state(self) -> Any:
        """The sandbox's state (``app.settings["sandbox_state"]``), a
        :class:`~wxbackend.sandbox.state.SandboxState`: not imported here, because the state
        is made of the API groups' state classes, whose handlers build on this class."""
        return self.settings["sandbox_state"]

    def write_json(self, payload: Any, status: int = 200) -> None:
        """Answer ``payload`` as JSON (non-ASCII kept as is)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(payload, ensure_ascii=False))


class WeChatHandler(SandboxHandler):
    """Base of the WeChat endpoints: call counting, faults, the access token, JSON errors."""

    wechat_path: ClassVar[str] = ""
    needs_access_token: ClassVar[bool] = True

    def initialize(self) -> None:
        self._hang_waiter: asyncio.Future[None] | None = None
        self._client_gone = False

    async def prepare(self) -> None:
        self.state.count_call(self.wechat_path)
        self.state.count_connection(getattr(self.request.connection, "stream", None))
        fault = self.state.faults.take(self.wechat_path)
        if fault is not None and await self._apply_fault(fault):
            return
        if self.needs_access_token:
            try:
                self.state.tokens.check_access_token(self.get_query_argument("access_token", None))
            except WeChatError as exc:
                self.write_json(exc.as_dict())

    async def _apply_fault(self, fault: Fault) -> bool:
        """Hang, then answer the fault's errcode or HTTP status; True if answered."""
        hang = fault.hang()
        if hang:
            released = await self._hang(hang)
            if self._client_gone:
                self.finish()  # nothing can be written; just end the request
                return True
            if released:
                self.write_json(WeChatError(-1).as_dict())
                return True
        if fault.http_status is not None:
            self.set_status(fault.http_status)
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(f"sandbox fault: HTTP {fault.http_status}\n")
            return True
        if fault.errcode is not None:
            self.write_json(WeChatError(fault.errcode).as_dict())
            return True
        return False

    async def _hang(self, seconds: float) -> bool:
        """Wait ``seconds`` without blocking; True if ended early (client gone or release)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hang_waiter = waiter
        self.state.hang_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            return False
        finally:
            self.state.hang_waiters.discard(waiter)
            self._hang_waiter = None
        return True

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._hang_waiter is not None and not self._hang_waiter.done():
            self._hang_waiter.set_result(None)
        super().on_connection_close()

    def answer(self, action: Callable[[], JSONDict]) -> None:
        """Run ``action`` and answer its result, or WeChat's error JSON."""
        try:
            result = action()
        except WeChatError as exc:
            result = exc.as_dict()
        self.write_json(result)

    def json_body(self) -> JSONDict:
        """The request body as a JSON object (``47001`` otherwise)."""
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            raise WeChatError(47001) from None
        if not isinstance(body, dict):
            raise WeChatError(47001)
        return body

    def arg(self, name: str) -> str:
        """Query argument ``name`` ("" when absent)."""
        return self.get_query_argument(name, "") or ""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json(WeChatError(-1).as_dict(), status=status_code)
