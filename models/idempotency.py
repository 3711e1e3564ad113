"""Remembered answers of retried writes (``Idempotency-Key``)."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.user import User


class IdempotentRequest(BaseModel):
    """A citizen's write made with an ``Idempotency-Key``: the key (hashed), the body's hash
    and the rating it stored; written in the rating's own transaction, so a stored rating and
    its key cannot exist one without the other."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    key_hash = peewee.CharField(max_length=64)
    body_hash = peewee.CharField(max_length=64)
    evaluation_id = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        indexes = ((("user", "key_hash"), True),)
