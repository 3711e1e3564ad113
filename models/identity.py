"""Real-name identities (实名) proven by WeChat face verification (人脸核身)."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.user import User


class Identity(BaseModel):
    """The verified real name bound to one WeChat user.

    Name and ID number are AES-GCM ciphertexts; ``id_hash`` is their keyed lookup hash
    (HMAC), used to match cases to applicants and to detect staff. Only ``name_masked``
    (first character + ``**``) is ever shown.
    """

    user = peewee.ForeignKeyField(User, unique=True, on_delete="CASCADE")
    name_enc = peewee.TextField()
    id_number_enc = peewee.TextField()
    id_hash = peewee.CharField(max_length=64, unique=True)
    name_masked = peewee.CharField(max_length=8)
    method = peewee.CharField(max_length=32, default="wechat_face")
    verified_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()


class FaceAttempt(BaseModel):
    """One face-verification attempt: getverifyid → the citizen's face check → queryverifyinfo.

    The certificate (name + ID number) is kept encrypted so the server can recompute
    ``cert_hash`` at finish; the unkeyed cert_hash itself is never stored.
    """

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", index=True)
    out_seq_no = peewee.CharField(max_length=32, unique=True)
    verify_id = peewee.CharField(max_length=256, unique=True)
    cert_enc = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    expires_at = peewee.DateTimeField()
    consumed_at = peewee.DateTimeField(null=True)
    last_verify_ret = peewee.IntegerField(null=True)
