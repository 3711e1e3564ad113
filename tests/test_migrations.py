"""The schema migrations, on SQLite and on PostgreSQL."""

import pytest

from models.migrations import MIGRATIONS, SchemaVersion, migrate
from tests.support.databases import both_databases


@both_databases
@pytest.mark.asyncio
async def test_migrate_is_idempotent(ctx):
    assert await ctx.db.run(migrate, ctx.db.db) == []
    versions = await ctx.db.run(lambda: [v.version for v in SchemaVersion.select()])
    assert versions == [version for version, _, _ in MIGRATIONS]
