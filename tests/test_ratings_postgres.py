"""Scanning and rating again on PostgreSQL: the compiled hot-path queries (db.compiled_rows),
the first-rating transaction and its unique-index guard must hold there too."""

import pytest

from tests.test_evaluations import (  # noqa: F401 - collected again on PostgreSQL
    test_a_bad_rating_opens_one_ticket,
    test_fifty_concurrent_submissions_store_one_rating,
    test_rating_closes_the_case_to_every_token,
    test_scan_rate_then_my_evaluations,
    test_staff_may_not_rate_their_own_case,
    test_the_database_constraint_holds_without_the_claim,
    test_token_errors_on_rating,
)
from tests.test_scan import (  # noqa: F401
    test_me_lists_pending_cases_until_rated,
    test_scan_of_a_case_without_staff,
    test_scan_token_states,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings
