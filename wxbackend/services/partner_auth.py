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

Decrypted secrets are cached in-process for :data:`SECRET_CACHE_SECONDS` (60 s) to spare a
database read per request: a revoked key keeps working for at most that long in a process that
has it cached. Unknown keys are never cached (a new key works at once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.exceptions

from models.access import Partner
from wxbackend import errors
from wxbackend.context import Context

HEADER_KEY = "X-Partner-Key"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
SIGNED_HEADERS = (HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)

#: How long a decrypted partner secret stays cached in one process (the revocation delay).
SECRET_CACHE_SECONDS = 60.0
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
    """Drop this process's cached secrets (e.g. right after revoking a key here)."""
    ctx.extras.pop(_CACHE_EXTRA, None)


async def _partner_secret(ctx: Context, key_id: str) -> tuple[PartnerIdentity, str] | None:
    cache: dict[str, _CachedSecret] = ctx.extras.setdefault(_CACHE_EXTRA, {})
    now = time.monotonic()
    hit = cache.get(key_id)
    if hit is not None and hit.until > now:
        return hit.partner, hit.secret
    found = await ctx.db.run(load_partner, key_id)
    if found is None:
        cache.pop(key_id, None)
        return None
    partner, secret_enc = found
    secret = ctx.cipher.decrypt(secret_enc, SECRET_CONTEXT)
    cache[key_id] = _CachedSecret(partner, secret, now + SECRET_CACHE_SECONDS)
    return partner, secret


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
