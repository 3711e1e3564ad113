"""Device tokens of paired screens, durable: the database is the source, Redis the cache (as
citizens' and admins' sessions, :mod:`wxbackend.services.common.session_store`), so a Redis
restarted empty unpairs no screen, and a pairing a rotation ended stays ended.

- *Store* (pairing): the row (digest, window, generation, expiry) is committed, then cached
  (``device-token:<digest>`` → ``{"window", "generation"}`` with the token's TTL) and the
  window's flag ``device-paired:<window>`` set to ``1``.
- *Find*: one Redis GET. A miss reads the live row (not ended, not expired) and refills Redis
  with the time it has left (SET NX: never over an ending); none is cached as
  :data:`~wxbackend.services.common.session_store.NEGATIVE` for a while.
- *Renew* (a screen connecting): the row's expiry first, then the cache's TTL.
- *End* (a rotation of the window's key): the rows first, then their cache entries are
  overwritten with NEGATIVE and the flag set to ``0``. Tokens paired before migration 18 live
  only in Redis (listed in the set ``device-tokens:<window>``): they are dropped through it.
- *Paired?* (a partner's report, to skip windows without a screen): the flag; on a miss the
  database (or the older set) answers and the flag is cached :data:`FLAG_SECONDS`.

What a screen shows (the current case, :mod:`.screen`) stays in Redis only: it is ephemeral
(a case stays on the screen ``devices.show_seconds``); a Redis restarted empty leaves the
screen idle until the window's next report.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError

from models.base import utcnow
from models.catalog import Window
from models.device import DeviceToken
from wxbackend.context import Context
from wxbackend.services.common import session_store
from wxbackend.services.common.session_store import NEGATIVE, NEGATIVE_TTL_SECONDS

#: How long the window's "a screen is paired" flag is trusted before the database is asked.
FLAG_SECONDS = 300
#: What Redis being unreachable raises.
REDIS_DOWN = (RedisError, OSError, TimeoutError)


def _cache_key(ctx: Context, digest: str) -> str:
    return ctx.rkeys("device-token", digest)


def _flag_key(ctx: Context, window_code: str) -> str:
    return ctx.rkeys("device-paired", window_code)


def _legacy_set(ctx: Context, window_code: str) -> str:
    """The Redis set that listed a window's tokens before they were kept in the database."""
    return ctx.rkeys("device-tokens", window_code)


# --------------------------------------------------------------------------- database work


def _insert(digest: str, window_code: str, generation: int, ttl: int) -> bool:
    """Store a token of the window; False when the window is gone (deleted meanwhile)."""
    now = utcnow()
    window = Window.get_or_none(Window.code == window_code)
    if window is None:
        return False
    DeviceToken.create(
        digest=digest,
        window=window.id,
        generation=generation,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    return True


def _alive(now: datetime) -> Any:
    return DeviceToken.ended_at.is_null() & (DeviceToken.expires_at > now)


def _live(digest: str) -> tuple[dict[str, Any], int] | None:
    """``({"window", "generation"}, seconds left)`` of a live token, or None. Sync."""
    now = utcnow()
    row = (
        DeviceToken.select(Window.code, DeviceToken.generation, DeviceToken.expires_at)
        .join(Window)
        .where((DeviceToken.digest == digest) & _alive(now))
        .tuples()
        .first()
    )
    if row is None:
        return None
    left = math.ceil((row[2] - now).total_seconds())
    return {"window": row[0], "generation": row[1]}, max(left, 1)


def _renew(digest: str, ttl: int) -> None:
    DeviceToken.update(expires_at=utcnow() + timedelta(seconds=ttl)).where(
        (DeviceToken.digest == digest) & DeviceToken.ended_at.is_null()
    ).execute()


def _end_window(window_code: str) -> list[str]:
    """End the window's live tokens; their digests. Sync."""
    window = Window.select(Window.id).where(Window.code == window_code)
    mine = (DeviceToken.window.in_(window)) & DeviceToken.ended_at.is_null()
    digests = [d for (d,) in DeviceToken.select(DeviceToken.digest).where(mine).tuples()]
    if digests:
        DeviceToken.update(ended_at=utcnow()).where(mine).execute()
    return digests


def _any_live(window_code: str) -> bool:
    now = utcnow()
    return (
        DeviceToken.select(DeviceToken.id)
        .join(Window)
        .where((Window.code == window_code) & _alive(now))
        .exists()
    )


def purge_expired() -> int:
    """Delete expired tokens in batches (the hourly housekeeping). Sync."""
    return session_store.purge_expired(model=DeviceToken)


# --------------------------------------------------------------------------- services


async def store(ctx: Context, digest: str, window_code: str, generation: int, ttl: int) -> bool:
    """Keep a new token (the database, then the cache: a cache left unwritten is refilled
    from the database on the first look-up); False when the window is gone."""
    if not await ctx.db.run(_insert, digest, window_code, generation, ttl):
        return False
    value = json.dumps({"window": window_code, "generation": generation})
    with contextlib.suppress(*REDIS_DOWN):
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.set(_cache_key(ctx, digest), value, ex=ttl)
            pipe.set(_flag_key(ctx, window_code), "1", ex=FLAG_SECONDS)
            await pipe.execute()
    return True


async def find(ctx: Context, digest: str) -> dict[str, Any] | None:
    """``{"window", "generation"}`` of a live token, or None (Redis first; the database on a
    miss). Redis down raises (the caller answers 503)."""
    key = _cache_key(ctx, digest)
    raw = await ctx.redis.get(key)
    if raw is not None:
        return None if raw == NEGATIVE else json.loads(raw)
    found = await ctx.db.run(_live, digest)
    if found is None:
        await ctx.redis.set(key, NEGATIVE, ex=NEGATIVE_TTL_SECONDS, nx=True)
        return None
    stored, left = found
    await ctx.redis.set(key, json.dumps(stored), ex=left, nx=True)
    return stored


async def renew(ctx: Context, digest: str, ttl: int) -> None:
    """Restart the token's life (the database, then the cache; a cache left as it was lives
    on until its old expiry, then is refilled from the database)."""
    await ctx.db.run(_renew, digest, ttl)
    with contextlib.suppress(*REDIS_DOWN):
        await ctx.redis.expire(_cache_key(ctx, digest), ttl)


async def end_window(ctx: Context, window_code: str) -> None:
    """End every pairing of the window: the database first, then the cache (best effort:
    a cached entry left behind carries a generation the rotation made stale)."""
    digests = await ctx.db.run(_end_window, window_code)
    with contextlib.suppress(*REDIS_DOWN):
        legacy = _legacy_set(ctx, window_code)
        older = await ctx.redis.smembers(legacy)
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.set(_cache_key(ctx, digest), NEGATIVE, ex=NEGATIVE_TTL_SECONDS)
            for digest in older:
                pipe.delete(_cache_key(ctx, digest))
            pipe.delete(legacy)
            pipe.set(_flag_key(ctx, window_code), "0", ex=FLAG_SECONDS)
            await pipe.execute()


async def paired(ctx: Context, window_code: str) -> bool:
    """Some screen is paired with the window: one Redis GET (the database at most once per
    :data:`FLAG_SECONDS` per window)."""
    flag = await ctx.redis.get(_flag_key(ctx, window_code))
    if flag is not None:
        return flag == "1"
    found = await ctx.db.run(_any_live, window_code)
    found = found or bool(await ctx.redis.scard(_legacy_set(ctx, window_code)))
    flag = "1" if found else "0"
    await ctx.redis.set(_flag_key(ctx, window_code), flag, ex=FLAG_SECONDS, nx=True)
    return found
