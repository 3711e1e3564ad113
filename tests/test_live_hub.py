"""The live hub: ONE Redis pub/sub connection per process, fanned out to every live feed.

Real redis-server throughout: the session's (shared with the other tests, so connection counts
are compared before/after) and, for the outage tests, a private one this module starts and
kills or pauses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tests.support.live import Stream, eventually, numsub
from tests.support.public_seed import CENTER, OTHER_CENTER, rated_case, seed_catalog
from tests.support.servers import free_port, start_redis_server
from wxbackend.context import build_context
from wxbackend.services.public import live as realtime
from wxbackend.services.public import live_hub, live_publisher


async def pubsub_connections(client: aioredis.Redis) -> int:
    """Connections in pub/sub mode on the server (``CLIENT LIST TYPE pubsub``)."""
    return len(await client.client_list(_type="pubsub"))


async def settled_pubsub_connections(client: aioredis.Redis) -> int:
    """:func:`pubsub_connections` once it holds still for 0.3 s: the context's watchers
    (WeChat configuration, partner keys) subscribe in the background after it starts, and
    counting before they have made the baseline one short."""
    last, still_since = await pubsub_connections(client), time.monotonic()
    deadline = still_since + 5
    while time.monotonic() - still_since < 0.3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = await pubsub_connections(client)
        if now != last:
            last, still_since = now, time.monotonic()
    return last


async def publish_json(ctx, center: str | None, body: dict) -> None:
    await ctx.redis.publish(realtime.channel_name(ctx.rkeys, center), json.dumps(body))


async def read_until(feed: live_hub.LiveFeed, last_id: str) -> list[str]:
    """The ids a feed receives up to (and without) ``last_id``."""
    ids = []
    while (shape := await asyncio.wait_for(anext(feed), 5))["id"] != last_id:
        ids.append(shape["id"])
    return ids


def _seed(ctx) -> int:
    seed_catalog(ctx)
    return rated_case(ctx, 4)


@pytest.mark.asyncio
async def test_many_feeds_share_one_connection_and_get_their_channel(ctx):
    rating = await ctx.db.run(_seed, ctx)  # a rating of CENTER
    before = await settled_pubsub_connections(ctx.redis)
    centers = [CENTER] * 80 + [OTHER_CENTER] * 80 + [None] * 40
    feeds = await asyncio.gather(*(realtime.subscribe(ctx, c) for c in centers))
    try:
        assert await pubsub_connections(ctx.redis) == before + 1
        for center in (CENTER, OTHER_CENTER, None):
            assert await numsub(ctx, center) == 1  # Redis sees one subscriber per channel
        # one Redis receiver per channel and process, however many feeds it serves
        assert await realtime.publish_evaluation(ctx, rating) == 2
        for n in range(5):
            for center in (CENTER, OTHER_CENTER, None):
                await publish_json(ctx, center, {"id": f"{center}-{n}"})
        for center in (CENTER, OTHER_CENTER, None):
            await publish_json(ctx, center, {"id": "end"})
        for feed, center in zip(feeds, centers, strict=True):
            ids = [f"{center}-{n}" for n in range(5)]
            # everything of its channel, in order, and nothing of another (it would come before
            # the end mark: one connection keeps the order)
            expected = ids if center == OTHER_CENTER else [str(rating), *ids]
            assert await read_until(feed, "end") == expected
    finally:
        for feed in feeds:
            await feed.aclose()
    await eventually(lambda: _no_live_channels(ctx))


async def _no_live_channels(ctx) -> bool:
    return await ctx.redis.pubsub_channels(live_publisher.live_pattern(ctx.rkeys)) == []


@pytest.mark.asyncio
async def test_last_feed_of_a_channel_unsubscribes_it(ctx, monkeypatch):
    rating = await ctx.db.run(_seed, ctx)
    shaped: list[int] = []
    real_shapes = live_publisher.public_shapes_of
    monkeypatch.setattr(
        live_publisher, "public_shapes_of", lambda ids: shaped.extend(ids) or real_shapes(ids)
    )
    channel = realtime.channel_name(ctx.rkeys, CENTER)
    pattern = live_publisher.live_pattern(ctx.rkeys)
    first = await realtime.subscribe(ctx, CENTER)
    second = await realtime.subscribe(ctx, CENTER)
    assert await ctx.redis.pubsub_channels(pattern) == [channel]
    await first.aclose()
    await first.aclose()  # closing twice is harmless
    with pytest.raises(StopAsyncIteration):
        await anext(first)
    assert await ctx.redis.pubsub_channels(pattern) == [channel]  # the second still listens
    await second.aclose()
    await eventually(lambda: _no_live_channels(ctx))
    assert await realtime.publish_evaluation(ctx, rating) == 0
    assert shaped == []  # the publisher skipped again: no shape built
    # the hub still serves: the channel is subscribed again for a new feed
    async with await realtime.subscribe(ctx, CENTER) as again:
        assert await realtime.publish_evaluation(ctx, rating) == 1
        assert (await asyncio.wait_for(anext(again), 5))["id"] == str(rating)
    assert shaped == [rating]


@pytest.mark.asyncio
async def test_feeds_opening_and_closing_at_once_keep_the_subscription_right(ctx):
    """SUBSCRIBE and UNSUBSCRIBE of one channel reach Redis in the order the hub decided."""

    async def open_close() -> None:
        feed = await realtime.subscribe(ctx, CENTER)
        await feed.aclose()

    opened = await asyncio.gather(
        *(open_close() for _ in range(25)),
        realtime.subscribe(ctx, CENTER),
        *(open_close() for _ in range(25)),
    )
    keeper = opened[25]
    try:
        assert await numsub(ctx, CENTER) == 1
        await publish_json(ctx, CENTER, {"id": "kept"})
        assert (await asyncio.wait_for(anext(keeper), 5))["id"] == "kept"
    finally:
        await keeper.aclose()
    await eventually(lambda: _no_live_channels(ctx))


@pytest.mark.asyncio
async def test_slow_consumer_is_ended_without_affecting_others(ctx):
    slow = await realtime.subscribe(ctx, CENTER)  # never read
    fast = await realtime.subscribe(ctx, CENTER)
    elsewhere = await realtime.subscribe(ctx, OTHER_CENTER)
    total = live_hub.MAX_BACKLOG + 20
    received: list[int] = []

    async def read_fast() -> None:
        async for shape in fast:
            received.append(shape["n"])
            if len(received) == total:
                return

    reader = asyncio.ensure_future(read_fast())
    try:
        for n in range(total):
            await publish_json(ctx, CENTER, {"id": str(n), "n": n})
        await asyncio.wait_for(reader, 10)
        assert received == list(range(total))  # the fast one got everything
        assert slow.fell_behind and not fast.fell_behind
        with pytest.raises(StopAsyncIteration):  # ended at once, its backlog dropped
            await asyncio.wait_for(anext(slow), 1)
        await slow.aclose()
        assert await numsub(ctx, CENTER) == 1  # the others keep the channel and the hub
        await publish_json(ctx, CENTER, {"id": "after", "n": total})
        await publish_json(ctx, OTHER_CENTER, {"id": "there"})
        assert (await asyncio.wait_for(anext(fast), 5))["n"] == total
        assert (await asyncio.wait_for(anext(elsewhere), 5))["id"] == "there"
    finally:
        if not reader.done():
            reader.cancel()  # waits on a queue, never on the socket: safe to cancel
        for feed in (slow, fast, elsewhere):
            await feed.aclose()
    await eventually(lambda: _no_live_channels(ctx))


@pytest.mark.asyncio
async def test_context_close_with_open_feeds_is_prompt(ctx, settings, sandbox, monkeypatch):
    """The wake-up stops the reader at once: with a 30 s poll, only it can end a close this
    fast."""
    monkeypatch.setattr(live_hub.LiveHub, "poll_seconds", 30.0)
    other = build_context(settings, api_base=sandbox.url)
    await other.start()
    feeds = [await realtime.subscribe(other, c) for c in (CENTER, None, None)]
    hub = other.live_hub
    waiting = [asyncio.ensure_future(anext(feed)) for feed in feeds]  # consumers mid-wait
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await asyncio.wait_for(other.close(), 10)
    assert time.monotonic() - started < 3
    assert not hub.reading
    for wait in waiting:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(wait, 1)
    for feed in feeds:
        await feed.aclose()  # after the close: a no-op, no Redis call
    await eventually(lambda: _no_live_channels(ctx))


# ---- Redis going away: a private redis-server --------------------------------------------------


class OwnRedis:
    """A redis-server of this test alone, to kill or pause."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_redis_server(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> aioredis.Redis:
        """Quick to give up (one retry), so an outage shows within the test's patience."""
        return aioredis.Redis(
            port=self.port,
            decode_responses=True,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 1),
        )


@pytest_asyncio.fixture
async def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def alone(ctx, own_redis):
    """A context on the private Redis (no hub yet, so its own)."""
    client = own_redis.client()
    context = dataclasses.replace(ctx, redis=client, live_hub=None)
    yield context
    hub, context.live_hub = context.live_hub, None
    if hub is not None:
        await asyncio.wait_for(hub.aclose(), 10)
    await client.aclose()


@pytest.mark.asyncio
async def test_redis_gone_ends_every_feed_and_a_new_hub_follows(alone, own_redis):
    feeds = [await realtime.subscribe(alone, c) for c in (CENTER, OTHER_CENTER, None)]
    hub = realtime.live_hub(alone)
    waiting = [asyncio.ensure_future(anext(feed)) for feed in feeds]
    own_redis.stop()
    for wait in waiting:  # no feed hangs: each ends, and the page would reconnect
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(wait, 10)
    assert hub.closed
    await eventually(lambda: _is_false(hub.reading))
    for feed in feeds:
        await feed.aclose()
    with pytest.raises((RedisError, OSError, TimeoutError)):  # still down: the handler's 503
        await realtime.subscribe(alone, CENTER)
    own_redis.start()  # back: the next subscribe builds a new hub
    async with await realtime.subscribe(alone, CENTER) as feed:
        assert realtime.live_hub(alone) is not hub
        await publish_json(alone, CENTER, {"id": "back"})
        assert (await asyncio.wait_for(anext(feed), 5))["id"] == "back"


async def _is_false(value: bool) -> bool:
    return not value


@pytest.mark.asyncio
async def test_silent_redis_ends_every_feed(alone, monkeypatch):
    """A connection that stays open but never answers (here: CLIENT PAUSE) is noticed by the
    hub's own PING."""
    monkeypatch.setattr(live_hub.LiveHub, "poll_seconds", 0.05)
    monkeypatch.setattr(live_hub.LiveHub, "ping_after_seconds", 0.15)
    monkeypatch.setattr(live_hub.LiveHub, "pong_wait_seconds", 0.25)
    async with await realtime.subscribe(alone, CENTER) as feed:
        await asyncio.sleep(0.6)  # idle past ping + pong wait, yet alive: PINGs are answered
        assert not realtime.live_hub(alone).closed
        hub = realtime.live_hub(alone)
        await alone.redis.execute_command("CLIENT", "PAUSE", "1200", "ALL")  # UNPAUSE waits too
        started = time.monotonic()
        try:
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(feed), 5)
            assert time.monotonic() - started < 1.0 and hub.closed  # during the pause
        finally:
            await asyncio.sleep(max(0.0, started + 1.3 - time.monotonic()))  # the pause is over


# ---- over HTTP ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_heartbeat")
@pytest.mark.parametrize("settings_overrides", [{"live": {"max_streams_per_address": 0}}])
async def test_many_sse_streams_use_one_connection(api, ctx, base_url):
    before = await settled_pubsub_connections(ctx.redis)
    streams = [Stream(base_url, f"?center={CENTER}" if n % 2 else "") for n in range(30)]
    try:
        for stream in streams:
            await stream.connected()
        assert await pubsub_connections(ctx.redis) == before + 1
        rating = await ctx.db.run(_seed, ctx)
        assert await realtime.publish_evaluation(ctx, rating) == 2
        for stream in streams:
            await stream.wait_for(lambda s=stream: s.events)
            assert [e["id"] for e in stream.events] == [str(rating)]
    finally:
        await asyncio.gather(*(stream.close() for stream in streams))
    await eventually(lambda: _no_live_channels(ctx))


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_heartbeat")
async def test_sse_stream_ends_cleanly_when_its_feed_ends(api, ctx, base_url):
    stream = Stream(base_url)
    await stream.connected()
    await realtime.live_hub(ctx).aclose()  # as a Redis failure or a shutdown would
    response = await asyncio.wait_for(asyncio.shield(stream.done), 5)
    assert response.code == 200 and response.error is None  # a finished response
    stream.client.close()
    again = Stream(base_url)  # the browser reconnects: a new hub serves it
    try:
        await again.connected()
        rating = await ctx.db.run(_seed, ctx)
        await realtime.publish_evaluation(ctx, rating)
        await again.wait_for(lambda: again.events)
    finally:
        await again.close()
