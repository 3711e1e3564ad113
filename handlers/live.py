"""Live ratings for the public pages: ``GET /api/v1/public/live?center=`` (Server-Sent Events).

Each stream holds one feed of ``wxbackend.services.public.live`` for as long as the browser stays
connected; all the feeds of a process share ONE Redis pub/sub connection (``live_hub.LiveHub``):

* every new public rating (and a rating whose follow-up 追评 just arrived) is one event,
  ``id: <evaluation id>`` + ``data: <the public shape, one line of JSON>``; the events are
  encoded once per process and written in batches, at most one write per stream every
  ``live.coalesce_ms`` (the hub calls :meth:`LiveHandler._deliver`, no task per event);
* a comment line (``: ping``) every :attr:`LiveHandler.heartbeat_seconds` keeps proxies from
  closing an idle stream and notices a vanished client;
* when the client goes away (``on_connection_close``, or a write that fails) the feed is
  closed at once (the last feed of a channel unsubscribes it in Redis);
* the stream ends cleanly when its feed ends: the client reads too slowly (more than
  ``live.max_backlog_bytes`` written and not yet taken), Redis is gone, or the server
  stops. The browser's EventSource reconnects after ``retry``.

A process serves at most ``live.max_streams`` streams at a time, and one client address at
most ``live.max_streams_per_address`` of them (each costs a socket, a queue and its share of
the fan-out, no Redis connection); one more is 503 ``too_many_streams`` with ``Retry-After``
(the browser's EventSource retries by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from tornado.iostream import StreamBufferFullError, StreamClosedError

from handlers.base import BaseHandler, route
from handlers.openapi import errors_of
from wxbackend import errors
from wxbackend.services.public import live as realtime
from wxbackend.services.public.live_feeds import Batch, http_chunk
from wxbackend.services.public.live_hub import LiveFeed, SinkFeed, TooFarBehind

log = logging.getLogger("wxbackend.live")

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 5000
_CENTER = re.compile(r"[A-Za-z0-9_.-]{1,64}")

RETRY_AFTER_SECONDS = 10
#: The OpenAPI answer of a stream.
EVENT_STREAM = {
    "description": "an endless event stream",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


class TooManyStreams(errors.ContractError):
    """This process already serves ``live.max_streams`` streams (or this address its share)."""

    status = 503
    code = "too_many_streams"
    default_message = "Too many live connections; try again shortly."


def sse_event(shape: dict[str, Any]) -> bytes:
    """One SSE event for a public rating; JSON never contains a raw newline."""
    data = json.dumps(shape, ensure_ascii=False, separators=(",", ":"))
    return f"id: {shape.get('id', '')}\ndata: {data}\n\n".encode()


class LiveHandler(BaseHandler):
    """``GET /api/v1/public/live``: new public ratings as Server-Sent Events."""

    heartbeat_seconds = HEARTBEAT_SECONDS

    openapi = {
        "get": {
            "summary": "Live public ratings as Server-Sent Events (text/event-stream): one "
            "`data: <json>` event per new rating, same shape as one item of "
            "/api/v1/public/evaluations; a `: ping` comment every 15 s",
            "parameters": [
                {
                    "name": "center",
                    "in": "query",
                    "required": False,
                    "description": "center code (all centers when absent)",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": EVENT_STREAM,
                **errors_of(400, 503),
            },
        }
    }

    def initialize(self, route_template: str = "unmatched") -> None:
        super().initialize(route_template)
        self._gone = asyncio.Event()
        self._slot_taken = False
        self._held: list[bytes] | None = []  # batches delivered before the headers went out
        self._sink_feed: SinkFeed | None = None
        self._sent_at = time.monotonic()
        self._buffer_limit: tuple[Any, int | None] | None = None  # (the stream, its own limit)

    def on_connection_close(self) -> None:
        self._gone.set()
        if self._sink_feed is not None:
            self._sink_feed.end()

    async def get(self) -> None:
        center = self.get_query_argument("center", None) or None
        if center is not None and not _CENTER.fullmatch(center):
            raise errors.InvalidQuery("Parameter center is not a center code.", parameter="center")
        limits = self.ctx.settings.live
        self._address = self.client_ip()
        slots = self.ctx.live_streams
        if not slots.take(limits.max_streams, self._address, limits.max_streams_per_address):
            raise TooManyStreams()
        self._slot_taken = True
        try:
            feed = await realtime.subscribe(self.ctx, center, sink=self._deliver)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("live: cannot subscribe", extra={"fields": {"error": type(exc).__name__}})
            raise errors.Unavailable("Live ratings are unavailable; try again shortly.") from None
        try:
            await self._stream(feed)
        finally:
            await self._close_feed(feed)

    async def _stream(self, feed: LiveFeed) -> None:
        """Headers, then the batches the hub writes, a ping after ``heartbeat_seconds``
        without a write, until the feed ends or the client goes; then the response ends."""
        assert isinstance(feed, SinkFeed)
        self._sink_feed = feed
        if self._gone.is_set():
            feed.end()
        if not await self._begin():
            return
        self._limit_backlog(self.ctx.settings.live.max_backlog_bytes)
        held, self._held = self._held or [], None
        if held:
            feed.deliver(b"".join(held))
        while not await feed.wait_ended(self._sent_at + self.heartbeat_seconds - time.monotonic()):
            if time.monotonic() - self._sent_at >= self.heartbeat_seconds:
                # through the sink, never awaited: a flush awaited while the hub writes too
                # could wait forever (Tornado resolves only the latest write's future)
                feed.deliver(b": ping\n\n")
        self._limit_backlog(None)  # the end mark goes after the backlog
        if not self._gone.is_set() and not self._finished:
            with contextlib.suppress(StreamClosedError):
                self.finish()

    def _limit_backlog(self, limit: int | None) -> None:
        """Bound the bytes Tornado holds for this client (its write buffer) while events
        stream; ``None`` gives the connection its own limit back."""
        stream = getattr(self.request.connection, "stream", None)
        if stream is None:
            return
        if limit is not None:
            self._buffer_limit = (stream, stream.max_write_buffer_size)
            stream.max_write_buffer_size = limit
        elif self._buffer_limit is not None:
            stream.max_write_buffer_size = self._buffer_limit[1]
            self._buffer_limit = None

    def _deliver(self, batch: bytes) -> bool:
        """The hub's writer for this stream: the batch goes out without waiting; False when
        the client is gone; :class:`TooFarBehind` when the client has not taken
        ``live.max_backlog_bytes`` yet."""
        if self._held is not None:  # subscribed, headers not sent yet
            self._held.append(batch)
            return True
        if self._gone.is_set() or self._finished:
            return False
        self._sent_at = time.monotonic()
        connection = self.request.connection
        stream = getattr(connection, "stream", None)
        try:
            if stream is None or self._write_buffer:  # not a plain HTTP/1 connection
                self.write(batch)
                self.flush()
            elif getattr(connection, "_chunking_output", False):
                # Tornado's own framing, done once per window (Batch.chunk) instead of once
                # per stream: straight to the socket's stream, the headers being out already
                stream.write(batch.chunk if isinstance(batch, Batch) else http_chunk(batch))
            else:  # HTTP/1.0: no chunks, the response ends when the connection closes
                stream.write(batch)
        except StreamBufferFullError:
            raise TooFarBehind() from None
        except StreamClosedError:
            return False
        return True

    async def _begin(self) -> bool:
        """The event-stream headers and the first bytes; False when the client is gone."""
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events through unbuffered
        return await self._send(f"retry: {RETRY_MILLISECONDS}\n: connected\n\n".encode())

    async def _pump(
        self,
        feed: LiveFeed,
        on_message: Callable[[dict[str, Any]], Awaitable[bool]],
        on_timer: Callable[[], Awaitable[bool]],
        wait_seconds: Callable[[], float],
    ) -> None:
        """Until the client goes or the feed ends: ``on_message`` for each message,
        ``on_timer`` after ``wait_seconds()`` without one (either returning False ends the
        stream); then the response is finished."""
        gone = asyncio.ensure_future(self._gone.wait())
        pending: asyncio.Future | None = None
        try:
            while not self._gone.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(anext(feed))
                done, _ = await asyncio.wait(
                    {pending, gone}, timeout=wait_seconds(), return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    break
                if pending not in done:
                    if not await on_timer():
                        break
                    continue
                result, pending = pending, None
                try:
                    message = result.result()
                except StopAsyncIteration:
                    break  # the feed ended (too slow, Redis gone, stopping): the browser reconnects
                except Exception as exc:  # Redis gone, a broken message…: end this stream only
                    log.warning(
                        "live: the subscription failed; the stream ends (browsers reconnect)",
                        extra={"fields": {"error": type(exc).__name__}},
                    )
                    break
                if not await on_message(message):
                    break
        finally:
            for task in (pending, gone):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if not self._gone.is_set() and not self._finished:
            with contextlib.suppress(StreamClosedError):
                self.finish()

    async def _send(self, chunk: bytes) -> bool:
        """Write and flush; False when the client is gone."""
        if self._gone.is_set():
            return False
        self._sent_at = time.monotonic()
        try:
            self.write(chunk)
            await self.flush()
        except StreamClosedError:
            self._gone.set()
            return False
        return True

    async def _close_feed(self, feed: LiveFeed) -> None:
        try:
            await feed.aclose()
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning(
                "live: closing a subscription failed",
                extra={"fields": {"error": type(exc).__name__}},
            )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 503:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        super().write_error(status_code, **kwargs)

    def on_finish(self) -> None:
        self._limit_backlog(None)
        if self._slot_taken:
            self._slot_taken = False
            self.ctx.live_streams.release(self._address)
        super().on_finish()


default_handlers = [route("/api/v1/public/live", LiveHandler)]
