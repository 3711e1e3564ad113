"""Device keys and device tokens of evaluator screens.

A **device key** is made for a window by an admin who may change that window's center
(``catalogue.write``), shown once, and stored as its SHA-256 (:func:`token_digest`, like
partner and QR tokens: it is random, 120 bits, never a password). Making a new one rotates
it: the window's ``generation`` grows, so every device token paired under the old key fails
from then on, and :func:`end_pairings` drops those tokens and ends the open streams.

A **device token** is what the screen keeps (``localStorage``) after pairing: 256 random bits,
kept as its digest with the window and generation for ``devices.token_days`` (renewed on each
connection): in the database, cached in Redis (:mod:`.tokens`), so a Redis restarted empty
unpairs no screen; a rotation ends the window's tokens there too.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

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
from wxbackend.services.common import outages
from wxbackend.services.devices import events, tokens

KEY_BYTES = 15  # 120 bits → 24 base32 characters, shown in groups of 4
WINDOW_CODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY_RE = re.compile(r"[A-Z2-7]{24}")
WRITE = "catalogue.write"
#: What Redis being unreachable raises (one definition, beside the tokens' cache).
REDIS_DOWN = tokens.REDIS_DOWN


def redis_unavailable(ctx: Context, exc: BaseException) -> errors.ContractError:
    """The answer to Redis failing under a screen's request: the outage's 503 (``dependency``
    ``redis``, ``retry``; noted once, as for every request: common.outages)."""
    return outages.handle(ctx, exc) or errors.Unavailable(
        "Redis (the server's shared cache) is not answering; try again shortly.",
        retry=True,
        dependency=outages.REDIS,
        retry_after=outages.RETRY_AFTER_SECONDS,
    )


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


async def create_key(ctx: Context, actor: Actor, principal: Principal, window_code: str) -> str:
    """``POST /admin/api/windows/{code}/device-key``: a new key, shown once; the screens
    paired with the old one lose their pairing at once."""
    key = new_device_key()
    await ctx.db.run(rotate_key, actor, principal, window_code, token_digest(normalize_key(key)))
    await end_pairings(ctx, window_code)
    await events.publish(ctx, window_code, {"event": "revoked"})  # open streams end
    return key


async def end_pairings(ctx: Context, window_code: str) -> None:
    """End the window's device tokens (the database, then Redis's copies)."""
    await tokens.end_window(ctx, window_code)


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
    except REDIS_DOWN as exc:
        raise redis_unavailable(ctx, exc) from None
    found = await ctx.db.run(device_of, window_code)
    given = token_digest(device_key) if _KEY_RE.fullmatch(device_key) else ""
    if found is None or not hmac.compare_digest(found[0], given or "-"):
        raise errors.Unauthenticated("Wrong window or device key.")
    token = secrets.token_urlsafe(32)
    ttl = ctx.settings.devices.token_days * 86400
    if not await tokens.store(ctx, token_digest(token), window_code, found[1], ttl):
        raise errors.Unauthenticated("Wrong window or device key.")  # deleted meanwhile
    return token


async def authenticate(ctx: Context, token: str | None, renew: bool = False) -> DeviceSession:
    """The screen a device token pairs (401 ``unauthenticated`` otherwise: unknown, expired,
    ended, or paired under a key since rotated). ``renew`` restarts the token's life."""
    if not token or len(token) > 128:
        raise errors.Unauthenticated("Pair this screen with the window's device key.")
    digest = token_digest(token)
    try:
        stored = await tokens.find(ctx, digest)
    except REDIS_DOWN as exc:
        raise redis_unavailable(ctx, exc) from None
    if stored is None:
        raise errors.Unauthenticated("This screen is not paired (or no longer); pair it again.")
    found = await ctx.db.run(device_of, stored["window"])
    if found is None or found[1] != stored["generation"]:
        raise errors.Unauthenticated("The window's device key was changed; pair it again.")
    if renew:
        await tokens.renew(ctx, digest, ctx.settings.devices.token_days * 86400)
    return DeviceSession(stored["window"])


async def has_pairings(ctx: Context, window_code: str) -> bool:
    """Some screen is paired with the window (one Redis call; the database on a miss)."""
    return await tokens.paired(ctx, window_code)
