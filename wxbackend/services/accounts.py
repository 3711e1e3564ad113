"""Administrators and partner keys, as the command line and the admin API create them."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from models.access import ADMIN_ROLES, Admin, Partner
from models.catalog import Center
from wxbackend.security import FieldCipher, hash_password

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    """A bad username, password, role or center; the message says which."""


def create_admin(username: str, password: str, role: str, center_code: str | None = None) -> Admin:
    """A new administrator with an scrypt password hash."""
    if not USERNAME.match(username):
        raise AccountError("username: 3–64 letters, digits or _.@-")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if role not in ADMIN_ROLES:
        raise AccountError(f"role: one of {', '.join(ADMIN_ROLES)}")
    center = None
    if center_code:
        center = Center.get_or_none(Center.code == center_code)
        if center is None:
            raise AccountError(f"center: unknown center {center_code!r}")
    elif role == "center_admin":
        raise AccountError("center: a center_admin needs --center")
    if Admin.select().where(Admin.username == username).exists():
        raise AccountError(f"username: {username!r} exists")
    return Admin.create(
        username=username, password_hash=hash_password(password), role=role, center=center
    )


@dataclass(frozen=True)
class PartnerKey:
    key_id: str
    secret: str


def create_partner(name: str, cipher: FieldCipher) -> PartnerKey:
    """A new partner key; the secret is returned once and stored encrypted."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("name: 1–200 characters")
    key_id = "pk_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    Partner.create(key_id=key_id, name=name, secret_enc=cipher.encrypt(secret, "partner.secret"))
    return PartnerKey(key_id, secret)
