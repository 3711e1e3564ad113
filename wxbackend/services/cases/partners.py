"""Partner request signing (合作方接口签名): HMAC-SHA256 over the request, single-use nonces.

Every request of a window/case system carries (``docs/api.md``, Conventions)::

    X-Partner-Key: <key_id>
    X-Timestamp:   <unix seconds>
    X-Nonce:       <8–64 chars of [A-Za-z0-9_-]>
    X-Signature:   hex(HMAC-SHA256(secret, METHOD "\\n" PATH_WITH_QUERY "\\n" TIMESTAMP "\\n"
                                           NONCE "\\n" hex(SHA256(body))))

PATH_WITH_QUERY is the request target exactly as sent (Tornado's ``request.uri``); an empty body
hashes as the empty string. The timestamp must be within ``partner.timestamp_window_seconds``
(±300 s) of the server's clock, and a nonce is accepted once per key: it is claimed in Redis
(``SET NX EX 2 × window``) only *after* the signature checked out, so forged requests cannot burn
a partner's nonces. Every failure is 401 ``bad_signature``.

Decrypted secrets are cached in-process (:class:`SecretCache`) to spare a database read and a
decryption per request. Unknown and revoked keys are never cached (a new key works at once).
A change of a key (today: its revocation, ``POST /admin/api/partners/{key_id}/revoke``) goes
through :func:`announce_key_change`, which empties the cache of its own process at once, then
increments the Redis counter ``partner-keys:version`` and publishes the key id on the channel
``partner-keys`` (both under the key prefix). Every process drops that key on the message and
re-reads the counter, and also reads the counter every :data:`POLL_SECONDS` (1 s): when it has
moved, the whole cache is emptied. So a revoked key stops working in every process

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
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.exceptions

from models.access import Partner
from wxbackend import errors
from wxbackend.cache import ChannelWatcher
from wxbackend.context import Context

log = logging.getLogger("wxbackend.partner_auth")

HEADER_KEY = "X-Partner-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
SIGNED_HEADERS = (HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)

#: How long a decrypted partner secret stays cached in one process: the revocation delay when
#: Redis cannot be reached (otherwise :data:`POLL_SECONDS` / :data:`CHECK_SECONDS`).
SECRET_CACHE_SECONDS = 60.0
#: How often each process reads the ``partner-keys:version`` counter in the background.
POLL_SECONDS = 1.0
#: A request reads the counter itself before using the cache when the last good read is older.
CHECK_SECONDS = 1.5
#: Closing the context never waits longer than this for the watcher.
STOP_SECONDS = 5.0
SECRET_CONTEXT = "partner.secret"  # noqa: S105 (an encryption context, not a secret)

_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_CACHE_EXTRA = "partner_auth.secrets"


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


def string_to_sign(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The signed text: ``METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nhex(sha256(body))``."""
    body_hash = hashlib.sha256(body or b"").hexdigest()
    return "\n".join((method.upper(), target, timestamp, nonce, body_hash))


def compute_signature(
    secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Lower-case hex HMAC-SHA256 of :func:`string_to_sign`, keyed by the secret's UTF-8."""
    message = string_to_sign(method, target, timestamp, nonce, body).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def load_partner(key_id: str) -> tuple[PartnerIdentity, str] | None:
    """(partner, encrypted secret) of an unrevoked key, or None. Sync: run it via ``ctx.db``."""
    row = Partner.get_or_none(Partner.key_id == key_id)
    if row is None or row.revoked_at is not None:
        return None
    return PartnerIdentity(row.id, row.key_id, row.name), row.secret_enc


def forget_cached_secrets(ctx: Context) -> None:
    """Empty this process's cache (e.g. right after revoking a key here): at once, no Redis."""
    cache = ctx.extras.get(_CACHE_EXTRA)
    if cache is not None:
        cache.clear()


def version_key(ctx: Context) -> str:
    """The Redis counter every change of a partner key increments."""
    return ctx.rkeys("partner-keys", "version")


def changes_channel(ctx: Context) -> str:
    """The Redis pub/sub channel announcing changed partner keys."""
    return ctx.rkeys("partner-keys")


async def announce_key_change(ctx: Context, key_id: str) -> None:
    """Tell every process that ``key_id`` changed (revoked, …). Call it once the change is
    committed: this process forgets at once; the others within ``POLL_SECONDS`` (or
    ``SECRET_CACHE_SECONDS`` if Redis cannot be reached: logged, never raised)."""
    forget_cached_secrets(ctx)
    try:
        version = await ctx.redis.incr(version_key(ctx))
    except Exception as exc:  # noqa: BLE001 - the cache lifetime still bounds the delay
        log.warning(
            "could not announce a partner key change (%s): other processes may accept the "
            "old key for up to %d s",
            type(exc).__name__,
            SECRET_CACHE_SECONDS,
        )
        return
    await publish_key_change(ctx, version, key_id)


async def publish_key_change(ctx: Context, version: int, key_id: str) -> None:
    """Publish ``{"key_id", "version"}`` on :func:`changes_channel` (the fast path; the
    version poll covers a lost message)."""
    message = json.dumps({"key_id": key_id, "version": version})
    try:
        await ctx.redis.publish(changes_channel(ctx), message)
    except Exception as exc:  # noqa: BLE001 - the version poll still spreads the change
        log.warning("could not publish a partner key change: %s", type(exc).__name__)


class SecretCache:
    """This process's decrypted partner secrets, dropped when the Redis version moves.

    Only :meth:`lookup` fills it, and only with keys found unrevoked in the database. Every
    drop bumps ``generation``: a database read that was under way then is not cached (it may
    predate the change).
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.entries: dict[str, _CachedSecret] = {}
        self.generation = 0
        #: The counter as last read (None before the first read: that read empties the cache).
        self.version: int | None = None
        self.checked_at = -math.inf  # monotonic time the last good read was sent
        self.attempted_at = -math.inf  # … and the last attempt, good or not
        self.failing = False
        self._lock = asyncio.Lock()
        self._watcher = ChannelWatcher(
            ctx.redis,
            changes_channel(ctx),
            on_message=self._on_message,
            on_idle=self.check,
            interval=POLL_SECONDS,
        )

    def clear(self) -> None:
        self.entries.clear()
        self.generation += 1

    def drop(self, key_id: str) -> None:
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
                version = int(await self.ctx.redis.get(version_key(self.ctx)) or 0)
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
        found = await self.ctx.db.run(load_partner, key_id)
        if found is None:
            self.entries.pop(key_id, None)
            return None
        partner, secret_enc = found
        secret = self.ctx.cipher.decrypt(secret_enc, SECRET_CONTEXT)
        if generation == self.generation:
            self.entries[key_id] = _CachedSecret(partner, secret, now + SECRET_CACHE_SECONDS)
        return partner, secret

    def start(self) -> None:
        self._watcher.start()

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self._watcher.stop(), STOP_SECONDS)
        except TimeoutError:
            log.warning("the partner keys watcher did not stop within %d s", STOP_SECONDS)


def secret_cache(ctx: Context) -> SecretCache:
    """This process's :class:`SecretCache` (made on first use)."""
    cache = ctx.extras.get(_CACHE_EXTRA)
    if cache is None:
        cache = ctx.extras[_CACHE_EXTRA] = SecretCache(ctx)
    return cache


def start_watching(ctx: Context) -> None:
    """Start following partner key changes (``Context.start``; needs the running loop)."""
    secret_cache(ctx).start()


async def stop_watching(ctx: Context) -> None:
    """Stop following them (``Context.close``; bounded by :data:`STOP_SECONDS`)."""
    cache = ctx.extras.get(_CACHE_EXTRA)
    if cache is not None:
        await cache.stop()


async def _partner_secret(ctx: Context, key_id: str) -> tuple[PartnerIdentity, str] | None:
    return await secret_cache(ctx).lookup(key_id)


def _header(headers: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = headers.get(name)
    if not value:
        raise errors.BadSignature(f"Missing header {name}.")
    if not pattern.fullmatch(value):
        raise errors.BadSignature(f"Malformed header {name}.")
    return value


async def authenticate(
    ctx: Context, method: str, target: str, headers: Mapping[str, str], body: bytes
) -> PartnerIdentity:
    """Check a partner request's signature and claim its nonce; the partner, or 401.

    ``target`` is the request target exactly as sent (path and query, percent-encoding kept);
    ``body`` the raw body bytes (``b""`` when there is none).
    """
    key_id = _header(headers, HEADER_KEY, _KEY_ID_RE)
    timestamp = _header(headers, HEADER_TIMESTAMP, _TIMESTAMP_RE)
    nonce = _header(headers, HEADER_NONCE, NONCE_RE)
    signature = _header(headers, HEADER_SIGNATURE, _SIGNATURE_RE).lower()
    window = ctx.settings.partner.timestamp_window_seconds
    if abs(time.time() - int(timestamp)) > window:
        raise errors.BadSignature(
            f"X-Timestamp is more than {window} seconds from the server's clock."
        )
    found = await _partner_secret(ctx, key_id)
    # One answer for an unknown key, a revoked key and a wrong signature.
    expected = compute_signature(found[1] if found else "", method, target, timestamp, nonce, body)
    if found is None or not hmac.compare_digest(expected, signature):
        raise errors.BadSignature()
    try:
        fresh = await ctx.redis.set(
            ctx.rkeys("partner-nonce", key_id, nonce), "1", nx=True, ex=2 * window
        )
    except redis.exceptions.RedisError:
        raise errors.Unavailable("Cannot check the nonce right now; try again.") from None
    if not fresh:
        raise errors.BadSignature("X-Nonce was already used.")
    return found[0]
