"""Scanning a case's one-time QR code (扫码) and the case summary the rating form shows.

``POST /scan {scene}`` resolves the scene (the one-time token itself) to its case and answers
the summary of the case (service item, center, window staff, approver, department), the
token's expiry and the rating form (levels, stages, targets, indicators). Viewing needs a
login only; rating (``services.ratings.submit``) needs the verified identity.
``GET /cases/{case_id}`` answers the same summary to the case's own applicant only.

Never answered here: the applicant's name, ID number or phone. Nothing pre-selects a level
(product.md rule 11): the form lists the levels and no default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from peewee import Field, Query

from models.base import utcnow
from models.case import Case
from models.catalog import Center, ServiceItem
from models.evaluation import Indicator
from models.identity import Identity
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import compiled_rows
from wxbackend.services.cases.lookup import CaseRows, find_case, find_code
from wxbackend.services.cases.tokens import check_token_usable
from wxbackend.services.ratings import levels, window
from wxbackend.timefmt import iso

# --------------------------------------------------------------------------- pure helpers


def rate_until(case: Case, window_days: int) -> datetime:
    """The end of the case's rating window (:func:`window.case_window_end`): after it the
    default rating (基本满意) applies and citizen ratings are refused."""
    return window.case_window_end(case, window_days)


def parse_id(value: Any) -> int | None:
    """A row id as the API shows it (a string of digits; an int in a body) → int, else None
    (then the caller answers 404)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value < 2**63 else None


# --------------------------------------------------------------------------- database side


def active_identity(user_id: int, now: datetime | None = None) -> Identity | None:
    """The user's verified identity if it has not expired, else None."""
    return Identity.get_or_none(
        (Identity.user == user_id) & (Identity.expires_at > (now or utcnow()))
    )


def case_summary(rows: CaseRows) -> dict[str, Any]:
    """What the rating form shows of a case (api.md ``/scan``): catalogue data only."""
    if not (rows.item and rows.center and rows.department):  # callers check it first
        raise errors.NotFound("The case's catalogue rows are missing.")
    staff, approver = rows.window_staff, rows.approver
    return {
        "id": str(rows.case.id),
        "item": {"code": rows.item.code, "name": rows.item.name},
        "center": {"code": rows.center.code, "name": rows.center.name},
        "window_staff": (
            {"name": staff.name, "staff_no": staff.staff_no, "photo_url": staff.photo_url or None}
            if staff is not None
            else None
        ),
        "approver": {"name": approver.name} if approver is not None else None,
        "department": {"code": rows.department.code, "name": rows.department.name},
        "completed_at": iso(rows.case.completed_at),
    }


def _active_indicators() -> tuple[Query, Sequence[Field]]:
    fields = (Indicator.code, Indicator.label)
    query = (
        Indicator.select(*fields)
        .where(Indicator.active == True)  # noqa: E712 - peewee expression
        .order_by(Indicator.sort_order, Indicator.id)
    )
    return query, fields


def rating_form() -> dict[str, Any]:
    """The form's choices: levels (5 → 1), stages, targets and the active indicators.

    Nothing is marked as selected or default: the citizen chooses every level.
    """
    indicators = compiled_rows("scan.indicators", _active_indicators)
    return {
        "levels": [
            {"value": level, "label": levels.LEVEL_LABELS[level]}
            for level in sorted(levels.LEVELS, reverse=True)
        ],
        "stages": [{"code": code, "label": label} for code, label in levels.STAGE_LABELS],
        "targets": [{"code": code, "label": label} for code, label in levels.TARGET_LABELS],
        "indicators": [{"code": code, "label": label} for code, label in indicators],
    }


def scan_view(scene: str, window_days: int = 7, now: datetime | None = None) -> dict[str, Any]:
    """``POST /scan``: the usable token's case summary, its ``expires_at`` and the form.

    Past the case's rating window (and not rated within it) 410 ``rating_closed``, as a
    rating by this scene would answer (:func:`window.check_open`). One query for the token,
    its case and the catalogue rows (:func:`lookup.find_code`), one for the indicators."""
    found = find_code(scene)
    if found is None:
        raise errors.TokenNotFound()
    now = now or utcnow()
    window.check_open(found.case, window_days, now)
    check_token_usable(found.token, found.case, now)
    if not found.rows.catalogue_complete:
        raise errors.TokenNotFound()
    summary = case_summary(found.rows)
    return {"case": summary, "expires_at": iso(found.token.expires_at), "form": rating_form()}


def applicant_case_view(user_id: int, case_id: str, window_days: int) -> dict[str, Any]:
    """``GET /cases/{case_id}``: the summary for the case's own verified applicant.

    No verified identity → 403 ``identity_required``; unknown case → 404; another person's
    case → 403 ``not_applicant``. ``expires_at`` is the end of the rating window; ``rated``
    says whether the case already has its rating.
    """
    identity = active_identity(user_id)
    if identity is None:
        raise errors.IdentityRequired()
    number = parse_id(case_id)
    rows = find_case(number) if number is not None else None
    if rows is None or not rows.catalogue_complete:
        raise errors.NotFound("No such case.")
    if rows.case.applicant_id_hash != identity.id_hash:
        raise errors.NotApplicant()
    return {
        "case": case_summary(rows),
        "expires_at": iso(rate_until(rows.case, window_days)),
        "rated": rows.case.first_rated_at is not None,
        "form": rating_form(),
    }


def pending_cases(user_id: int, window_days: int, limit: int = 50) -> list[dict[str, Any]]:
    """The caller's unrated cases still inside their rating window (:mod:`window`), newest
    first.

    Matched by the verified identity's keyed hash (``Case.applicant_id_hash``); an unverified
    user has none. Each: ``{case_id, item, center, completed_at, rate_until}`` (never a scene).
    """
    identity = active_identity(user_id)
    if identity is None:
        return []
    rows = (
        Case.select(Case, ServiceItem, Center)
        .join_from(Case, ServiceItem)
        .join_from(Case, Center)
        .where(
            (Case.applicant_id_hash == identity.id_hash)
            & Case.first_rated_at.is_null()
            & window.open_sql(window_days, utcnow())
        )
        .order_by(Case.completed_at.desc(), Case.id.desc())
        .limit(limit)
    )
    return [
        {
            "case_id": str(case.id),
            "item": {"code": case.item.code, "name": case.item.name},
            "center": {"code": case.center.code, "name": case.center.name},
            "completed_at": iso(case.completed_at),
            "rate_until": iso(rate_until(case, window_days)),
        }
        for case in rows
    ]


# --------------------------------------------------------------------------- the flow


async def scan(ctx: Context, scene: str) -> dict[str, Any]:
    """``POST /scan``: see :func:`scan_view`."""
    return await ctx.db.run(scan_view, scene, ctx.settings.rating.window_days)


async def applicant_case(ctx: Context, user_id: int, case_id: str) -> dict[str, Any]:
    """``GET /cases/{case_id}``: see :func:`applicant_case_view`."""
    return await ctx.db.run(applicant_case_view, user_id, case_id, ctx.settings.rating.window_days)
