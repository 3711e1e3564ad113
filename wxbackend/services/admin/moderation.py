"""Ratings in the console (评价管理): the filtered listing, public replies, moderation and
revealing the applicant's real name.

* **Listing** (``GET /admin/api/evaluations``): first ratings and follow-ups, newest first,
  keyset pagination on the id, confined to the admin's scope (``services.scope``: a center's
  admin their center, a handler their department). Filters ``center``, ``item`` (codes),
  ``staff`` (a staff_no: the case's window clerk *or* back-office approver), ``level``,
  ``from``/``to`` (dates in Asia/Shanghai, inclusive), ``channel``, ``comment_status``. The
  admin view shows the comment whatever its moderation status, with ``comment_status``,
  ``moderation_reason``, ``channel``, ``case_no``, the ticket — and ``name_masked`` only:
  the real name is never in a listing (see :func:`reveal_name`).
* **Reply** (公开答复): 1–500 characters, public at once (a :class:`~models.evaluation.Reply`
  shown in the public list); superadmin or the center_admin of the rating's center.
* **Moderation**: ``visible: true`` shows the comment; ``visible: false`` hides it and needs
  a reason (≤200 characters). The public list withholds the text of a hidden (or
  pending_review) comment, but the rating itself stays public and in every figure.
* **Reveal** (``evaluation.reveal``): a superadmin reads the case applicant's real name,
  giving a reason (rule 22); the audit entry names the evaluation, the case and the reason,
  never the name; nothing logs it.
* **Callback ratings** (回访评价): :mod:`wxbackend.services.admin.callbacks`.

Every write is audited in its transaction and then republished on the live channel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff
from models.evaluation import (
    CHANNELS,
    COMMENT_STATUSES,
    LEVELS,
    Evaluation,
    Reply,
)
from models.ticket import Ticket
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import FieldCipher
from wxbackend.services.admin import scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.permissions import Target, authorize
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.cases import reports as cases
from wxbackend.services.cases.scan import parse_id
from wxbackend.services.common import query_args
from wxbackend.services.common.query_args import encode_cursor
from wxbackend.services.public import live as realtime
from wxbackend.services.ratings.indicators import indicator_labels_of
from wxbackend.services.ratings.views import stages_of, targets_of
from wxbackend.services.tickets.contact import clean_reason
from wxbackend.services.tickets.deadlines import APPEAL_UPHELD
from wxbackend.services.transparency import log as transparency
from wxbackend.timefmt import iso

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
REPLY_MAX_CHARS = 500
REASON_MAX_CHARS = 200
#: The permission whose reach bounds what an admin sees of the ratings.
READ = "evaluations.read"


# --------------------------------------------------------------------------- the listing


@dataclass(frozen=True)
class EvaluationQuery:
    """Filters of ``GET /admin/api/evaluations`` (codes as given; times naive UTC)."""

    center: str | None = None
    item: str | None = None
    staff: str | None = None
    level: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    channel: str | None = None
    comment_status: str | None = None
    before_id: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_evaluation_query(arg: Callable[[str], str | None]) -> EvaluationQuery:
    """The listing's filters from ``arg(name)`` (empty means no filter); 400
    ``invalid_query`` for a bad level, channel, comment_status, date, cursor or limit."""

    def text(name: str) -> str | None:
        return query_args.text(arg(name), name)

    level = query_args.choice(text("level"), [str(v) for v in LEVELS], "level")
    limit = query_args.limit(text("limit"), DEFAULT_LIMIT, MAX_LIMIT)
    start, end = query_args.day_range(text("from"), text("to"))
    cursor = text("cursor")
    return EvaluationQuery(
        center=text("center"),
        item=text("item"),
        staff=text("staff"),
        level=int(level) if level else None,
        start=start,
        end=end,
        channel=query_args.choice(text("channel"), CHANNELS, "channel"),
        comment_status=query_args.choice(
            text("comment_status"), COMMENT_STATUSES, "comment_status"
        ),
        before_id=query_args.cursor_id(cursor),
        limit=limit,
    )


def _with_case_no(query: peewee.Select) -> peewee.Select:
    """Join the case for its number; the partial Case goes to ``case_row`` (not ``case``, which
    would overwrite ``evaluation.case_id``)."""
    return query.join(Case, on=(Evaluation.case == Case.id), attr="case_row").switch(Evaluation)


def _id_of(column: peewee.Field, code: str) -> int:
    """The id of the catalogue row with this code; 0 (matches nothing) when unknown."""
    found = column.model.select(column.model.id).where(column == code).scalar()
    return found or scope.NOWHERE


def list_evaluations(principal: Principal, query: EvaluationQuery) -> dict[str, Any]:
    """One page of the admin listing: ``{items, next_cursor}``."""
    rows = _with_case_no(Evaluation.select(Evaluation, Case.case_no))
    rows = scope.scoped(
        rows.switch(Evaluation), principal, READ, Evaluation.center, Evaluation.department
    )
    if query.center is not None:
        rows = rows.where(Evaluation.center == _id_of(Center.code, query.center))
    if query.item is not None:
        rows = rows.where(Evaluation.item == _id_of(ServiceItem.code, query.item))
    if query.staff is not None:
        staff_id = _id_of(Staff.staff_no, query.staff)
        rows = rows.where((Evaluation.window_staff == staff_id) | (Evaluation.approver == staff_id))
    for column, value in (
        (Evaluation.overall, query.level),
        (Evaluation.channel, query.channel),
        (Evaluation.comment_status, query.comment_status),
    ):
        if value is not None:
            rows = rows.where(column == value)
    if query.start is not None:
        rows = rows.where(Evaluation.created_at >= query.start)
    if query.end is not None:
        rows = rows.where(Evaluation.created_at < query.end)
    page, more = query_args.newest_first(rows, Evaluation.id, query.before_id, query.limit)
    return {
        "items": admin_views(page),
        "next_cursor": encode_cursor(page[-1].id) if more else None,
    }


def _named(model: type[peewee.Model], key: peewee.Field, ids: set[int]) -> dict[int, dict]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = model.select(model.id, key, model.name).where(model.id.in_(ids)).tuples()
    return {i: {key.name: code, "name": name} for i, code, name in rows}


def admin_views(page: list[Evaluation]) -> list[dict[str, Any]]:
    """The admin shape of evaluations selected with ``Case.case_no`` (a few IN queries)."""
    if not page:
        return []
    ids = [e.id for e in page]
    indicators = defaultdict(list, indicator_labels_of(ids))
    replies: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for reply in Reply.select().where(Reply.evaluation.in_(ids)).order_by(Reply.id):
        replies[reply.evaluation_id].append(
            {"id": str(reply.id), "text": reply.text, "created_at": iso(reply.created_at)}
        )
    tickets = {t.evaluation_id: t for t in Ticket.select().where(Ticket.evaluation.in_(ids))}
    centers = _named(Center, Center.code, {e.center_id for e in page})
    departments = _named(Department, Department.code, {e.department_id for e in page})
    items = _named(ServiceItem, ServiceItem.code, {e.item_id for e in page})
    people = {e.window_staff_id for e in page} | {e.approver_id for e in page}
    staff = _named(Staff, Staff.staff_no, people)
    return [
        _view(e, indicators, replies, tickets.get(e.id), centers, departments, items, staff)
        for e in page
    ]


def _view(
    e: Evaluation,
    indicators: Mapping[int, list],
    replies: Mapping[int, list],
    ticket: Ticket | None,
    centers: Mapping[int, dict],
    departments: Mapping[int, dict],
    items: Mapping[int, dict],
    staff: Mapping[int, dict],
) -> dict[str, Any]:
    return {
        "id": str(e.id),
        "case_id": str(e.case_id),
        "case_no": e.case_row.case_no,
        "assess_number": e.assess_number,
        "channel": e.channel,
        "overall": e.overall,
        "stages": stages_of(e),
        "targets": targets_of(e),
        "indicators": indicators.get(e.id, []),
        "comment": e.comment,
        "comment_status": e.comment_status,
        "moderation_reason": e.moderation_reason,
        "name_masked": e.name_masked,
        "like_count": e.like_count,
        "created_at": iso(e.created_at),
        "center": centers.get(e.center_id),
        "department": departments.get(e.department_id),
        "item": items.get(e.item_id),
        "window_staff": staff.get(e.window_staff_id),
        "approver": staff.get(e.approver_id),
        "replies": replies.get(e.id, []),
        "ticket": None
        if ticket is None
        else {"id": str(ticket.id), "status": ticket.status, "appeal_status": ticket.appeal_status},
        "ticket_status": ticket.status if ticket else None,
        "excluded_from_staff_figures": bool(ticket and ticket.appeal_status == APPEAL_UPHELD),
    }


def _visible_evaluation(principal: Principal, evaluation_id: Any) -> Evaluation:
    number = parse_id(evaluation_id)
    found = None
    if number is not None:
        found = (
            _with_case_no(Evaluation.select(Evaluation, Case.case_no))
            .where(Evaluation.id == number)
            .first()
        )
    if found is None:
        raise errors.NotFound("No such evaluation.")
    scope.ensure_visible(principal, READ, found.center_id, found.department_id)
    return found


def admin_view_of(principal: Principal, evaluation_id: Any) -> dict[str, Any]:
    """One evaluation in the admin shape (404 when missing or out of scope)."""
    return admin_views([_visible_evaluation(principal, evaluation_id)])[0]


def _writable_evaluation(principal: Principal, evaluation_id: Any, action: str) -> Evaluation:
    evaluation = _visible_evaluation(principal, evaluation_id)
    authorize(principal, action, Target(evaluation.center_id, evaluation.department_id))
    return evaluation


# --------------------------------------------------------------------------- reply, moderation


def _public_rating_id(evaluation: Evaluation) -> int:
    """The first rating a public shape is built from (a follow-up's first rating)."""
    if evaluation.assess_number == 1:
        return evaluation.id
    first = Evaluation.select(Evaluation.id).where(
        (Evaluation.case == evaluation.case_id) & (Evaluation.assess_number == 1)
    )
    return first.scalar() or evaluation.id


def add_reply(
    principal: Principal, actor: Actor, evaluation_id: Any, text: Any, now: datetime
) -> dict[str, Any]:
    """A public reply (1–500 characters after trimming, else 422 ``invalid_field``)."""
    if not isinstance(text, str):
        raise errors.InvalidBody("text must be a string.", field="text")
    body = text.strip()
    if not 1 <= len(body) <= REPLY_MAX_CHARS:
        raise errors.InvalidField(f"A reply has 1 to {REPLY_MAX_CHARS} characters.", field="text")
    with database.atomic():
        evaluation = _writable_evaluation(principal, evaluation_id, "evaluations.reply")
        reply = Reply.create(
            evaluation=evaluation.id, text=body, admin_id=actor.admin_id, created_at=now
        )
        record(actor, "evaluation.reply", "evaluation", evaluation.id, {"reply_id": str(reply.id)})
        transparency.append("reply", {"reply_id": reply.id}, now)
        return {
            "id": str(reply.id),
            "evaluation_id": str(evaluation.id),
            "text": reply.text,
            "created_at": iso(reply.created_at),
            "public_id": str(_public_rating_id(evaluation)),
        }


def moderate(
    principal: Principal, actor: Actor, evaluation_id: Any, visible: bool, reason: Any
) -> dict[str, Any]:
    """Show (``visible``) or hide a comment; hiding needs a reason (≤200 characters, 422
    ``invalid_field``). A rating without a comment has nothing to moderate (409
    ``invalid_transition``). Returns the admin view."""
    if reason is not None and not isinstance(reason, str):
        raise errors.InvalidBody("reason must be a string.", field="reason")
    why = (reason or "").strip() or None
    if why is not None and len(why) > REASON_MAX_CHARS:
        raise errors.InvalidField(
            f"reason has at most {REASON_MAX_CHARS} characters.", field="reason"
        )
    if not visible and why is None:
        raise errors.InvalidField("Hiding a comment needs a reason.", field="reason")
    with database.atomic():
        evaluation = _writable_evaluation(principal, evaluation_id, "evaluations.moderate")
        if evaluation.comment is None:
            raise errors.InvalidTransition("This rating has no comment to moderate.")
        status = "visible" if visible else "hidden"
        (
            Evaluation.update(comment_status=status, moderation_reason=why)
            .where(Evaluation.id == evaluation.id)
            .execute()
        )
        detail = {"from": evaluation.comment_status, "to": status}
        record(actor, "evaluation.moderate", "evaluation", evaluation.id, detail)
        transparency.append("moderation", {"evaluation_id": evaluation.id}, utcnow())
        return admin_view_of(principal, evaluation.id)


def reveal_name(
    principal: Principal, actor: Actor, evaluation_id: Any, reason: Any, cipher: FieldCipher
) -> str:
    """The real name of the applicant of the rated case (superadmins; the handler gates the
    role), given a reason (product rule 22; 400 ``invalid_body`` without one). Audited as
    ``evaluation.reveal`` with the evaluation and case ids and the reason, never the name."""
    text = clean_reason(reason)
    with database.atomic():
        evaluation = _visible_evaluation(principal, evaluation_id)
        encrypted = Case.select(Case.applicant_name_enc).where(Case.id == evaluation.case_id)
        name = cipher.decrypt(encrypted.scalar(), cases.NAME_CONTEXT)
        detail = {"case_id": str(evaluation.case_id), "reason": text}
        record(actor, "evaluation.reveal", "evaluation", evaluation.id, detail)
    return name


# --------------------------------------------------------------------------- async layer


async def list_for(ctx: Context, principal: Principal, query: EvaluationQuery) -> dict[str, Any]:
    """``GET /admin/api/evaluations``."""
    return await ctx.db.run(list_evaluations, principal, query)


async def one_for(ctx: Context, principal: Principal, evaluation_id: str) -> dict[str, Any]:
    """``GET /admin/api/evaluations/{id}``."""
    return await ctx.db.run(admin_view_of, principal, evaluation_id)


async def reply(
    ctx: Context, principal: Principal, actor: Actor, evaluation_id: str, text: Any
) -> dict[str, Any]:
    """``POST /evaluations/{id}/reply``: store, then republish the public rating."""
    answer = await ctx.db.run(add_reply, principal, actor, evaluation_id, text, utcnow())
    await realtime.publish_after_commit(ctx, int(answer.pop("public_id")))
    return answer


async def set_visibility(
    ctx: Context,
    principal: Principal,
    actor: Actor,
    evaluation_id: str,
    visible: bool,
    reason: Any,
) -> dict[str, Any]:
    """``POST /evaluations/{id}/moderate``: store, then republish the public rating."""
    view = await ctx.db.run(moderate, principal, actor, evaluation_id, visible, reason)
    await realtime.publish_after_commit(ctx, int(view["id"]))
    return view


async def reveal(
    ctx: Context, principal: Principal, actor: Actor, evaluation_id: str, reason: Any
) -> dict[str, str]:
    """``POST /evaluations/{id}/reveal {reason}`` → ``{name}``."""
    name = await ctx.db.run(reveal_name, principal, actor, evaluation_id, reason, ctx.cipher)
    return {"name": name}
