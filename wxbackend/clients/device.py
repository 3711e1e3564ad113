"""The evaluator screen's side of the API (评价器): pair, then read the screen's stream.

    token = await pair(api, "HL-W01", device_key)            # POST /api/v1/device/pair
    stream = ScreenStream(api.base_url, token)                 # GET /api/v1/device/stream
    await stream.next_event("idle")
    case = await stream.next_event("case", after=1)            # {case_no_masked, item, qr_url…}
    status, png = await api("GET", case["qr_url"], token=token)
    await stream.close()

`ScreenStream` reads Server-Sent Events with Tornado's streaming client; ``close()`` hangs up
(the next chunk raises in the callback, which drops the connection).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from wxbackend.clients.http import ApiClient, ApiError

PAIR_PATH = "/api/v1/device/pair"
STREAM_PATH = "/api/v1/device/stream"


async def pair(api: ApiClient, window_code: str, device_key: str) -> str:
    """``POST /api/v1/device/pair``: the device token (`ApiError` unless 200)."""
    body = {"window_code": window_code, "device_key": device_key}
    return (await api.expect("POST", PAIR_PATH, body))["device_token"]


class Hangup(Exception):
    """Raised from the streaming callback to drop the connection."""


class ScreenStream:
    """One screen's stream: its named events in order, as ``(name, data, time received)``."""

    def __init__(self, base_url: str, token: str | None, **options: Any):
        """``options``: more arguments of the ``HTTPRequest`` (e.g. ``ca_certs`` for https)."""
        self.client = AsyncHTTPClient(force_instance=True)
        self.buffer = ""
        self.events: list[tuple[str, dict[str, Any], float]] = []
        self.changed = asyncio.Event()
        self.hang_up = False
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = HTTPRequest(
            base_url.rstrip("/") + STREAM_PATH,
            headers=headers,
            streaming_callback=self._on_chunk,
            request_timeout=3600,
            **options,
        )
        self.done = asyncio.ensure_future(self._run(request))

    async def _run(self, request: HTTPRequest) -> Any:
        """The response, or the exception that ended the stream (a hang-up ends it)."""
        try:
            return await self.client.fetch(request, raise_error=False)
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits ``done``
            return exc

    def _on_chunk(self, chunk: bytes) -> None:
        if self.hang_up:
            raise Hangup()
        self.buffer += chunk.decode()
        while "\n\n" in self.buffer:
            block, self.buffer = self.buffer.split("\n\n", 1)
            name, data = "message", None
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if data is not None:
                self.events.append((name, data, time.monotonic()))
        self.changed.set()

    def names(self) -> list[str]:
        """The events' names so far."""
        return [name for name, _, _ in self.events]

    async def wait_for(self, condition: Any, timeout: float = 5.0) -> None:
        """Until ``condition()`` holds (TimeoutError after ``timeout``; ApiError if the stream
        ends first)."""

        async def loop() -> None:
            while not condition():
                self.changed.clear()
                if self.done.done():
                    result = self.done.result()
                    raise ApiError("GET", STREAM_PATH, getattr(result, "code", 0), result)
                await asyncio.wait(
                    {asyncio.ensure_future(self.changed.wait()), self.done},
                    return_when=asyncio.FIRST_COMPLETED,
                )

        await asyncio.wait_for(loop(), timeout)

    async def next_event(self, name: str, after: int = 0, timeout: float = 5.0) -> dict[str, Any]:
        """The data of the first ``name`` event at index ``after`` or later."""

        def found() -> dict[str, Any] | None:
            return next((d for n, d, _ in self.events[after:] if n == name), None)

        await self.wait_for(lambda: found() is not None, timeout)
        return found()  # type: ignore[return-value]

    async def close(self) -> None:
        """Hang up (at the next chunk: a heartbeat at the latest) and close the client."""
        self.hang_up = True
        if not self.done.done():
            await asyncio.wait_for(asyncio.shield(self.done), 20)
        self.client.close()
