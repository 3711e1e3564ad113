"""The public figures cached in Redis: ``GET /api/v1/public/stats``.

Kept ``public.stats_cache_seconds`` per normalized query, one computation per miss however
many requests ask at once (:func:`cached_stats`, a single-flight lock); Redis down, each
request computes. Computations take at most a quarter of the database threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from wxbackend.context import Context
from wxbackend.services.citizens import ratelimit
from wxbackend.services.common import db_share
from wxbackend.services.public.figures import StatsQuery, parse_stats_query, stats_public

log = logging.getLogger("wxbackend.public")

#: Single-flight: the one request that computes missing figures holds this lock (released as
#: soon as it has stored them; the expiry only outlives a crashed holder)…
STATS_LOCK_MS = 5000
#: … while the others poll for the stored figures this long (the figures come from the
#: rollups: ~1 ms at 1,000,000 cases, all time), then compute them themselves.
STATS_WAIT_SECONDS = 2.0
#: After a Redis error this process computes without the cache this long before trying Redis
#: again (redis-py retries a dead server for seconds: one request pays that, not each one).
STATS_REDIS_PAUSE_SECONDS = 5.0
_POLL_FIRST_SECONDS = 0.01
_POLL_MAX_SECONDS = 0.1
_REDIS_ERRORS = (TimeoutError, RedisError, OSError)
_RELEASE_LOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def stats_cache_key(ctx: Context, query: StatsQuery) -> str:
    """The Redis key of the figures of ``query``: a digest of the parsed filters, so the
    spellings of one query (``?center=`` or none, a parameter repeated or unknown) share it."""
    filters = [query.center, query.item]
    filters += [t.isoformat() if t else None for t in (query.start, query.end)]
    normalized = json.dumps(filters, ensure_ascii=False, separators=(",", ":"))
    return ctx.rkeys("public", "stats", hashlib.sha256(normalized.encode()).hexdigest()[:32])


class _StatsCache:
    """The Redis side of one request for the figures. At a Redis error it logs once (the
    error's type: no query, no address) and stands aside, so the request computes; so do the
    requests of the next :data:`STATS_REDIS_PAUSE_SECONDS`, without a word."""

    def __init__(self, ctx: Context, query: StatsQuery):
        self.ctx = ctx
        self.redis = ctx.redis
        self.key = stats_cache_key(ctx, query)
        self.lock = self.key + ":lock"
        self.owner = secrets.token_hex(8)
        self.down = time.monotonic() < ctx.stats_paused_until

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            return None
        try:
            return await getattr(self.redis, method)(*args, **kwargs)
        except _REDIS_ERRORS as exc:
            self.down = True
            self.ctx.stats_paused_until = time.monotonic() + STATS_REDIS_PAUSE_SECONDS
            log.warning(
                "public stats: Redis unavailable, computing without the cache",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return None

    async def get(self) -> dict[str, Any] | None:
        """The stored figures, or None (missing, unreadable, or Redis down)."""
        found = await self._call("get", self.key)
        if found is None:
            return None
        try:
            return json.loads(found)
        except ValueError:
            return None  # recomputed and overwritten by the lock holder

    async def take_lock(self) -> bool:
        return bool(await self._call("set", self.lock, self.owner, nx=True, px=STATS_LOCK_MS))

    async def release_lock(self) -> None:
        await self._call("eval", _RELEASE_LOCK, 1, self.lock, self.owner)

    async def wait(self) -> dict[str, Any] | None:
        """Poll for the figures another request is computing: at most
        :data:`STATS_WAIT_SECONDS`, then None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STATS_WAIT_SECONDS
        delay = _POLL_FIRST_SECONDS
        while not self.down and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(2 * delay, _POLL_MAX_SECONDS)
            found = await self.get()
            if found is not None:
                return found
        return None

    async def store(self, answer: dict[str, Any], ttl: int, replace: bool) -> None:
        """Keep ``answer`` for ``ttl`` seconds, only when JSON gives it back unchanged (no
        datetime, Decimal, tuple or int key could slip into a cached answer). ``replace``:
        overwrite what is there (the lock holder); others only fill a gap."""
        try:
            encoded = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            faithful = json.loads(encoded) == answer
        except (TypeError, ValueError):
            faithful = False
        if not faithful:
            log.warning("public stats: figures not cached, JSON would change them")
            return
        await self._call("set", self.key, encoded, ex=ttl, nx=not replace)


async def compute_stats(ctx: Context, query: StatsQuery) -> dict[str, Any]:
    """Aggregate the figures on the database pool, at most a quarter of its threads at once
    (at least one): a flood of distinct queries (every one a cache miss, a read of the
    rollups) queues here instead of taking every thread from ratings, logins and scans.
    No slot within ``db_share.SLOT_WAIT_SECONDS`` → 503 ``unavailable``."""
    if ctx.stats_slots is None:
        ctx.stats_slots = asyncio.Semaphore(db_share.share(ctx))
    return await db_share.run_in_share(ctx, ctx.stats_slots, stats_public, query)


async def cached_stats(
    ctx: Context, query: StatsQuery, ttl: int, client: str = ""
) -> dict[str, Any]:
    """The figures of ``query`` through Redis, kept ``ttl`` seconds: a hit is one GET; of
    simultaneous misses one request computes (``SET NX PX`` lock) while the others poll for
    its answer, computing themselves only after :data:`STATS_WAIT_SECONDS`. Redis down: each
    request computes."""
    cache = _StatsCache(ctx, query)
    found = await cache.get()
    if found is not None:
        return found
    await _count_miss(ctx, client)
    holder = await cache.take_lock()
    if not holder:
        found = await cache.wait()
        if found is not None:
            return found
    try:
        answer = await compute_stats(ctx, query)
        await cache.store(answer, ttl, replace=holder)
    finally:
        if holder:
            await cache.release_lock()
    return answer


async def public_stats(
    ctx: Context, args: Mapping[str, str | None], client: str = ""
) -> dict[str, Any]:
    """``GET /api/v1/public/stats``: cached for ``public.stats_cache_seconds`` (0: never), so
    a new rating shows there within that time. A client address that asks for more than
    ``public.stats_misses_per_address_per_minute`` figures nobody asked for lately gets 429
    (a flood of distinct from/to pairs used to turn into 503s for everyone)."""
    query = parse_stats_query(args)
    ttl = ctx.settings.public.stats_cache_seconds
    if ttl <= 0:
        await _count_miss(ctx, client)
        return await compute_stats(ctx, query)
    return await cached_stats(ctx, query, ttl, client)


async def _count_miss(ctx: Context, client: str) -> None:
    limit = ctx.settings.public.stats_misses_per_address_per_minute
    with contextlib.suppress(RedisError):  # Redis down: the database share still bounds it
        await ratelimit.hit(ctx, "stats-miss", client, limit, 60)
