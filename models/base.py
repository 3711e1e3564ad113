"""The base model and shared field helpers."""

from __future__ import annotations

from datetime import datetime

import peewee

from wxbackend.clock import clock
from wxbackend.db import database


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every model stores (``wxbackend.clock``)."""
    return clock.utcnow()


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

    @property
    def sid(self) -> str:
        """The id as the API shows it (ids are strings in the contract)."""
        return str(self.get_id())
