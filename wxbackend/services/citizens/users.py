"""Citizens as the API shows them: the user and their identity summary."""

from __future__ import annotations

from typing import Any

from models.base import utcnow
from models.identity import Identity
from models.user import User
from wxbackend.services.cases.scan import pending_cases
from wxbackend.timefmt import iso


def upsert_wechat_user(openid: str, unionid: str | None, session_key_enc: str) -> int:
    """Create or update the user of ``openid`` (one atomic statement: concurrent logins of a
    new user never create two rows). Returns the user id."""
    now = utcnow()
    values: dict[Any, Any] = {User.session_key_enc: session_key_enc, User.last_login_at: now}
    if unionid:
        values[User.unionid] = unionid
    (
        User.insert(
            openid=openid,
            unionid=unionid,
            session_key_enc=session_key_enc,
            created_at=now,
            last_login_at=now,
        )
        .on_conflict(conflict_target=[User.openid], update=values)
        .execute()
    )
    return User.select(User.id).where(User.openid == openid).scalar()


def identity_summary(user_id: int) -> dict[str, Any]:
    """``{verified, name_masked, verified_at}``: always an object, nulls when unverified."""
    identity = Identity.get_or_none((Identity.user == user_id) & (Identity.expires_at > utcnow()))
    if identity is None:
        return {"verified": False, "name_masked": None, "verified_at": None}
    return {
        "verified": True,
        "name_masked": identity.name_masked,
        "verified_at": iso(identity.verified_at),
    }


def profile(user_id: int, window_days: int = 7) -> dict[str, Any]:
    """What ``GET /me`` shows: the user, their identity summary, their unrated cases
    (``pending_cases``: still inside their ``rating.window_days`` window, see
    :mod:`wxbackend.services.ratings.window`)."""
    identity = identity_summary(user_id)
    return {
        "user": {
            "id": str(user_id),
            "verified": identity["verified"],
            "name_masked": identity["name_masked"],
        },
        "identity": identity,
        "pending_cases": pending_cases(user_id, window_days) if identity["verified"] else [],
    }
