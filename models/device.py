"""Evaluator screens (评价器): the device key of a window's screen, stored hashed."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.catalog import Window


class WindowDevice(BaseModel):
    """A window's device key: only its SHA-256 is kept. ``generation`` grows with each
    rotation; a device token carries the generation it was paired under, so a rotation
    ends every earlier pairing even if Redis forgot to drop the tokens."""

    window = peewee.ForeignKeyField(Window, unique=True, backref="devices", on_delete="CASCADE")
    key_hash = peewee.CharField(max_length=64)
    generation = peewee.IntegerField(default=1)
    rotated_at = peewee.DateTimeField(default=utcnow)
