"""The role table (tests/test_admin_roles.py) for statistics, the staff ranking and the export.

Listed in ``CASE_MODULES`` there, so these rows also count for its route-coverage test.

Every role but the auditor may read them (stats.read, export); what each sees is narrowed by
its reach (tested with the data in test_admin_stats.py and test_export.py). A bad query is 400
for every role with the permission, 403 for the auditor, 401 without a token.
"""

from __future__ import annotations

import pytest

from handlers import admin_stats
from handlers.openapi import implemented_methods
from tests.support.roles import NO_AUDITOR, Case, expect, role_env, run_table

CASES: list[Case] = [
    Case("GET", "/admin/api/stats?group_by=center", expected=expect(200, **NO_AUDITOR)),
    Case(
        "GET", "/admin/api/stats?group_by=staff&from=2026-03-01", expected=expect(200, **NO_AUDITOR)
    ),
    Case("GET", "/admin/api/stats?group_by=day&to=2026-03-31", expected=expect(200, **NO_AUDITOR)),
    Case("GET", "/admin/api/stats?group_by=applicant", expected=expect(400, **NO_AUDITOR)),
    Case("GET", "/admin/api/staff-ranking?month=2026-03", expected=expect(200, **NO_AUDITOR)),
    Case("GET", "/admin/api/staff-ranking?month=2026-3", expected=expect(400, **NO_AUDITOR)),
    Case("GET", "/admin/api/export?format=csv", expected=expect(200, **NO_AUDITOR)),
    Case(
        "GET", "/admin/api/export?format=jsonl&from=2026-03-01", expected=expect(200, **NO_AUDITOR)
    ),
    Case("GET", "/admin/api/export?format=xlsx", expected=expect(400, **NO_AUDITOR)),
]


@pytest.mark.asyncio
async def test_stats_role_table(api, ctx, sandbox):
    await run_table(await role_env(api, ctx), CASES)


def test_every_stats_route_has_a_case():
    covered = {(c.method, c.path.split("?")[0]) for c in CASES}
    for rule in admin_stats.default_handlers:
        for method in implemented_methods(rule.target):
            assert (method.upper(), rule.name) in covered, rule.name
