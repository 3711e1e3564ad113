"""Admin statistics and the staff ranking over HTTP.

The figures of every ``group_by`` must equal a brute-force recount done here, in Python, over
the seeded rows (a random mix: every level and channel, default ratings, follow-ups, unrated
cases, cases without a clerk or with an approver, 差评 tickets rectified on time, late or not
yet, invalid ones and upheld appeals), for several ranges and for scoped admins. The ranking
is checked against a small hand-made month whose scores are worked out below.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from models.base import utcnow
from models.catalog import Center, Department, ServiceItem, Staff
from models.ticket import Ticket
from tests.support.admins import PASSWORD, admin_token
from tests.support.databases import both_databases
from tests.support.public_seed import (
    CENTER,
    ITEMS,
    OTHER_CENTER,
    insert_rating,
    insert_staffed_case,
    open_ticket,
    rebuild_rollups,
    seed_catalog,
    shanghai_day,
)
from wxbackend.db import database
from wxbackend.services.admin import stats as stats_service
from wxbackend.services.admin.accounts import create_admin
from wxbackend.services.ratings.levels import is_bad

STATS = "/admin/api/stats"
RANKING = "/admin/api/staff-ranking"
#: item → its clerks to choose from, and the approvers that may sign its cases
CLERKS = {
    "440103-SY-001": ["HL001", "HL003"],
    "440103-MZ-001": ["HL002", "HL004"],
    "440104-XX-001": ["XX001"],
}
APPROVERS = {"440103-SY-001": ["HL101"], "440103-MZ-001": ["HL102", "HL101"], "440104-XX-001": []}


def url(path: str, **params: object) -> str:
    return f"{path}?{urlencode(params)}" if params else path


async def scoped_token(api, ctx, username: str, role: str, center=None, department=None) -> str:
    def make() -> None:
        with database.atomic():
            create_admin(username, PASSWORD, role, center, department)

    await ctx.db.run(make)
    return await admin_token(api, ctx, username)


# --------------------------------------------------------------------------- the random mix


def seed_mix(ctx, rng: random.Random, n: int = 260) -> list[dict[str, Any]]:
    """Cases and ratings as the model rows, and the same facts as plain dicts for the test."""
    seed_catalog(ctx)
    base = datetime(2026, 2, 27, 12, 0, 0)  # UTC; days straddle Shanghai midnight
    now = utcnow()
    made = []
    for _ in range(n):
        item = rng.choice(list(ITEMS))
        completed = base + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
        clerk = rng.choice(CLERKS[item]) if rng.random() < 0.85 else None
        approver = rng.choice(APPROVERS[item]) if APPROVERS[item] and rng.random() < 0.6 else None
        case_id = insert_staffed_case(ctx, item, completed, clerk, approver)
        row: dict[str, Any] = {
            "item": item,
            "department": ITEMS[item][0],
            "center": ITEMS[item][1],
            "clerk": clerk,
            "approver": approver,
            "completed_at": completed,
            "rating": None,
            "follow_up": None,
        }
        made.append(row)
        if rng.random() >= 0.75:
            continue
        channel = rng.choice(["qr", "qr", "miniprogram", "phone", "sms", "default"])
        overall = 3 if channel == "default" else rng.choice([1, 2, 2, 3, 4, 5, 5])
        created = completed + timedelta(minutes=rng.randrange(1, 3 * 24 * 60))
        evaluation_id = insert_rating(case_id, overall, channel=channel, created_at=created)
        rating: dict[str, Any] = {
            "overall": overall,
            "channel": channel,
            "created_at": created,
            "ticket": None,
        }
        row["rating"] = rating
        if overall <= 2:
            rating["ticket"] = seed_ticket(evaluation_id, rng, now, completed)
        if rng.random() < 0.25:
            follow_created = created + timedelta(hours=rng.randrange(1, 72))
            insert_rating(case_id, rng.randint(1, 5), assess_number=2, created_at=follow_created)
            row["follow_up"] = {"created_at": follow_created}
    return made


def seed_ticket(
    evaluation_id: int, rng: random.Random, now: datetime, completed: datetime
) -> dict[str, Any]:
    """A 差评 ticket in a random state; deadlines within the seeded days (so a range selects
    some) or relative to now (past or still running)."""
    open_ticket(evaluation_id)
    kind = rng.choice(
        ["open", "verified", "on_time", "late", "closed_on_time", "invalid", "upheld", "appealed"]
    )
    due = rng.choice(
        [
            completed + timedelta(minutes=rng.randrange(60, 6 * 24 * 60)),
            completed + timedelta(minutes=rng.randrange(60, 6 * 24 * 60)),
            now + timedelta(days=rng.choice([-20, -3, 4, 12])),
        ]
    )
    fields: dict[str, Any] = {"rectify_due": due, "status": "verified"}
    if kind == "open":
        fields["status"] = "open"
    elif kind in ("on_time", "closed_on_time"):
        fields["rectified_at"] = due - timedelta(hours=rng.randrange(1, 200))
        fields["status"] = "closed" if kind == "closed_on_time" else "rectified"
    elif kind == "late":
        fields["rectified_at"] = due + timedelta(hours=rng.randrange(1, 200))
        fields["status"] = rng.choice(["rectified", "called_back", "closed"])
    elif kind == "invalid":
        fields["status"] = "invalid"
    elif kind == "upheld":
        fields.update(status="invalid", appeal_status="upheld")
    elif kind == "appealed":
        fields["appeal_status"] = rng.choice(["pending", "rejected"])
    Ticket.update(**fields).where(Ticket.evaluation == evaluation_id).execute()
    rebuild_rollups()  # an appeal decided by hand, not by the ticket workflow
    return {
        "status": fields["status"],
        "rectify_due": due,
        "rectified_at": fields.get("rectified_at"),
        "upheld": fields.get("appeal_status") == "upheld",
    }


def keys_of(row: dict[str, Any], group_by: str, moment: datetime) -> list[Any]:
    """The rows of ``group_by`` a fact of this case counts in (``moment``: its time)."""
    if group_by == "day":
        return [shanghai_day(moment).isoformat()]
    if group_by == "staff":
        keys = []
        if row["clerk"]:
            keys.append((row["clerk"], "window_staff"))
        if row["approver"]:
            keys.append((row["approver"], "approver"))
        return keys
    return [row[group_by]]


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def brute_force(
    made: list[dict[str, Any]],
    group_by: str,
    first: date | None = None,
    last: date | None = None,
    keep=lambda row: True,
) -> dict[Any, dict[str, Any]]:
    """The rows of ``/admin/api/stats`` recounted one case at a time."""
    now = utcnow()

    def in_range(moment: datetime) -> bool:
        day = shanghai_day(moment)
        return (first is None or day >= first) and (last is None or day <= last)

    counts: dict[Any, dict[str, Any]] = defaultdict(
        lambda: (
            {"levels": [], "active": [], "finished": 0, "callbacks": 0, "follow_ups": 0}
            | {"due": 0, "on_time": 0}
        )
    )
    for row in filter(keep, made):
        rating = row["rating"]
        ticket = rating and rating["ticket"]
        upheld = ticket and ticket["upheld"]
        if group_by == "staff" and upheld:
            continue  # staff rows leave out the case and its ticket (product.md rule 6)
        # the cohort: the case completed in the range, its first rating whenever given
        if in_range(row["completed_at"]):
            for key in keys_of(row, group_by, row["completed_at"]):
                counts[key]["finished"] += 1
                counts[key]["follow_ups"] += row["follow_up"] is not None
                if rating:
                    counts[key]["levels"].append(rating["overall"])
                    if rating["channel"] in ("qr", "miniprogram"):
                        counts[key]["active"].append(rating["overall"])
                    counts[key]["callbacks"] += rating["channel"] in ("phone", "sms")
        # 按时整改: tickets whose rectification fell due in the range (and is decided)
        if (
            ticket
            and ticket["status"] != "invalid"
            and in_range(ticket["rectify_due"])
            and (ticket["rectified_at"] or ticket["rectify_due"] < now)
        ):
            for key in keys_of(row, group_by, ticket["rectify_due"]):
                counts[key]["due"] += 1
                counts[key]["on_time"] += bool(
                    ticket["rectified_at"] and ticket["rectified_at"] <= ticket["rectify_due"]
                )
    out = {}
    for key, c in counts.items():
        levels, active = c["levels"], c["active"]
        unrated = c["finished"] - len(active) - c["callbacks"]  # a default is no rating
        out[key] = {
            "total": len(levels),
            "by_level": {str(lv): levels.count(lv) for lv in range(1, 6)},
            "satisfaction_rate": rate(sum(not is_bad(lv) for lv in levels), len(levels)),
            "bad_rate": rate(sum(is_bad(lv) for lv in levels), len(levels)),
            "active_rate": rate(len(active), c["finished"]),
            "active_good_rate": rate(sum(not is_bad(lv) for lv in active), len(active)),
            "unrated_rate": rate(unrated, c["finished"]),
            "active_total": len(active),
            "finished_cases": c["finished"],
            "unrated_cases": unrated,
            "on_time_rectification_rate": rate(c["on_time"], c["due"]),
            "rectification_due": c["due"],
            "rectified_on_time": c["on_time"],
            "follow_ups": c["follow_ups"],
        }
    return out


def names() -> dict[str, dict[str, str]]:
    """code → name of every catalogue row a key can name (a lookup, not a count)."""
    out: dict[str, dict[str, str]] = {}
    for group, model, code in (
        ("center", Center, Center.code),
        ("item", ServiceItem, ServiceItem.code),
        ("department", Department, Department.code),
        ("staff", Staff, Staff.staff_no),
    ):
        out[group] = dict(model.select(code, model.name).tuples())
    return out


def answer_rows(answer: dict[str, Any], group_by: str, known: dict) -> dict[Any, dict]:
    """The answer's rows keyed like :func:`brute_force`, after checking each key's name."""
    out = {}
    for row in answer["rows"]:
        row = dict(row)
        key = row.pop("key")
        if group_by == "day":
            out[key["date"]] = row
            continue
        assert key["name"] == known[group_by][key["code"]], key
        out[(key["code"], key["role"]) if group_by == "staff" else key["code"]] = row
    return out


@both_databases
@pytest.mark.asyncio
async def test_stats_equal_a_brute_force_recount(api, ctx):
    rng = random.Random(20260405)
    made = await ctx.db.run(seed_mix, ctx, rng)
    known = await ctx.db.run(names)
    rated = [r["rating"] for r in made if r["rating"]]
    tickets = [r["ticket"] for r in rated if r["ticket"]]
    assert {r["channel"] for r in rated} >= {"default", "qr", "phone", "sms", "miniprogram"}
    assert sum(t["upheld"] for t in tickets) >= 2 and sum(r["follow_up"] is not None for r in made)
    assert any(t["rectified_at"] and t["rectified_at"] > t["rectify_due"] for t in tickets)
    days = sorted({shanghai_day(r["completed_at"]) for r in made})
    token = await admin_token(api, ctx)
    ranges: list[dict[str, str]] = [
        {},
        {"from": days[2].isoformat()},
        {"to": days[3].isoformat()},
        {"from": days[1].isoformat(), "to": days[1].isoformat()},
        {"from": "2030-01-01"},
    ]
    for _ in range(3):
        a, b = sorted(rng.sample(days, 2))
        ranges.append({"from": a.isoformat(), "to": b.isoformat()})
    checked = bounded_due = 0
    for group_by in stats_service.GROUPS:
        for span in ranges:
            status, answer = await api("GET", url(STATS, group_by=group_by, **span), token=token)
            assert status == 200, answer
            assert answer["group_by"] == group_by
            assert answer["from"] == span.get("from") and answer["to"] == span.get("to")
            expected = brute_force(
                made,
                group_by,
                date.fromisoformat(span["from"]) if "from" in span else None,
                date.fromisoformat(span["to"]) if "to" in span else None,
            )
            got = answer_rows(answer, group_by, known)
            assert got == expected, (group_by, span)
            checked += len(expected)
            if "to" in span:  # a closed range selects tickets by their deadline too
                bounded_due += sum(r["rectification_due"] for r in got.values())
        # the whole range has every kind of row
        status, answer = await api("GET", url(STATS, group_by=group_by), token=token)
        whole = answer_rows(answer, group_by, known)
        assert sum(r["follow_ups"] for r in whole.values()) > 0
        assert sum(r["rectification_due"] for r in whole.values()) > 0
        if group_by != "staff":
            assert sum(r["total"] for r in whole.values()) == len(rated)
    assert checked > 100 and bounded_due > 0


@pytest.mark.asyncio
async def test_staff_rows_leave_out_upheld_appeals_only(api, ctx):
    """An upheld appeal removes the rating from the clerk's and approver's rows, not from
    the center's; a rejected appeal removes nothing."""

    def seed():
        seed_catalog(ctx)
        done = datetime(2026, 3, 10, 2, 0, 0)
        kept = insert_rating(insert_staffed_case(ctx, "440103-SY-001", done, "HL001", "HL101"), 5)
        upheld = insert_rating(insert_staffed_case(ctx, "440103-SY-001", done, "HL001", "HL101"), 1)
        rejected = insert_rating(
            insert_staffed_case(ctx, "440103-SY-001", done, "HL001", "HL101"), 2
        )
        for evaluation_id, appeal in ((upheld, "upheld"), (rejected, "rejected")):
            open_ticket(evaluation_id)
            Ticket.update(
                appeal_status=appeal, status="invalid" if appeal == "upheld" else "open"
            ).where(Ticket.evaluation == evaluation_id).execute()
        rebuild_rollups()  # appeals decided by hand, not by the ticket workflow
        return kept

    await ctx.db.run(seed)
    token = await admin_token(api, ctx)
    _, by_staff = await api("GET", url(STATS, group_by="staff"), token=token)
    rows = {(r["key"]["code"], r["key"]["role"]): r for r in by_staff["rows"]}
    assert set(rows) == {("HL001", "window_staff"), ("HL101", "approver")}
    for row in rows.values():
        assert row["total"] == 2 and row["by_level"]["5"] == 1 and row["by_level"]["2"] == 1
        # the upheld case leaves the staff cohort whole: numerator and denominator alike
        assert row["by_level"]["1"] == 0 and row["finished_cases"] == 2
    _, by_center = await api("GET", url(STATS, group_by="center"), token=token)
    assert [r["key"]["code"] for r in by_center["rows"]] == [CENTER]
    assert by_center["rows"][0]["total"] == 3 and by_center["rows"][0]["by_level"]["1"] == 1


@both_databases
@pytest.mark.asyncio
async def test_stats_are_scoped(api, ctx):
    """A center admin's rows are their center's; a handler's their department's; a row
    of another center never shows, and asking for another center gives nothing."""
    rng = random.Random(77)
    made = await ctx.db.run(seed_mix, ctx, rng, 120)
    known = await ctx.db.run(names)
    other_admin = await scoped_token(api, ctx, "ca_other", "center_admin", OTHER_CENTER)
    handler = await scoped_token(api, ctx, "h_labor", "handler", None, "HL-LABOR")
    viewer_a = await scoped_token(api, ctx, "viewer_a", "viewer", CENTER)
    scopes = [
        (other_admin, lambda r: r["center"] == OTHER_CENTER),
        (handler, lambda r: r["department"] == "HL-LABOR"),
        (viewer_a, lambda r: r["center"] == CENTER),
    ]
    for token, keep in scopes:
        for group_by in stats_service.GROUPS:
            status, answer = await api("GET", url(STATS, group_by=group_by), token=token)
            assert status == 200, answer
            expected = brute_force(made, group_by, keep=keep)
            assert answer_rows(answer, group_by, known) == expected, group_by
            assert expected
    status, answer = await api(
        "GET", url(STATS, group_by="center", center=CENTER), token=other_admin
    )
    assert status == 200 and answer["rows"] == []
    status, answer = await api(
        "GET", url(STATS, group_by="item", item="440103-SY-001"), token=viewer_a
    )
    assert [r["key"]["code"] for r in answer["rows"]] == ["440103-SY-001"]


@pytest.mark.asyncio
async def test_stats_cost_a_fixed_number_of_queries(ctx):
    """SQL aggregation: 12 ratings or 120, the same number of queries per group_by."""
    from wxbackend.services.admin.sessions import Principal

    superadmin = Principal(1, "root", "superadmin", None, None)

    def count(group_by: str) -> int:
        db = database.obj
        original = db.execute_sql
        calls = []
        me = threading.get_ident()  # other threads (the config watcher, jobs) query too

        def counting(sql, params=None, *args, **kwargs):
            if threading.get_ident() == me:
                calls.append(sql)
            return original(sql, params, *args, **kwargs)

        db.execute_sql = counting
        try:
            query = stats_service.parse_stats_query({"group_by": group_by})
            stats_service.admin_stats(superadmin, query)
        finally:
            del db.execute_sql
        return len(calls)

    await ctx.db.run(seed_mix, ctx, random.Random(1), 12)
    small = {g: await ctx.db.run(count, g) for g in stats_service.GROUPS}
    await ctx.db.run(seed_mix, ctx, random.Random(2), 120)
    large = {g: await ctx.db.run(count, g) for g in stats_service.GROUPS}
    assert small == large and max(large.values()) <= 12, (small, large)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        "",
        "group_by=",
        "group_by=applicant",
        "group_by=window_staff",
        "group_by=day&from=2026-13-01",
        "group_by=day&to=yesterday",
        "group_by=center&from=2026-03-02&to=2026-03-01",
    ],
)
async def test_stats_rejects_bad_queries(api, ctx, query):
    token = await admin_token(api, ctx)
    status, answer = await api("GET", f"{STATS}?{query}", token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_query", answer


# --------------------------------------------------------------------------- ranking

MARCH_START = datetime(2026, 2, 28, 16, 0, 0)  # 2026-03-01 00:00 in Shanghai, as UTC


def seed_month(ctx) -> None:
    """Center A in March 2026: 13 counted ratings, 52 stars, mean m = 4 exactly.

    HL001 6×5; HL002 3×4; HL003 1×4; HL004 2×1 (2 差评); one 4 without a clerk (counts in
    m only). Left out: HL004's upheld 1, HL003's default 3, HL001's rating one minute before
    March (Shanghai), HL002's follow-up 1. Center B: XX001 3×4 (m = 4).
    """
    seed_catalog(ctx)

    def rate_at(item, clerk, overall, at, **kw):
        case_id = insert_staffed_case(ctx, item, at - timedelta(hours=1), clerk)
        return case_id, insert_rating(case_id, overall, created_at=at, **kw)

    first = MARCH_START + timedelta(minutes=30)
    for k in range(6):
        rate_at("440103-SY-001", "HL001", 5, first + timedelta(days=k))
    rate_at("440103-SY-001", "HL001", 1, MARCH_START - timedelta(minutes=1))  # February
    for k in range(3):
        case_id, _ = rate_at("440103-MZ-001", "HL002", 4, first + timedelta(days=3 + k))
    insert_rating(case_id, 1, assess_number=2, created_at=first + timedelta(days=20))
    rate_at("440103-MZ-001", "HL003", 4, first + timedelta(days=5))
    rate_at("440103-MZ-001", "HL003", 3, first + timedelta(days=6), channel="default")
    for k in range(2):
        rate_at("440103-MZ-001", "HL004", 1, first + timedelta(days=7 + k), comment="差")
    _, upheld = rate_at("440103-MZ-001", "HL004", 1, first + timedelta(days=9))
    open_ticket(upheld)
    Ticket.update(status="invalid", appeal_status="upheld").where(
        Ticket.evaluation == upheld
    ).execute()
    rebuild_rollups()  # an appeal decided by hand, not by the ticket workflow
    rate_at("440103-SY-001", None, 4, first + timedelta(days=10))
    for k in range(3):
        rate_at("440104-XX-001", "XX001", 4, first + timedelta(days=k))
    rate_at("440104-XX-001", "XX001", 5, MARCH_START + timedelta(days=31))  # April


def expected_item(staff_no, n, stars, bad, m=4.0):
    score = (10 * m + stars) / (10 + n) - 0.5 * bad / n
    return staff_no, n, round(stars / n, 4), bad, round(score, 4)


@both_databases
@pytest.mark.asyncio
async def test_ranking_order_and_formula(api, ctx):
    await ctx.db.run(seed_month, ctx)
    token = await admin_token(api, ctx)
    status, answer = await api("GET", url(RANKING, month="2026-03"), token=token)
    assert status == 200, answer
    assert answer["month"] == "2026-03" and "(C*m + sum_stars) / (C + n)" in answer["method"]
    got = [
        (i["staff"]["staff_no"], i["ratings"], i["mean"], i["bad"], i["score"])
        for i in answer["items"]
    ]
    # scores: HL001 (40+30)/16 = 4.375; HL002, XX001 (40+12)/13 = 4.0 with 3 ratings (tie:
    # staff_no); HL003 (40+4)/11 = 4.0 with 1 rating; HL004 (40+2)/12 - 0.5*2/2 = 3.0
    assert got == [
        expected_item("HL001", 6, 30, 0),
        expected_item("HL002", 3, 12, 0),
        expected_item("XX001", 3, 12, 0),
        expected_item("HL003", 1, 4, 0),
        expected_item("HL004", 2, 2, 2),
    ]
    assert [i["score"] for i in answer["items"]] == [4.375, 4.0, 4.0, 4.0, 3.0]
    assert [i["rank"] for i in answer["items"]] == [1, 2, 3, 4, 5]
    first = answer["items"][0]
    assert first["staff"] == {
        "staff_no": "HL001",
        "name": "黄玉华",
        "center": {"code": CENTER, "name": "广州市荔湾区海龙街政务服务中心"},
        "department": {"code": "HL-LABOR", "name": "劳动和社会保障服务专窗"},
    }
    assert {i["center_mean"] for i in answer["items"]} == {4.0}
    # scoped: the same scores (m is always the whole center's), fewer people
    other = await scoped_token(api, ctx, "ca_other", "center_admin", OTHER_CENTER)
    _, answer = await api("GET", url(RANKING, month="2026-03"), token=other)
    assert [(i["rank"], i["staff"]["staff_no"], i["score"]) for i in answer["items"]] == [
        (1, "XX001", 4.0)
    ]
    handler = await scoped_token(api, ctx, "h_civil", "handler", None, "HL-CIVIL")
    _, answer = await api("GET", url(RANKING, month="2026-03"), token=handler)
    assert [i["staff"]["staff_no"] for i in answer["items"]] == ["HL002", "HL003", "HL004"]
    assert [i["score"] for i in answer["items"]] == [4.0, 4.0, 3.0]
    # other months
    _, answer = await api("GET", url(RANKING, month="2026-02"), token=token)
    assert [(i["staff"]["staff_no"], i["score"]) for i in answer["items"]] == [("HL001", 0.5)]
    _, answer = await api("GET", url(RANKING, month="2026-04"), token=token)
    assert [(i["staff"]["staff_no"], i["score"]) for i in answer["items"]] == [("XX001", 5.0)]
    _, answer = await api("GET", url(RANKING, month="2025-01"), token=token)
    assert answer["items"] == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query", ["", "month=", "month=2026-13", "month=2026-00", "month=2026-3", "month=march"]
)
async def test_ranking_rejects_bad_months(api, ctx, query):
    token = await admin_token(api, ctx)
    status, answer = await api("GET", f"{RANKING}?{query}", token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_query", answer
