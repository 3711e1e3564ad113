"""Cases (办件) reported by partner systems.

A window/case system reports each finished case (:func:`report_case`); the answer carries the
first one-time token, the *scene* of the case's mini-program code. A fresh token can be asked
for at any time before the case is rated (:func:`renew_token`), which revokes the earlier
active ones. The tokens' rules are in :mod:`wxbackend.services.cases.tokens`, the lookup of a
scanned code in :mod:`~wxbackend.services.cases.lookup`, the code image in
:mod:`~wxbackend.services.cases.images`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee
from stdnum.cn import uscc

from models.access import PartnerCenter
from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import normalize_id_number
from wxbackend.services.cases import images
from wxbackend.services.cases.tokens import new_token, replace_token, token_expiry
from wxbackend.services.citizens import id_numbers
from wxbackend.services.devices import screen
from wxbackend.services.messaging import schedule
from wxbackend.services.public import rollups
from wxbackend.services.ratings.window import window_end
from wxbackend.settings import Settings
from wxbackend.timefmt import parse_iso

log = logging.getLogger("wxbackend.cases")

CASE_NO_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PHONE_RE = re.compile(r"[0-9+-]{5,20}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: How far in the future ``completed_at`` may lie (clock differences between systems).
FUTURE_SLACK = timedelta(minutes=5)

NAME_CONTEXT = "case.applicant_name"
ID_CONTEXT = "case.applicant_id"
PHONE_CONTEXT = "case.applicant_phone"
ID_HASH_PURPOSE = "id_number"

APPLICANT_FIELDS = frozenset({"name", "id_number", "phone", "enterprise"})
ENTERPRISE_FIELDS = frozenset({"name", "credit_code"})


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Applicant:
    """The applicant (经办人) as reported, validated; ``id_number`` normalised (18 chars)."""

    name: str
    id_number: str
    phone: str | None
    enterprise_name: str | None
    enterprise_credit_code: str | None


@dataclass(frozen=True)
class CaseReport:
    """A validated case report (before the catalogue references are resolved)."""

    case_no: str
    item_code: str
    center_code: str
    department_code: str
    window_code: str | None
    window_staff_no: str | None
    approver_staff_no: str | None
    applicant: Applicant
    accepted_at: datetime
    completed_at: datetime


@dataclass(frozen=True)
class SealedApplicant:
    """The applicant as stored: ciphertexts and the keyed hash of the ID number."""

    name_enc: str
    id_enc: str
    id_hash: str
    phone_enc: str | None


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: the scene is shown once, to the partner, and never stored."""

    case_id: int
    scene: str
    expires_at: datetime


# --------------------------------------------------------------------------- validation


def _text(value: Any, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise errors.InvalidBody(f"Field {field} must be a string.", field=field)
    text = value.strip()
    if not 1 <= len(text) <= max_chars or _CONTROL_RE.search(text):
        raise errors.InvalidField(
            f"{field}: 1–{max_chars} characters, no control characters.", field=field
        )
    return text


def _optional_code(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not CASE_NO_RE.fullmatch(value):
        raise errors.InvalidField(f"{field}: 1–64 characters of [A-Za-z0-9_.-].", field=field)
    return value


def _time(value: str, field: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError:
        raise errors.InvalidField(
            f"{field}: an ISO 8601 time with offset, e.g. 2024-05-01T09:30:00+08:00.", field=field
        ) from None


def _object(value: Any, field: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.InvalidBody(f"Field {field} must be an object.", field=field)
    unknown = sorted(set(value) - allowed)
    if unknown:
        name = f"{field}.{unknown[0]}"
        raise errors.InvalidBody(f"Unknown field: {name}.", field=name)
    return value


def parse_applicant(value: Any) -> Applicant:
    """The ``applicant`` object → :class:`Applicant`; unknown fields → 400, bad values → 422."""
    data = _object(value, "applicant", APPLICANT_FIELDS)
    for required in ("name", "id_number"):
        if required not in data:
            name = f"applicant.{required}"
            raise errors.InvalidBody(f"Missing field: {name}.", field=name)
    name = _text(data["name"], "applicant.name", 64)
    raw_id = data["id_number"]
    if not isinstance(raw_id, str):
        raise errors.InvalidBody("Field applicant.id_number must be a string.")
    id_number = normalize_id_number(raw_id)
    if not id_numbers.is_valid(id_number):
        raise errors.InvalidApplicantIdNumber()
    phone = data.get("phone")
    if phone is not None:
        if not isinstance(phone, str):
            raise errors.InvalidBody("Field applicant.phone must be a string.")
        phone = phone.strip() or None
        if phone is not None and not PHONE_RE.fullmatch(phone):
            raise errors.InvalidField(
                "applicant.phone: 5–20 digits, '+' or '-'.", field="applicant.phone"
            )
    ent_name = ent_code = None
    if data.get("enterprise") is not None:
        ent = _object(data["enterprise"], "applicant.enterprise", ENTERPRISE_FIELDS)
        ent_name = _text(ent.get("name"), "applicant.enterprise.name", 200)
        raw_code = ent.get("credit_code")
        if not isinstance(raw_code, str):
            raise errors.InvalidBody("Field applicant.enterprise.credit_code must be a string.")
        ent_code = raw_code.strip().upper()
        if not uscc.is_valid(ent_code) or len(ent_code) != 18:
            raise errors.InvalidField(
                "applicant.enterprise.credit_code: not a valid unified social credit code.",
                field="applicant.enterprise.credit_code",
            )
    return Applicant(name, id_number, phone, ent_name, ent_code)


def parse_report(body: dict[str, Any], now: datetime | None = None) -> CaseReport:
    """A type-checked ``POST /partner/cases`` body → :class:`CaseReport` (422 on bad values).

    The handler has checked the top-level fields' presence and types already.
    """
    now = now or utcnow()
    case_no = body["case_no"]
    if not CASE_NO_RE.fullmatch(case_no):
        raise errors.InvalidField("case_no: 1–64 characters of [A-Za-z0-9_.-].", field="case_no")
    accepted_at = _time(body["accepted_at"], "accepted_at")
    completed_at = _time(body["completed_at"], "completed_at")
    if accepted_at > completed_at:
        raise errors.InvalidField("accepted_at is after completed_at.", field="accepted_at")
    if completed_at > now + FUTURE_SLACK:
        raise errors.InvalidField("completed_at is in the future.", field="completed_at")
    return CaseReport(
        case_no=case_no,
        item_code=body["item_code"],
        center_code=body["center_code"],
        department_code=body["department_code"],
        window_code=_optional_code(body.get("window_code"), "window_code"),
        window_staff_no=_optional_code(body.get("window_staff_no"), "window_staff_no"),
        approver_staff_no=_optional_code(body.get("approver_staff_no"), "approver_staff_no"),
        applicant=parse_applicant(body["applicant"]),
        accepted_at=accepted_at,
        completed_at=completed_at,
    )


# --------------------------------------------------------------------------- database work


def _resolve_catalog(report: CaseReport) -> dict[str, Any]:
    """Catalogue rows of a report, checked for consistency (422 ``unknown_*``)."""
    center = Center.get_or_none(Center.code == report.center_code)
    if center is None:
        raise errors.UnknownCenter(f"Unknown center {report.center_code!r}.")
    department = Department.get_or_none(Department.code == report.department_code)
    if department is None or department.center_id != center.id:
        raise errors.UnknownDepartment(
            f"Unknown department {report.department_code!r} in center {center.code!r}."
        )
    item = ServiceItem.get_or_none(ServiceItem.code == report.item_code)
    if item is None or item.department_id != department.id:
        raise errors.UnknownItem(
            f"Unknown service item {report.item_code!r} in department {department.code!r}."
        )
    window = None
    if report.window_code:
        window = Window.get_or_none(Window.code == report.window_code)
        if window is None or window.center_id != center.id:
            raise errors.InvalidField(
                f"Unknown window {report.window_code!r} in center {center.code!r}.",
                field="window_code",
            )
    window_staff = None
    if report.window_staff_no:
        window_staff = Staff.get_or_none((Staff.staff_no == report.window_staff_no) & Staff.active)
        if window_staff is None or window_staff.center_id != center.id:
            raise errors.UnknownStaff(
                f"Unknown window staff {report.window_staff_no!r} in center {center.code!r}."
            )
        if window_staff.role != "window":
            raise errors.UnknownStaff(f"Staff {report.window_staff_no!r} is not window staff.")
    elif window is not None:
        window_staff = window.staff  # the clerk who staffs the window
    approver = None
    if report.approver_staff_no:
        approver = Staff.get_or_none((Staff.staff_no == report.approver_staff_no) & Staff.active)
        if approver is None or approver.center_id != center.id:
            raise errors.UnknownStaff(
                f"Unknown approver {report.approver_staff_no!r} in center {center.code!r}."
            )
    return {
        "center": center,
        "department": department,
        "item": item,
        "window": window,
        "window_staff": window_staff,
        "approver": approver,
    }


def store_case(
    report: CaseReport,
    sealed: SealedApplicant,
    partner_id: int | None,
    token_hash: str,
    expires_at: datetime,
    settings: Settings | None = None,
) -> int:
    """Insert the case and its first token in one transaction; the case id.

    409 ``case_exists`` when ``case_no`` is taken — the unique constraint decides, so
    concurrent reports of one case_no give exactly one case. With ``settings``, the same
    transaction schedules the case's default rating and reminders
    (:func:`wxbackend.services.messaging.schedule.schedule_case_jobs`). Sync: run via
    ``ctx.db.run``.
    """
    refs = _resolve_catalog(report)
    _check_serves(partner_id, refs["center"])
    mine = (Case.case_no == report.case_no) & (Case.partner == partner_id)
    if Case.select().where(mine).exists():
        raise errors.CaseExists()
    try:
        with database.atomic():
            case = Case.create(
                case_no=report.case_no,
                **refs,
                applicant_name_enc=sealed.name_enc,
                applicant_id_enc=sealed.id_enc,
                applicant_id_hash=sealed.id_hash,
                applicant_phone_enc=sealed.phone_enc,
                enterprise_name=report.applicant.enterprise_name,
                enterprise_credit_code=report.applicant.enterprise_credit_code,
                accepted_at=report.accepted_at,
                completed_at=report.completed_at,
                partner=partner_id,
            )
            QrToken.create(case=case, token_hash=token_hash, expires_at=expires_at)
            rollups.case_reported(case)
            if settings is not None:
                schedule.schedule_case_jobs(case, settings)
    except peewee.IntegrityError:
        if Case.select().where(mine).exists():
            raise errors.CaseExists() from None
        raise
    return case.id


def _check_serves(partner_id: int | None, center: Center) -> None:
    """403 ``beyond_reach`` when the partner is bound to centers and this is not one."""
    if partner_id is None:
        return
    served = [
        pc.center_id for pc in PartnerCenter.select().where(PartnerCenter.partner == partner_id)
    ]
    if served and center.id not in served:
        raise errors.BeyondReach("This partner key does not serve that center.")


# --------------------------------------------------------------------------- services


def seal_applicant(ctx: Context, applicant: Applicant) -> SealedApplicant:
    """Encrypt the applicant's personal data and hash the ID number (keyed)."""
    cipher = ctx.cipher
    return SealedApplicant(
        name_enc=cipher.encrypt(applicant.name, NAME_CONTEXT),
        id_enc=cipher.encrypt(applicant.id_number, ID_CONTEXT),
        id_hash=ctx.hasher.hash(applicant.id_number, ID_HASH_PURPOSE),
        phone_enc=cipher.encrypt(applicant.phone, PHONE_CONTEXT) if applicant.phone else None,
    )


async def report_case(ctx: Context, partner_id: int, body: dict[str, Any]) -> IssuedToken:
    """``POST /partner/cases``: validate, store the case (applicant encrypted), issue a token."""
    report = parse_report(body)
    sealed = seal_applicant(ctx, report.applicant)
    scene, token_hash = new_token()
    now = utcnow()  # the case's reported_at is stamped when it is stored, a moment later
    end = window_end(report.completed_at, now, ctx.settings.rating.window_days)
    expires_at = token_expiry(now, end, ctx.settings.qr.ttl_days)
    case_id = await ctx.db.run(
        store_case, report, sealed, partner_id, token_hash, expires_at, ctx.settings
    )
    await screen.case_reported(ctx, case_id, report.window_code)  # the window's 评价器
    return IssuedToken(case_id, scene, expires_at)


async def renew_token(ctx: Context, partner_id: int, case_no: str) -> IssuedToken:
    """``POST /partner/cases/{case_no}/qrcode``: a fresh token; earlier active ones revoked.
    Only the partner that reported the case renews its code (another partner: 404)."""
    if not CASE_NO_RE.fullmatch(case_no):
        raise errors.NotFound("No such case.")
    scene, token_hash = new_token()
    case_id, expires_at, revoked = await ctx.db.run(
        replace_token,
        partner_id,
        case_no,
        token_hash,
        ctx.settings.qr.ttl_days,
        ctx.settings.rating.window_days,
    )
    if revoked:
        await images.forget_images(ctx, revoked)
    return IssuedToken(case_id, scene, expires_at)
