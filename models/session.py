"""Login sessions of citizens and administrators: the durable record (Redis caches it)."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow


class Session(BaseModel):
    """One bearer token, kept only as its SHA-256 ``digest``: whose it is (``kind`` ``citizen``
    or ``admin``, ``subject_id`` the user's or admin's id), until when, and whether it was
    revoked. The database is the source; Redis holds a copy for the hot path
    (:mod:`wxbackend.services.common.session_store`), so a Redis restart logs nobody out."""

    digest = peewee.CharField(max_length=64, unique=True)
    kind = peewee.CharField(max_length=8)
    subject_id = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)  # the housekeeping purge walks it
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("kind", "subject_id"), False),)  # revoke every session of one subject
