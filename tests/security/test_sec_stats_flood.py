"""Issue 12 item 18: a flood of distinct ``from``/``to`` pairs missed the stats cache every
time and turned into 503s for everyone; admin statistics, export and ranking ran on the
rating path's database threads. Now one client address may have only so many uncached
figures computed per minute (429 past it, cached answers still served), and the admin
reports have a share of the database threads of their own."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.admins import admin_token
from wxbackend.services.common import db_share

FLOOD = {"public": {"stats_cache_seconds": 60, "stats_misses_per_address_per_minute": 5}}


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [FLOOD])
async def test_distinct_ranges_from_one_address_are_limited(api, ctx):
    statuses = []
    for day in range(1, 9):
        status, _ = await api("GET", f"/api/v1/public/stats?from=2026-01-{day:02d}")
        statuses.append(status)
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3
    status, _ = await api("GET", "/api/v1/public/stats?from=2026-01-01")
    assert status == 200  # a cached answer is not a miss: still served


@pytest.mark.asyncio
async def test_admin_reports_wait_for_their_own_share(api, ctx, monkeypatch):
    monkeypatch.setattr(db_share, "SLOT_WAIT_SECONDS", 0.2)
    root = await admin_token(api, ctx)
    slots = db_share.report_slots(ctx)
    taken = 0
    while not slots.locked():  # every report slot busy (say, long exports)
        await slots.acquire()
        taken += 1
    try:
        status, answer = await api("GET", "/admin/api/stats?group_by=center", token=root)
        assert status == 503 and answer["error"]["code"] == "unavailable"
        status, _ = await api("GET", "/admin/api/staff-ranking?month=2026-01", token=root)
        assert status == 503
        # the rating path's threads are untouched: public pages and figures still answer
        assert (await api("GET", "/api/v1/public/evaluations"))[0] == 200
        assert (await api("GET", "/api/v1/public/stats"))[0] == 200
    finally:
        for _ in range(taken):
            slots.release()
    await asyncio.sleep(0)
    assert (await api("GET", "/admin/api/stats?group_by=center", token=root))[0] == 200
