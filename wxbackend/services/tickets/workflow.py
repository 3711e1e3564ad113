"""The 差评 closed loop (差评整改): reading and working tickets (``/admin/api/tickets``).

A ticket is opened with its rating (``tickets.opening.open_ticket``); from then on admins move it::

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
* **Who**: the permission table (``services/admin/permissions.py``): ``tickets.read`` bounds
  what an admin sees (a ticket beyond it is 404), :data:`STEP_PERMISSIONS` names what each
  step needs (403 without it, on the ticket's center and department).

The synchronous functions run on the database thread; :func:`act` runs a step and republishes
the public rating (its ``ticket_status`` changed) on the live channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.base import utcnow
from models.case import Case
from models.ticket import Ticket, TicketEvent
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.permissions import Target, authorize
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.messaging import schedule
from wxbackend.services.public import live as realtime
from wxbackend.services.public import rollups
from wxbackend.services.tickets.deadlines import (
    APPEAL_UPHELD,
    UNRECTIFIED,
    is_overdue,
)
from wxbackend.services.tickets.views import (
    TicketQuery,
    get_ticket,
    list_tickets,
    visible_ticket,
)
from wxbackend.services.transparency import log as transparency

log = logging.getLogger("wxbackend.tickets")

NOTE_MAX_CHARS = 2000
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CALLBACK_CHANNELS = ("phone", "sms", "wechat")
#: Appeal states (``Ticket.appeal_status``; None: no appeal filed).
APPEAL_PENDING, APPEAL_REJECTED = "pending", "rejected"


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
    with database.atomic(), rollups.batched():  # rollups last: see rollups.batched
        ticket = visible_ticket(principal, ticket_id)
        target = Target(ticket.center_id, ticket.department_id)
        authorize(principal, STEP_PERMISSIONS[step], target)
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
        if columns.get("appeal_status") == APPEAL_UPHELD:  # out of staff figures, ranking
            rollups.appeal_upheld(ticket.evaluation_id)
        rollups.ticket_changed(Case.get_by_id(ticket.case_id), ticket, columns)
        if change.status == "closed":  # the citizen is told, inviting a follow-up rating
            schedule.schedule_rectified_notice(ticket.id, now)
        detail = {"from": ticket.status, "to": change.status, **change.audit}
        record(actor, f"ticket.{step}", "ticket", ticket.id, detail)
        transparency.append("ticket", {"ticket_id": ticket.id}, now)
        return get_ticket(principal, ticket.id, now)


_NO_PROPOSAL = {
    "invalid_proposed_by": None,
    "invalid_proposed_note": None,
    "invalid_proposed_at": None,
}


def verify(
    principal: Principal, actor: Actor, ticket_id: Any, valid: bool, note: Any, now: datetime
) -> dict[str, Any]:
    """核实: ``open`` → ``verified`` (valid; a pending proposal is dropped). Not valid (a note
    is required) only *proposes* to declare the 差评 invalid (product rule 19: two people):
    the ticket stays ``open`` with its deadlines running until a second admin decides
    (:func:`decide_invalid`); one proposal at a time (409)."""
    text = clean_note(note, required=not valid)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "open":
            raise _refuse(ticket, "verify")
        if valid:
            fields = {"verified_at": now, **_NO_PROPOSAL}
            return Change("verified", "verify", text, fields, {"valid": True})
        if ticket.invalid_proposed_by is not None:
            raise _refuse(ticket, "propose", "a proposal to declare it invalid is pending")
        proposal = {
            "invalid_proposed_by": actor.username,
            "invalid_proposed_note": text,
            "invalid_proposed_at": now,
        }
        return Change("open", "propose_invalid", text, proposal, {"valid": False})

    return _apply(principal, actor, ticket_id, "verify", plan, now)


def decide_invalid(
    principal: Principal, actor: Actor, ticket_id: Any, confirm: bool, note: Any, now: datetime
) -> dict[str, Any]:
    """The second person on a proposal to declare a 差评 invalid: a center_admin or
    superadmin within reach who did not propose it (403). Confirmed → ``invalid``; rejected →
    the proposal is dropped and the ticket stays ``open``."""
    text = clean_note(note)

    def plan(ticket: Ticket) -> Change:
        if ticket.status != "open" or ticket.invalid_proposed_by is None:
            raise _refuse(ticket, "decide", "no proposal to declare it invalid is pending")
        if ticket.invalid_proposed_by == actor.username:
            raise errors.Forbidden("The admin who proposed it may not confirm it (two people).")
        if confirm:
            fields = {"verified_at": now}
            return Change("invalid", "invalidated", text, fields, {"confirm": True})
        return Change("open", "invalid_rejected", text, _NO_PROPOSAL, {"confirm": False})

    return _apply(principal, actor, ticket_id, "invalidation_decide", plan, now)


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


#: The permission (services/admin/permissions.py) each step needs; the handlers gate on it.
STEP_PERMISSIONS: dict[str, str] = {
    "verify": "tickets.work",
    "rectify": "tickets.work",
    "callback": "tickets.work",
    "close": "tickets.work",
    "appeal": "tickets.appeal",
    "appeal_decide": "tickets.decide_appeal",
    "invalidation_decide": "tickets.decide_invalid",
}
STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "verify": verify,
    "rectify": rectify,
    "callback": callback,
    "close": close,
    "appeal": appeal,
    "appeal_decide": decide_appeal,
    "invalidation_decide": decide_invalid,
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
