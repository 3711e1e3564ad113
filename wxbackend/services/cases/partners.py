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

Each process keeps the decrypted secrets in ``ctx.partner_secrets`` (:mod:`.partner_keys`). A
change of a key (today: its revocation, ``POST /admin/api/partners/{key_id}/revoke``) goes
through :func:`announce_key_change`: this process forgets at once, every other one within
about a second (the bounds are in :mod:`.partner_keys`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping

import redis.exceptions

from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.cases.partner_keys import (
    SECRET_CACHE_SECONDS,
    PartnerIdentity,
    changes_channel,
    version_key,
)

log = logging.getLogger("wxbackend.partner_auth")

HEADER_KEY = "X-Partner-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"


_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")


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


def forget_cached_secrets(ctx: Context) -> None:
    """Empty this process's cache (e.g. right after revoking a key here): at once, no Redis."""
    ctx.partner_secrets.clear()


async def announce_key_change(ctx: Context, key_id: str) -> None:
    """Tell every process that ``key_id`` changed (revoked, …). Call it once the change is
    committed: this process forgets at once; the others within ``POLL_SECONDS`` (or
    ``SECRET_CACHE_SECONDS`` if Redis cannot be reached: logged, never raised)."""
    forget_cached_secrets(ctx)
    try:
        version = await ctx.redis.incr(version_key(ctx.rkeys))
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
        await ctx.redis.publish(changes_channel(ctx.rkeys), message)
    except Exception as exc:  # noqa: BLE001 - the version poll still spreads the change
        log.warning("could not publish a partner key change: %s", type(exc).__name__)


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
    found = await ctx.partner_secrets.lookup(key_id)
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
