"""The log's appends on PostgreSQL: the head row lock keeps leaf indexes gap-free and in
commit order under concurrent ratings; the rating tests run again with the log on."""

import pytest

from tests.test_transparency import (  # noqa: F401 - collected again on PostgreSQL
    concurrent_appends_are_gap_free,
    test_every_event_is_logged_with_receipts_and_proofs,
    test_verify_log_names_what_was_tampered_with,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings


@pytest.mark.asyncio
async def test_concurrent_appends_postgres(ctx):
    await concurrent_appends_are_gap_free(ctx)
