"""Receiving live ratings: ONE Redis pub/sub connection per process, fanned out to feeds.

A :class:`LiveHub` (``ctx.live_hub``, made on first use by ``live.live_hub``, closed by
``Context.close``) SUBSCRIBEs each channel by name while at least one :class:`LiveFeed`
wants it and copies every message into each feed's bounded queue. Channel names, not a
PSUBSCRIBE pattern: the publisher asks ``PUBSUB CHANNELS``, which does not list pattern
subscriptions. :class:`StreamSlots` counts the live streams a process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger("wxbackend.realtime")

MAX_BACKLOG = 100

_END = object()  # the end mark a feed's queue carries last
_READERS: set[asyncio.Task[None]] = set()  # the hubs' reader tasks, referenced while they run


class LiveFeed:
    """A subscription to live ratings: an async iterator of public shapes (dicts).

    Already subscribed when :func:`subscribe` returns, so nothing published afterwards is
    missed. Close it with :meth:`aclose` or use it as ``async with``.

    Messages wait in a queue of at most :data:`MAX_BACKLOG` (100) ratings. A consumer that
    falls that far behind is ended — its backlog dropped, the iteration stops — so one slow
    page can neither grow the process's memory nor hold up the others; an SSE page then
    reconnects and reloads. The iteration also stops when the hub fails (Redis gone) or
    closes (server stopping). Each call decodes its own dict: consumers share nothing.
    """

    def __init__(self, hub: LiveHub, channel: str, backlog: int = MAX_BACKLOG):
        self.channel = channel
        self.fell_behind = False  # ended because its queue was full
        self._hub = hub
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=backlog)
        self._ended = False
        self._closed = False

    def __aiter__(self) -> LiveFeed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        data = await self._queue.get()  # a queue, not a socket: cancelling this is safe
        if data is _END:
            raise StopAsyncIteration
        return json.loads(data)  # type: ignore[arg-type]

    def offer(self, data: str) -> None:
        """Queue one message (JSON text); called by the hub, never blocks."""
        if self._ended:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.fell_behind = True
            log.warning(
                "live: a feed fell too far behind and was ended (the page reconnects)",
                extra={"fields": {"backlog": self._queue.maxsize}},
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

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.end()
        await self._hub.release(self)

    async def __aenter__(self) -> LiveFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LiveHub:
    """One process's live subscriptions on ONE Redis pub/sub connection, fanned out to feeds.

    * Reference counts by channel name: the first feed of a channel SUBSCRIBEs it (and waits
      for Redis to confirm, so :meth:`subscribe` returning means subscribed), the last one to
      close UNSUBSCRIBEs it, so ``PUBSUB CHANNELS`` — which the publisher asks — stays true.
      SUBSCRIBE/UNSUBSCRIBE are serialized by a lock so they reach Redis in order.
    * One reader task owns every read of the connection. It is never cancelled (a pub/sub
      read cancelled midway can leave the connection stuck): like ``cache.ChannelWatcher``
      it reads with a timeout of :attr:`poll_seconds`, checks a flag, and :meth:`aclose`
      publishes a wake-up on the hub's own channel (``<prefix>live-hub:<id>``, outside the
      ``live:*`` pattern the publisher counts) so it stops at once.
    * Redis gone: redis-py first reconnects and resubscribes by itself (a brief blip costs
      only the messages sent meanwhile). When that fails, or the connection stays silent —
      the reader PINGs after :attr:`ping_after_seconds` of silence and gives up after
      :attr:`pong_wait_seconds` without an answer — the hub fails: every feed ends (pages
      reconnect; SSE retries by itself), and the next :func:`subscribe` builds a new hub.
      Ending is simpler and more robust than resubscribing feeds that missed messages.
    """

    poll_seconds = 1.0
    ping_after_seconds = 15.0
    pong_wait_seconds = 10.0
    close_wait_seconds = 5.0
    max_backlog = MAX_BACKLOG

    def __init__(self, redis: aioredis.Redis, wake_channel: str, confirm_seconds: float):
        self.redis = redis
        self.wake_channel = wake_channel
        self.confirm_seconds = confirm_seconds
        self.closed = False
        self._pubsub = redis.pubsub()
        self._feeds: dict[str, set[LiveFeed]] = {}
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @property
    def reading(self) -> bool:
        """The reader task is running (it stops after :meth:`aclose` or a failure)."""
        return self._reader is not None and not self._reader.done()

    async def subscribe(self, channel: str) -> LiveFeed:
        """A new feed of ``channel``; raises a Redis error or TimeoutError when Redis does not
        confirm (the hub then fails, see the class docstring)."""
        feed = LiveFeed(self, channel, self.max_backlog)
        async with self._lock:
            if self.closed:
                raise RedisConnectionError("the live hub is closed")
            feeds = self._feeds.setdefault(channel, set())
            feeds.add(feed)  # before SUBSCRIBE: it gets every message after the confirmation
            try:
                if self._reader is None:
                    await self._subscribe_confirmed(self.wake_channel)
                if len(feeds) == 1:
                    await self._subscribe_confirmed(channel)
            except BaseException as exc:  # incl. cancellation: the subscription state is unknown
                self._fail(exc)
                raise
        return feed

    async def release(self, feed: LiveFeed) -> None:
        """Forget a closed feed; UNSUBSCRIBE its channel when it was the last one."""
        if self.closed:
            return
        async with self._lock:
            feeds = self._feeds.get(feed.channel)
            if self.closed or feeds is None or feed not in feeds:
                return
            feeds.discard(feed)
            if feeds:
                return
            del self._feeds[feed.channel]
            try:
                await self._pubsub.unsubscribe(feed.channel)
            except asyncio.CancelledError as exc:
                self._fail(exc)
                raise
            except Exception as exc:  # noqa: BLE001 - Redis trouble ends the hub, not the caller
                self._fail(exc)

    async def aclose(self) -> None:
        """End every feed and stop the reader (flag + wake-up, never a cancel). Waits at most
        :attr:`close_wait_seconds`: a reader still inside redis-py's reconnect attempts is
        left to finish on its own rather than hold up the shutdown."""
        self._shut()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.close_wait_seconds
        with contextlib.suppress(TimeoutError):  # let a SUBSCRIBE being written finish first
            async with asyncio.timeout_at(deadline), self._lock:
                pass
        reader = self._reader
        if reader is None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            return
        if reader.done():
            return
        with contextlib.suppress(Exception):  # a plain command: safe to time out
            await asyncio.wait_for(self.redis.publish(self.wake_channel, "stop"), self.poll_seconds)
        await asyncio.wait({reader}, timeout=max(0.0, deadline - loop.time()))
        if not reader.done():
            log.warning("live: the subscription reader is still waiting for Redis; not waiting")

    async def _subscribe_confirmed(self, channel: str) -> None:
        """SUBSCRIBE and wait for Redis's confirmation (read by the reader task)."""
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming[channel] = confirmed
        await self._pubsub.subscribe(channel)
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read())
            _READERS.add(self._reader)  # a task nobody holds could be garbage collected
            self._reader.add_done_callback(_READERS.discard)
        await asyncio.wait_for(confirmed, self.confirm_seconds)
        if self.closed:  # _shut released the wait
            raise RedisConnectionError("the live hub is closed")

    async def _read(self) -> None:
        """The reader: the only coroutine that reads the connection; it closes it at the end."""
        loop = asyncio.get_running_loop()
        heard, pinged = loop.time(), None
        try:
            while not self.closed:
                try:
                    message = await self._pubsub.get_message(timeout=self.poll_seconds)
                    now = loop.time()
                    # any reply shows the connection is alive, even our PING's, which redis-py
                    # may parse oddly (a bare string); _handle ignores types it does not know
                    if message is not None:
                        heard, pinged = now, None
                    elif pinged is not None and now - pinged > self.pong_wait_seconds:
                        raise TimeoutError("Redis did not answer PING on the live subscription")
                    elif pinged is None and now - heard > self.ping_after_seconds:
                        await self._pubsub.ping("live-hub")
                        pinged = now
                except Exception as exc:  # noqa: BLE001 - whatever it is, end the feeds
                    self._fail(exc)
                    break
                if message is not None and not self.closed:
                    self._handle(message)
                    await asyncio.sleep(0)  # consumers take it before a burst fills their queues
        finally:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    def _handle(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if kind == "subscribe":
            confirmed = self._confirming.pop(channel, None)  # type: ignore[arg-type]
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "message" and channel != self.wake_channel:
            feeds = self._feeds.get(channel)  # type: ignore[arg-type]
            if not feeds:
                return
            data = message.get("data")
            try:
                json.loads(data)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                log.warning("live: a message that is not JSON was skipped")
                return
            for feed in feeds:
                feed.offer(data)  # type: ignore[arg-type]

    def _fail(self, exc: BaseException) -> None:
        if not self.closed:
            log.warning(
                "live: the shared subscription failed; every live stream ends (pages reconnect)",
                extra={"fields": {"error": type(exc).__name__}},
            )
        self._shut()

    def _shut(self) -> None:
        """Closed from now on: end every feed and every wait for a confirmation."""
        if self.closed:
            return
        self.closed = True
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.end()
        self._feeds.clear()
        for confirmed in self._confirming.values():
            if not confirmed.done():
                confirmed.set_result(None)  # the waiter sees ``closed`` and raises
        self._confirming.clear()


class StreamSlots:
    """The live streams (SSE) open in this process (``ctx.live_streams``), in all and per
    client address: one client cannot take every slot (500 idle streams from one address
    used to leave every public page and evaluator screen with 503)."""

    def __init__(self) -> None:
        self.open = 0
        self.by_address: dict[str, int] = {}

    def take(self, limit: int, address: str = "", per_address: int = 0) -> bool:
        """One more stream, unless ``limit`` are open already or ``address`` holds
        ``per_address`` of them (0: no per-address limit)."""
        held = self.by_address.get(address, 0)
        if self.open >= limit or (per_address and held >= per_address):
            return False
        self.open += 1
        self.by_address[address] = held + 1
        return True

    def release(self, address: str = "") -> None:
        """A stream of ``address`` ended."""
        self.open = max(0, self.open - 1)
        held = self.by_address.get(address, 0) - 1
        if held > 0:
            self.by_address[address] = held
        else:
            self.by_address.pop(address, None)
