"""Receiving live ratings: ONE Redis pub/sub connection per process, fanned out to feeds.

A :class:`LiveHub` (``ctx.live_hub``, made on first use by ``live.live_hub``, closed by
``Context.close``) SUBSCRIBEs each channel by name while at least one feed wants it, decodes
each message once (a :class:`~.live_feeds.LiveEvent`) and hands that same object to every
feed: queued for an iterated :class:`LiveFeed`, or — for the SSE streams' :class:`SinkFeed` —
batched per channel for ``coalesce_seconds`` and written as the same bytes to every stream.
Channel names, not a PSUBSCRIBE pattern: the publisher asks ``PUBSUB CHANNELS``, which does
not list pattern subscriptions. :class:`StreamSlots` counts the live streams a process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from wxbackend.services.public.live_feeds import (
    MAX_BACKLOG,
    Batch,
    LiveEvent,
    LiveFeed,
    Sink,
    SinkFeed,
    TooFarBehind,
)

__all__ = ["MAX_BACKLOG", "LiveEvent", "LiveFeed", "LiveHub", "SinkFeed", "StreamSlots"]
__all__ += ["TooFarBehind"]

log = logging.getLogger("wxbackend.realtime")

_READERS: set[asyncio.Task[None]] = set()  # the hubs' reader tasks, referenced while they run


class _Channel:
    """One subscribed channel's feeds: the iterated ones get each message at once; the SSE
    sinks get the messages of a coalescing window as one batch (``pending`` until then)."""

    __slots__ = ("due", "feeds", "last_flush", "pending", "sinks", "timer", "window")

    def __init__(self, window: float) -> None:
        self.feeds: set[LiveFeed] = set()
        self.sinks: set[SinkFeed] = set()
        self.pending: list[LiveEvent] = []
        self.timer: asyncio.TimerHandle | None = None
        self.last_flush = float("-inf")
        self.window = window  # seconds from one write to the next (LiveHub._widened)
        self.due = 0.0  # when the timer should fire

    def __len__(self) -> int:
        return len(self.feeds) + len(self.sinks)

    def add(self, feed: LiveFeed) -> None:
        (self.sinks if isinstance(feed, SinkFeed) else self.feeds).add(feed)  # type: ignore[arg-type]

    def discard(self, feed: LiveFeed) -> bool:
        """Forget ``feed``; False when it was not there."""
        found = feed in self.feeds or feed in self.sinks
        self.feeds.discard(feed)
        self.sinks.discard(feed)  # type: ignore[arg-type]
        return found

    def end_all(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for feed in (*self.feeds, *self.sinks):
            feed.end()


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
    max_widening = 2.0  # a window widens under load to at most this many coalesce_seconds

    def __init__(
        self,
        redis: aioredis.Redis,
        wake_channel: str,
        confirm_seconds: float,
        coalesce_seconds: float = 0.25,
    ):
        self.redis = redis
        self.wake_channel = wake_channel
        self.confirm_seconds = confirm_seconds
        self.coalesce_seconds = coalesce_seconds
        self.closed = False
        self.decoded = 0  # messages decoded: one per message of a subscribed channel
        self._pubsub = redis.pubsub()
        self._feeds: dict[str, _Channel] = {}
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @property
    def reading(self) -> bool:
        """The reader task is running (it stops after :meth:`aclose` or a failure)."""
        return self._reader is not None and not self._reader.done()

    async def subscribe(self, channel: str, sink: Sink | None = None) -> LiveFeed:
        """A new feed of ``channel``: an iterated :class:`LiveFeed`, or with ``sink`` a
        :class:`SinkFeed` written to in batches. Raises a Redis error or TimeoutError when
        Redis does not confirm (the hub then fails, see the class docstring)."""
        if sink is None:
            feed = LiveFeed(self, channel, self.max_backlog)
        else:
            feed = SinkFeed(self, channel, sink)
        async with self._lock:
            if self.closed:
                raise RedisConnectionError("the live hub is closed")
            feeds = self._feeds.get(channel)
            if feeds is None:
                feeds = self._feeds[channel] = _Channel(self.coalesce_seconds)
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
            if self.closed or feeds is None or not feeds.discard(feed):
                return
            if feeds:
                return
            feeds.end_all()  # its flush timer
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
            event = LiveEvent.parse(message.get("data"))
            self.decoded += 1
            if event is None:
                log.warning("live: a message that is not a JSON object was skipped")
                return
            for feed in feeds.feeds:
                feed.offer(event)
            if feeds.sinks:
                feeds.pending.append(event)
                if feeds.timer is None:
                    loop = asyncio.get_running_loop()
                    feeds.due = max(loop.time(), feeds.last_flush + feeds.window)
                    feeds.timer = loop.call_at(feeds.due, self._flush, feeds)

    def _flush(self, feeds: _Channel) -> None:
        """Write a channel's coalesced events to its sinks: the same bytes for every one
        (a :class:`Batch`: joined and chunk-framed once per window, not per stream)."""
        feeds.timer = None
        events, feeds.pending = feeds.pending, []
        if not events or self.closed:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        late = started - feeds.due  # the loop was busy elsewhere
        batch = Batch(b"".join(e.sse for e in events))
        for sink in tuple(feeds.sinks):
            sink.deliver(batch)
        feeds.last_flush = started
        feeds.window = self._widened(loop.time() - started, late)

    def _widened(self, took: float, late: float) -> float:
        """The next window of a channel: ``coalesce_seconds``, widened under load — to four
        times what writing the last one took (the fan-out's share of the loop stays about a
        quarter) or twice how late its timer fired (the loop is busy with requests) — and
        never past twice ``coalesce_seconds`` (0.5 s by default: with the write itself, a
        rating still reaches every page well within a second)."""
        wanted = max(self.coalesce_seconds, 4 * took, 2 * late)
        return min(wanted, self.max_widening * self.coalesce_seconds)

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
            feeds.end_all()
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
