"""Reading 差评 tickets (工单): the list and one ticket, within the admin's reach, as the API
shows them (state, deadlines, overdue, history, and the rating it came from: item, stars,
reasons, comment, staff). The steps that change a ticket are in
:mod:`wxbackend.services.tickets.workflow`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.case import Case
from models.catalog import ServiceItem, Staff
from models.evaluation import Evaluation
from models.ticket import TICKET_STATUSES, Ticket, TicketEvent
from wxbackend import errors
from wxbackend.services.admin import scope
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.cases.scan import parse_id
from wxbackend.services.common import query_args
from wxbackend.services.common.query_args import encode_cursor
from wxbackend.services.ratings.indicators import indicator_labels_of
from wxbackend.services.tickets.deadlines import APPEAL_UPHELD, is_overdue, overdue_condition
from wxbackend.timefmt import iso

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


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
    ticket: Ticket,
    case_no: str,
    events: list[TicketEvent],
    now: datetime,
    rating: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ticket as the admin API shows it (api.md), with its history oldest first and the
    ``rating`` it came from (:func:`_ratings_of`)."""
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
        "pending_invalidation": (
            {
                "by": ticket.invalid_proposed_by,
                "note": ticket.invalid_proposed_note,
                "at": iso(ticket.invalid_proposed_at),
            }
            if ticket.invalid_proposed_by is not None
            else None
        ),
        "excluded_from_staff_figures": ticket.appeal_status == APPEAL_UPHELD,
        "history": [_history_item(e) for e in events],
        "rating": rating,
    }


def _events_of(ticket_ids: list[int]) -> dict[int, list[TicketEvent]]:
    found: dict[int, list[TicketEvent]] = defaultdict(list)
    if ticket_ids:
        rows = TicketEvent.select().where(TicketEvent.ticket.in_(ticket_ids))
        for event in rows.order_by(TicketEvent.id):
            found[event.ticket_id].append(event)
    return found


def _person(staff_no: str | None, name: str | None) -> dict[str, str] | None:
    return None if staff_no is None else {"staff_no": staff_no, "name": name or ""}


def _ratings_of(evaluation_ids: list[int]) -> dict[int, dict[str, Any]]:
    """``{evaluation id: {overall, indicators:[{code, label}], comment, comment_status,
    item:{code, name}, window_staff, approver}}`` (staff ``{staff_no, name}`` or None): what
    the console shows of a ticket's rating, in two queries."""
    if not evaluation_ids:
        return {}
    indicators = indicator_labels_of(evaluation_ids)
    clerk, approver = Staff.alias(), Staff.alias()
    rows = (
        Evaluation.select(
            Evaluation.id,
            Evaluation.overall,
            Evaluation.comment,
            Evaluation.comment_status,
            ServiceItem.code,
            ServiceItem.name,
            clerk.staff_no,
            clerk.name,
            approver.staff_no,
            approver.name,
        )
        .join(ServiceItem, on=(Evaluation.item == ServiceItem.id))
        .switch(Evaluation)
        .join(clerk, peewee.JOIN.LEFT_OUTER, on=(Evaluation.window_staff == clerk.id))
        .switch(Evaluation)
        .join(approver, peewee.JOIN.LEFT_OUTER, on=(Evaluation.approver == approver.id))
        .where(Evaluation.id.in_(evaluation_ids))
        .tuples()
    )
    return {
        row[0]: {
            "overall": row[1],
            "indicators": indicators.get(row[0], []),
            "comment": row[2],
            "comment_status": row[3],
            "item": {"code": row[4], "name": row[5]},
            "window_staff": _person(row[6], row[7]),
            "approver": _person(row[8], row[9]),
        }
        for row in rows
    }


def _with_case_no(query: peewee.Select) -> peewee.Select:
    # attr: the partial Case goes to ``case_row``, leaving ``ticket.case_id`` intact
    return query.join(Case, on=(Ticket.case == Case.id), attr="case_row").switch(Ticket)


def views_of(tickets: list[Ticket], now: datetime) -> list[dict[str, Any]]:
    """:func:`ticket_view` of tickets selected with their case (one query for the events, two
    for the ratings)."""
    events = _events_of([t.id for t in tickets])
    ratings = _ratings_of([t.evaluation_id for t in tickets])
    return [
        ticket_view(t, t.case_row.case_no, events.get(t.id, []), now, ratings.get(t.evaluation_id))
        for t in tickets
    ]


def list_tickets(principal: Principal, query: TicketQuery, now: datetime) -> dict[str, Any]:
    """``GET /tickets``: the principal's tickets, newest first, keyset pagination on the id."""
    rows = _with_case_no(Ticket.select(Ticket, Case.case_no))
    rows = scope.scoped(
        rows, principal, "tickets.read", center=Ticket.center, department=Ticket.department
    )
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


def visible_ticket(principal: Principal, ticket_id: Any) -> Ticket:
    number = parse_id(ticket_id)
    ticket = (
        _with_case_no(Ticket.select(Ticket, Case.case_no)).where(Ticket.id == number).first()
        if number is not None
        else None
    )
    if ticket is None:
        raise errors.NotFound("No such ticket.")
    scope.ensure_visible(principal, "tickets.read", ticket.center_id, ticket.department_id)
    return ticket


def get_ticket(principal: Principal, ticket_id: Any, now: datetime) -> dict[str, Any]:
    """``GET /tickets/{id}`` (404 when missing or out of the principal's scope)."""
    return views_of([visible_ticket(principal, ticket_id)], now)[0]
