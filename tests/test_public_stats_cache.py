"""``GET /api/v1/public/stats`` through its Redis cache (``public.stats_cache_seconds``).

Real redis-server and database throughout; the only stand-in is a counting wrapper around
``figures.stats_public`` (the function that aggregates), to count computations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.support.databases import both_databases
from tests.support.public_seed import (
    CENTER,
    ITEMS,
    UNCACHED,
    insert_case,
    insert_rating,
    seed_catalog,
)
from wxbackend.cache import make_redis
from wxbackend.services.common import db_share
from wxbackend.services.public import figures, stats_cache
from wxbackend.settings import SettingsError, load_settings

STATS = "/api/v1/public/stats"


class Counted:
    """``figures.stats_public`` wrapped: counts its calls, optionally slowed down (it runs on
    the database threads, so the sleep holds a thread as a slow aggregation would)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0):
        self.original = figures.stats_public
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()
        monkeypatch.setattr(stats_cache, "stats_public", self)

    def __call__(self, query: figures.StatsQuery) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return self.original(query)


def shape(value: Any) -> Any:
    """The value with every leaf replaced by its type: equal shapes, equal JSON types."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value)


async def cache_keys(ctx) -> list[str]:
    found = await ctx.redis.keys(ctx.rkeys("public", "stats", "*"))
    return sorted(k for k in found if not k.endswith(":lock"))


def seed_mixed(ctx, n: int = 60) -> None:
    """Cases over a week in both centers: rated (every level, qr / phone / default), some
    with a follow-up, some unrated."""
    rng = random.Random(7)
    seed_catalog(ctx)
    base = datetime(2026, 2, 27, 12, 0, 0)
    for _ in range(n):
        item_code = rng.choice(list(ITEMS))
        completed = base + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
        case_id = insert_case(ctx, item_code, completed)
        if rng.random() < 0.8:
            channel = rng.choice(["qr", "phone", "default"])
            overall = 3 if channel == "default" else rng.randint(1, 5)
            created = completed + timedelta(hours=rng.randrange(1, 48))
            insert_rating(case_id, overall, channel=channel, created_at=created)
            if rng.random() < 0.2:
                insert_rating(case_id, 5, assess_number=2, created_at=created)


QUERIES = [
    {},
    {"center": CENTER},
    {"item": "440104-XX-001"},
    {"center": "nowhere"},
    {"from": "2026-03-01", "to": "2026-03-03"},
    {"center": CENTER, "from": "2026-03-02"},
    {"from": "2030-01-01"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query_string(params: dict[str, str]) -> str:
    return STATS + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


@both_databases
@pytest.mark.asyncio
async def test_cached_answer_equals_uncached(api, ctx):
    await ctx.db.run(seed_mixed, ctx)
    for params in QUERIES:
        direct = await ctx.db.run(figures.stats_public, figures.parse_stats_query(params))
        status, missed = await api("GET", query_string(params))
        assert status == 200, missed
        status, hit = await api("GET", query_string(params))
        assert status == 200, hit
        assert missed == hit == direct, params
        assert shape(missed) == shape(hit) == shape(direct), params
        assert json.dumps(hit) == json.dumps(direct)  # same keys, same order
        key = stats_cache.stats_cache_key(ctx, figures.parse_stats_query(params))
        assert json.loads(await ctx.redis.get(key)) == direct
        assert 0 < await ctx.redis.ttl(key) <= 10  # the default public.stats_cache_seconds
    keys = await cache_keys(ctx)
    assert len(keys) == len(QUERIES)
    assert all(k.startswith(ctx.settings.redis.key_prefix + "public:stats:") for k in keys)
    everything = (await api("GET", STATS))[1]
    assert everything["total"] > 30 and everything["unrated_cases"] > 0  # something to count


@pytest.mark.asyncio
async def test_equivalent_queries_share_one_entry(api, ctx, monkeypatch):
    await ctx.db.run(seed_mixed, ctx, 10)
    counted = Counted(monkeypatch)
    answers = []
    for path in (STATS, f"{STATS}?center=", f"{STATS}?center=&item=&from=&to=", f"{STATS}?x=1"):
        status, answer = await api("GET", path)
        assert status == 200, answer
        answers.append(answer)
    assert counted.calls == 1 and all(a == answers[0] for a in answers)
    for path in (f"{STATS}?from=2026-03-01", f"{STATS}?to=&from=2026-03-01&center="):
        assert (await api("GET", path))[0] == 200
    assert counted.calls == 2
    assert len(await cache_keys(ctx)) == 2
    # a bad query is refused before the cache is asked
    status, answer = await api("GET", f"{STATS}?from=2026-13-01")
    assert status == 400 and answer["error"]["code"] == "invalid_query"
    assert counted.calls == 2 and len(await cache_keys(ctx)) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"public": {"stats_cache_seconds": 2}}])
async def test_new_rating_shows_after_the_ttl_not_before(api, ctx):
    def seed() -> int:
        seed_catalog(ctx)
        insert_rating(insert_case(ctx), 5)
        return insert_case(ctx)

    unrated = await ctx.db.run(seed)
    status, before = await api("GET", STATS)
    cached_at = time.monotonic()
    assert status == 200 and before["total"] == 1 and before["unrated_cases"] == 1
    await ctx.db.run(insert_rating, unrated, 1, comment="排队太久")
    status, soon = await api("GET", STATS)
    assert time.monotonic() - cached_at < 2, "the check came too late to mean anything"
    assert soon == before  # still the cached figures
    key = stats_cache.stats_cache_key(ctx, figures.parse_stats_query({}))
    assert 0 < await ctx.redis.pttl(key) <= 2000  # the entry lives stats_cache_seconds
    await ctx.redis.pexpire(key, 1)  # … and that time passes (Redis's clock, not a sleep)
    await asyncio.sleep(0.01)
    status, after = await api("GET", STATS)
    assert status == 200 and after["total"] == 2 and after["by_level"]["1"] == 1
    assert after["unrated_cases"] == 0 and after["bad_rate"] == 0.5


@pytest.mark.asyncio
async def test_twenty_concurrent_misses_compute_once(api, ctx, monkeypatch):
    await ctx.db.run(seed_mixed, ctx, 20)
    counted = Counted(monkeypatch, delay=0.3)  # every request arrives during the computation
    results = await asyncio.gather(*(api("GET", f"{STATS}?center={CENTER}") for _ in range(20)))
    assert [status for status, _ in results] == [200] * 20
    assert all(answer == results[0][1] for _, answer in results)
    assert counted.calls == 1
    assert not await ctx.redis.exists(
        stats_cache.stats_cache_key(ctx, figures.parse_stats_query({"center": CENTER})) + ":lock"
    )  # released once stored


@pytest.mark.asyncio
async def test_waiting_for_another_computation_is_bounded(api, ctx, monkeypatch):
    """A lock whose holder never stores (a crashed process): the request waits
    ``STATS_WAIT_SECONDS``, computes itself, and fills the cache."""
    await ctx.db.run(seed_mixed, ctx, 10)
    counted = Counted(monkeypatch)
    monkeypatch.setattr(stats_cache, "STATS_WAIT_SECONDS", 0.5)  # 2 s in production
    key = stats_cache.stats_cache_key(ctx, figures.parse_stats_query({}))
    await ctx.redis.set(key + ":lock", "a crashed process", px=10_000)
    started = time.monotonic()
    status, answer = await api("GET", STATS)
    waited = time.monotonic() - started
    assert status == 200 and counted.calls == 1
    assert stats_cache.STATS_WAIT_SECONDS * 0.9 <= waited < stats_cache.STATS_WAIT_SECONDS + 1.5
    assert await ctx.redis.get(key + ":lock") == "a crashed process"  # not someone else's
    assert (await api("GET", STATS))[1] == answer and counted.calls == 1  # cached meanwhile


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [UNCACHED])
async def test_ttl_zero_disables_the_cache(api, ctx, monkeypatch):
    def seed() -> int:
        seed_catalog(ctx)
        return insert_case(ctx)

    case_id = await ctx.db.run(seed)
    counted = Counted(monkeypatch)
    status, before = await api("GET", STATS)
    await ctx.db.run(insert_rating, case_id, 4)
    status, after = await api("GET", STATS)
    assert before["total"] == 0 and after["total"] == 1
    assert counted.calls == 2
    assert await ctx.redis.keys(ctx.rkeys("public", "*")) == []


@pytest.mark.asyncio
async def test_redis_down_still_answers(api, ctx, monkeypatch, caplog):
    """Redis down: the client the server builds (``make_redis``) for an address where no
    Redis listens; then Redis back (the test session's redis-server)."""
    monkeypatch.setattr(stats_cache, "STATS_REDIS_PAUSE_SECONDS", 1.0)
    await ctx.db.run(seed_mixed, ctx, 10)
    counted = Counted(monkeypatch)
    path = f"{STATS}?center={CENTER}&from=2026-02-01"
    port = free_port()
    down = make_redis(ctx.settings.replace(redis__url=f"redis://127.0.0.1:{port}/0"))
    working, ctx.redis = ctx.redis, down
    caplog.set_level(logging.DEBUG)
    try:
        status, first = await api("GET", path)  # finds Redis down
        assert status == 200 and counted.calls == 1
        started = time.monotonic()
        status, second = await api("GET", path)  # does not ask Redis for a while
        assert status == 200 and counted.calls == 2
        assert time.monotonic() - started < 0.5
    finally:
        ctx.redis = working
        await down.aclose()
    direct = await ctx.db.run(
        stats_cache.stats_public.original,
        figures.parse_stats_query({"center": CENTER, "from": "2026-02-01"}),
    )
    assert first == second == direct
    warnings = [r for r in caplog.records if r.name == "wxbackend.public"]
    assert [(r.levelno, r.getMessage()) for r in warnings] == [
        (logging.WARNING, "public stats: Redis unavailable, computing without the cache")
    ]
    logged = caplog.text + "".join(repr(r.fields) for r in warnings)  # {"error": type}
    assert CENTER not in logged and "2026-02-01" not in logged and str(port) not in logged

    await asyncio.sleep(1.1)  # Redis is back: after the pause, the cache serves again
    assert (await api("GET", path))[1] == direct and counted.calls == 3
    assert (await api("GET", path))[1] == direct and counted.calls == 3
    assert len(await cache_keys(ctx)) == 1


def test_setting_is_validated():
    assert load_settings(env={}).public.stats_cache_seconds == 10
    env = {"WXB_PUBLIC_STATS_CACHE_SECONDS": "0"}
    assert load_settings(env=env).public.stats_cache_seconds == 0
    with pytest.raises(SettingsError, match="public.stats_cache_seconds"):
        load_settings(env={}, overrides={"public": {"stats_cache_seconds": -1}})


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{}, UNCACHED])
async def test_browsers_and_proxies_may_keep_the_figures_as_long(
    http_client, base_url, settings_overrides
):
    response = await http_client.fetch(base_url + STATS)
    expected = "no-store" if settings_overrides else "public, max-age=10"
    assert response.headers["Cache-Control"] == expected
    bad = await http_client.fetch(base_url + STATS + "?from=x", raise_error=False)
    assert bad.code == 400 and bad.headers["Cache-Control"] == "no-store"


class Concurrency(Counted):
    """:class:`Counted` that also records how many computations ran at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float):
        super().__init__(monkeypatch, delay)
        self.running = 0
        self.most = 0

    def __call__(self, query: figures.StatsQuery) -> dict[str, Any]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().__call__(query)
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"database": {"threads": 4}}])
async def test_a_flood_of_misses_leaves_the_database_to_others(api, ctx, monkeypatch):
    """8 different queries at once (8 cache misses, each a slow aggregation, twice the
    database threads): they compute one at a time (a quarter of 4 database threads), and a
    citizen's request that needs the database meanwhile is answered at once instead of
    waiting behind them."""
    await ctx.db.run(seed_mixed, ctx, 10)
    flood = Concurrency(monkeypatch, delay=0.25)
    days = [f"2026-01-{day:02d}" for day in range(1, 9)]
    misses = [asyncio.ensure_future(api("GET", f"{STATS}?from={day}")) for day in days]
    await asyncio.sleep(0.3)  # the flood is under way
    started = time.monotonic()
    status, _ = await api("GET", "/api/v1/public/evaluations?limit=5")
    other_took = time.monotonic() - started
    results = await asyncio.gather(*misses)
    assert [status for status, _ in results] == [200] * len(days)
    assert status == 200 and other_took < 0.25
    assert flood.calls == len(days) and flood.most == 1


@pytest.mark.asyncio
async def test_no_slot_in_time_is_503(api, ctx, monkeypatch):
    await ctx.db.run(seed_mixed, ctx, 5)
    monkeypatch.setattr(db_share, "SLOT_WAIT_SECONDS", 0.2)
    Counted(monkeypatch, delay=0.6)
    results = await asyncio.gather(
        *(api("GET", f"{STATS}?from=2026-02-{day:02d}") for day in (1, 2, 3))
    )
    statuses = sorted(status for status, _ in results)
    assert statuses[0] == 200 and 503 in statuses  # two slots of 8 threads: one waits too long
    busy = next(answer for status, answer in results if status == 503)
    assert busy["error"]["code"] == "unavailable"
