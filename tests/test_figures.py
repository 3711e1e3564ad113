"""The figures of product.md rule 10 case by case, one definition for the public page and the
admin statistics: a period selects cases by completion day and counts their first ratings; a
default is no rating; a callback is; a rate with nothing to divide by is null; 按时整改率 over
the tickets whose rectification fell due in the period. And the queries use their indexes."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest

from models.case import Case
from models.ticket import Ticket
from tests.support.admins import admin_token
from tests.support.public_seed import (
    CENTER,
    UNCACHED,
    insert_case,
    insert_rating,
    open_ticket,
    rebuild_rollups,
    seed_catalog,
)
from wxbackend.db import database
from wxbackend.services.public import figures

STATS = "/api/v1/public/stats"
ADMIN_STATS = "/admin/api/stats"
#: 2026-03-10 00:00 in Shanghai, as naive UTC
MARCH_10 = datetime(2026, 3, 9, 16, 0, 0)
RATES = (
    "satisfaction_rate",
    "bad_rate",
    "active_rate",
    "active_good_rate",
    "unrated_rate",
    "on_time_rectification_rate",
)


@pytest.fixture
def settings_overrides(request) -> dict:
    """Figures uncached, on SQLite or (``param`` "postgres") on a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "postgres":
        return {**request.getfixturevalue("postgres_settings"), **UNCACHED}
    return UNCACHED


def url(path: str, **params: object) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def seed_period(ctx) -> None:
    """March 10 (Shanghai), six cases completed that day:

    - qr 5, rated the same day; miniprogram 1 (a 差评), rated on March 12 (after the period);
    - phone 2 (a callback 差评), sms 4;
    - default 3 (unrated); one case not rated at all.
    Outside: a case completed March 9 at 23:59 Shanghai and rated (qr 1) on March 10; a
    follow-up (追评) on March 10 of the qr 5 case (never counted).
    Tickets due March 10: rectified on time, rectified late, not rectified (passed: due),
    invalid (never due); one due March 10 of the year 2999 and not rectified (undecided).
    """
    seed_catalog(ctx)
    noon = MARCH_10 + timedelta(hours=4)

    def rated(overall: int, channel: str, at: datetime, done: datetime = noon) -> int:
        return insert_rating(
            insert_case(ctx, completed_at=done), overall, channel=channel, created_at=at
        )

    first = rated(5, "qr", noon + timedelta(hours=2))
    insert_rating(
        Case.select(Case.id).order_by(Case.id.desc()).scalar(),
        1,
        assess_number=2,
        created_at=noon + timedelta(hours=3),
    )
    late = rated(1, "miniprogram", noon + timedelta(days=2))
    callback_bad = rated(2, "phone", noon + timedelta(days=1))
    rated(4, "sms", noon + timedelta(days=1))
    rated(3, "default", noon + timedelta(days=7))
    insert_case(ctx, completed_at=noon)
    before = rated(1, "qr", noon, done=MARCH_10 - timedelta(minutes=1))
    due = MARCH_10 + timedelta(hours=10)
    for evaluation_id, fields in (
        (late, {"rectified_at": due - timedelta(hours=1), "status": "closed"}),
        (callback_bad, {"rectified_at": due + timedelta(hours=1), "status": "rectified"}),
        (before, {"status": "verified"}),
    ):
        open_ticket(evaluation_id)
        Ticket.update(rectify_due=due, **fields).where(Ticket.evaluation == evaluation_id).execute()
    extra = [
        rated(1, "qr", noon, done=MARCH_10 - timedelta(days=30)),
        rated(2, "qr", noon, done=MARCH_10 - timedelta(days=30)),
    ]
    open_ticket(extra[0])
    Ticket.update(rectify_due=due, status="invalid").where(Ticket.evaluation == extra[0]).execute()
    open_ticket(extra[1])
    Ticket.update(rectify_due=datetime(2999, 3, 10)).where(Ticket.evaluation == extra[1]).execute()
    rebuild_rollups()  # the tickets were moved by hand, not by their workflow
    assert first


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
async def test_one_day_case_by_case(api, ctx):
    await ctx.db.run(seed_period, ctx)
    day = {"from": "2026-03-10", "to": "2026-03-10"}
    status, stats = await api("GET", url(STATS, **day))
    assert status == 200, stats
    # six cases finished; five first ratings of them (one given after the day)
    assert stats["finished_cases"] == 6 and stats["total"] == 5
    assert stats["by_level"] == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}
    assert stats["satisfaction_rate"] == 0.6 and stats["bad_rate"] == 0.4  # defaults count
    assert stats["active_total"] == 2 and stats["active_rate"] == round(2 / 6, 4)  # qr, mp
    assert stats["active_good_rate"] == 0.5
    # unrated: the default and the case never rated; callbacks are ratings
    assert stats["unrated_cases"] == 2 and stats["unrated_rate"] == round(2 / 6, 4)
    # due March 10: on time, late, not rectified (the invalid one and the undecided never)
    assert stats["rectification_due"] == 3 and stats["rectified_on_time"] == 1
    assert stats["on_time_rectification_rate"] == round(1 / 3, 4)
    # the admin statistics say the same, from the same module
    token = await admin_token(api, ctx)
    status, answer = await api("GET", url(ADMIN_STATS, group_by="center", **day), token=token)
    assert status == 200, answer
    (row,) = answer["rows"]
    assert row["key"]["code"] == CENTER and row["follow_ups"] == 1
    assert {k: row[k] for k in stats} == stats
    status, answer = await api("GET", url(ADMIN_STATS, group_by="day", **day), token=token)
    assert [r["key"]["date"] for r in answer["rows"]] == ["2026-03-10"]
    assert {k: answer["rows"][0][k] for k in stats} == stats


@pytest.mark.asyncio
async def test_zero_denominators_are_null(api, ctx):
    def seed():
        seed_catalog(ctx)
        insert_case(ctx, completed_at=MARCH_10)  # finished, nobody rated it
        insert_rating(insert_case(ctx, completed_at=MARCH_10), 3, channel="default")

    await ctx.db.run(seed)
    status, stats = await api("GET", url(STATS, **{"from": "2030-01-01"}))
    assert status == 200 and stats["total"] == 0 and stats["finished_cases"] == 0
    assert all(stats[name] is None for name in RATES), stats
    status, stats = await api("GET", url(STATS, to="2026-03-10"))
    # no citizen rating: 主动评价好评率 has nothing to divide; the others are numbers
    assert stats["active_good_rate"] is None and stats["on_time_rectification_rate"] is None
    assert stats["active_rate"] == 0.0 and stats["unrated_rate"] == 1.0
    assert stats["satisfaction_rate"] == 1.0 and stats["bad_rate"] == 0.0


@pytest.mark.asyncio
async def test_a_rating_after_the_period_counts_for_its_cases_period(api, ctx):
    """The cohort is fixed by the completion day: a rating given later changes that day's
    figures (not the day it was given)."""

    def seed():
        seed_catalog(ctx)
        return insert_case(ctx, completed_at=MARCH_10 + timedelta(hours=28))  # 03-11 04:00

    case_id = await ctx.db.run(seed)
    march_11 = {"from": "2026-03-11", "to": "2026-03-11"}
    _, stats = await api("GET", url(STATS, **march_11))
    assert stats["finished_cases"] == 1 and stats["unrated_rate"] == 1.0
    await ctx.db.run(
        lambda: insert_rating(case_id, 2, channel="qr", created_at=MARCH_10 + timedelta(days=5))
    )
    _, stats = await api("GET", url(STATS, **march_11))
    assert stats["total"] == 1 and stats["bad_rate"] == 1.0 and stats["unrated_rate"] == 0.0
    _, later = await api("GET", url(STATS, **{"from": "2026-03-12"}))
    assert later["total"] == 0 and later["satisfaction_rate"] is None


def _plans(scope: figures.Scope) -> list[str]:
    """EXPLAIN QUERY PLAN of every statement the figures of ``scope`` run (SQLite)."""
    db = database.obj
    original = db.execute_sql
    plans: list[str] = []
    me = threading.get_ident()  # other threads (the config watcher, jobs) query too

    def explaining(sql, params=None, *args, **kwargs):
        if threading.get_ident() == me and sql.lstrip().upper().startswith("SELECT"):
            rows = original("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plans.append(" | ".join(str(r[-1]) for r in rows))
        return original(sql, params, *args, **kwargs)

    db.execute_sql = explaining
    try:
        figures.tallies(scope, extended=True)
        figures.tallies(scope, "day", extended=True)
    finally:
        del db.execute_sql
    return plans


@pytest.mark.asyncio
async def test_a_month_uses_the_indexes(ctx):
    """A month of a few thousand cases: the cases by ``completed_at``, their ratings by
    (case, assess_number), the tickets by ``rectify_due``; no table is scanned whole."""

    def run():
        seed_catalog(ctx)
        start = datetime(2026, 2, 1)
        for n in range(3000):
            done = start + timedelta(minutes=29 * n)  # about two months
            case_id = insert_case(ctx, completed_at=done)
            if n % 4:
                evaluation = insert_rating(case_id, 1 + n % 5, created_at=done)
                if n % 5 < 2:
                    open_ticket(evaluation)
        database.obj.execute_sql("ANALYZE")
        march = figures.Scope(start=datetime(2026, 2, 28, 16), end=datetime(2026, 3, 31, 16))
        # not whole Shanghai days: counted from the cases themselves, not from the rollups
        hours = figures.Scope(start=datetime(2026, 2, 28, 17), end=datetime(2026, 3, 31, 16))
        return _plans(march), _plans(hours)

    plans, raw_plans = await ctx.db.run(run)
    assert len(plans) == 4 and len(raw_plans) == 4, (plans, raw_plans)
    for plan in plans + raw_plans:
        scans = [p for p in plan.split(" | ") if p.startswith("SCAN") and "INDEX" not in p]
        assert not scans, plan
    assert any("rollup_center_day" in p for p in plans), plans
    assert any("completed_at" in p for p in raw_plans), raw_plans
    assert any("rectify_due" in p for p in plans), plans


@pytest.mark.asyncio
async def test_public_page_shows_every_figure_and_waits_for_the_cache(http_client, base_url):
    """The page has a place for each rate; its script reads how long the server keeps the
    figures (the stats answer's max-age) to ask again after a live rating, and shows null as
    "—" (a rate is never 0 for want of data)."""
    page = (await http_client.fetch(base_url + "/public/")).body.decode()
    for figure in ("fig-satisfaction", "fig-bad", "fig-active-rate", "fig-active"):
        assert f'id="{figure}"' in page
    assert 'id="fig-unrated"' in page and 'id="fig-on-time"' in page
    assert "主动评价率" in page and "按时整改率" in page
    script = (await http_client.fetch(base_url + "/static/public.js")).body.decode()
    assert "max-age=" in script and "statsMaxAge" in script
    assert "s.active_rate" in script and "s.on_time_rectification_rate" in script
