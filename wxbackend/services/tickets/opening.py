"""Opening the ticket of a 差评 (差评工单): status ``open``, its deadlines in working days.

The rating writer (:mod:`wxbackend.services.ratings.writer`) calls :func:`open_ticket` inside
the transaction that stores the rating, for every channel; from then on the ticket's
workflow (:mod:`wxbackend.services.tickets.workflow`) moves it. Opening schedules the staff
alert of the new 差评 (:mod:`wxbackend.services.alerts`) in the same transaction.
"""

from __future__ import annotations

import functools
from datetime import datetime

from models.case import Case
from models.ticket import Ticket, TicketEvent
from wxbackend.db import insert_values
from wxbackend.services.alerts import content as alert_content
from wxbackend.services.alerts.sending import schedule_alert
from wxbackend.services.public import rollups
from wxbackend.services.tickets.workdays import WorkCalendar
from wxbackend.settings import Settings


@functools.lru_cache(maxsize=8)
def _calendar(extra_holidays: tuple[str, ...], extra_workdays: tuple[str, ...]) -> WorkCalendar:
    return WorkCalendar(list(extra_holidays), list(extra_workdays))


def open_ticket(evaluation_id: int, case: Case, opened_at: datetime, settings: Settings) -> int:
    """Open the 差评 ticket of evaluation ``evaluation_id`` (status ``open``, deadlines in
    working days from ``tickets.*``) with its first event. Call it inside the transaction
    that stores the rating. Returns the ticket id."""
    policy = settings.tickets
    calendar = _calendar(tuple(policy.extra_holidays), tuple(policy.extra_workdays))
    columns = {
        "evaluation": evaluation_id,
        "case": case.id,
        "center": case.center_id,
        "department": case.department_id,
        "status": "open",
        "opened_at": opened_at,
        "verify_due": calendar.due(opened_at, policy.verify_working_days),
        "rectify_due": calendar.due(opened_at, policy.rectify_working_days),
        "overdue": False,
    }
    ticket_id = insert_values(Ticket, columns)  # compiled once: inside the write lock
    event = {"ticket": ticket_id, "status": "open", "action": "open", "by": "system"}
    insert_values(TicketEvent, {**event, "note": "", "at": opened_at})
    rollups.ticket_changed(case, None, columns)
    # The center's staff hear of it through their WeCom robot (sent by the worker; a center
    # without a robot records the alert as skipped).
    schedule_alert(alert_content.BAD, ticket_id, opened_at)
    return ticket_id
