"""The live fan-out's cost model: each message decoded and SSE-encoded once per process,
bursts coalesced into one write per stream per ``live.coalesce_ms``, a center's stream fed
from its center's channel only, and a stream ended only when its unwritten bytes overflow.

Real redis-server and real HTTP streams (``tests.support.live.Stream``) where the stream
matters; the hub's sinks directly where the count of writes is the point.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support.live import Stream, eventually
from tests.support.public_seed import CENTER, OTHER_CENTER
from wxbackend.services.public import live as realtime
from wxbackend.services.public import live_feeds


async def publish_json(ctx, center: str | None, body: dict) -> None:
    await ctx.redis.publish(realtime.channel_name(ctx.rkeys, center), json.dumps(body))


class Recorder:
    """A sink that records each batch and when it came; with ``limit``, a client that never
    reads: it holds what it was given and refuses a batch past ``limit`` bytes."""

    def __init__(self, limit: int | None = None):
        self.batches: list[tuple[float, bytes]] = []
        self.limit = limit
        self.held = 0

    def __call__(self, batch: bytes) -> bool:
        if self.limit is not None:
            if self.held + len(batch) > self.limit:
                raise live_feeds.TooFarBehind()
            self.held += len(batch)
        self.batches.append((asyncio.get_running_loop().time(), batch))
        return True

    def ids(self) -> list[str]:
        text = b"".join(batch for _, batch in self.batches).decode()
        return [line[4:] for line in text.split("\n") if line.startswith("id: ")]


@pytest.mark.asyncio
async def test_a_burst_costs_each_stream_one_write_per_window(ctx):
    hub = realtime.live_hub(ctx)
    assert hub.coalesce_seconds == ctx.settings.live.coalesce_ms / 1000 == 0.25
    sinks = [Recorder() for _ in range(3)]
    feeds = [await realtime.subscribe(ctx, CENTER, sink=sink) for sink in sinks]
    try:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for n in range(30):
                pipe.publish(realtime.channel_name(ctx.rkeys, CENTER), json.dumps({"id": str(n)}))
            await pipe.execute()
        expected = [str(n) for n in range(30)]

        async def all_arrived() -> bool:
            return all(sink.ids() == expected for sink in sinks)

        await eventually(all_arrived)
        for sink in sinks:
            assert 1 <= len(sink.batches) <= 3  # not 30
            times = [at for at, _ in sink.batches]
            assert all(b - a >= 0.24 for a, b in zip(times, times[1:], strict=False))
        assert sinks[0].batches[-1][1] is sinks[1].batches[-1][1]  # the same bytes object
    finally:
        for feed in feeds:
            await feed.aclose()


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_heartbeat")
async def test_each_message_is_decoded_and_encoded_once_however_many_streams(
    api, ctx, base_url, monkeypatch
):
    encoded, framed = [], []
    encode, frame = live_feeds.encode_sse, live_feeds.http_chunk
    monkeypatch.setattr(live_feeds, "encode_sse", lambda *a: encoded.append(a) or encode(*a))
    monkeypatch.setattr(live_feeds, "http_chunk", lambda b: framed.append(b) or frame(b))
    streams = [Stream(base_url) for _ in range(12)]
    try:
        for stream in streams:
            await stream.connected()
        hub = realtime.live_hub(ctx)
        decoded_before = hub.decoded
        shapes = [{"id": str(n), "comment": f"第{n}条 ok"} for n in range(3)]
        for shape in shapes:
            await publish_json(ctx, None, shape)
        for stream in streams:
            await stream.wait_for(lambda s=stream: len(s.events) == 3)
            assert [e["data"] for e in stream.events] == shapes
            assert [e["id"] for e in stream.events] == ["0", "1", "2"]
        assert len(encoded) == 3  # not 3 × 12
        assert hub.decoded - decoded_before == 3
        assert 1 <= len(framed) <= 3  # one HTTP chunk per window, written to all 12 streams
    finally:
        await asyncio.gather(*(stream.close() for stream in streams))


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_heartbeat")
async def test_a_center_stream_gets_its_center_only_and_others_are_not_decoded(api, ctx, base_url):
    other = Stream(base_url, f"?center={OTHER_CENTER}")
    try:
        await other.connected()
        hub = realtime.live_hub(ctx)
        before = hub.decoded
        for n in range(5):  # the publisher's two channels; nobody here listens to them
            await publish_json(ctx, CENTER, {"id": f"a{n}"})
            await publish_json(ctx, None, {"id": f"a{n}"})
        await publish_json(ctx, OTHER_CENTER, {"id": "b"})
        await other.wait_for(lambda: other.events)
        assert [e["id"] for e in other.events] == ["b"]
        assert hub.decoded - before == 1  # the process never received the others
        mine = Stream(base_url, f"?center={CENTER}")
        try:
            await mine.connected()
            await publish_json(ctx, CENTER, {"id": "a-late"})
            await publish_json(ctx, OTHER_CENTER, {"id": "b-late"})
            await mine.wait_for(lambda: mine.events)
            await other.wait_for(lambda: len(other.events) == 2)
            assert [e["id"] for e in mine.events] == ["a-late"]
            assert [e["id"] for e in other.events] == ["b", "b-late"]
        finally:
            await mine.close()
    finally:
        await other.close()


@pytest.mark.asyncio
async def test_only_a_stream_whose_backlog_overflows_is_ended(ctx):
    hub = realtime.live_hub(ctx)
    hub.coalesce_seconds = 0.01
    stuck, reading = Recorder(limit=2000), Recorder()
    slow = await realtime.subscribe(ctx, CENTER, sink=stuck)
    fast = await realtime.subscribe(ctx, CENTER, sink=reading)
    try:
        body = "x" * 400
        for n in range(12):  # ~5 KB in all, one message per window
            await publish_json(ctx, CENTER, {"id": str(n), "body": body})
            await asyncio.sleep(0.02)
        await eventually(lambda: _true(len(reading.ids()) == 12))
        assert slow.ended and slow.fell_behind
        assert not fast.ended and not fast.fell_behind
        assert 0 < len(stuck.ids()) < 12  # the sink was not called again once it refused
        assert len(stuck.batches) == len(stuck.ids())
        assert await slow.wait_ended(0.1)
    finally:
        await slow.aclose()
        await fast.aclose()


@pytest.mark.asyncio
@pytest.mark.usefixtures("fast_heartbeat")
@pytest.mark.parametrize("settings_overrides", [{"live": {"max_backlog_bytes": 1}}])
async def test_an_overflowing_stream_ends_cleanly(api, ctx, base_url):
    """Tornado's write buffer of the stream is bounded by ``live.max_backlog_bytes``: here no
    event fits, so the first one ends the stream (a clean end the browser reconnects after)."""
    stream = Stream(base_url)
    await stream.connected()
    await publish_json(ctx, None, {"id": "too-big"})
    response = await asyncio.wait_for(asyncio.shield(stream.done), 5)
    assert response.code == 200 and response.error is None  # a finished response
    assert stream.events == []
    stream.client.close()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.asyncio
async def test_a_sink_that_breaks_ends_alone(ctx):
    def broken(batch: bytes) -> bool:
        raise RuntimeError("a stream in a bad state")

    good = Recorder()
    bad = await realtime.subscribe(ctx, CENTER, sink=broken)
    fine = await realtime.subscribe(ctx, CENTER, sink=good)
    try:
        await publish_json(ctx, CENTER, {"id": "1"})
        await eventually(lambda: _true(good.ids() == ["1"]))
        assert bad.ended and not bad.fell_behind and not fine.ended
    finally:
        await bad.aclose()
        await fine.aclose()


def test_a_window_widens_with_the_cost_of_writing_it_and_never_past_twice(ctx):
    hub = realtime.live_hub(ctx)
    assert hub.coalesce_seconds == 0.25
    assert hub._widened(took=0.001, late=0.0) == 0.25  # light load: the setting's window
    assert hub._widened(took=0.1, late=0.0) == pytest.approx(0.4)  # 4 × the write
    assert hub._widened(took=0.0, late=0.15) == pytest.approx(0.3)  # 2 × the timer's lag
    assert hub._widened(took=1.0, late=2.0) == 0.5  # bounded: p99 stays under a second


@pytest.mark.asyncio
async def test_a_slow_fan_out_spaces_its_writes_wider_then_narrows_back(ctx):
    hub = realtime.live_hub(ctx)
    hub.coalesce_seconds = 0.1  # windows of 0.1 s, widened to 0.2 s at most
    slow = {"seconds": 0.03}

    class Slow(Recorder):
        def __call__(self, batch: bytes) -> bool:
            time.sleep(slow["seconds"])  # the write itself is what costs: 2 × 0.03 s a window
            return super().__call__(batch)

    sinks = [Slow(), Slow()]
    feeds = [await realtime.subscribe(ctx, CENTER, sink=sink) for sink in sinks]
    channel = hub._feeds[realtime.channel_name(ctx.rkeys, CENTER)]
    try:
        for n in range(3):
            await publish_json(ctx, CENTER, {"id": f"s{n}"})
            await eventually(lambda n=n: _true(len(sinks[0].ids()) == n + 1))
            assert channel.window == pytest.approx(0.2)  # 4 × 0.06 s, capped at 2 × 0.1 s
        times = [at for at, _ in sinks[0].batches]
        assert all(b - a >= 0.19 for a, b in zip(times, times[1:], strict=False))
        slow["seconds"] = 0.0
        await publish_json(ctx, CENTER, {"id": "fast"})
        await eventually(lambda: _true(sinks[0].ids()[-1:] == ["fast"]))
        assert channel.window < 0.2  # the load is gone: back toward the setting's window
    finally:
        for feed in feeds:
            await feed.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_the_window_reaches_the_socket_framed_for_the_client_s_http_version(
    api, ctx, http_server, version
):
    """HTTP/1.1: each window is one chunk (framed once for every stream); HTTP/1.0 has no
    chunks: the same bytes, unframed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", http_server[1])
    try:
        writer.write(f"GET /api/v1/public/live HTTP/{version}\r\nHost: t\r\n\r\n".encode())
        body = b""
        while b": connected\n\n" not in body:
            body += await asyncio.wait_for(reader.read(65536), 5)
        await publish_json(ctx, None, {"id": "7", "comment": "好"})
        event = f"id: 7\ndata: {json.dumps({'id': '7', 'comment': '好'})}\n\n".encode()
        framed = b"%x\r\n%s\r\n" % (len(event), event) if version == "1.1" else event
        while framed not in body:
            body += await asyncio.wait_for(reader.read(65536), 5)
        assert (b"transfer-encoding: chunked" in body.lower()) == (version == "1.1")
    finally:
        writer.close()
