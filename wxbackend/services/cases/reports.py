"""Cases (办件) reported by partner systems, and their one-time QR tokens (一次性二维码).

A window/case system reports each finished case (:func:`report_case`); the answer carries the
first one-time token, the *scene* of the case's mini-program code. A fresh token can be asked
for at any time before the case is rated (:func:`renew_token`), which revokes the earlier
active ones. :func:`qrcode_image` turns a usable scene into the code image (cached in Redis for
the token's life).

A scene is ``secrets.token_urlsafe(24)``: 32 characters of ``[A-Za-z0-9_-]``, 192 random bits.
Only its SHA-256 (:func:`wxbackend.security.token_digest`) is stored. Its life is
``qr.ttl_days`` but never past ``completed_at + rating.default_after_days`` (after which the
case gets its default rating); a case reported after that window still gets its token, born
expired.

Stable names the citizen side uses (scan, evaluations):

- :func:`token_state` ``(scene) -> (QrToken | None, Case | None)`` — sync, run via ``ctx.db.run``.
- :func:`check_token_usable` ``(token, case=None, now=None)`` — raises ``TokenNotFound`` /
  ``TokenUsed`` / ``TokenRevoked`` / ``TokenExpired``.
- :func:`valid_scene`, :data:`SCENE_RE`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee
import redis.exceptions
from stdnum.cn import ric, uscc

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import normalize_id_number, token_digest
from wxbackend.services.messaging import schedule
from wxbackend.settings import Settings
from wxbackend.timefmt import parse_iso
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.cases")

SCENE_BYTES = 24
#: What a scene looks like (the contract allows 22–32 chars; we issue 32).
SCENE_RE = re.compile(r"[A-Za-z0-9_-]{22,32}")
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
    if len(id_number) != 18 or not ric.is_valid(id_number):
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


# --------------------------------------------------------------------------- tokens


def new_scene() -> str:
    """A fresh scene: 32 characters of ``[A-Za-z0-9_-]`` (192 bits from ``secrets``)."""
    return secrets.token_urlsafe(SCENE_BYTES)


def valid_scene(scene: Any) -> bool:
    """True when ``scene`` has the scene format (it may still be unknown)."""
    return isinstance(scene, str) and SCENE_RE.fullmatch(scene) is not None


def token_expiry(
    now: datetime, completed_at: datetime, ttl_days: int, rating_window_days: int
) -> datetime:
    """``now + ttl_days``, but never after ``completed_at + rating_window_days``."""
    return min(now + timedelta(days=ttl_days), completed_at + timedelta(days=rating_window_days))


def _new_token() -> tuple[str, str]:
    scene = new_scene()
    return scene, token_digest(scene)


def _expiry_for(ctx: Context, completed_at: datetime) -> datetime:
    return token_expiry(
        utcnow(), completed_at, ctx.settings.qr.ttl_days, ctx.settings.rating.default_after_days
    )


def token_state(scene: str) -> tuple[QrToken | None, Case | None]:
    """The token a scene names and its case, or ``(None, None)``. Sync: run via ``ctx.db.run``.

    The citizen side (``/scan``, ``/evaluations``) calls this, then :func:`check_token_usable`.
    """
    if not valid_scene(scene):
        return None, None
    token = (
        QrToken.select(QrToken, Case)
        .join(Case)
        .where(QrToken.token_hash == token_digest(scene))
        .first()
    )
    if token is None:
        return None, None
    return token, token.case


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
    if Case.select().where(Case.case_no == report.case_no).exists():
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
            if settings is not None:
                schedule.schedule_case_jobs(case, settings)
    except peewee.IntegrityError:
        if Case.select().where(Case.case_no == report.case_no).exists():
            raise errors.CaseExists() from None
        raise
    return case.id


def replace_token(
    case_no: str, token_hash: str, ttl_days: int, rating_window_days: int
) -> tuple[int, datetime, list[str]]:
    """Revoke the case's active tokens and add a new one, in one transaction.

    Returns ``(case_id, expires_at, revoked_hashes)``. 404 ``not_found`` for an unknown case,
    409 ``already_evaluated`` once it is rated. Sync: run via ``ctx.db.run``.
    """
    with database.atomic():
        query = Case.select().where(Case.case_no == case_no)
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
        expires_at = token_expiry(utcnow(), case.completed_at, ttl_days, rating_window_days)
        QrToken.create(case=case, token_hash=token_hash, expires_at=expires_at)
    return case.id, expires_at, revoked


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
    scene, token_hash = _new_token()
    expires_at = _expiry_for(ctx, report.completed_at)
    case_id = await ctx.db.run(
        store_case, report, sealed, partner_id, token_hash, expires_at, ctx.settings
    )
    return IssuedToken(case_id, scene, expires_at)


async def renew_token(ctx: Context, case_no: str) -> IssuedToken:
    """``POST /partner/cases/{case_no}/qrcode``: a fresh token; earlier active ones revoked."""
    if not CASE_NO_RE.fullmatch(case_no):
        raise errors.NotFound("No such case.")
    scene, token_hash = _new_token()
    case_id, expires_at, revoked = await ctx.db.run(
        replace_token,
        case_no,
        token_hash,
        ctx.settings.qr.ttl_days,
        ctx.settings.rating.default_after_days,
    )
    if revoked:
        await _forget_images(ctx, revoked)
    return IssuedToken(case_id, scene, expires_at)


# --------------------------------------------------------------------------- the code image


def _image_key(ctx: Context, token_hash: str) -> str:
    return ctx.rkeys("qrpng", token_hash)


async def _forget_images(ctx: Context, token_hashes: list[str]) -> None:
    try:
        await ctx.redis.delete(*[_image_key(ctx, h) for h in token_hashes])
    except redis.exceptions.RedisError as exc:  # the TTL cleans up anyway
        log.warning("qrcode cache: delete failed", extra={"fields": {"error": type(exc).__name__}})


def code_options(ctx: Context) -> dict[str, Any]:
    """``page`` / ``check_path`` / ``env_version`` / ``width`` of the mini-program code, from
    the WeChat configuration in force (admin-stored over environment over file)."""
    wechat = ctx.wechat_config.config()
    return {
        "page": wechat.miniprogram_page,
        "check_path": wechat.check_path,
        "env_version": wechat.env_version,
        "width": ctx.settings.qr.width,
    }


def image_type(image: bytes) -> str:
    """The MIME type of WeChat's image bytes (PNG usually, JPEG sometimes)."""
    return "image/jpeg" if image.startswith(b"\xff\xd8") else "image/png"


async def _cached_image(ctx: Context, key: str) -> bytes | None:
    try:
        cached = await ctx.redis.get(key)
    except redis.exceptions.RedisError as exc:
        log.warning("qrcode cache: read failed", extra={"fields": {"error": type(exc).__name__}})
        return None
    if not cached:
        return None
    try:
        return base64.b64decode(cached, validate=True)
    except (binascii.Error, ValueError):
        return None


async def qrcode_image(ctx: Context, scene: str) -> bytes:
    """``GET /partner/qrcode.png``: the code image of a usable token (404/410 otherwise).

    Cached in Redis (base64, the client decodes responses as text) under the token's hash until
    the token expires. WeChat failing → 503 ``wechat_unavailable``. The scene is never logged.
    """
    token, case = await ctx.db.run(token_state, scene)
    token = check_token_usable(token, case)
    key = _image_key(ctx, token.token_hash)
    image = await _cached_image(ctx, key)
    if image is not None:
        return image
    try:
        image = await ctx.wechat.get_wxacode_unlimit(scene, **code_options(ctx))
    except wx.WeChatError as exc:
        log.warning(
            "qrcode: WeChat failed",
            extra={"fields": {"endpoint": "getwxacodeunlimit", "errcode": str(exc.errcode)}},
        )
        raise errors.WeChatUnavailable(
            f"WeChat did not make the code (errcode {exc.errcode}); try again later."
        ) from None
    ttl = int((token.expires_at - utcnow()).total_seconds())
    if ttl > 0:
        try:
            await ctx.redis.set(key, base64.b64encode(image).decode("ascii"), ex=ttl)
        except redis.exceptions.RedisError as exc:
            log.warning(
                "qrcode cache: write failed", extra={"fields": {"error": type(exc).__name__}}
            )
    return image
