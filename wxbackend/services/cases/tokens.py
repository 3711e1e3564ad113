"""One-time QR tokens (一次性二维码): a case's scene, its life, whether it may still be used,
and replacing it.

A scene is ``secrets.token_urlsafe(24)``: 32 characters of ``[A-Za-z0-9_-]``, 192 random bits.
Only its SHA-256 (:func:`wxbackend.security.token_digest`) is stored. Its life is
``qr.ttl_days`` but never past the case's rating window
(:func:`wxbackend.services.ratings.window.window_end`, after which the case gets its default
rating); the window runs from the later of completion and report, so a case reported late
gets a full-length token too. Rating a case closes every token of it (the rating writer); a
partner may ask for a fresh one before that (:func:`replace_token`), which revokes the earlier
active ones.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from models.base import utcnow
from models.case import Case, QrToken
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import token_digest
from wxbackend.services.ratings.window import case_window_end

SCENE_BYTES = 24
#: What a scene looks like (the contract allows 22–32 chars; we issue 32).
SCENE_RE = re.compile(r"[A-Za-z0-9_-]{22,32}")


def new_scene() -> str:
    """A fresh scene: 32 characters of ``[A-Za-z0-9_-]`` (192 bits from ``secrets``)."""
    return secrets.token_urlsafe(SCENE_BYTES)


def new_token() -> tuple[str, str]:
    """A fresh scene and the digest stored for it: ``(scene, token_hash)``."""
    scene = new_scene()
    return scene, token_digest(scene)


def valid_scene(scene: Any) -> bool:
    """True when ``scene`` has the scene format (it may still be unknown)."""
    return isinstance(scene, str) and SCENE_RE.fullmatch(scene) is not None


def token_expiry(now: datetime, window_end: datetime, ttl_days: int) -> datetime:
    """``now + ttl_days``, but never after the end of the case's rating window
    (:func:`wxbackend.services.ratings.window.window_end`)."""
    return min(now + timedelta(days=ttl_days), window_end)


def check_token_usable(
    token: QrToken | None, case: Case | None = None, now: datetime | None = None
) -> QrToken:
    """``token`` if it may still be used; else the contract error.

    404 ``token_not_found`` (None), 410 ``token_used`` (consumed, or — when ``case`` is given —
    the case was rated by any channel), 410 ``token_revoked`` (a newer code replaced it),
    410 ``token_expired`` (past ``expires_at``). Used/revoked win over expired.
    """
    if token is None:
        raise errors.TokenNotFound()
    if token.status == "used":
        raise errors.TokenUsed()
    if case is not None and case.first_rated_at is not None:
        raise errors.TokenUsed("This case has already been rated.")
    if token.status == "revoked":
        raise errors.TokenRevoked()
    if token.expires_at <= (now or utcnow()):
        raise errors.TokenExpired()
    return token


def replace_token(
    partner_id: int, case_no: str, token_hash: str, ttl_days: int, rating_window_days: int
) -> tuple[int, datetime, list[str]]:
    """Revoke the case's active tokens and add a new one, in one transaction.

    Returns ``(case_id, expires_at, revoked_hashes)``. 404 ``not_found`` for a case this
    partner did not report,
    409 ``already_evaluated`` once it is rated. Sync: run via ``ctx.db.run``.
    """
    with database.atomic():
        query = Case.select().where((Case.case_no == case_no) & (Case.partner == partner_id))
        if database.for_update:  # PostgreSQL: serialise renewals of one case
            query = query.for_update()
        case = query.first()
        if case is None:
            raise errors.NotFound("No such case.")
        if case.first_rated_at is not None:
            raise errors.AlreadyEvaluated()
        active = QrToken.select(QrToken.id, QrToken.token_hash).where(
            (QrToken.case == case) & (QrToken.status == "active")
        )
        revoked = [t.token_hash for t in active]
        if revoked:
            QrToken.update(status="revoked").where(
                (QrToken.case == case) & (QrToken.status == "active")
            ).execute()
        expires_at = token_expiry(utcnow(), case_window_end(case, rating_window_days), ttl_days)
        QrToken.create(case=case, token_hash=token_hash, expires_at=expires_at)
    return case.id, expires_at, revoked
