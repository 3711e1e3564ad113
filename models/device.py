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


class DeviceToken(BaseModel):
    """A paired screen's device token, kept only as its SHA-256 ``digest``: the window and
    the key ``generation`` it was paired under, until when (renewed as the screen connects),
    and when a rotation ``ended`` it. The database is the source; Redis holds a copy for the
    hot path (:mod:`wxbackend.services.devices.tokens`), so a Redis restarted empty unpairs
    no screen."""

    digest = peewee.CharField(max_length=64, unique=True)
    window = peewee.ForeignKeyField(Window, backref="device_tokens", on_delete="CASCADE")
    generation = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)  # the housekeeping purge walks it
    ended_at = peewee.DateTimeField(null=True)
