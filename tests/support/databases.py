"""Running a test on SQLite and again on PostgreSQL: the ``db_backend`` fixture
(tests/conftest.py) is ``sqlite`` unless a test asks for both::

    @both_databases
    @pytest.mark.asyncio
    async def test_something(ctx): ...

collects ``test_something[sqlite]`` and ``test_something[postgres]`` (marked ``postgres``:
``-m 'not postgres'`` leaves it out). The PostgreSQL run gets a fresh schema and its own keys
(the ``postgres_settings`` fixture); the test's own ``settings_overrides`` apply on both.
"""

from __future__ import annotations

import pytest

SQLITE = "sqlite"
POSTGRES = "postgres"

#: Decorator: the test runs once per database.
both_databases = pytest.mark.parametrize(
    "db_backend", [SQLITE, pytest.param(POSTGRES, marks=pytest.mark.postgres)], indirect=True
)
