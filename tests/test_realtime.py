"""Live ratings on real Redis pub/sub: published through the context's hook, received by
subscribers on other connections, with nothing personal in the payload."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from models.evaluation import Evaluation
from tests.support.cases import make_case, make_id_number
from tests.support.databases import both_databases
from tests.support.public_seed import (
    APPLICANT_ID,
    APPLICANT_NAME,
    APPLICANT_PHONE,
    CENTER,
    OTHER_CENTER,
    insert_rating,
    rated_case,
    seed_catalog,
)
from tests.support.servers import free_port
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.public import live as realtime
from wxbackend.services.public.live_publisher import LivePublisher


async def next_message(pubsub: aioredis.client.PubSub, timeout: float = 5.0) -> dict:
    async def wait() -> dict:
        async for message in pubsub.listen():
            if message["type"] == "message":
                return message

    return await asyncio.wait_for(wait(), timeout)


@both_databases
@pytest.mark.asyncio
async def test_hook_publishes_public_shape_to_other_connections(api, ctx, redis_flushed):
    assert isinstance(ctx.publisher, LivePublisher)  # installed by build_context

    def seed():
        seed_catalog(ctx)
        return rated_case(ctx, 5, comment="办事很快", stage_handling=5)

    rating = await ctx.db.run(seed)
    # a plain subscriber on its own connection, as another server process would be
    other = aioredis.Redis.from_url(redis_flushed, decode_responses=True)
    raw = other.pubsub()
    await raw.subscribe(ctx.rkeys("live", CENTER), ctx.rkeys("live", "all"))
    await next_message_or_confirm(raw)
    center_feed = await realtime.subscribe(ctx, CENTER)
    other_feed = await realtime.subscribe(ctx, OTHER_CENTER)
    all_feed = await realtime.subscribe(ctx)
    try:
        receivers = await ctx.publisher(rating)
        assert receivers == 4  # raw ×2 channels, center feed, all feed
        got = [await next_message(raw), await next_message(raw)]
        assert {m["channel"] for m in got} == {ctx.rkeys("live", CENTER), ctx.rkeys("live", "all")}
        shape = json.loads(got[0]["data"])
        assert json.loads(got[1]["data"]) == shape
        assert await asyncio.wait_for(anext(center_feed), 5) == shape
        assert await asyncio.wait_for(anext(all_feed), 5) == shape
        status, page = await api("GET", "/api/v1/public/evaluations")
        assert shape == page["items"][0]  # exactly the public list's item
        assert shape["id"] == str(rating) and shape["comment"] == "办事很快"
        text = got[0]["data"]
        for secret in (APPLICANT_NAME, APPLICANT_ID, APPLICANT_PHONE, "openid", "case"):
            assert secret not in text
        with pytest.raises(asyncio.TimeoutError):  # another center's feed stays quiet
            await asyncio.wait_for(anext(other_feed), 0.3)
    finally:
        for feed in (center_feed, other_feed, all_feed):
            await feed.aclose()
        await raw.aclose()
        await other.aclose()


async def next_message_or_confirm(pubsub: aioredis.client.PubSub) -> None:
    """Wait until both subscriptions are confirmed by the server."""
    confirmed = 0
    while confirmed < 2:
        message = await asyncio.wait_for(pubsub.get_message(timeout=5), 6)
        if message and message["type"] == "subscribe":
            confirmed += 1


@pytest.mark.asyncio
async def test_rating_through_http_goes_live(api, sandbox, ctx):
    """case → verified citizen → POST /evaluations → the subscriber gets it (no personal
    data)."""
    id_number = make_id_number(41)
    _, scene = await make_case(ctx, "黎明辉", id_number)
    token = await verified_user(api, sandbox, "黎明辉", id_number)
    async with await realtime.subscribe(ctx, CENTER) as feed:
        status, answer = await rate(api, token, scene=scene, overall=4, comment="窗口服务热情")
        assert status == 201, answer
        shape = await asyncio.wait_for(anext(feed), 5)
        assert shape["id"] == answer["evaluation"]["id"]
        assert shape["name_masked"] == "黎**" and shape["overall"] == 4
        text = json.dumps(shape, ensure_ascii=False)
        assert "黎明辉" not in text and id_number not in text and "case" not in text
        first_id = answer["evaluation"]["id"]
        status, _ = await api(
            "POST", f"/api/v1/evaluations/{first_id}/follow-up", {"overall": 5}, token=token
        )
        assert status == 201
        again = await asyncio.wait_for(anext(feed), 5)
        assert again["id"] == first_id and again["follow_up"]["overall"] == 5


@pytest.mark.asyncio
async def test_follow_up_id_publishes_its_first_rating(ctx):
    def seed():
        seed_catalog(ctx)
        first = rated_case(ctx, 2)
        return first, insert_rating(Evaluation.get_by_id(first).case_id, 5, assess_number=2)

    first, follow_up = await ctx.db.run(seed)
    async with await realtime.subscribe(ctx) as feed:
        assert await realtime.publish_evaluation(ctx, follow_up) == 1
        shape = await asyncio.wait_for(anext(feed), 5)
    assert shape["id"] == str(first) and shape["follow_up"]["overall"] == 5


@pytest.mark.asyncio
async def test_publishing_never_fails_the_caller(ctx):
    def seed():
        seed_catalog(ctx)
        return rated_case(ctx, 3)

    rating = await ctx.db.run(seed)
    assert await realtime.publish_evaluation(ctx, 987654) == 0  # unknown id: nothing sent
    dead = aioredis.Redis(  # gives up at once (redis-py's default retries take seconds)
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )
    broken = dataclasses.replace(ctx, redis=dead, publisher=LivePublisher(dead, ctx.rkeys, ctx.db))
    try:
        assert await broken.publisher(rating) == 0
    finally:
        await dead.aclose()
