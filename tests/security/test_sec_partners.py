"""Issue 12 item 6: partners were not isolated. Partner 2 renewed partner 1's case code
(revoking the one on partner 1's screen), learned partner 1's case numbers from 409
``case_exists``, and reported cases for any center. Product rule 20: partners are bound to
the centers they serve; a case number is unique per partner; only the reporting partner
renews its code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import peewee
import pytest

from models.access import Partner
from models.case import Case
from models.migrations import SchemaVersion, migrate
from tests.support.admins import admin_token
from tests.support.public_seed import OTHER_CENTER, seed_catalog
from wxbackend.clients.partner import PartnerClient
from wxbackend.services.admin.accounts import create_partner


async def second_partner(api, ctx, *centers: str) -> PartnerClient:
    key = await ctx.db.run(create_partner, "另一窗口系统", ctx.cipher, centers)
    row = await ctx.db.run(Partner.get, Partner.key_id == key.key_id)
    return PartnerClient(api, key.key_id, key.secret, row.id)


@pytest.mark.asyncio
async def test_one_partner_cannot_touch_anothers_cases(api, ctx, partner):
    other = await second_partner(api, ctx)
    first = await partner.new_case(case_no="HL-2026-0001")
    status, answer = await other.qrcode("HL-2026-0001")
    assert status == 404, answer  # not theirs: not even confirmed
    # partner 1's code was not revoked by that: its token is still active
    tokens = await ctx.db.run(
        lambda: [t.status for t in Case.get_by_id(int(first["case_id"])).tokens]
    )
    assert tokens == ["active"]
    assert (await partner.qrcode("HL-2026-0001"))[0] == 200
    # the same case number in another window system is its own case, no 409 to learn from
    status, answer = await other.report_case(case_no="HL-2026-0001")
    assert status == 201, answer
    assert (await partner.report_case(case_no="HL-2026-0001"))[0] == 409  # its own: 409
    count = await ctx.db.run(lambda: Case.select().where(Case.case_no == "HL-2026-0001").count())
    assert count == 2


@pytest.mark.asyncio
async def test_a_partner_reports_only_for_its_centers(api, ctx, partner):
    await ctx.db.run(seed_catalog, ctx)
    bound = await second_partner(api, ctx, "440103-HL")
    status, answer = await bound.report_case(case_no="B-1")
    assert status == 201, answer  # the default case is of 440103-HL
    status, answer = await bound.report_case(
        case_no="B-2",
        center_code=OTHER_CENTER,
        department_code="XX-GENERAL",
        item_code="440104-XX-001",
        window_code=None,
        window_staff_no=None,
        approver_staff_no=None,
    )
    assert (status, answer["error"]["code"]) == (403, "beyond_reach")


@pytest.mark.asyncio
async def test_admins_give_partners_their_centers(api, ctx, partner):
    root = await admin_token(api, ctx)
    body = {"name": "海龙街窗口系统", "centers": ["440103-HL"]}
    status, made = await api("POST", "/admin/api/partners", body, token=root)
    assert status == 201 and made["centers"] == ["440103-HL"], made
    status, answer = await api(
        "POST", "/admin/api/partners", {"name": "x", "centers": ["NOPE"]}, token=root
    )
    assert status == 422 and answer["error"]["field"] == "centers"


def test_cli_partner_create_with_centers(tmp_path):
    wxbackend = str(Path(sys.executable).parent / "wxbackend")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    catalog = Path(__file__).resolve().parents[2] / "conf" / "catalog.example.json"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [wxbackend, *args], cwd=tmp_path, env=env, capture_output=True, timeout=60
        )

    assert run("catalog", "import", str(catalog)).returncode == 0
    made = run("partner", "create", "--name", "W", "--center", "440103-HL", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["key_id"].startswith("pk_")
    refused = run("partner", "create", "--name", "W", "--center", "NOPE")
    assert refused.returncode == 1 and b"NOPE" in refused.stderr


def test_migration_makes_case_numbers_unique_per_partner(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "old.db"))
    from wxbackend.db import database

    database.initialize(db)
    migrate(db)
    # the database as migration 5 left it: case_no unique across partners
    db.execute_sql('DROP INDEX "case_partner_id_case_no"')
    db.execute_sql('DROP INDEX "case_case_no"')
    db.execute_sql('CREATE UNIQUE INDEX "case_case_no" ON "case" ("case_no")')
    SchemaVersion.delete().where(SchemaVersion.version >= 6).execute()
    assert 6 in migrate(db)
    indexes = {i.name: i for i in db.get_indexes("case")}
    assert not indexes["case_case_no"].unique
    assert indexes["case_partner_id_case_no"].unique
    db.close()
