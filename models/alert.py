"""Staff alerts through a center's WeCom (企业微信) group robot: one row per alert, the
record that makes each alert go at most once (``key`` is the job's key)."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.catalog import Center
from models.ticket import Ticket

#: ``pending`` → ``sending`` (committed before the robot is called) → ``sent``; or
#: ``skipped`` (no robot, deadline already met), ``failed`` (WeCom refused it for good),
#: ``unknown`` (a call that may have landed: a timeout, or a worker that died mid-send;
#: never sent again).
ALERT_STATUSES = ("pending", "sending", "sent", "skipped", "failed", "unknown")


class StaffAlert(BaseModel):
    """One alert: a new 差评 (``bad``) or a deadline near (``verify_due``, ``rectify_due``)."""

    key = peewee.CharField(max_length=128, unique=True)
    kind = peewee.CharField(max_length=16)
    ticket = peewee.ForeignKeyField(Ticket, on_delete="CASCADE")
    center = peewee.ForeignKeyField(Center, on_delete="CASCADE")
    status = peewee.CharField(max_length=10, default="pending")
    errcode = peewee.CharField(max_length=16, null=True)
    attempts = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)
