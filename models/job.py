"""Scheduled work, durable in the database: reminders, default ratings, housekeeping.

A job is claimed with a lease (``lease_owner`` until ``lease_until``); a worker that dies
loses its lease and another takes the job over. ``key`` is the job's idempotency key: the
same work is never scheduled twice (``reminder:<case_id>:1``).
"""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow

JOB_STATUSES = ("pending", "running", "done", "failed", "cancelled")


class Job(BaseModel):
    kind = peewee.CharField(max_length=32)
    key = peewee.CharField(max_length=128, unique=True)
    payload = peewee.TextField(default="{}")
    due_at = peewee.DateTimeField()
    status = peewee.CharField(max_length=10, default="pending")
    attempts = peewee.IntegerField(default=0)
    lease_owner = peewee.CharField(max_length=64, null=True)
    lease_until = peewee.DateTimeField(null=True)
    last_error = peewee.CharField(max_length=300, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("status", "due_at"), False), (("kind", "status"), False))
