"""Fixed-window rate limits kept in Redis (shared by every process)."""

from __future__ import annotations

import hashlib

from wxbackend import errors
from wxbackend.context import Context

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


async def hit(ctx: Context, bucket: str, subject: str, limit: int, window_seconds: int) -> None:
    """Count one event of ``subject`` in ``bucket``; over ``limit`` per window → 429.

    A limit of 0 disables the check.
    """
    if limit <= 0:
        return
    # Subjects (addresses, openids) are hashed: Redis holds no identifiers in clear.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    key = ctx.rkeys("rl", bucket, digest)
    count = await ctx.redis.eval(_HIT, 1, key, window_seconds)
    if int(count) > limit:
        ttl = await ctx.redis.ttl(key)
        raise errors.RateLimited(retry_after=max(int(ttl), 1))
