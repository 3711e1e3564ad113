"""Partner keys of the admin API (合作方密钥, ``/admin/api/partners``): list, create (the
secret shown once), revoke. Every write is audited in its transaction, never with a secret.
All functions are synchronous: run them on the database thread (``ctx.db.run``).
"""

from __future__ import annotations

from typing import Any

from models.access import Partner, PartnerCenter
from models.base import utcnow
from models.catalog import Center
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import FieldCipher
from wxbackend.services.admin.accounts import AccountError, create_partner
from wxbackend.services.admin.audit import Actor, record
from wxbackend.timefmt import iso


def _partner_view(p: Partner) -> dict[str, Any]:
    centers = (
        Center.select(Center.code)
        .join(PartnerCenter)
        .where(PartnerCenter.partner == p.id)
        .order_by(Center.code)
    )
    return {
        "key_id": p.key_id,
        "name": p.name,
        "centers": [c.code for c in centers],
        "created_at": iso(p.created_at),
        "revoked_at": iso(p.revoked_at),
    }


def list_partners() -> list[dict[str, Any]]:
    """Every partner key, newest first (never a secret)."""
    return [_partner_view(p) for p in Partner.select().order_by(Partner.id.desc())]


def add_partner(
    actor: Actor, name: str, cipher: FieldCipher, centers: list[str] | None = None
) -> dict[str, Any]:
    """A new partner key: its view plus ``secret``, shown this once (stored encrypted);
    ``centers``: the center codes it serves (none: every center). Audited ``partner.create``
    (name, centers and key id only)."""
    with database.atomic():
        try:
            key = create_partner(name, cipher, centers or ())
        except AccountError as exc:
            raise errors.InvalidField(str(exc), field=exc.field) from None
        view = _partner_view(Partner.get(Partner.key_id == key.key_id))
        detail = {"name": view["name"], "centers": view["centers"]}
        record(actor, "partner.create", "partner", key.key_id, detail)
    return {**view, "secret": key.secret}


def revoke_partner(actor: Actor, key_id: str) -> dict[str, Any]:
    """Revoke a key (idempotent; audited ``partner.revoke`` the first time). Its signed
    requests fail from then on once the caller runs ``partner_auth.announce_key_change``
    (other processes: within about a second, see ``partner_auth``)."""
    with database.atomic():
        partner = Partner.get_or_none(Partner.key_id == key_id)
        if partner is None:
            raise errors.NotFound(f"No partner key {key_id!r}.")
        if partner.revoked_at is None:
            Partner.update(revoked_at=utcnow()).where(Partner.id == partner.id).execute()
            record(actor, "partner.revoke", "partner", key_id, {"name": partner.name})
            partner = Partner.get_by_id(partner.id)
    return _partner_view(partner)
