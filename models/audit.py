"""The audit log: every admin write and every reveal of personal data."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow


class AuditEntry(BaseModel):
    """Who did what, when, from where. ``detail`` is JSON without secrets or personal data."""

    at = peewee.DateTimeField(default=utcnow, index=True)
    admin_id = peewee.IntegerField(null=True)
    username = peewee.CharField(max_length=64)
    action = peewee.CharField(max_length=64, index=True)
    target_type = peewee.CharField(max_length=32, default="")
    target_id = peewee.CharField(max_length=64, default="")
    detail = peewee.TextField(default="{}")
    client_ip = peewee.CharField(max_length=64, default="")
