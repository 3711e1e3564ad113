"""What the live hub hands out: one :class:`LiveEvent` per message, read by every feed.

A message is decoded once per process (:class:`LiveEvent`, in the hub) and, when some stream
writes Server-Sent Events, encoded as SSE bytes once (:func:`encode_sse`); every feed of the
channel gets the same object. Two kinds of feed:

* :class:`LiveFeed` — an async iterator of the messages' dicts (shared, read-only), in a
  queue of at most :data:`MAX_BACKLOG` messages; the evaluator screens and the tests use it;
* :class:`SinkFeed` — the public SSE streams: the hub calls its ``sink`` with the SSE bytes
  of every event of a coalescing window at once (one write per stream per window); a sink
  whose client has not taken ``max_backlog_bytes`` yet raises :class:`TooFarBehind` and the
  feed ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("wxbackend.realtime")

MAX_BACKLOG = 100

_END = object()  # the end mark a feed's queue carries last


class Hub(Protocol):
    """What a feed needs of its hub (``live_hub.LiveHub``)."""

    async def release(self, feed: LiveFeed) -> None:
        """Forget a closed feed."""


def encode_sse(text: str, shape: dict[str, Any]) -> bytes:
    """One SSE event (``id:`` + ``data:``) of a message, its JSON text kept as published (the
    publisher writes one compact line; anything holding a raw line break is re-encoded)."""
    if "\n" in text or "\r" in text:
        text = json.dumps(shape, ensure_ascii=False, separators=(",", ":"))
    return f"id: {shape.get('id', '')}\ndata: {text}\n\n".encode()


class Batch(bytes):
    """The SSE bytes of one coalescing window of a channel, built once and handed to every
    stream of the channel; :attr:`chunk` is the same bytes framed as one HTTP/1.1 chunk, also
    built once (on first use), so a stream's write copies nothing of its own."""

    @property
    def chunk(self) -> bytes:
        """``<size in hex>\\r\\n<bytes>\\r\\n`` (HTTP/1.1 chunked transfer coding)."""
        framed = self.__dict__.get("chunk")
        if framed is None:
            framed = self.__dict__["chunk"] = http_chunk(self)
        return framed


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (what Tornado's connection writes for a chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class LiveEvent:
    """One message as every feed of this process sees it: decoded once, SSE-encoded at most
    once (on first use)."""

    __slots__ = ("_sse", "shape", "text")

    def __init__(self, text: str, shape: dict[str, Any]):
        self.text = text
        self.shape = shape
        self._sse: bytes | None = None

    @classmethod
    def parse(cls, data: object) -> LiveEvent | None:
        """The event of a message's payload, or None when it is not a JSON object."""
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if not isinstance(data, str):
            return None
        try:
            shape = json.loads(data)
        except ValueError:
            return None
        return cls(data, shape) if isinstance(shape, dict) else None

    @property
    def sse(self) -> bytes:
        """The SSE bytes every stream writes."""
        if self._sse is None:
            self._sse = encode_sse(self.text, self.shape)
        return self._sse


class LiveFeed:
    """A subscription to a channel: an async iterator of its messages' dicts.

    Already subscribed when the hub's ``subscribe`` returns, so nothing published afterwards
    is missed. Close it with :meth:`aclose` or use it as ``async with``.

    Messages wait in a queue of at most :data:`MAX_BACKLOG` (100). A consumer that falls that
    far behind is ended — its backlog dropped, the iteration stops — so one slow page can
    neither grow the process's memory nor hold up the others. The iteration also stops when
    the hub fails (Redis gone) or closes (server stopping). The dicts are shared by every
    feed of the process (decoded once): read them, never change them.
    """

    def __init__(self, hub: Hub, channel: str, backlog: int = MAX_BACKLOG):
        self.channel = channel
        self.fell_behind = False  # ended because its backlog overflowed
        self._hub = hub
        # a SinkFeed (backlog 0) is written to, never queued: no queue for each SSE stream
        queue = asyncio.Queue(maxsize=backlog) if backlog else None
        self._queue: asyncio.Queue[object] = queue  # type: ignore[assignment]
        self._ended = False
        self._closed = False

    def __aiter__(self) -> LiveFeed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()  # a queue, not a socket: cancelling this is safe
        if event is _END:
            raise StopAsyncIteration
        return event.shape  # type: ignore[attr-defined]

    def offer(self, event: LiveEvent) -> None:
        """Queue one message; called by the hub, never blocks."""
        if self._ended:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.fall_behind(self._queue.maxsize)

    def fall_behind(self, backlog: int) -> None:
        """End the feed as "too far behind" (``backlog``: what overflowed, for the log)."""
        self.fell_behind = True
        log.warning(
            "live: a feed fell too far behind and was ended (the page reconnects)",
            extra={"fields": {"backlog": backlog}},
        )
        self.end()

    def end(self) -> None:
        """Stop the iteration after what is queued — at once if the queue is full (the
        backlog is dropped to make room for the end mark)."""
        if self._ended:
            return
        self._ended = True
        if self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(_END)

    @property
    def ended(self) -> bool:
        """No more messages will come (too slow, the hub failed or closed, or closed)."""
        return self._ended

    async def aclose(self) -> None:
        """End the feed and release its subscription (the last feed of a channel
        unsubscribes it)."""
        if self._closed:
            return
        self._closed = True
        self.end()
        await self._hub.release(self)

    async def __aenter__(self) -> LiveFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class TooFarBehind(Exception):
    """Raised by a sink whose client has not yet taken the bytes of its backlog limit."""


#: A stream's writer: writes the bytes of one batch without waiting; False when the client is
#: gone; raises :class:`TooFarBehind` when the unwritten bytes would pass its limit.
Sink = Callable[[bytes], bool]


class SinkFeed(LiveFeed):
    """A feed the hub writes to directly, a batch of SSE events per coalescing window.

    ``sink`` is called synchronously by the hub with the same bytes for every stream of the
    channel: no task wakes and no future is awaited per write. The sink keeps the count of
    bytes its client has not taken (Tornado's write buffer, bounded by
    ``live.max_backlog_bytes``); when it refuses a batch the feed ends as "too far behind"
    (``fell_behind``). :meth:`wait_ended` returns when the feed ends for any reason.
    """

    def __init__(self, hub: Hub, channel: str, sink: Sink):
        super().__init__(hub, channel, backlog=0)
        self._sink = sink
        self._done = asyncio.Event()

    def offer(self, event: LiveEvent) -> None:
        """One event on its own (the hub sends batches through :meth:`deliver`)."""
        self.deliver(event.sse)

    def deliver(self, batch: bytes) -> None:
        """Write one batch through the sink (called by the hub); ends the feed when the
        client is gone or too far behind."""
        if self._ended:
            return
        try:
            written = self._sink(batch)
        except TooFarBehind:
            self.fall_behind(len(batch))
            return
        except Exception as exc:  # noqa: BLE001 - one broken stream never stops the others'
            log.warning(
                "live: writing to a stream failed; it ends",
                extra={"fields": {"error": type(exc).__name__}},
            )
            written = False
        if not written:
            self.end()

    def end(self) -> None:
        """No more batches; :meth:`wait_ended` returns."""
        self._ended = True
        self._done.set()

    async def wait_ended(self, timeout: float) -> bool:
        """Wait until the feed ends (True) or ``timeout`` seconds pass (False)."""
        if self._done.is_set():
            return True
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def __anext__(self) -> dict[str, Any]:
        raise TypeError("a SinkFeed is written to, not iterated")
