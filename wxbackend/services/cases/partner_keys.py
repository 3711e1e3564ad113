"""Partner keys in memory (合作方密钥缓存): each process's cache of decrypted partner secrets.

Decrypted secrets are cached in-process (:class:`SecretCache`) to spare a database read and a
decryption per request. Unknown and revoked keys are never cached (a new key works at once).
A change of a key is announced (``partners.announce_key_change``) by incrementing the Redis
counter ``partner-keys:version`` and publishing the key id on the channel ``partner-keys``
(both under the key prefix). Every process drops that key on the message and re-reads the
counter, and also reads the counter every :data:`POLL_SECONDS` (1 s): when it has moved, the
whole cache is emptied. So a revoked key stops working in every process

* at once (a pub/sub round trip) when the message arrives;
* within about :data:`POLL_SECONDS` (1 s) when the message is lost, and about
  :data:`CHECK_SECONDS` (1.5 s) at most even if the background watcher lags or is not running:
  a request reads the counter itself before trusting the cache when the last read is older;
* within :data:`SECRET_CACHE_SECONDS` (60 s, every entry's lifetime: the worst case) when
  Redis cannot be reached. A failing check never fails a signed request: it is logged (the
  error's type, never a secret) and retried at most once per :data:`POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.access import Partner
from wxbackend.cache import ChannelWatcher, Keys
from wxbackend.db import Database
from wxbackend.security import FieldCipher

log = logging.getLogger("wxbackend.partner_auth")

#: How long a decrypted partner secret stays cached in one process: the revocation delay when
#: Redis cannot be reached (otherwise :data:`POLL_SECONDS` / :data:`CHECK_SECONDS`).
SECRET_CACHE_SECONDS = 60.0
#: How often each process reads the ``partner-keys:version`` counter in the background.
POLL_SECONDS = 1.0
#: A request reads the counter itself before using the cache when the last good read is older.
CHECK_SECONDS = 1.5
#: Closing the context never waits longer than this for the watcher.
STOP_SECONDS = 5.0
SECRET_CONTEXT = "partner.secret"  # noqa: S105 (an encryption context, not a secret)  # nosec B105


@dataclass(frozen=True)
class PartnerIdentity:
    """The partner system a request was signed by."""

    id: int
    key_id: str
    name: str


@dataclass(frozen=True)
class _CachedSecret:
    partner: PartnerIdentity
    secret: str
    until: float


def load_partner(key_id: str) -> tuple[PartnerIdentity, str] | None:
    """(partner, encrypted secret) of an unrevoked key, or None. Sync: run it via ``ctx.db``."""
    row = Partner.get_or_none(Partner.key_id == key_id)
    if row is None or row.revoked_at is not None:
        return None
    return PartnerIdentity(row.id, row.key_id, row.name), row.secret_enc


def version_key(rkeys: Keys) -> str:
    """The Redis counter every change of a partner key increments."""
    return rkeys("partner-keys", "version")


def changes_channel(rkeys: Keys) -> str:
    """The Redis pub/sub channel announcing changed partner keys."""
    return rkeys("partner-keys")


class SecretCache:
    """This process's decrypted partner secrets, dropped when the Redis version moves.

    Only :meth:`lookup` fills it, and only with keys found unrevoked in the database. Every
    drop bumps ``generation``: a database read that was under way then is not cached (it may
    predate the change).
    """

    def __init__(self, redis: aioredis.Redis, rkeys: Keys, db: Database, cipher: FieldCipher):
        self.redis = redis
        self.rkeys = rkeys
        self.db = db
        self.cipher = cipher
        self.entries: dict[str, _CachedSecret] = {}
        self.generation = 0
        #: The counter as last read (None before the first read: that read empties the cache).
        self.version: int | None = None
        self.checked_at = -math.inf  # monotonic time the last good read was sent
        self.attempted_at = -math.inf  # … and the last attempt, good or not
        self.failing = False
        self._lock = asyncio.Lock()
        self._watcher = ChannelWatcher(
            redis,
            changes_channel(rkeys),
            on_message=self._on_message,
            on_idle=self.check,
            interval=POLL_SECONDS,
        )

    def clear(self) -> None:
        """Forget every secret."""
        self.entries.clear()
        self.generation += 1

    def drop(self, key_id: str) -> None:
        """Forget one key's secret."""
        self.entries.pop(key_id, None)
        self.generation += 1

    def _stale(self, now: float) -> bool:
        return now - self.checked_at >= CHECK_SECONDS and now - self.attempted_at >= POLL_SECONDS

    async def check(self, only_if_stale: bool = False) -> None:
        """Read the version counter; empty the cache if it moved. Never raises (a Redis
        failure leaves the entries to their :data:`SECRET_CACHE_SECONDS` lifetime)."""
        async with self._lock:
            started = time.monotonic()
            if only_if_stale and not self._stale(started):
                return  # another request checked while this one waited
            self.attempted_at = started
            try:
                version = int(await self.redis.get(version_key(self.rkeys)) or 0)
            except Exception as exc:  # noqa: BLE001 - never fail a signed request for this
                if not self.failing:
                    self.failing = True
                    log.warning(
                        "cannot read the partner keys version (%s): cached partner secrets "
                        "now live up to %d s",
                        type(exc).__name__,
                        SECRET_CACHE_SECONDS,
                    )
                return
            if self.failing:
                self.failing = False
                log.info("partner keys version readable again")
            if version != self.version:
                self.clear()
                self.version = version
            self.checked_at = started

    async def _on_message(self, data: str) -> None:
        try:
            key_id = json.loads(data)["key_id"]
        except (ValueError, KeyError, TypeError):
            key_id = None
        if isinstance(key_id, str):
            self.drop(key_id)
        else:
            self.clear()
        await self.check()

    async def lookup(self, key_id: str) -> tuple[PartnerIdentity, str] | None:
        """(partner, secret) of an unrevoked key, or None; from the cache when it is fresh."""
        if self._stale(time.monotonic()):
            await self.check(only_if_stale=True)
        now = time.monotonic()
        hit = self.entries.get(key_id)
        if hit is not None and hit.until > now:
            return hit.partner, hit.secret
        generation = self.generation
        found = await self.db.run(load_partner, key_id)
        if found is None:
            self.entries.pop(key_id, None)
            return None
        partner, secret_enc = found
        secret = self.cipher.decrypt(secret_enc, SECRET_CONTEXT)
        if generation == self.generation:
            self.entries[key_id] = _CachedSecret(partner, secret, now + SECRET_CACHE_SECONDS)
        return partner, secret

    def start(self) -> None:
        """Follow key changes in the background (``Context.start``; needs the running loop)."""
        self._watcher.start()

    async def stop(self) -> None:
        """Stop following them (``Context.close``; bounded by :data:`STOP_SECONDS`)."""
        try:
            await asyncio.wait_for(self._watcher.stop(), STOP_SECONDS)
        except TimeoutError:
            log.warning("the partner keys watcher did not stop within %d s", STOP_SECONDS)
