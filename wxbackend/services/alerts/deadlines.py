"""Finding tickets whose deadline is near: one alert per ticket per deadline.

Run hourly by housekeeping (task ``deadline_alerts``): a ticket whose ``verify_due`` (not
yet verified) or ``rectify_due`` (not yet rectified) falls within ``alerts.before_hours``
from now gets an alert job due now. The job's key (``alert:<kind>:<ticket_id>``) makes
every later scan a no-op for it; a deadline met before the job runs is skipped then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from models.ticket import Ticket
from wxbackend.db import database
from wxbackend.services.alerts import content
from wxbackend.services.alerts.sending import schedule_alert

_CHECKS = (
    (content.VERIFY_DUE, Ticket.verify_due, Ticket.verified_at, ("open",)),
    (content.RECTIFY_DUE, Ticket.rectify_due, Ticket.rectified_at, ("open", "verified")),
)


def schedule_near_deadlines(now: datetime, before_hours: float) -> int:
    """Schedule the alerts of deadlines within ``before_hours`` of ``now`` (sync); returns
    how many were new."""
    horizon = now + timedelta(hours=before_hours)
    new = 0
    with database.atomic():
        for kind, due, done_at, statuses in _CHECKS:
            rows = Ticket.select(Ticket.id).where(
                (due > now) & (due <= horizon) & done_at.is_null() & Ticket.status.in_(statuses)
            )
            for row in rows:
                new += schedule_alert(kind, row.id, now)
    return new
