"""Durable bearer sessions (citizens' and administrators'): the database is the source, Redis
the cache, so a Redis restarted empty logs nobody out.

- *Create*: the row (digest, kind, subject, expiry) is committed, then cached in Redis
  (``<prefix><digest>`` → the subject id, with the session's TTL).
- *Look up*: one Redis GET on the hot path. A miss reads the row and refills Redis with the
  time the session has left; an unknown, expired or revoked token is cached as
  :data:`NEGATIVE` for :data:`NEGATIVE_TTL_SECONDS`, so a flood of bad tokens costs at most
  one database read per token in that time. Refills use SET NX: they never overwrite a
  revocation that happened while the row was being read.
- *Revoke* (logout, account disabled or changed): the database first, then the cached entry
  is overwritten with :data:`NEGATIVE` (not merely deleted: a lookup that read the row just
  before the revocation cannot bring it back).
- Expired rows are deleted by the hourly housekeeping (:func:`purge_expired`).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from models.base import utcnow
from models.session import Session
from wxbackend.context import Context
from wxbackend.security import new_token, token_digest

#: What Redis holds for a token known not to be live (subject ids are digits).
NEGATIVE = "-"
#: How long an unknown or revoked token is remembered as such in Redis.
NEGATIVE_TTL_SECONDS = 30
#: Expired rows deleted per statement by :func:`purge_expired`.
PURGE_BATCH = 1000
#: Longest token accepted (ours are 43 characters).
MAX_TOKEN_LENGTH = 128


def _cache_key(ctx: Context, prefix: str, digest: str) -> str:
    return ctx.rkeys(prefix, digest)


def _insert(digest: str, kind: str, subject_id: int, ttl: int) -> None:
    now = utcnow()
    Session.create(
        digest=digest,
        kind=kind,
        subject_id=subject_id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )


def _live_seconds(digest: str, kind: str) -> tuple[int, int] | None:
    """``(subject_id, seconds left)`` of a live session, or None. Sync."""
    now = utcnow()
    row = (
        Session.select(Session.subject_id, Session.expires_at)
        .where(
            (Session.digest == digest)
            & (Session.kind == kind)
            & Session.revoked_at.is_null()
            & (Session.expires_at > now)
        )
        .first()
    )
    if row is None:
        return None
    left = math.ceil((row.expires_at - now).total_seconds())
    return row.subject_id, max(left, 1)


def _revoke(digest: str, kind: str) -> int | None:
    """Revoke one session; its subject id if it was live. Sync."""
    now = utcnow()
    row = Session.get_or_none(
        (Session.digest == digest) & (Session.kind == kind) & Session.revoked_at.is_null()
    )
    if row is None:
        return None
    Session.update(revoked_at=now).where(Session.id == row.id).execute()
    return row.subject_id if row.expires_at > now else None


def _revoke_subject(kind: str, subject_id: int) -> tuple[list[str], int]:
    """Revoke every unrevoked session of a subject: ``(their digests, how many were live)``."""
    now = utcnow()
    mine = (Session.kind == kind) & (Session.subject_id == subject_id)
    mine &= Session.revoked_at.is_null()
    rows = list(Session.select(Session.digest, Session.expires_at).where(mine))
    if rows:
        Session.update(revoked_at=now).where(mine).execute()
    return [r.digest for r in rows], sum(1 for r in rows if r.expires_at > now)


async def create(ctx: Context, kind: str, prefix: str, subject_id: int, ttl: int) -> str:
    """A new token for ``subject_id``, stored (database, then Redis) for ``ttl`` seconds."""
    token = new_token(32)
    digest = token_digest(token)
    await ctx.db.run(_insert, digest, kind, subject_id, ttl)
    await ctx.redis.set(_cache_key(ctx, prefix, digest), str(subject_id), ex=ttl)
    return token


async def lookup(ctx: Context, kind: str, prefix: str, token: str) -> int | None:
    """The subject id of a live token, or None (Redis first; the database on a miss)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_digest(token)
    key = _cache_key(ctx, prefix, digest)
    cached = await ctx.redis.get(key)
    if cached == NEGATIVE:
        return None
    if cached:
        return int(cached)
    found = await ctx.db.run(_live_seconds, digest, kind)
    if found is None:
        await ctx.redis.set(key, NEGATIVE, ex=NEGATIVE_TTL_SECONDS, nx=True)
        return None
    subject_id, left = found
    await ctx.redis.set(key, str(subject_id), ex=left, nx=True)
    return subject_id


async def revoke(ctx: Context, kind: str, prefix: str, token: str) -> int | None:
    """End one session (the database first, then the cache); its subject id if it was live."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_digest(token)
    subject_id = await ctx.db.run(_revoke, digest, kind)
    await ctx.redis.set(_cache_key(ctx, prefix, digest), NEGATIVE, ex=NEGATIVE_TTL_SECONDS)
    return subject_id


async def revoke_all(
    ctx: Context, kind: str, prefix: str, subject_id: int, legacy_index: str
) -> int:
    """End every session of a subject (the database first, then the cache); how many were
    live. ``legacy_index``: the Redis set that listed a subject's sessions before they were
    kept in the database (migration 14); sessions made then exist only in Redis until their
    TTL runs out, so they are ended through it too."""
    digests, live = await ctx.db.run(_revoke_subject, kind, subject_id)
    if digests:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.set(_cache_key(ctx, prefix, digest), NEGATIVE, ex=NEGATIVE_TTL_SECONDS)
            await pipe.execute()
    index = ctx.rkeys(legacy_index, str(subject_id))
    older = await ctx.redis.smembers(index)
    if older:
        await ctx.redis.delete(*older)
    await ctx.redis.delete(index)
    return live + len(older)


def purge_expired(batch: int = PURGE_BATCH, model: Any = Session) -> int:
    """Delete expired sessions (rows of ``model``, which has ``expires_at``: also the screens'
    device tokens), ``batch`` rows per statement (the hourly housekeeping). Sync."""
    now = utcnow()
    total = 0
    while True:
        ids = model.select(model.id).where(model.expires_at < now).limit(batch)
        deleted = model.delete().where(model.id.in_(ids)).execute()
        total += deleted
        if deleted < batch:
            return total
