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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.case import Case
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.admin import scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.moderation import admin_view_of
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.ratings import writer
from wxbackend.services.ratings.rules import Rating, check_indicators, parse_rating
from wxbackend.services.ratings.writer import FirstRating

#: Channels of a rating recorded by staff (回访评价).
CALLBACK_CHANNELS = ("phone", "sms")


@dataclass(frozen=True)
class CallbackRating:
    """A validated rating taken by phone/SMS (回访评价)."""

    case_no: str
    channel: str
    rating: Rating
    indicator_ids: Mapping[str, int]


def callback_case(principal: Principal, case_no: str) -> int:
    """The id of the case a callback rates: 404 when unknown or outside the caller's scope."""
    case = Case.get_or_none(Case.case_no == case_no)
    if case is None:
        raise errors.NotFound("No such case.")
    scope.ensure_visible(principal, "callback.record", case.center_id, case.department_id)
    return case.id


def _first_rating(case_id: int, new: CallbackRating) -> FirstRating:
    return FirstRating.of(
        new.rating,
        new.indicator_ids,
        case_id=case_id,
        channel=new.channel,
        comment_status="visible",  # staff-recorded: no citizen openid to check it with
    )


def _audit(actor: Actor, case_id: int, new: CallbackRating) -> writer.Within:
    """The audit entry of a callback, written inside the writer's transaction."""

    def within(written: writer.Written) -> None:
        detail = {
            "case_id": str(case_id),
            "channel": new.channel,
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
    indicator_ids = await ctx.db.run(check_indicators, rating.indicators)
    new = CallbackRating(body["case_no"], channel, rating, indicator_ids)
    case_id = await ctx.db.run(callback_case, principal, new.case_no)
    first = _first_rating(case_id, new)
    # the writer supersedes a default rating in place, cancels the case's pending jobs and
    # publishes after commit, as for every channel
    written = await writer.record(
        ctx, first, supersede_default=True, within=_audit(actor, case_id, new)
    )
    return {"evaluation": await ctx.db.run(admin_view_of, principal, written.evaluation_id)}
