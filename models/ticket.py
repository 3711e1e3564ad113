"""Bad-review tickets (差评整改): every 差评 opens one; the closed loop is worked by admins."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.case import Case
from models.catalog import Center, Department
from models.evaluation import Evaluation

TICKET_STATUSES = ("open", "verified", "rectified", "called_back", "closed", "invalid")


class Ticket(BaseModel):
    """The 差评 closed loop of one evaluation: 核实 → 整改 → 回访 → 办结 (or invalid).

    ``verify_due`` and ``rectify_due`` are fixed when it opens (working days); they never pause.
    """

    evaluation = peewee.ForeignKeyField(Evaluation, unique=True, on_delete="RESTRICT")
    case = peewee.ForeignKeyField(Case, on_delete="RESTRICT")
    center = peewee.ForeignKeyField(Center, on_delete="RESTRICT")
    department = peewee.ForeignKeyField(Department, on_delete="RESTRICT")
    status = peewee.CharField(max_length=12, default="open", index=True)
    opened_at = peewee.DateTimeField(default=utcnow)
    verify_due = peewee.DateTimeField()
    rectify_due = peewee.DateTimeField(index=True)  # the figures: tickets due in a period
    verified_at = peewee.DateTimeField(null=True)
    rectified_at = peewee.DateTimeField(null=True)
    closed_at = peewee.DateTimeField(null=True)
    overdue = peewee.BooleanField(default=False, index=True)
    appeal_status = peewee.CharField(max_length=10, null=True)  # pending, upheld, rejected
    # A proposal to declare the 差评 invalid (product rule 19): who, why, when; a second
    # person confirms or rejects it.
    invalid_proposed_by = peewee.CharField(max_length=64, null=True)
    invalid_proposed_note = peewee.TextField(null=True)
    invalid_proposed_at = peewee.DateTimeField(null=True)


class TicketEvent(BaseModel):
    """One step of a ticket: who, when, what, with the note."""

    ticket = peewee.ForeignKeyField(Ticket, backref="events", on_delete="CASCADE")
    status = peewee.CharField(max_length=16)
    action = peewee.CharField(max_length=16)
    by = peewee.CharField(max_length=64)
    note = peewee.TextField(default="")
    at = peewee.DateTimeField(default=utcnow)
