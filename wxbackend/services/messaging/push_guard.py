"""Single-use push signatures: a captured delivery URL cannot be replayed with another body.

In plaintext mode WeChat's ``signature`` covers only the token, ``timestamp`` and ``nonce``,
not the body: whoever sees one signed URL (a proxy log, a mirror) could post any message to it
within the 5 minutes :func:`~wxbackend.wechat.push.check_fresh` allows. So each
(signature, timestamp, nonce) is accepted once: claimed in Redis (``SET NX``, for the whole
freshness window) with the body's receipt key as its value. The same request again (WeChat
retrying a delivery whose answer it missed) answers ``success`` without applying anything new;
the same signature with another body is a replay and refused. A delivery that fails to apply
releases its claim, so WeChat's retry still gets through. With Redis down the claim is
skipped (logged): the database's receipts still apply each message once, and with safe mode
configured a forged body cannot decrypt.
"""

from __future__ import annotations

import hashlib
import logging

from redis.exceptions import RedisError

from wxbackend.context import Context
from wxbackend.wechat.push import MAX_CLOCK_SKEW_SECONDS

log = logging.getLogger("wxbackend.push")

#: How long a claim lasts: past it, the timestamp itself is refused as stale.
CLAIM_SECONDS = 2 * MAX_CLOCK_SKEW_SECONDS + 60

FRESH = "fresh"  # first use: apply it
REPEAT = "repeat"  # the same request again: answer success, apply nothing new
REPLAY = "replay"  # the same signature with another body: refuse


def _key(ctx: Context, signature: str, timestamp: str, nonce: str) -> str:
    digest = hashlib.sha256(f"{signature}\n{timestamp}\n{nonce}".encode()).hexdigest()
    return ctx.rkeys("push", "sig", digest)


async def claim(ctx: Context, signature: str, timestamp: str, nonce: str, receipt: str) -> str:
    """Claim one signed delivery: :data:`FRESH`, :data:`REPEAT` or :data:`REPLAY`."""
    key = _key(ctx, signature, timestamp, nonce)
    try:
        if await ctx.redis.set(key, receipt, nx=True, ex=CLAIM_SECONDS):
            return FRESH
        held = await ctx.redis.get(key)
    except RedisError as exc:
        log.warning(
            "push signature claim unavailable: relying on the receipts",
            extra={"fields": {"error": type(exc).__name__}},
        )
        return FRESH
    if held is not None and (held.decode() if isinstance(held, bytes) else held) == receipt:
        return REPEAT
    return REPLAY


async def release(ctx: Context, signature: str, timestamp: str, nonce: str) -> None:
    """Give the claim back (the delivery was not applied): WeChat's retry may use it."""
    try:
        await ctx.redis.delete(_key(ctx, signature, timestamp, nonce))
    except RedisError as exc:
        log.warning("push claim release failed", extra={"fields": {"error": type(exc).__name__}})
