"""The database side of the fault harness (tests/support/faults.py): its settings, a query on
the server's database, and rateable cases written straight into it (a verified identity for
each logged-in citizen and finished cases, each with an active QR code; catalogue rows of
``conf/catalog.example.json``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from models.identity import Identity
from models.user import User
from tests.support.cases import CATALOG_FILE, make_id_number
from wxbackend.db import database, make_peewee_database
from wxbackend.security import (
    FieldCipher,
    LookupHasher,
    load_keys,
    normalize_id_number,
    token_digest,
)
from wxbackend.services.cases import reports
from wxbackend.services.cases.tokens import new_scene
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
from wxbackend.services.citizens import identity
from wxbackend.settings import Settings, load_settings


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a server started with ``env`` reads."""
    return load_settings(env={k: v for k, v in env.items() if k.startswith("WXB_")})


def on_database(settings: Settings, query: Any) -> Any:
    """``query()`` on the database of ``settings`` (a connection of its own)."""
    db = make_peewee_database(settings)
    database.initialize(db)
    try:
        with db.connection_context():
            return query()
    finally:
        db.close()


def seed_cases(
    settings: Settings, logins: list[tuple[str, str]], cases: int
) -> list[tuple[str, list[str]]]:
    """For each ``(openid, session token)`` of ``logins``: a verified identity and ``cases``
    cases of it with a QR code; returns ``[(token, [scene, …])]`` (one transaction; the
    database must be initialised)."""
    keys = load_keys(settings)
    cipher, hasher = FieldCipher(keys), LookupHasher(keys)
    now, made = utcnow(), []
    with database.atomic():
        if not Center.select().exists():
            import_catalog(load_catalog_file(str(CATALOG_FILE)), hasher)
        places = {
            "item": ServiceItem.get(ServiceItem.code == "440103-SY-001").id,
            "center": Center.get(Center.code == "440103-HL").id,
            "department": Department.get(Department.code == "HL-LABOR").id,
            "window": Window.get(Window.code == "HL-W01").id,
            "window_staff": Staff.get(Staff.staff_no == "HL001").id,
            "approver": Staff.get(Staff.staff_no == "HL101").id,
        }
        for n, (openid, token) in enumerate(logins):
            id_number = make_id_number(500 + n)
            id_hash = hasher.hash(normalize_id_number(id_number), "id_number")
            Identity.insert(
                user=User.get(User.openid == openid).id,
                name_enc=cipher.encrypt("黎明", identity.NAME_CONTEXT),
                id_number_enc=cipher.encrypt(id_number, identity.ID_NUMBER_CONTEXT),
                id_hash=id_hash,
                name_masked="黎*",
                verified_at=now,
                expires_at=now + timedelta(days=30),
            ).execute()
            scenes = [new_scene() for _ in range(cases)]
            for i, scene in enumerate(scenes):
                case = Case.insert(
                    case_no=f"FT-{n:03d}-{i:04d}",
                    applicant_name_enc=cipher.encrypt("黎明", reports.NAME_CONTEXT),
                    applicant_id_enc=cipher.encrypt(id_number, reports.ID_CONTEXT),
                    applicant_id_hash=id_hash,
                    accepted_at=now - timedelta(hours=2),
                    completed_at=now - timedelta(hours=1),
                    reported_at=now - timedelta(hours=1),
                    **places,
                ).execute()
                QrToken.insert(
                    case=case,
                    token_hash=token_digest(scene),
                    status="active",
                    created_at=now,
                    expires_at=now + timedelta(days=3),
                ).execute()
            made.append((token, scenes))
    return made
