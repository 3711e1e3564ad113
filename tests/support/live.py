"""The live feed over HTTP: a Server-Sent Events reader (:class:`Stream`), a polling
:func:`eventually`, subscriber counts, and fixtures for quick heartbeats and quiet hang-ups
(a pytest plugin: tests/conftest.py loads it, so every test module may ask for them).

A stream is read with Tornado's AsyncHTTPClient (``streaming_callback``); the client
disconnects by raising from that callback (the client then closes the connection).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from handlers import live
from wxbackend.services.public import live as realtime


class Hangup(Exception):
    """Raised from the streaming callback to drop the connection."""


class Stream:
    """One SSE connection: collects events and comments; ``close()`` hangs up."""

    def __init__(self, base_url: str, query: str = "", **options):
        """``options``: more arguments of the ``HTTPRequest`` (e.g. ``ca_certs``)."""
        self.client = AsyncHTTPClient(force_instance=True)
        self.buffer = ""
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.headers: dict[str, str] = {}
        self.changed = asyncio.Event()
        self.hang_up = False
        request = HTTPRequest(
            f"{base_url}/api/v1/public/live{query}",
            streaming_callback=self._on_chunk,
            header_callback=self._on_header,
            request_timeout=60,
            **options,
        )
        self.done = asyncio.ensure_future(self._run(request))

    async def _run(self, request: HTTPRequest):
        """The response, or the exception that ended the stream (a hang-up ends it)."""
        try:
            return await self.client.fetch(request, raise_error=False)
        except Exception as exc:
            return exc

    def _on_header(self, line: str) -> None:
        name, sep, value = line.partition(":")
        if sep:
            self.headers[name.strip().lower()] = value.strip()

    def _on_chunk(self, chunk: bytes) -> None:
        if self.hang_up:
            raise Hangup()
        self.buffer += chunk.decode()
        while "\n\n" in self.buffer:
            block, self.buffer = self.buffer.split("\n\n", 1)
            event: dict = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line.startswith("id: "):
                    event["id"] = line[4:]
            if "data" in event:
                self.events.append(event)
        self.changed.set()

    async def wait_for(self, condition, timeout: float = 5.0) -> None:
        async def loop():
            while not condition():
                self.changed.clear()
                if self.done.done():
                    raise AssertionError(f"the stream ended: {self.done.result()!r}")
                await asyncio.wait(
                    {asyncio.ensure_future(self.changed.wait()), self.done},
                    return_when=asyncio.FIRST_COMPLETED,
                )

        await asyncio.wait_for(loop(), timeout)

    async def connected(self) -> None:
        await self.wait_for(lambda: "connected" in self.comments)

    async def close(self) -> None:
        """Hang up at the next chunk (a heartbeat at the latest)."""
        self.hang_up = True
        if not self.done.done():
            await asyncio.wait_for(asyncio.shield(self.done), 10)
        self.client.close()


async def numsub(ctx, center: str | None) -> int:
    """Subscribers of a center's live channel (``None``: the all-centers one), says Redis."""
    channel = realtime.channel_name(ctx.rkeys, center)
    answer = await ctx.redis.pubsub_numsub(channel)
    return dict(answer).get(channel, 0)


async def eventually(check, timeout: float = 5.0) -> None:
    """Until ``await check()`` is truthy; fails after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


class _QuietHangups(logging.Filter):
    """Tornado logs the exception a streaming callback raises; a hang-up is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Hangup))


@pytest.fixture(autouse=True)
def quiet_hangups():
    """Every test: a :class:`Stream`'s intended hang-up is not logged as an error."""
    quiet = _QuietHangups()
    logger = logging.getLogger("tornado.application")
    logger.addFilter(quiet)
    yield
    logger.removeFilter(quiet)


@pytest.fixture
def fast_heartbeat(monkeypatch):
    """SSE heartbeats every 0.2 s, so a hang-up (noticed at the next chunk) is quick."""
    monkeypatch.setattr(live.LiveHandler, "heartbeat_seconds", 0.2)
