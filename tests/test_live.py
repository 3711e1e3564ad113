"""GET /api/v1/public/live: Server-Sent Events of new public ratings over real Redis pub/sub.

The streams are read by ``tests.support.live.Stream``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from models.evaluation import Evaluation
from models.ticket import Ticket
from tests.support.cases import make_case, make_id_number
from tests.support.live import Stream, eventually, numsub
from tests.support.public_seed import (
    APPLICANT_ID,
    APPLICANT_NAME,
    CENTER,
    OTHER_CENTER,
    insert_rating,
    rated_case,
    seed_catalog,
)
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.public import live as realtime


def _seed_rating(ctx, overall: int = 5, item: str = "440103-SY-001", **kw) -> int:
    seed_catalog(ctx)
    return rated_case(ctx, overall, item, **kw)


@pytest.mark.asyncio
async def test_stream_headers_event_and_release(api, ctx, base_url, fast_heartbeat):
    stream = Stream(base_url)
    try:
        await stream.connected()
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store"
        assert await numsub(ctx, None) == 1
        rating = await ctx.db.run(_seed_rating, ctx, 5, comment="办事很快", stage_handling=5)
        assert await realtime.publish_evaluation(ctx, rating) >= 1
        await stream.wait_for(lambda: stream.events)
        event = stream.events[0]
        status, page = await api("GET", "/api/v1/public/evaluations")
        assert event["data"] == page["items"][0]  # exactly the public shape
        assert event["id"] == str(rating) and event["data"]["comment"] == "办事很快"
        text = json.dumps(event["data"], ensure_ascii=False)
        assert APPLICANT_NAME not in text and APPLICANT_ID not in text
        await stream.wait_for(lambda: "ping" in stream.comments)  # the heartbeat
    finally:
        await stream.close()
    # the client hung up: the Redis subscription and the slot are released
    await eventually(lambda: _is(numsub(ctx, None), 0))
    await eventually(lambda: _slots_open(ctx, 0))


async def _is(awaitable, value) -> bool:
    return (await awaitable) == value


async def _slots_open(ctx, n: int) -> bool:
    return ctx.live_streams.open == n


@pytest.mark.asyncio
async def test_disconnect_without_heartbeat_releases_subscription(api, ctx, base_url):
    """With the normal 15 s heartbeat, a hang-up is still noticed at once (on_connection_close)."""
    stream = Stream(base_url, f"?center={CENTER}")
    await stream.connected()
    assert await numsub(ctx, CENTER) == 1
    stream.hang_up = True
    rating = await ctx.db.run(_seed_rating, ctx, 4)
    await realtime.publish_evaluation(ctx, rating)  # the next chunk makes the client hang up
    await asyncio.wait_for(asyncio.shield(stream.done), 10)
    await eventually(lambda: _is(numsub(ctx, CENTER), 0))
    await eventually(lambda: _slots_open(ctx, 0))
    stream.client.close()


@pytest.mark.asyncio
async def test_center_filter(api, ctx, base_url, fast_heartbeat):
    here, there = Stream(base_url, f"?center={CENTER}"), Stream(base_url, f"?center={OTHER_CENTER}")
    try:
        await here.connected()
        await there.connected()

        def seed():
            return _seed_rating(ctx, 2), _seed_rating(ctx, 5, "440104-XX-001")

        hl, xx = await ctx.db.run(seed)
        await realtime.publish_evaluation(ctx, hl)
        await realtime.publish_evaluation(ctx, xx)
        await here.wait_for(lambda: here.events)
        await there.wait_for(lambda: there.events)
        await asyncio.sleep(0.3)
        assert [e["id"] for e in here.events] == [str(hl)]
        assert [e["id"] for e in there.events] == [str(xx)]
        assert here.events[0]["data"]["center"]["code"] == CENTER
    finally:
        await here.close()
        await there.close()
    await eventually(lambda: _is(numsub(ctx, CENTER), 0))
    await eventually(lambda: _is(numsub(ctx, OTHER_CENTER), 0))


@pytest.mark.asyncio
async def test_rating_and_follow_up_through_http_arrive(
    api, sandbox, ctx, base_url, fast_heartbeat
):
    id_number = make_id_number(77)
    _, scene = await make_case(ctx, "黎明辉", id_number)
    token = await verified_user(api, sandbox, "黎明辉", id_number)
    stream = Stream(base_url)
    try:
        await stream.connected()
        status, answer = await rate(api, token, scene=scene, overall=2, comment="排队太久")
        assert status == 201, answer
        await stream.wait_for(lambda: stream.events)
        shape = stream.events[0]["data"]
        assert shape["id"] == answer["evaluation"]["id"] and shape["overall"] == 2
        assert shape["name_masked"] == "黎**"
        assert "黎明辉" not in json.dumps(shape, ensure_ascii=False)
        # rule 15: a 差评's follow-up comes once its ticket is closed (closed here directly)
        await ctx.db.run(lambda: Ticket.update(status="closed").execute())
        status, _ = await api(
            "POST",
            f"/api/v1/evaluations/{shape['id']}/follow-up",
            {"overall": 4, "comment": "已经改进"},
            token=token,
        )
        assert status == 201
        await stream.wait_for(lambda: len(stream.events) == 2)
        again = stream.events[1]["data"]
        assert again["id"] == shape["id"] and again["follow_up"]["overall"] == 4
    finally:
        await stream.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"live": {"max_streams": 2}}])
async def test_stream_limit_per_process(api, ctx, base_url, fast_heartbeat):
    first, second = Stream(base_url), Stream(base_url, f"?center={CENTER}")
    try:
        await first.connected()
        await second.connected()
        status, answer = await api("GET", "/api/v1/public/live")
        assert status == 503 and answer["error"]["code"] == "too_many_streams"
        await first.close()
        await eventually(lambda: _slots_open(ctx, 1))
        third = Stream(base_url)  # a slot is free again
        await third.connected()
        await third.close()
    finally:
        await first.close()
        await second.close()
    await eventually(lambda: _slots_open(ctx, 0))
    await eventually(lambda: _is(numsub(ctx, None), 0))


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"live": {"max_streams": 1}}])
async def test_retry_after_on_503(http_client, base_url, ctx):
    ctx.live_streams.open = 1  # the one slot is taken
    response = await http_client.fetch(base_url + "/api/v1/public/live", raise_error=False)
    assert response.code == 503 and response.headers["Retry-After"] == "10"
    assert ctx.live_streams.open == 1  # the refused stream took nothing


@pytest.mark.asyncio
@pytest.mark.parametrize("center", ["a b", "x" * 65, "中心"])
async def test_bad_center_is_400(api, center):
    from urllib.parse import quote

    status, answer = await api("GET", f"/api/v1/public/live?center={quote(center)}")
    assert status == 400 and answer["error"]["code"] == "invalid_query"


@pytest.mark.asyncio
async def test_follow_up_id_streams_its_first_rating(api, ctx, base_url, fast_heartbeat):
    def seed():
        first = _seed_rating(ctx, 1)
        return first, insert_rating(Evaluation.get_by_id(first).case_id, 3, assess_number=2)

    first, follow_up = await ctx.db.run(seed)
    stream = Stream(base_url)
    try:
        await stream.connected()
        await realtime.publish_evaluation(ctx, follow_up)
        await stream.wait_for(lambda: stream.events)
        assert stream.events[0]["id"] == str(first)
        assert stream.events[0]["data"]["follow_up"]["overall"] == 3
    finally:
        await stream.close()


@pytest.mark.asyncio
async def test_redis_down_is_503_and_frees_the_slot(api, ctx, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def broken(ctx, center=None, sink=None):
        raise RedisConnectionError("down")

    monkeypatch.setattr(realtime, "subscribe", broken)
    status, answer = await api("GET", "/api/v1/public/live")
    assert status == 503 and answer["error"]["code"] == "unavailable"
    assert ctx.live_streams.open == 0
