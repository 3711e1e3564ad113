"""Settings that administrators change at run time (the WeChat configuration)."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow


class WeChatConfigVersion(BaseModel):
    """One saved version of the admin-stored WeChat configuration.

    ``values`` is JSON of the stored fields; secrets in it are AES-GCM ciphertexts. The
    newest row is in force; older rows are the history (who, when, which fields changed).
    """

    version = peewee.IntegerField(unique=True)
    values = peewee.TextField()
    changed_fields = peewee.TextField(default="[]")
    updated_by = peewee.CharField(max_length=64)
    updated_at = peewee.DateTimeField(default=utcnow)
