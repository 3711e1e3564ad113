"""The live publisher off the request's path: ids queued, drained in batches by one task, in
order; the whole batch shaped with the same handful of queries as one rating; a bounded queue;
what is queued published when the context closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from models.catalog import Center
from models.evaluation import Evaluation, Reply
from tests.support.cases import make_case, make_id_number
from tests.support.databases import both_databases
from tests.support.public_seed import (
    OTHER_CENTER,
    add_like,
    insert_rating,
    rated_case,
    seed_catalog,
)
from tests.support.servers import free_port
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.public import live as realtime
from wxbackend.services.public import live_publisher
from wxbackend.services.public.live_publisher import LivePublisher
from wxbackend.services.public.shape import (
    SHAPE_COLUMNS,
    public_shape_of,
    public_shapes,
    public_shapes_of,
)


def _seed(ctx) -> list[int]:
    """Five ratings of two centers, one with a follow-up, likes, a reply and window staff;
    the ids to publish, a follow-up and a repeat among them."""
    seed_catalog(ctx)
    first = rated_case(ctx, 2, comment="慢", stage_handling=2)
    add_like(first, 1, "张*")
    Reply.create(evaluation=first, text="已改进", created_at=Evaluation.get_by_id(first).created_at)
    others = [rated_case(ctx, n) for n in (3, 4, 5)]
    other_center = Evaluation.get_by_id(others[0])
    other_center.center = Center.get(Center.code == OTHER_CENTER).id
    other_center.save()
    follow_up = insert_rating(Evaluation.get_by_id(first).case_id, 4, assess_number=2)
    return [others[0], first, others[1], follow_up, others[2], first]


@contextlib.asynccontextmanager
async def _listening(url: str, ctx) -> AsyncIterator[aioredis.client.PubSub]:
    """A plain subscriber of the all-centers channel on its own connection."""
    other = aioredis.Redis.from_url(url, decode_responses=True)
    raw = other.pubsub()
    try:
        await raw.subscribe(ctx.rkeys("live", "all"))
        while (await raw.get_message(timeout=5)) is None:
            pass  # the subscribe confirmation
        yield raw
    finally:
        await raw.aclose()
        await other.aclose()


async def _received(raw: aioredis.client.PubSub, n: int, timeout: float = 10) -> list[dict]:
    async def read() -> list[dict]:
        got: list[dict] = []
        async for message in raw.listen():
            if message["type"] == "message":
                got.append(json.loads(message["data"]))
                if len(got) == n:
                    return got
        return got

    return await asyncio.wait_for(read(), timeout)


@both_databases
@pytest.mark.asyncio
async def test_a_batch_keeps_the_order_and_the_shapes(ctx, redis_flushed, monkeypatch):
    ids = await ctx.db.run(_seed, ctx)
    expected = [await ctx.db.run(public_shape_of, i) for i in ids]
    batches: list[list[int]] = []
    real = live_publisher.public_shapes_of
    monkeypatch.setattr(
        live_publisher, "public_shapes_of", lambda b: batches.append(list(b)) or real(b)
    )
    async with _listening(redis_flushed, ctx) as raw:
        publisher = ctx.publisher
        assert isinstance(publisher, LivePublisher)
        for i in ids:
            assert publisher.submit(i) is None  # queued: returns at once
        assert publisher.queued == len(ids)
        got = await _received(raw, len(ids))
        assert got == [shape for _, shape in expected]  # in order, each the public list's item
        assert got[3]["follow_up"]["overall"] == 4 and got[3]["id"] == str(ids[1])
        assert batches == [ids]  # submitted in one go: one batch
        # one stream of ids: later ones are published after, never before
        publisher.submit(ids[2])
        publisher.submit(ids[0])
        assert [s["id"] for s in await _received(raw, 2)] == [str(ids[2]), str(ids[0])]


@both_databases
@pytest.mark.asyncio
async def test_a_batch_costs_the_queries_of_one_rating(ctx, monkeypatch):
    ids = await ctx.db.run(_seed, ctx)
    peewee_db = type(ctx.db.db)
    real = peewee_db.execute_sql
    counts: dict[int, int] = {}

    def counted(self, sql, params=None, *args, **kwargs):
        me = threading.get_ident()  # only this test's calls, on their DB thread
        if me in counts:
            counts[me] += 1
        return real(self, sql, params, *args, **kwargs)

    def statements(batch: list[int]) -> tuple[int, list]:
        counts[threading.get_ident()] = 0
        try:
            shapes = public_shapes_of(batch)
        finally:
            n = counts.pop(threading.get_ident())
        return n, shapes

    monkeypatch.setattr(peewee_db, "execute_sql", counted)
    one, _ = await ctx.db.run(statements, [ids[1]])
    many, shapes = await ctx.db.run(statements, ids + [987654])
    assert one == many <= 6  # the first ratings with their names, one IN query per table
    assert shapes[-1] is None and shapes[1] == shapes[3] == shapes[5]  # follow-up → its first

    def listed() -> list:  # what the public list builds from the same first ratings
        firsts = [ids[0], ids[1], ids[2], ids[4]]
        rows = Evaluation.select(*SHAPE_COLUMNS).where(Evaluation.id.in_(firsts))
        by_id = {shape["id"]: shape for shape in public_shapes(list(rows.dicts()))}
        return [by_id[str(i)] for i in firsts]

    expected = await ctx.db.run(listed)
    assert [s for _, s in (shapes[0], shapes[1], shapes[2], shapes[4])] == expected
    assert expected[1]["window_staff"] and expected[0]["center"]["code"] == OTHER_CENTER


@pytest.mark.asyncio
async def test_a_full_queue_drops_with_one_log_line(ctx, redis_flushed, monkeypatch, caplog):
    ids = await ctx.db.run(_seed, ctx)
    monkeypatch.setattr(live_publisher, "QUEUE_LIMIT", 3)
    async with _listening(redis_flushed, ctx) as raw:
        with caplog.at_level(logging.WARNING, "wxbackend.realtime"):
            for i in ids[:5]:
                ctx.publisher.submit(i)
        assert ctx.publisher.queued == 3
        full = [r for r in caplog.records if "publish queue full" in r.getMessage()]
        assert len(full) == 1  # one line, not one per dropped rating
        got = await _received(raw, 3)
        assert [s["id"] for s in got] == [str(i) for i in ids[:3]]
        with pytest.raises(asyncio.TimeoutError):  # the dropped ones never come
            await _received(raw, 1, timeout=0.5)


@pytest.mark.asyncio
async def test_closing_publishes_what_is_queued_first(ctx, redis_flushed):
    ids = await ctx.db.run(_seed, ctx)
    async with _listening(redis_flushed, ctx) as raw:
        for i in ids:
            ctx.publisher.submit(i)
        await ctx.publisher.aclose()  # what AppServer.stop → ctx.close does, before Redis goes
        assert ctx.publisher.queued == 0
        assert [s["id"] for s in await _received(raw, len(ids))] == [
            str(i) for i in [ids[0], ids[1], ids[2], ids[1], ids[4], ids[1]]
        ]
        ctx.publisher.submit(ids[0])  # after closing: ignored, never raises
        assert ctx.publisher.queued == 0


@pytest.mark.asyncio
async def test_redis_down_loses_no_rating_and_raises_nothing(ctx, caplog):
    ids = await ctx.db.run(_seed, ctx)
    dead = aioredis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
    )
    publisher = LivePublisher(dead, ctx.rkeys, ctx.db)
    try:
        with caplog.at_level(logging.WARNING, "wxbackend.realtime"):
            for i in ids:
                publisher.submit(i)
            await publisher.aclose()
        assert "publish failed" in caplog.text and publisher.queued == 0
        stored = await ctx.db.run(lambda: Evaluation.select().count())
        assert stored == 5
    finally:
        await dead.aclose()


@pytest.mark.asyncio
async def test_the_answer_does_not_wait_for_the_publish(api, sandbox, ctx, monkeypatch):
    """A rating is answered while its publish is held; the event follows once released."""
    release = asyncio.Event()
    real = LivePublisher.publish_batch

    async def held(self, evaluation_ids):
        await release.wait()
        return await real(self, evaluation_ids)

    monkeypatch.setattr(LivePublisher, "publish_batch", held)
    id_number = make_id_number(57)
    _, scene = await make_case(ctx, "黎明辉", id_number)
    token = await verified_user(api, sandbox, "黎明辉", id_number)
    async with await realtime.subscribe(ctx) as feed:
        status, answer = await asyncio.wait_for(
            rate(api, token, scene=scene, overall=4, comment="快"), 10
        )
        assert status == 201, answer
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(feed), 0.3)
        release.set()
        shape = await asyncio.wait_for(anext(feed), 5)
        assert shape["id"] == answer["evaluation"]["id"]
