"""Admin login lockout: 5 failures in 15 minutes for one (account, client address) pair
lock that pair for 15 minutes (settings ``admin.lockout_*``). Kept in Redis.

Counted *before* the password is checked (:meth:`Lockout.attempt`, one atomic script), so a
burst locks like a sequence: 40 wrong passwords sent at once used to get 40 × 401 (each read
"not locked" before any failure was recorded) and the right password in the same burst got
in. Now the attempts beyond the allowance are 429 before any password is checked; a success
clears the count.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from wxbackend.cache import Keys
from wxbackend.settings import Settings

_ATTEMPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return -1
end
redis.call('SADD', KEYS[3], KEYS[1])
redis.call('EXPIRE', KEYS[3], math.max(tonumber(ARGV[1]), tonumber(ARGV[3])))
return n
"""
_FAILED = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return n
"""


def _pair(username: str, address: str) -> str:
    return hashlib.sha256(f"{username.lower()}\x00{address}".encode()).hexdigest()[:32]


def _keys(rkeys: Keys, username: str, address: str) -> tuple[str, str, str]:
    pair = _pair(username, address)
    return (
        rkeys("lockout", "fail", pair),
        rkeys("lockout", "lock", pair),
        rkeys("lockout", "index", username.lower()),
    )


class Lockout:
    def __init__(self, redis_client: aioredis.Redis, rkeys: Keys, settings: Settings):
        self.redis = redis_client
        self.rkeys = rkeys
        self.failures = settings.admin.lockout_failures
        self.window = settings.admin.lockout_window_seconds
        self.duration = settings.admin.lockout_seconds

    async def attempt(self, username: str, address: str) -> bool:
        """Count one login attempt of the pair before its password is checked; False when
        the pair is locked or this attempt is beyond the allowance (then it is locked)."""
        fail, lock, index = _keys(self.rkeys, username, address)
        n = await self.redis.eval(
            _ATTEMPT, 3, fail, lock, index, self.window, self.failures, self.duration
        )
        return int(n) > 0

    async def failed(self, username: str, address: str) -> None:
        """The counted attempt was wrong: lock the pair once the allowance is used up."""
        fail, lock, index = _keys(self.rkeys, username, address)
        await self.redis.eval(_FAILED, 3, fail, lock, index, self.failures, self.duration)

    async def clear(self, username: str, address: str) -> None:
        """A counted attempt had the right password: its pair's count starts again. A lock
        stays: the attempt passed :meth:`attempt` unlocked, so any lock now was earned by
        attempts counted after it (a burst's beyond the allowance), as in a sequence where
        they follow the success (``wxbackend admin unlock`` lifts it)."""
        fail, _, _ = _keys(self.rkeys, username, address)
        await self.redis.delete(fail)


async def unlock(redis_client: aioredis.Redis, rkeys: Keys, username: str) -> int:
    """Lift every lock of ``username`` (``wxbackend admin unlock``); returns locks lifted."""
    index = rkeys("lockout", "index", username.lower())
    members = await redis_client.smembers(index)
    locks = [k for k in members if ":lock:" in k and await redis_client.exists(k)]
    if members:
        await redis_client.delete(*members)
    await redis_client.delete(index)
    return len(locks)
