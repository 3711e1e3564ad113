"""Who may call the server besides citizens: partner systems and administrators."""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow
from models.catalog import Center, Department


class Partner(BaseModel):
    """A window/case system that signs its requests (HMAC) with a shared secret."""

    key_id = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    # The secret, AES-GCM encrypted: the server needs it to check signatures.
    secret_enc = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)


class PartnerCenter(BaseModel):
    """A center a partner serves (product rule 20). A partner with none serves every center
    (a province-wide window system); one with some reports cases of those only."""

    partner = peewee.ForeignKeyField(Partner, backref="centers", on_delete="CASCADE")
    center = peewee.ForeignKeyField(Center, on_delete="CASCADE")

    class Meta:
        indexes = ((("partner", "center"), True),)


class Admin(BaseModel):
    """An administrator of the web console. Its ``role`` is a key of the permission table
    (``wxbackend.services.admin.permissions.ROLES``), which also says what it is bound to."""

    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=200)
    role = peewee.CharField(max_length=16)
    center = peewee.ForeignKeyField(Center, null=True, on_delete="RESTRICT")
    department = peewee.ForeignKeyField(Department, null=True, on_delete="RESTRICT")
    # The staff member this account belongs to, if any (product rule 18: nobody records
    # a callback rating of their own case).
    staff_no = peewee.CharField(max_length=32, null=True)
    disabled = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
