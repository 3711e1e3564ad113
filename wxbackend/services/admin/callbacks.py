"""Callback ratings (``POST /admin/api/callback-evaluations``): a rating a staff member
took by phone or SMS, stored with that channel and no user. Only for a case with no citizen
rating (409 ``already_evaluated`` when its first rating has channel qr, miniprogram, phone
or sms). A *default* rating (channel ``default``, 基本满意 given by the system) is
superseded **in place**: the same Evaluation row (same id, so the unique (case,
assess_number) index still guards the case) gets the new channel, levels, comment,
indicators and time — with a compare-and-set on ``channel = 'default'`` so two concurrent
callbacks cannot both supersede it. A 差评 needs a reason (422 ``reason_required``) and opens
its ticket in the same transaction. The comment is staff-recorded (no citizen openid to
check it with WeChat), so it is stored ``visible``; moderators may hide it. The rating
writer (:mod:`wxbackend.services.ratings.writer`, shared by every channel) revokes the
case's active QR tokens, sets ``case.first_rated_at`` if unset and cancels the case's
pending reminders and default rating. Who: superadmin, the center_admin of the case's center,
a handler of its department; audited as ``evaluation.callback`` (the recording admin), in the
writer's transaction.

Product rule 18 (staff must not close a case with a made-up rating): the recording admin is
not the case's window staff or approver (an account linked to a staff member by
``staff_no``; else 403 ``own_case``); the case was completed at least
``callback.min_hours_after_completion`` ago (else 422 ``too_early``); ``contact_at`` (when
the call or SMS took place: after completion, not in the future) and ``reference`` (the call
record or SMS id, 1–64 characters) are required and stored with the rating.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models.access import Admin
from models.base import utcnow
from models.case import Case
from models.catalog import Staff
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.admin import permissions
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.moderation import admin_view_of
from wxbackend.services.admin.permissions import Target
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.ratings import writer
from wxbackend.services.ratings.rules import Rating, check_indicators, parse_rating
from wxbackend.services.ratings.writer import FirstRating
from wxbackend.timefmt import parse_iso

#: Channels of a rating recorded by staff (回访评价).
CALLBACK_CHANNELS = ("phone", "sms")


@dataclass(frozen=True)
class CallbackRating:
    """A validated rating taken by phone/SMS (回访评价)."""

    case_no: str
    channel: str
    rating: Rating
    indicator_ids: Mapping[str, int]


@dataclass(frozen=True)
class Contact:
    """The call or SMS a callback rating was taken in."""

    at: datetime
    reference: str


#: How far in the future ``contact_at`` may lie (clock differences).
CLOCK_SLACK = timedelta(minutes=5)
_REFERENCE = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def parse_contact(contact_at: Any, reference: Any, now: datetime) -> Contact:
    """``contact_at`` (ISO time with offset, not in the future) and ``reference`` (1–64
    printable characters); 422 ``invalid_field`` naming the field."""
    try:
        at = parse_iso(contact_at) if isinstance(contact_at, str) else None
    except ValueError:
        at = None
    if at is None or at > now + CLOCK_SLACK:
        raise errors.InvalidField(
            "contact_at: the ISO time (with offset) of the call or SMS, not in the future.",
            field="contact_at",
        )
    text = reference.strip() if isinstance(reference, str) else ""
    if not _REFERENCE.fullmatch(text):
        raise errors.InvalidField(
            "reference: the call record or SMS id, 1–64 characters.", field="reference"
        )
    return Contact(at, text)


def callback_case(
    principal: Principal, case_no: str, contact: Contact, min_hours: float, now: datetime
) -> int:
    """The id of the case a callback rates, after rule 18's checks: 404 when unknown or
    outside the caller's scope, 403 ``own_case``, 422 ``too_early``, 422 ``invalid_field``
    for a contact before the case was completed."""
    reachable = (
        case
        for case in Case.select().where(Case.case_no == case_no).order_by(Case.id.desc())
        if permissions.allows(
            principal, "callback.record", Target(case.center_id, case.department_id)
        )
    )  # case numbers are unique per partner: the newest such case within reach
    case = next(reachable, None)
    if case is None:
        raise errors.NotFound("No such case.")
    if _is_own_case(principal, case):
        raise errors.OwnCase()
    if now < case.completed_at + timedelta(hours=min_hours):
        raise errors.TooEarly(
            f"A callback rating is recorded at least {min_hours:g} hours after completion."
        )
    if contact.at < case.completed_at:
        raise errors.InvalidField(
            "contact_at: the call or SMS must come after the case was completed.",
            field="contact_at",
        )
    return case.id


def _is_own_case(principal: Principal, case: Case) -> bool:
    """Is the recording admin the case's window staff or approver (by the account's
    ``staff_no``)?"""
    staff_no = Admin.select(Admin.staff_no).where(Admin.id == principal.admin_id).scalar()
    if not staff_no:
        return False
    staff_ids = [i for i in (case.window_staff_id, case.approver_id) if i is not None]
    return bool(staff_ids) and (
        Staff.select().where(Staff.id.in_(staff_ids) & (Staff.staff_no == staff_no)).exists()
    )


def _first_rating(case_id: int, new: CallbackRating, contact: Contact) -> FirstRating:
    return FirstRating.of(
        new.rating,
        new.indicator_ids,
        case_id=case_id,
        channel=new.channel,
        comment_status="visible",  # staff-recorded: no citizen openid to check it with
        contact_at=contact.at,
        contact_reference=contact.reference,
    )


def _audit(actor: Actor, case_id: int, new: CallbackRating, contact: Contact) -> writer.Within:
    """The audit entry of a callback, written inside the writer's transaction."""

    def within(written: writer.Written) -> None:
        detail = {
            "case_id": str(case_id),
            "channel": new.channel,
            "contact_reference": contact.reference,
            "overall": new.rating.overall,
            "superseded_default": written.superseded_default,
        }
        record(actor, "evaluation.callback", "evaluation", written.evaluation_id, detail)

    return within


async def record_callback(
    ctx: Context, principal: Principal, actor: Actor, body: Mapping[str, Any]
) -> dict[str, Any]:
    """``POST /admin/api/callback-evaluations``: check, store, publish; ``{evaluation}``.

    ``channel`` phone|sms (422 ``invalid_field``); the rating as a citizen's (422
    ``invalid_rating`` / ``unknown_indicator`` / ``reason_required`` / ``comment_too_long``).
    """
    channel = body["channel"]
    if channel not in CALLBACK_CHANNELS:
        raise errors.InvalidField("channel must be phone or sms.", field="channel")
    rating = parse_rating(
        body.get("overall"),
        stages=body.get("stages"),
        targets=body.get("targets"),
        indicators=body.get("indicators"),
        comment=body.get("comment"),
        comment_max_chars=ctx.settings.rating.comment_max_chars,
    )
    now = utcnow()
    contact = parse_contact(body.get("contact_at"), body.get("reference"), now)
    indicator_ids = await ctx.db.run(check_indicators, rating.indicators)
    new = CallbackRating(body["case_no"], channel, rating, indicator_ids)
    min_hours = ctx.settings.callback.min_hours_after_completion
    case_id = await ctx.db.run(callback_case, principal, new.case_no, contact, min_hours, now)
    first = _first_rating(case_id, new, contact)
    # the writer supersedes a default rating in place, cancels the case's pending jobs and
    # publishes after commit, as for every channel
    written = await writer.record(
        ctx, first, supersede_default=True, within=_audit(actor, case_id, new, contact)
    )
    return {"evaluation": await ctx.db.run(admin_view_of, principal, written.evaluation_id)}
