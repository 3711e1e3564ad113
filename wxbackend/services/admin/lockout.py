"""Admin login lockout: 5 failures in 15 minutes for one (account, client address) pair
lock that pair for 15 minutes (settings ``admin.lockout_*``). Kept in Redis.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from wxbackend.cache import Keys
from wxbackend.settings import Settings

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
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

    async def is_locked(self, username: str, address: str) -> bool:
        return bool(await self.redis.exists(_keys(self.rkeys, username, address)[1]))

    async def record_failure(self, username: str, address: str) -> int:
        fail, lock, index = _keys(self.rkeys, username, address)
        return int(
            await self.redis.eval(
                _FAIL, 3, fail, lock, index, self.window, self.failures, self.duration
            )
        )

    async def clear(self, username: str, address: str) -> None:
        fail, lock, _ = _keys(self.rkeys, username, address)
        await self.redis.delete(fail, lock)


async def unlock(redis_client: aioredis.Redis, rkeys: Keys, username: str) -> int:
    """Lift every lock of ``username`` (``wxbackend admin unlock``); returns locks lifted."""
    index = rkeys("lockout", "index", username.lower())
    members = await redis_client.smembers(index)
    locks = [k for k in members if ":lock:" in k and await redis_client.exists(k)]
    if members:
        await redis_client.delete(*members)
    await redis_client.delete(index)
    return len(locks)
