"""Citizens: the WeChat users of the mini-program."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow


class User(BaseModel):
    """A WeChat user, known by the mini-program's openid (unionid kept when WeChat gives it)."""

    openid = peewee.CharField(max_length=64, unique=True)
    unionid = peewee.CharField(max_length=64, null=True, index=True)
    # WeChat's session_key, AES-GCM encrypted; never returned by the API.
    session_key_enc = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    last_login_at = peewee.DateTimeField(default=utcnow)
