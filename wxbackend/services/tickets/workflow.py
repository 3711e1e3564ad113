"""The 差评 closed loop (差评整改): reading and working tickets (``/admin/api/tickets``).

A ticket is opened with its rating (``evaluations.open_ticket``); from then on admins move it::

    open ──verify(valid)──▶ verified ──rectify──▶ rectified ──callback(satisfied)──▶ called_back
      │                        ▲                      │                               │
      └─verify(not valid)─▶ invalid                   └──callback(not satisfied)──────┤ (back to
                                                                                      │  verified)
                                                                            close ──▶ closed

* **Appeal (申诉)**: staff (a handler of the ticket's department or the center_admin of its
  center) may file one appeal while the ticket is ``open`` or ``verified``
  (``appeal_status = "pending"``). A senior admin (superadmin, or the center_admin of the
  center, never the one who filed it) decides: upheld → ``appeal_status = "upheld"`` and the
  ticket ends ``invalid``; rejected → ``appeal_status = "rejected"``, the ticket carries on.
  Deadlines never pause while an appeal is pending, but a ticket with a pending appeal cannot
  be closed. **An upheld appeal keeps the rating public and in every public figure but excludes
  it from staff figures**: use :func:`excluded_from_staff_figures` (``Ticket.appeal_status ==
  "upheld"``) in staff statistics and rankings.
* **Deadlines**: ``verify_due`` (核实, 1 working day) and ``rectify_due`` (整改反馈, 15 working
  days) are fixed at opening (``services.workdays``) and never pause. A ticket is *overdue*
  when now > ``verify_due`` while it is ``open``, or now > ``rectify_due`` while it is not yet
  rectified (``open`` or ``verified``) — computed on every read (:func:`is_overdue`) and in
  SQL for the ``overdue`` filter (:func:`overdue_condition`). The stored ``Ticket.overdue``
  flag is *sticky*: set by :func:`flag_overdue` (the worker's housekeeping) or by a late step,
  and never cleared, so it records that a ticket ever ran late. The on-time rectification rate
  is best computed as ``rectified_at <= rectify_due``.
* **Every step** is a :class:`~models.ticket.TicketEvent` (who — the admin's username —, when,
  the note ≤ :data:`NOTE_MAX_CHARS` characters) and an audit entry (``ticket.<step>``, without
  the note: it may name people) written in the same transaction. A step applies with a
  compare-and-set on the status, so two admins racing cannot both move a ticket.
* **Who**: reading — every role within its scope (a handler sees only their department's
  tickets, a center_admin only their center's); a ticket out of scope is 404. Steps — a handler
  of the department, the center_admin of the center, a superadmin; viewers never (the handler
  classes gate the roles).

The synchronous functions run on the database thread; :func:`act` runs a step and republishes
the public rating (its ``ticket_status`` changed) on the live channel.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.ticket import TICKET_STATUSES, Ticket, TicketEvent
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.admin import scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.cases.scan import parse_id
from wxbackend.services.common import query_args
from wxbackend.services.common.query_args import encode_cursor
from wxbackend.services.messaging import reminders
from wxbackend.services.public import live as realtime
from wxbackend.services.transparency import log as transparency
from wxbackend.timefmt import iso

log = logging.getLogger("wxbackend.tickets")

NOTE_MAX_CHARS = 2000
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CALLBACK_CHANNELS = ("phone", "sms", "wechat")
#: Statuses in which the rectification is still owed (整改未完成).
UNRECTIFIED = ("open", "verified")
#: Appeal states (``Ticket.appeal_status``; None: no appeal filed).
APPEAL_PENDING, APPEAL_UPHELD, APPEAL_REJECTED = "pending", "upheld", "rejected"


# --------------------------------------------------------------------------- deadlines


def overdue_condition(now: datetime) -> peewee.Expression:
    """SQL: the ticket is overdue at ``now`` (naive UTC) — see the module docstring."""
    return ((Ticket.status == "open") & (Ticket.verify_due < now)) | (
        Ticket.status.in_(UNRECTIFIED) & (Ticket.rectify_due < now)
    )


def is_overdue(ticket: Ticket, now: datetime) -> bool:
    """Python twin of :func:`overdue_condition` for one ticket."""
    if ticket.status == "open" and now > ticket.verify_due:
        return True
    return ticket.status in UNRECTIFIED and now > ticket.rectify_due


def flag_overdue(now: datetime | None = None) -> int:
    """Set the sticky ``Ticket.overdue`` flag of every ticket overdue at ``now`` (default: now)
    that is not flagged yet; returns how many were flagged. For the worker's housekeeping."""
    moment = now or utcnow()
    with database.atomic():
        return (
            Ticket.update(overdue=True)
            .where(overdue_condition(moment) & (Ticket.overdue == False))  # noqa: E712
            .execute()
        )


def excluded_from_staff_figures() -> peewee.Select:
    """The ids of evaluations whose 差评 was appealed successfully (``appeal_status ==
    "upheld"``): public and counted in public figures, but excluded from staff figures.

    Use as ``Evaluation.id.not_in(excluded_from_staff_figures())`` in staff statistics.
    """
    return Ticket.select(Ticket.evaluation).where(Ticket.appeal_status == APPEAL_UPHELD)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TicketQuery:
    """Filters of ``GET /tickets``: status, overdue (computed at ``now``), keyset cursor."""

    status: str | None = None
    overdue: bool | None = None
    before_id: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_ticket_query(arg: Callable[[str], str | None]) -> TicketQuery:
    """``status`` (one of the ticket statuses), ``overdue`` (true|false), ``cursor``,
    ``limit`` (1–200, default 50) from ``arg(name)``; 400 ``invalid_query`` otherwise."""
    status = query_args.choice(arg("status"), TICKET_STATUSES, "status")
    overdue = arg("overdue") or None
    if overdue not in (None, "true", "false"):
        raise errors.InvalidQuery("overdue must be true or false.", parameter="overdue")
    return TicketQuery(
        status=status,
        overdue=None if overdue is None else overdue == "true",
        before_id=query_args.cursor_id(arg("cursor")),
        limit=query_args.limit(arg("limit"), DEFAULT_LIMIT, MAX_LIMIT),
    )


def _history_item(event: TicketEvent) -> dict[str, Any]:
    item: dict[str, Any] = {
        "status": event.status,
        "action": event.action,
        "by": event.by,
        "note": event.note,
        "at": iso(event.at),
    }
    if event.action.startswith("callback_"):
        item["channel"] = event.action.removeprefix("callback_")
        item["satisfied"] = event.status == "called_back"
    return item


def ticket_view(
    ticket: Ticket, case_no: str, events: list[TicketEvent], now: datetime
) -> dict[str, Any]:
    """A ticket as the admin API shows it (api.md), with its history oldest first."""
    return {
        "id": str(ticket.id),
        "evaluation_id": str(ticket.evaluation_id),
        "case_no": case_no,
        "status": ticket.status,
        "opened_at": iso(ticket.opened_at),
        "verify_due": iso(ticket.verify_due),
        "rectify_due": iso(ticket.rectify_due),
        "verified_at": iso(ticket.verified_at),
        "rectified_at": iso(ticket.rectified_at),
        "closed_at": iso(ticket.closed_at),
        "overdue": is_overdue(ticket, now),
        "appeal_status": ticket.appeal_status,
        "excluded_from_staff_figures": ticket.appeal_status == APPEAL_UPHELD,
        "history": [_history_item(e) for e in events],
    }


def _events_of(ticket_ids: list[int]) -> dict[int, list[TicketEvent]]:
    found: dict[int, list[TicketEvent]] = defaultdict(list)
    if ticket_ids:
        rows = TicketEvent.select().where(TicketEvent.ticket.in_(ticket_ids))
        for event in rows.order_by(TicketEvent.id):
            found[event.ticket_id].append(event)
    return found


def _with_case_no(query: peewee.Select) -> peewee.Select:
    # attr: the partial Case goes to ``case_row``, leaving ``ticket.case_id`` intact
    return query.join(Case, on=(Ticket.case == Case.id), attr="case_row").switch(Ticket)


def views_of(tickets: list[Ticket], now: datetime) -> list[dict[str, Any]]:
    """:func:`ticket_view` of tickets selected with their case (one query for the events)."""
    events = _events_of([t.id for t in tickets])
    return [ticket_view(t, t.case_row.case_no, events.get(t.id, []), now) for t in tickets]


def list_tickets(principal: Principal, query: TicketQuery, now: datetime) -> dict[str, Any]:
    """``GET /tickets``: the principal's tickets, newest first, keyset pagination on the id."""
    rows = _with_case_no(Ticket.select(Ticket, Case.case_no))
    rows = scope.scoped(rows, principal, center=Ticket.center, department=Ticket.department)
    if query.status is not None:
        rows = rows.where(Ticket.status == query.status)
    if query.overdue is not None:
        condition = overdue_condition(now)
        rows = rows.where(condition if query.overdue else ~condition)
    page, more = query_args.newest_first(rows, Ticket.id, query.before_id, query.limit)
    return {
        "items": views_of(page, now),
        "next_cursor": encode_cursor(page[-1].id) if more else None,
    }


def _visible_ticket(principal: Principal, ticket_id: Any) -> Ticket:
    number = parse_id(ticket_id)
    ticket = (
        _with_case_no(Ticket.select(Ticket, Case.case_no)).where(Ticket.id == number).first()
        if number is not None
        else None
    )
    if ticket is None:
        raise errors.NotFound("No such ticket.")
    scope.ensure_visible(principal, ticket.center_id, ticket.department_id)
    return ticket


def get_ticket(principal: Principal, ticket_id: Any, now: datetime) -> dict[str, Any]:
    """``GET /tickets/{id}`` (404 when missing or out of the principal's scope)."""
    return views_of([_visible_ticket(principal, ticket_id)], now)[0]


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Change:
    """What one step does to a ticket: its new status, other columns, the event, the audit."""

    status: str
    event_action: str
    note: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    audit: Mapping[str, Any] = field(default_factory=dict)


def clean_note(value: Any, name: str = "note", required: bool = False) -> str:
    """A trimmed note of at most :data:`NOTE_MAX_CHARS` characters (422 ``invalid_field``;
    blank is 422 too when ``required``)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise errors.InvalidBody(f"{name} must be a string.", field=name)
    text = value.strip()
    if len(text) > NOTE_MAX_CHARS:
        raise errors.InvalidField(f"{name} is longer than {NOTE_MAX_CHARS} characters.", field=name)
    if required and not text:
        raise errors.InvalidField(f"{name} is required for this step.", field=name)
    return text


def _refuse(ticket: Ticket, step: str, why: str = "") -> errors.ContractError:
    message = f"Cannot {step} a ticket that is {ticket.status}" + (f": {why}" if why else ".")
    return errors.InvalidTransition(message, status=ticket.status)


def _apply(
    principal: Principal,
    actor: Actor,
    ticket_id: Any,
    step: str,
    plan: Callable[[Ticket], Change],
    now: datetime,
) -> dict[str, Any]:
    """Run one step in one transaction: load (404 out of scope), plan (409
    ``invalid_transition``), compare-and-set the status, the event, the audit entry."""
    with database.atomic():
        ticket = _visible_ticket(principal, ticket_id)
        change = plan(ticket)
        columns = dict(change.fields)
        columns["status"] = change.status
        if not ticket.overdue and is_overdue(ticket, now):
            columns["overdue"] = True
        appeal = (
            Ticket.appeal_status.is_null()
            if ticket.appeal_status is None
            else Ticket.appeal_status == ticket.appeal_status
        )
        updated = (
            Ticket.update(**columns)
            .where((Ticket.id == ticket.id) & (Ticket.status == ticket.status) & appeal)
            .execute()
        )
        if updated != 1:
            raise errors.InvalidTransition("The ticket changed meanwhile; reload it.")
        TicketEvent.create(
            ticket=ticket.id,
            status=change.status,
            action=change.event_action,
            by=actor.username,
            note=change.note,
            at=now,
        )
        if change.status == "closed":  # the citizen is told, inviting a follow-up rating
            reminders.schedule_rectified_notice(ticket.id, now)
        detail = {"from": ticket.status, "to": change.status, **change.audit}
        record(actor, f"ticket.{step}", "ticket", ticket.id, detail)
        transparency.append("ticket", {"ticket_id": ticket.id}, now)
        return get_ticket(principal, ticket.id, now)


def verify(
    principal: Principal, actor: Actor, ticket_id: Any, valid: bool, note: Any, now: datetime
) -> dict[str, Any]:
    """核实: ``open`` → ``verified`` (valid) or ``invalid`` (not valid: a note is required)."""
    text = clean_note(note, required=not valid)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "open":
            raise _refuse(ticket, "verify")
        return Change(
            "verified" if valid else "invalid",
            "verify",
            text,
            {"verified_at": now},
            {"valid": valid},
        )

    return _apply(principal, actor, ticket_id, "verify", plan, now)


def rectify(
    principal: Principal, actor: Actor, ticket_id: Any, note: Any, now: datetime
) -> dict[str, Any]:
    """整改: ``verified`` → ``rectified``; the note (what was done) is required."""
    text = clean_note(note, required=True)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "verified":
            raise _refuse(ticket, "rectify")
        return Change("rectified", "rectify", text, {"rectified_at": now})

    return _apply(principal, actor, ticket_id, "rectify", plan, now)


def callback(
    principal: Principal,
    actor: Actor,
    ticket_id: Any,
    channel: str,
    satisfied: bool,
    note: Any,
    now: datetime,
) -> dict[str, Any]:
    """回访: ``rectified`` → ``called_back`` when the citizen is satisfied, else back to
    ``verified`` for another rectification. ``channel``: phone, sms or wechat (422)."""
    if channel not in CALLBACK_CHANNELS:
        raise errors.InvalidField(
            f"channel must be one of {', '.join(CALLBACK_CHANNELS)}.", field="channel"
        )
    text = clean_note(note)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "rectified":
            raise _refuse(ticket, "record a callback of")
        status = "called_back" if satisfied else "verified"
        detail = {"channel": channel, "satisfied": satisfied}
        return Change(status, f"callback_{channel}", text, audit=detail)

    return _apply(principal, actor, ticket_id, "callback", plan, now)


def close(
    principal: Principal, actor: Actor, ticket_id: Any, note: Any, now: datetime
) -> dict[str, Any]:
    """办结: ``called_back`` → ``closed`` (not while an appeal is pending)."""
    text = clean_note(note)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "called_back":
            raise _refuse(ticket, "close")
        if ticket.appeal_status == APPEAL_PENDING:
            raise _refuse(ticket, "close", "its appeal is still pending")
        return Change("closed", "close", text, {"closed_at": now})

    return _apply(principal, actor, ticket_id, "close", plan, now)


def appeal(
    principal: Principal, actor: Actor, ticket_id: Any, reason: Any, now: datetime
) -> dict[str, Any]:
    """申诉: staff contest the 差评 while the ticket is ``open`` or ``verified``; one appeal
    per ticket; the reason is required. The status does not change."""
    text = clean_note(reason, "reason", required=True)

    def plan(ticket: Ticket) -> Change:
        if ticket.status not in UNRECTIFIED:
            raise _refuse(ticket, "appeal")
        if ticket.appeal_status is not None:
            raise _refuse(ticket, "appeal", f"its appeal is already {ticket.appeal_status}")
        return Change(ticket.status, "appeal", text, {"appeal_status": APPEAL_PENDING})

    return _apply(principal, actor, ticket_id, "appeal", plan, now)


def _appellant(ticket_id: int) -> str | None:
    return (
        TicketEvent.select(TicketEvent.by)
        .where((TicketEvent.ticket == ticket_id) & (TicketEvent.action == "appeal"))
        .order_by(TicketEvent.id.desc())
        .scalar()
    )


def decide_appeal(
    principal: Principal, actor: Actor, ticket_id: Any, upheld: bool, note: Any, now: datetime
) -> dict[str, Any]:
    """Decide a pending appeal (a senior admin, never its own appellant: 403). Upheld → the
    ticket ends ``invalid`` and the rating leaves staff figures; rejected → it carries on."""
    text = clean_note(note)

    def plan(ticket: Ticket) -> Change:
        if ticket.appeal_status != APPEAL_PENDING:
            raise errors.InvalidTransition(
                "This ticket has no pending appeal.", status=ticket.status
            )
        if _appellant(ticket.id) == actor.username:
            raise errors.Forbidden("The admin who filed an appeal may not decide it.")
        if upheld:
            return Change(
                "invalid", "appeal_upheld", text, {"appeal_status": APPEAL_UPHELD}, {"upheld": True}
            )
        fields = {"appeal_status": APPEAL_REJECTED}
        return Change(ticket.status, "appeal_rejected", text, fields, {"upheld": False})

    return _apply(principal, actor, ticket_id, "appeal_decide", plan, now)


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "verify": verify,
    "rectify": rectify,
    "callback": callback,
    "close": close,
    "appeal": appeal,
    "appeal_decide": decide_appeal,
}


# --------------------------------------------------------------------------- async layer


async def list_for(ctx: Context, principal: Principal, query: TicketQuery) -> dict[str, Any]:
    """``GET /tickets``."""
    return await ctx.db.run(list_tickets, principal, query, utcnow())


async def one_for(ctx: Context, principal: Principal, ticket_id: str) -> dict[str, Any]:
    """``GET /tickets/{id}``."""
    return await ctx.db.run(get_ticket, principal, ticket_id, utcnow())


async def act(
    ctx: Context, step: str, principal: Principal, actor: Actor, ticket_id: str, **args: Any
) -> dict[str, Any]:
    """Run the step ``step`` (a key of :data:`STEPS`) now, then republish the rating."""
    view = await ctx.db.run(lambda: STEPS[step](principal, actor, ticket_id, now=utcnow(), **args))
    await realtime.publish_after_commit(ctx, int(view["evaluation_id"]))
    return view
