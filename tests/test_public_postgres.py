"""Likes, the public list, the figures and live publishing again, on PostgreSQL.

The tests are those of test_likes.py, test_public.py, test_public_stats_cache.py (the cached
figures are the computed ones, types included) and test_realtime.py, collected here a
second time with this module's ``settings_overrides`` (a fresh PostgreSQL schema): the row
lock that keeps like counts exact, the window function of the first likers and the
aggregations must hold there too.
"""

import pytest

from tests.test_likes import (  # noqa: F401 - collected again on PostgreSQL
    test_counts_are_exact_under_concurrency,
    test_one_like_per_person_across_wechat_accounts,
    test_same_person_liking_twenty_times_at_once_is_one_like,
)
from tests.test_public import (  # noqa: F401
    test_filters,
    test_list_shape_masks_likers_replies_follow_up,
    test_page_costs_a_fixed_number_of_queries,
    test_pages_stay_stable_while_ratings_arrive,
    test_stats_equal_a_brute_force_recount,
    test_tallies_group_by_center,
)
from tests.test_public_stats_cache import test_cached_answer_equals_uncached  # noqa: F401
from tests.test_realtime import test_hook_publishes_public_shape_to_other_connections  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings
