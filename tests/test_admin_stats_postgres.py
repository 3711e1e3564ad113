"""Statistics, ranking and export again on PostgreSQL: the day grouping (``DATE(t + INTERVAL)``),
the aggregations and the keyset export must hold there too (same tests, fresh schema)."""

import pytest

from tests.test_admin_stats import (  # noqa: F401 - collected again on PostgreSQL
    test_ranking_order_and_formula,
    test_stats_are_scoped,
    test_stats_equal_a_brute_force_recount,
)
from tests.test_export import test_csv_and_jsonl_parse_back_to_the_rows  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings
