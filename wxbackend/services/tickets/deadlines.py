"""When a 差评 ticket is late (超期), and which ratings staff figures leave out.

A ticket is *overdue* when now > ``verify_due`` while it is ``open``, or now > ``rectify_due``
while it is not yet rectified (``open`` or ``verified``): computed on every read
(:func:`is_overdue`) and in SQL for the ``overdue`` filter (:func:`overdue_condition`). The
stored ``Ticket.overdue`` flag is sticky (:func:`flag_overdue`, the worker's housekeeping).
"""

from __future__ import annotations

from datetime import datetime

import peewee

from models.base import utcnow
from models.ticket import Ticket
from wxbackend.db import database

#: Statuses in which the rectification is still owed (整改未完成).
UNRECTIFIED = ("open", "verified")
#: The appeal state that excludes a 差评 from staff figures.
APPEAL_UPHELD = "upheld"


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
