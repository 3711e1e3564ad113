"""Statistics, ranking and export again on PostgreSQL: the day grouping (``DATE(t + INTERVAL)``),
the aggregations and the keyset export must hold there too (same tests, fresh schema)."""

import base64
import os

import psycopg
import pytest

from tests.test_admin_stats import (  # noqa: F401 - collected again on PostgreSQL
    test_ranking_order_and_formula,
    test_stats_are_scoped,
    test_stats_equal_a_brute_force_recount,
)
from tests.test_export import test_csv_and_jsonl_parse_back_to_the_rows  # noqa: F401

pytestmark = pytest.mark.postgres


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def settings_overrides(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return {
        "database": {"url": postgres_url},
        "security": {"master_key": _key(), "hash_key": _key()},
    }
