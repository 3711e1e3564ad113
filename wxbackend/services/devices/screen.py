"""What a window's evaluator screen shows: the case just finished there and its one-time code.

**A case reaches the screen** when a partner reports it with that ``window_code``
(:func:`case_reported`, called after the report commits) and the window has a paired screen.
The screen gets a code of its own — a new QR token of the case, living
``devices.code_seconds`` (never past the case's rating window). The partner's token from the
report stays valid: a case has several active codes, and its first rating closes them all
(the rating writer), so the code is still single-use per rating. The screen's state is kept in
Redis (``device-screen:<window>``: the case, the scene encrypted, its expiry, how long it is
shown) and announced on the window's channel (``case``), so every process's streams show it
within a second.

**Renewal**: ``devices.renew_before_seconds`` before the code expires, a stream of the window
asks :func:`renew_if_due`; one of them (a Redis lock) issues a fresh token and announces it.
The old token is NOT revoked: it simply lapses at its expiry. A citizen who scanned the old
code just before the renewal (the screen showed it until then) is mid-flow — face check, then
the rating — and still has at least ``renew_before_seconds`` to finish; revoking it would
turn their submission into 410 ``token_revoked``. A partner's own renewal
(``POST /partner/cases/{case_no}/qrcode``) does revoke every active token, the screen's
included; the next renewal check (each heartbeat) sees the revoked token and issues a new one.

**The next case** at the window replaces the state; the earlier case's screen code is not
revoked either (its citizen may still be rating) and lapses by itself.

**Rating**: the rating writer calls :func:`case_rated` after commit; when that case is on a
screen, the state goes and ``rated`` is announced (the screen thanks the citizen, then idles
after ``devices.thanks_seconds``). A case shown ``devices.show_seconds`` without a rating
leaves the screen (idle) by itself.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from models.base import utcnow
from models.case import Case, QrToken
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import DecryptionError
from wxbackend.services.cases import images
from wxbackend.services.cases.tokens import new_token, token_expiry
from wxbackend.services.devices import events, pairing
from wxbackend.services.ratings.window import case_window_end
from wxbackend.timefmt import iso

log = logging.getLogger("wxbackend.devices")

SCENE_CONTEXT = "device.scene"
QR_PATH = "/api/v1/device/qrcode.png"
#: A code with less life than this is not worth showing.
MIN_LIFE = timedelta(seconds=30)
RENEW_LOCK_SECONDS = 5


def mask_case_no(case_no: str) -> str:
    """``A2026050112345`` → ``A20*******2345``: enough for the clerk and the citizen to
    recognise their case, not enough to read it off a photo of the screen."""
    keep = max(1, len(case_no) // 4)
    if len(case_no) <= 2 * keep:
        return "*" * len(case_no)
    return case_no[:keep] + "*" * (len(case_no) - 2 * keep) + case_no[-keep:]


def add_screen_token(
    case_id: int, token_hash: str, code_seconds: int, ttl_days: int, window_days: int
) -> dict[str, Any] | None:
    """Add a QR token of the case for its screen (earlier tokens stay active); the case's
    number, item and the token's expiry — None when the case is rated or its rating window
    is (nearly) over. Sync: run via ``ctx.db.run``."""
    now = utcnow()
    with database.atomic():
        case = Case.get_or_none(Case.id == case_id)
        if case is None or case.first_rated_at is not None:
            return None
        expires_at = min(
            now + timedelta(seconds=code_seconds),
            token_expiry(now, case_window_end(case, window_days), ttl_days),
        )
        if expires_at - now < MIN_LIFE:
            return None
        QrToken.create(case=case.id, token_hash=token_hash, expires_at=expires_at)
        return {"case_no": case.case_no, "item": case.item.name, "expires_at": expires_at}


def token_active(token_hash: str) -> bool:
    """The screen's token is still active (not revoked by a partner, not used)."""
    token = QrToken.get_or_none(QrToken.token_hash == token_hash)
    return token is not None and token.status == "active"


# --------------------------------------------------------------------------- state


def _state_key(ctx: Context, window_code: str) -> str:
    return ctx.rkeys("device-screen", window_code)


def _case_key(ctx: Context, case_id: int) -> str:
    return ctx.rkeys("device-case", str(case_id))


def case_event(state: dict[str, Any]) -> dict[str, Any]:
    """The ``case`` event of a state: ``{case_no_masked, item, qr_url, expires_at}``;
    ``qr_url`` changes with each code, so the screen fetches the new image."""
    return {
        "case_no_masked": state["case_no_masked"],
        "item": state["item"],
        "qr_url": f"{QR_PATH}?v={state['token_hash'][:12]}",
        "expires_at": iso(datetime.fromtimestamp(state["expires"], UTC)),
    }


def case_message(ctx: Context, state: dict[str, Any]) -> dict[str, Any]:
    """The ``case`` message on the window's channel: the event, and when (epoch seconds) to
    renew its code and to drop it from the screen, so the streams need not ask Redis."""
    return {
        "event": "case",
        "data": case_event(state),
        "renew_at": state["expires"] - ctx.settings.devices.renew_before_seconds,
        "shown_until": state["shown_until"],
    }


async def current(ctx: Context, window_code: str) -> dict[str, Any] | None:
    """The case on the window's screen (its stored state), or None (idle)."""
    raw = await ctx.redis.get(_state_key(ctx, window_code))
    return json.loads(raw) if raw else None


async def _show(
    ctx: Context, window_code: str, case_id: int, shown_until: float
) -> dict[str, Any] | None:
    """Issue a code for the case, store the window's state, announce ``case``. None (and
    the screen idles) when the case can no longer be rated."""
    settings = ctx.settings
    scene, token_hash = new_token()
    info = await ctx.db.run(
        add_screen_token,
        case_id,
        token_hash,
        settings.devices.code_seconds,
        settings.qr.ttl_days,
        settings.rating.default_after_days,
    )
    ttl = int(shown_until - time.time())
    if info is None or ttl <= 0:
        await _clear(ctx, window_code, case_id, "idle")
        return None
    expires = info["expires_at"].replace(tzinfo=UTC).timestamp()
    state = {
        "case_id": case_id,
        "case_no_masked": mask_case_no(info["case_no"]),
        "item": info["item"],
        "scene": ctx.cipher.encrypt(scene, SCENE_CONTEXT),
        "token_hash": token_hash,
        "expires": expires,
        "shown_until": shown_until,
    }
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.set(_state_key(ctx, window_code), json.dumps(state), ex=ttl)
        pipe.set(_case_key(ctx, case_id), window_code, ex=ttl)
        await pipe.execute()
    await events.publish(ctx, window_code, case_message(ctx, state))
    return state


async def _clear(ctx: Context, window_code: str, case_id: int, event: str) -> None:
    """The case leaves the screen (when it is still the one shown); announce ``event``."""
    state = await current(ctx, window_code)
    await ctx.redis.delete(_case_key(ctx, case_id))
    if state is None or state["case_id"] != case_id:
        return
    await ctx.redis.delete(_state_key(ctx, window_code))
    await events.publish(ctx, window_code, {"event": event})


# --------------------------------------------------------------------------- services


async def case_reported(ctx: Context, case_id: int, window_code: str | None) -> None:
    """After a report commits: show the case on the window's paired screen (if any). Best
    effort: the case is stored; a failure is logged, never the partner's error."""
    if not window_code:
        return
    try:
        if not await pairing.has_pairings(ctx, window_code):
            return
        await _show(ctx, window_code, case_id, time.time() + ctx.settings.devices.show_seconds)
    except Exception as exc:  # noqa: BLE001 - best effort, see above
        log.warning(
            "device: the case could not be shown",
            extra={"fields": {"case_id": case_id, "error": type(exc).__name__}},
        )


async def case_rated(ctx: Context, case_id: int) -> None:
    """After a rating commits: thank the citizen on the screen showing the case (if any)."""
    try:
        window_code = await ctx.redis.get(_case_key(ctx, case_id))
        if window_code is None:
            return
        if isinstance(window_code, bytes):
            window_code = window_code.decode()
        await _clear(ctx, window_code, case_id, "rated")
    except Exception as exc:  # noqa: BLE001 - the rating is stored; the screen idles anyway
        log.warning(
            "device: the rating could not be shown",
            extra={"fields": {"case_id": case_id, "error": type(exc).__name__}},
        )


async def renew_if_due(ctx: Context, window_code: str) -> None:
    """Issue a fresh code for the window's case when its code expires within
    ``devices.renew_before_seconds`` or was revoked (see the module notes); one process
    does it (a short Redis lock), every screen hears the new ``case``."""
    state = await current(ctx, window_code)
    if state is None:
        return
    due = state["expires"] - ctx.settings.devices.renew_before_seconds <= time.time()
    if not due and await ctx.db.run(token_active, state["token_hash"]):
        return
    lock = ctx.rkeys("device-renew", window_code)
    if not await ctx.redis.set(lock, "1", nx=True, ex=RENEW_LOCK_SECONDS):
        return
    await _show(ctx, window_code, state["case_id"], state["shown_until"])


async def qrcode(ctx: Context, session: pairing.DeviceSession) -> bytes:
    """``GET /api/v1/device/qrcode.png``: the code image of the case on this screen (404
    when idle; 410 once the code is used, revoked or expired)."""
    try:
        state = await current(ctx, session.window_code)
    except pairing.REDIS_DOWN as exc:
        raise pairing.redis_unavailable(ctx, exc) from None
    if state is None:
        raise errors.NotFound("No case is on this screen.")
    try:
        scene = ctx.cipher.decrypt(state["scene"], SCENE_CONTEXT)
    except DecryptionError:
        raise errors.NotFound("No case is on this screen.") from None
    return await images.qrcode_image(ctx, scene)
