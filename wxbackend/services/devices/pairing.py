"""Device keys and device tokens of evaluator screens.

A **device key** is made for a window by an admin who may change that window's center
(``catalogue.write``), shown once, and stored as its SHA-256 (:func:`token_digest`, like
partner and QR tokens: it is random, 120 bits, never a password). Making a new one rotates
it: the window's ``generation`` grows, so every device token paired under the old key fails
from then on, and :func:`end_pairings` drops those tokens and ends the open streams.

A **device token** is what the screen keeps (``localStorage``) after pairing: 256 random bits,
kept in Redis under its digest as ``{"window", "generation"}`` for ``devices.token_days``
(renewed on each connection), and listed in the window's set so a rotation can drop them.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from models.base import utcnow
from models.catalog import Window
from models.device import WindowDevice
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import token_digest
from wxbackend.services.admin import permissions, scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.citizens import ratelimit
from wxbackend.services.devices import events

KEY_BYTES = 15  # 120 bits → 24 base32 characters, shown in groups of 4
WINDOW_CODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_RE = re.compile(r"[A-Z2-7]{24}")
WRITE = "catalogue.write"
#: What Redis being unreachable raises.
REDIS_DOWN = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class DeviceSession:
    """A paired screen: the window it shows."""

    window_code: str


def new_device_key() -> str:
    """A fresh device key: ``ABCD-EFGH-…`` (24 base32 characters in groups of 4)."""
    raw = base64.b32encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def normalize_key(value: str) -> str:
    """What a person typed → the key's 24 characters (dashes, spaces, case ignored)."""
    return re.sub(r"[\s-]", "", value).upper()


# --------------------------------------------------------------------------- database work


def rotate_key(actor: Actor, principal: Principal, window_code: str, key_hash: str) -> int:
    """Store a new device key's digest for the window; the new generation. 404 for a window
    out of the admin's reach, 403 where they may read but not write. Audited
    ``window.device_key`` (never the key). Sync: run via ``ctx.db.run``."""
    with database.atomic():
        window = Window.get_or_none(Window.code == window_code)
        if window is None:
            raise errors.NotFound(f"No window {window_code!r}.")
        try:
            scope.ensure_visible(principal, "catalogue.read", window.center_id)
        except errors.NotFound:
            raise errors.NotFound(f"No window {window_code!r}.") from None
        permissions.authorize(principal, WRITE, permissions.Target(window.center_id))
        # one row per window (unique): a concurrent first key conflicts, never duplicates
        WindowDevice.insert(window=window.id, key_hash=key_hash, generation=0).on_conflict(
            conflict_target=[WindowDevice.window],
            update={WindowDevice.key_hash: key_hash, WindowDevice.rotated_at: utcnow()},
        ).execute()
        WindowDevice.update(generation=WindowDevice.generation + 1).where(
            WindowDevice.window == window.id
        ).execute()
        generation = WindowDevice.get(WindowDevice.window == window.id).generation
        record(actor, "window.device_key", "window", window_code, {"generation": generation})
    return generation


def device_of(window_code: str) -> tuple[str, int] | None:
    """``(key_hash, generation)`` of a window's device key, or None."""
    row = (
        WindowDevice.select(WindowDevice.key_hash, WindowDevice.generation)
        .join(Window)
        .where(Window.code == window_code)
        .tuples()
        .first()
    )
    return (row[0], row[1]) if row else None


# --------------------------------------------------------------------------- services


def _token_key(ctx: Context, digest: str) -> str:
    return ctx.rkeys("device-token", digest)


def _window_tokens(ctx: Context, window_code: str) -> str:
    return ctx.rkeys("device-tokens", window_code)


async def create_key(ctx: Context, actor: Actor, principal: Principal, window_code: str) -> str:
    """``POST /admin/api/windows/{code}/device-key``: a new key, shown once; the screens
    paired with the old one lose their pairing at once."""
    key = new_device_key()
    await ctx.db.run(rotate_key, actor, principal, window_code, token_digest(normalize_key(key)))
    await end_pairings(ctx, window_code)
    await events.publish(ctx, window_code, {"event": "revoked"})  # open streams end
    return key


async def end_pairings(ctx: Context, window_code: str) -> None:
    """Drop the window's device tokens (best effort: their generation is stale anyway)."""
    listed = _window_tokens(ctx, window_code)
    try:
        digests = await ctx.redis.smembers(listed)
        keys = [_token_key(ctx, d if isinstance(d, str) else d.decode()) for d in digests]
        await ctx.redis.delete(*keys, listed)
    except REDIS_DOWN:
        pass  # the generation check refuses those tokens all the same


def _pair_body(body: dict[str, Any]) -> tuple[str, str]:
    window_code, device_key = body["window_code"], body["device_key"]
    if not WINDOW_CODE_RE.fullmatch(window_code):
        raise errors.InvalidField(
            "window_code: 1–64 characters of [A-Za-z0-9_.-].", field="window_code"
        )
    if len(device_key) > 64:
        raise errors.InvalidField("device_key: at most 64 characters.", field="device_key")
    return window_code, normalize_key(device_key)


async def pair(ctx: Context, address: str, body: dict[str, Any]) -> str:
    """``POST /api/v1/device/pair``: a device token for the window, or 401 ``unauthenticated``
    (unknown window, no key yet, wrong key: all alike). Every attempt counts against
    ``devices.pair_per_address_per_minute`` (429 past it)."""
    window_code, device_key = _pair_body(body)
    limit = ctx.settings.devices.pair_per_address_per_minute
    try:
        await ratelimit.hit(ctx, "device-pair", address, limit, 60)
    except REDIS_DOWN:
        raise errors.Unavailable("Pairing is unavailable; try again shortly.") from None
    found = await ctx.db.run(device_of, window_code)
    given = token_digest(device_key) if _KEY_RE.fullmatch(device_key) else ""
    if found is None or not hmac.compare_digest(found[0], given or "-"):
        raise errors.Unauthenticated("Wrong window or device key.")
    token = secrets.token_urlsafe(32)
    digest = token_digest(token)
    ttl = ctx.settings.devices.token_days * 86400
    value = json.dumps({"window": window_code, "generation": found[1]})
    try:
        async with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.set(_token_key(ctx, digest), value, ex=ttl)
            pipe.sadd(_window_tokens(ctx, window_code), digest)
            pipe.expire(_window_tokens(ctx, window_code), ttl)
            await pipe.execute()
    except REDIS_DOWN:
        raise errors.Unavailable("Pairing is unavailable; try again shortly.") from None
    return token


async def authenticate(ctx: Context, token: str | None, renew: bool = False) -> DeviceSession:
    """The screen a device token pairs (401 ``unauthenticated`` otherwise: unknown, expired,
    or paired under a key since rotated). ``renew`` restarts the token's life."""
    if not token or len(token) > 128:
        raise errors.Unauthenticated("Pair this screen with the window's device key.")
    key = _token_key(ctx, token_digest(token))
    try:
        raw = await ctx.redis.get(key)
    except REDIS_DOWN:
        raise errors.Unavailable("The screen cannot be checked; try again shortly.") from None
    if raw is None:
        raise errors.Unauthenticated("This screen is not paired (or no longer); pair it again.")
    stored = json.loads(raw)
    found = await ctx.db.run(device_of, stored["window"])
    if found is None or found[1] != stored["generation"]:
        raise errors.Unauthenticated("The window's device key was changed; pair it again.")
    if renew:
        ttl = ctx.settings.devices.token_days * 86400
        with contextlib.suppress(*REDIS_DOWN):  # it lives on until its old expiry
            async with ctx.redis.pipeline(transaction=False) as pipe:
                pipe.expire(key, ttl)
                pipe.expire(_window_tokens(ctx, stored["window"]), ttl)  # see has_pairings
                await pipe.execute()
    return DeviceSession(stored["window"])


async def has_pairings(ctx: Context, window_code: str) -> bool:
    """Some screen is paired with the window (one Redis call, no database)."""
    return bool(await ctx.redis.scard(_window_tokens(ctx, window_code)))
