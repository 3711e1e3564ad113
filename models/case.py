"""Cases (办件) reported by window systems, and their one-time QR tokens."""

from __future__ import annotations

import peewee

from models.access import Partner
from models.base import BaseModel, utcnow
from models.catalog import Center, Department, ServiceItem, Staff, Window


class Case(BaseModel):
    """A finished case (办件) as the window system reported it.

    The applicant (经办人) is personal data: name, ID number and phone are AES-GCM
    ciphertexts; ``applicant_id_hash`` (HMAC) matches the case to a verified identity.
    ``first_rated_at`` is set in the transaction that stores the first rating.
    """

    # Unique per reporting partner (index below), so one window system cannot learn or
    # block another's case numbers.
    case_no = peewee.CharField(max_length=64, index=True)
    item = peewee.ForeignKeyField(ServiceItem, on_delete="RESTRICT")
    center = peewee.ForeignKeyField(Center, on_delete="RESTRICT")
    department = peewee.ForeignKeyField(Department, on_delete="RESTRICT")
    window = peewee.ForeignKeyField(Window, null=True, on_delete="SET NULL")
    window_staff = peewee.ForeignKeyField(
        Staff, null=True, on_delete="SET NULL", backref="window_cases"
    )
    approver = peewee.ForeignKeyField(
        Staff, null=True, on_delete="SET NULL", backref="approved_cases"
    )
    applicant_name_enc = peewee.TextField()
    applicant_id_enc = peewee.TextField()
    applicant_id_hash = peewee.CharField(max_length=64, index=True)
    applicant_phone_enc = peewee.TextField(null=True)
    enterprise_name = peewee.CharField(max_length=200, null=True)
    enterprise_credit_code = peewee.CharField(max_length=18, null=True)
    accepted_at = peewee.DateTimeField()
    completed_at = peewee.DateTimeField(index=True)
    reported_at = peewee.DateTimeField(default=utcnow)
    partner = peewee.ForeignKeyField(Partner, null=True, on_delete="SET NULL")
    first_rated_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("partner", "case_no"), True),)


class QrToken(BaseModel):
    """A one-time QR token: the scene of the case's mini-program code.

    Only the token's SHA-256 is stored. ``status``: active → used (by the rating) or
    revoked (a newer code was asked for, or the case was rated another way); expiry is
    ``expires_at`` (``qr.ttl_days``).
    """

    case = peewee.ForeignKeyField(Case, backref="tokens", on_delete="CASCADE")
    token_hash = peewee.CharField(max_length=64, unique=True)
    status = peewee.CharField(max_length=10, default="active")
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("case", "status"), False),)
