"""All sandbox state, in memory, plain Python: one state object per WeChat API group.

WeChat-side methods raise `WeChatError`; control-side methods raise `ControlError`. Every
group reads the time through `SandboxState.now`, so replacing ``clock`` (default `time.time`)
moves every expiry at once (tests do).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable

from wxbackend.sandbox.errors import JSONDict
from wxbackend.sandbox.face import FaceState
from wxbackend.sandbox.faults import FaultState
from wxbackend.sandbox.login import LoginState
from wxbackend.sandbox.security import SecurityState
from wxbackend.sandbox.subscribe import SubscribeState
from wxbackend.sandbox.token import AppCredentials, TokenState
from wxbackend.sandbox.wecom import WeComState
from wxbackend.sandbox.wxacode import DEFAULT_PAGES, WxaCodeState

DEFAULT_APPID = "wx00000000000000a1"
DEFAULT_SECRET = "00000000000000000000000000000001"  # noqa: S105 - public dev default  # nosec B105


class SandboxState:
    """The sandbox: its address, the per-group states, and the traffic counters."""

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        published_pages: tuple[str, ...] = DEFAULT_PAGES,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.app = AppCredentials(appid, secret)
        self.published_pages = tuple(published_pages)
        self.clock: Callable[[], float] = clock or time.time
        self.address = "127.0.0.1"
        self.port: int | None = None
        self.hang_waiters: set[asyncio.Future[None]] = set()
        self._clear()

    def _clear(self) -> None:
        """Fresh group states and counters (everything `reset` clears)."""
        self.tokens = TokenState(self.app, self.now)
        self.logins = LoginState(self.app, self.now)
        self.face = FaceState(self.logins, self.now)
        self.wxacode = WxaCodeState(self.published_pages)
        self.subscribe = SubscribeState(self.logins, self.now)
        self.security = SecurityState(self.logins)
        self.wecom = WeComState(self.now)
        self.faults = FaultState()
        self.calls: dict[str, int] = {}
        self.connections = 0
        self._streams_seen: weakref.WeakSet[object] = weakref.WeakSet()

    @property
    def base_url(self) -> str:
        """The API base to configure as ``wechat.api_base`` (ends with ``/``)."""
        return f"http://{self.address}:{self.port}/"

    def now(self) -> float:
        """The sandbox's time (Unix seconds) from ``clock``."""
        return self.clock()

    def count_call(self, path: str) -> None:
        """Count one call to a WeChat endpoint."""
        self.calls[path] = self.calls.get(path, 0) + 1

    def count_connection(self, stream: object | None) -> None:
        """Count the TCP connection (its stream) a call came on, once per connection."""
        if stream is not None and stream not in self._streams_seen:
            self._streams_seen.add(stream)
            self.connections += 1

    def release_hangs(self) -> None:
        """End every hanging call now (they answer ``-1`` system error)."""
        for waiter in list(self.hang_waiters):
            if not waiter.done():
                waiter.set_result(None)

    def stats(self) -> JSONDict:
        """``GET /_sandbox/stats``."""
        return {
            "calls": dict(self.calls),
            "token_fetches": dict(self.tokens.fetches),
            "codes_made": self.wxacode.made,
            "messages_sent": len(self.subscribe.messages),
            "connections": self.connections,
        }

    def reset(self) -> None:
        """Clear everything but appid, secret and published pages; release hanging calls."""
        self.release_hangs()
        self._clear()
