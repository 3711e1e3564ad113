"""The same flows on PostgreSQL (Debian's server, started by the test session)."""

import asyncio

import pytest

from models.catalog import Center, Staff
from models.migrations import MIGRATIONS, SchemaVersion, migrate
from models.user import User
from tests.support.cli import ROOT
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings


@pytest.mark.asyncio
async def test_migrate_is_idempotent(ctx):
    assert await ctx.db.run(migrate, ctx.db.db) == []
    versions = await ctx.db.run(lambda: [v.version for v in SchemaVersion.select()])
    assert versions == [version for version, _, _ in MIGRATIONS]


@pytest.mark.asyncio
async def test_login_and_me_on_postgres(api, sandbox, ctx):
    codes = [await sandbox.login_code("oPg000000000000000000000000001") for _ in range(6)]
    results = await asyncio.gather(
        *[api("POST", "/api/v1/auth/login", {"code": c["code"]}) for c in codes]
    )
    assert {s for s, _ in results} == {200}
    assert await ctx.db.run(User.select().count) == 1
    status, me = await api("GET", "/api/v1/me", token=results[0][1]["token"])
    assert status == 200 and me["identity"]["verified"] is False
    status, health = await api("GET", "/healthz")
    assert status == 200


@pytest.mark.asyncio
async def test_catalog_import_on_postgres(ctx):
    data = load_catalog_file(str(ROOT / "conf" / "catalog.example.json"))
    first = await ctx.db.run(import_catalog, data, ctx.hasher)
    second = await ctx.db.run(import_catalog, data, ctx.hasher)
    assert first.counts["centers"]["created"] == 1
    assert second.counts["staff"]["unchanged"] == len(data["staff"])
    assert await ctx.db.run(Center.select().count) == 1
    assert await ctx.db.run(Staff.select().count) == len(data["staff"])
