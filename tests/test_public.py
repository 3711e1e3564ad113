"""The public record over HTTP: list shape and masks, keyset pages, filters, withheld
comments, first likers, and figures equal to a brute-force recount."""

from __future__ import annotations

import json
import random
import threading
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

import pytest

from models.case import Case
from models.evaluation import Evaluation
from models.user import User
from tests.support.databases import both_databases
from tests.support.public_seed import (
    APPLICANT_ID,
    APPLICANT_NAME,
    APPLICANT_PHONE,
    CENTER,
    ITEMS,
    OTHER_CENTER,
    UNCACHED,  # figures compared before/after: fresh
    add_like,
    add_reply,
    insert_case,
    insert_rating,
    open_ticket,
    rated_case,
    seed_catalog,
    shanghai_day,
)
from wxbackend.db import database
from wxbackend.services.common import query_args
from wxbackend.services.public import figures, listing
from wxbackend.services.ratings import levels
from wxbackend.services.ratings.levels import is_bad
from wxbackend.timefmt import iso

LIST = "/api/v1/public/evaluations"
STATS = "/api/v1/public/stats"


def url(path: str, **params: object) -> str:
    return f"{path}?{urlencode(params)}" if params else path


async def all_pages(api, limit: int = 7, **params: object) -> list[dict]:
    items, cursor = [], None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        status, page = await api("GET", url(LIST, **query))
        assert status == 200, page
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


@both_databases
@pytest.mark.asyncio
async def test_list_shape_masks_likers_replies_follow_up(api, ctx):
    def seed():
        seed_catalog(ctx)
        case_id = insert_case(ctx)
        first = insert_rating(
            case_id,
            2,
            comment="排队太久",
            indicators=("long_queue", "not_told_at_once"),
            stage_appointment=2,
            stage_handling=3,
            target_window_staff=4,
            target_department=2,
            created_at=datetime(2026, 3, 1, 2, 0, 0),
        )
        for n in range(12):
            add_like(first, n, f"{'赵钱孙李周吴郑王冯陈褚卫'[n]}**")
        add_reply(first, "已核实整改，感谢监督。", datetime(2026, 3, 2, 1, 0, 0))
        add_reply(first, "已回访。", datetime(2026, 3, 3, 1, 0, 0))
        open_ticket(first, "rectified")
        insert_rating(
            case_id,
            4,
            assess_number=2,
            comment="问题已经解决",
            created_at=datetime(2026, 3, 4, 1, 0, 0),
        )
        default = insert_rating(
            insert_case(ctx, "440103-MZ-001", with_clerk=False), 3, channel="default"
        )
        User.create(openid="oPublic000000000000000000001")
        return first, default

    first, default = await ctx.db.run(seed)
    status, page = await api("GET", LIST)
    assert status == 200
    assert page["next_cursor"] is None
    assert [item["id"] for item in page["items"]] == [str(default), str(first)]
    newest, rated = page["items"]
    assert rated == {
        "id": str(first),
        "overall": 2,
        "stages": {"appointment": 2, "handling": 3},
        "targets": {"window_staff": 4, "department": 2},
        "indicators": [
            {"code": "not_told_at_once", "label": "未一次性告知所需材料"},
            {"code": "long_queue", "label": "排队时间长"},
        ],
        "comment": "排队太久",
        "name_masked": "黎**",
        "channel": "qr",
        "item": {"code": "440103-SY-001", "name": "失业登记"},
        "center": {"code": CENTER, "name": "广州市荔湾区海龙街政务服务中心"},
        "window_staff": {"name": "黄玉华"},
        "created_at": "2026-03-01T10:00:00+08:00",
        "like_count": 12,
        "likers": [f"{c}**" for c in "赵钱孙李周吴郑王冯陈"],  # the first 10, by like id
        "replies": [
            {"text": "已核实整改，感谢监督。", "created_at": "2026-03-02T09:00:00+08:00"},
            {"text": "已回访。", "created_at": "2026-03-03T09:00:00+08:00"},
        ],
        "follow_up": {
            "overall": 4,
            "comment": "问题已经解决",
            "created_at": "2026-03-04T09:00:00+08:00",
        },
        "ticket_status": "rectified",
    }
    # a default rating is public too: no name, no clerk, no ticket
    assert newest["channel"] == "default" and newest["name_masked"] is None
    assert newest["window_staff"] is None and newest["ticket_status"] is None
    assert newest["follow_up"] is None and newest["likers"] == [] and newest["comment"] is None
    # nothing personal anywhere in the answer
    text = json.dumps(page, ensure_ascii=False)
    for secret in (APPLICANT_NAME, APPLICANT_ID, APPLICANT_PHONE, "oPublic", "openid", "case"):
        assert secret not in text
    assert "rater_id_hash" not in text and "h0000" not in text and "user" not in text


@both_databases
@pytest.mark.asyncio
async def test_pages_stay_stable_while_ratings_arrive(api, ctx):
    def seed(n):
        seed_catalog(ctx)
        return [rated_case(ctx, 1 + i % 5) for i in range(n)]

    older = await ctx.db.run(seed, 25)
    expected = [str(i) for i in sorted(older, reverse=True)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        status, page = await api("GET", url(LIST, **query))
        assert status == 200
        pages += 1
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await ctx.db.run(seed, 4)  # new ratings between pages
    assert pages == 3
    assert seen == expected  # no duplicate, no skip, newest first
    # a fresh first page shows the newcomers first
    status, page = await api("GET", url(LIST, limit=8))
    assert [item["id"] for item in page["items"]] == sorted(
        [item["id"] for item in page["items"]], key=int, reverse=True
    )
    assert int(page["items"][0]["id"]) > max(older)
    # the last page ends exactly: limit equal to what is left gives next_cursor null
    total = len(await all_pages(api))
    status, page = await api("GET", url(LIST, limit=total - 1))
    status, tail = await api("GET", url(LIST, limit=1, cursor=page["next_cursor"]))
    assert len(tail["items"]) == 1 and tail["next_cursor"] is None


@both_databases
@pytest.mark.asyncio
async def test_filters(api, ctx):
    def seed():
        seed_catalog(ctx)
        made = {}
        for item_code in ITEMS:
            for level in (1, 3, 5, 5):
                made.setdefault(item_code, []).append(rated_case(ctx, level, item_code))
        case_of_first = Evaluation.get_by_id(made["440103-SY-001"][0]).case_id
        insert_rating(case_of_first, 5, assess_number=2)  # a follow-up is never listed
        return made

    made = await ctx.db.run(seed)
    ids = lambda items: sorted(int(i["id"]) for i in items)  # noqa: E731

    everything = await all_pages(api, limit=5)
    assert ids(everything) == sorted(sum(made.values(), []))
    hl = await all_pages(api, center=CENTER)
    assert ids(hl) == sorted(made["440103-SY-001"] + made["440103-MZ-001"])
    assert all(i["center"]["code"] == CENTER for i in hl)
    xx = await all_pages(api, center=OTHER_CENTER)
    assert ids(xx) == sorted(made["440104-XX-001"])
    assert ids(await all_pages(api, item="440103-MZ-001")) == sorted(made["440103-MZ-001"])
    staff = await all_pages(api, staff="HL002")
    assert ids(staff) == sorted(made["440103-MZ-001"])
    assert {i["window_staff"]["name"] for i in staff} == {"陈嘉敏"}
    fives = await all_pages(api, limit=2, level=5)
    assert len(fives) == 6 and {i["overall"] for i in fives} == {5}
    both = await all_pages(api, center=CENTER, level=1)
    assert len(both) == 2 and {i["overall"] for i in both} == {1}
    combo = await all_pages(api, item="440104-XX-001", staff="XX001", level=3)
    assert len(combo) == 1
    # empty values are no filter; unknown codes match nothing
    status, page = await api("GET", LIST + "?center=&item=&staff=&level=&cursor=&limit=")
    assert status == 200 and len(page["items"]) == 12
    for params in ({"center": "nowhere"}, {"item": "nothing"}, {"staff": "X999"}):
        status, page = await api("GET", url(LIST, **params))
        assert status == 200 and page == {"items": [], "next_cursor": None}
    # a center with ratings but none of that level
    status, page = await api("GET", url(LIST, item="440103-MZ-001", level=2))
    assert page == {"items": [], "next_cursor": None}


@pytest.mark.asyncio
async def test_withheld_comments_still_count(api, ctx):
    def seed():
        seed_catalog(ctx)
        pending = rated_case(ctx, 1, comment="待审核的内容", comment_status="pending_review")
        hidden = rated_case(ctx, 5, comment="已隐藏的内容", comment_status="hidden")
        visible = rated_case(ctx, 4, comment="很好")
        case_id = Evaluation.get_by_id(visible).case_id
        insert_rating(
            case_id, 2, assess_number=2, comment="追评待审", comment_status="pending_review"
        )
        return pending, hidden, visible

    pending, hidden, visible = await ctx.db.run(seed)
    status, page = await api("GET", LIST)
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id[str(pending)]["comment"] is None and by_id[str(pending)]["overall"] == 1
    assert by_id[str(hidden)]["comment"] is None and by_id[str(hidden)]["overall"] == 5
    assert by_id[str(visible)]["comment"] == "很好"
    assert by_id[str(visible)]["follow_up"]["comment"] is None
    assert by_id[str(visible)]["follow_up"]["overall"] == 2
    text = json.dumps(page, ensure_ascii=False)
    assert "待审核" not in text and "已隐藏" not in text and "追评待审" not in text
    status, stats = await api("GET", STATS)
    assert stats["total"] == 3  # withheld texts, counted ratings; the follow-up is not counted
    assert stats["by_level"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 1}
    assert stats["bad_rate"] == round(1 / 3, 4) and stats["satisfaction_rate"] == round(2 / 3, 4)


@both_databases
@pytest.mark.asyncio
async def test_page_costs_a_fixed_number_of_queries(ctx):
    """No N+1: a page of 40 ratings with likes, replies, follow-ups and tickets costs as many
    queries as a page of 2."""

    def seed():
        seed_catalog(ctx)
        for n in range(40):
            rating = rated_case(ctx, 1 + n % 5, list(ITEMS)[n % 3])
            add_like(rating, n, "王**")
            add_reply(rating, "谢谢")
            if n % 5 < 2:
                open_ticket(rating)
            insert_rating(Evaluation.get_by_id(rating).case_id, 4, assess_number=2)

    await ctx.db.run(seed)

    def count_queries(limit: int) -> tuple[int, int]:
        db = database.obj
        original = db.execute_sql
        calls = []
        this_thread = threading.get_ident()

        def counting(sql, params=None, *args, **kwargs):
            if threading.get_ident() == this_thread:  # not another thread's (config watcher)
                calls.append(sql)
            return original(sql, params, *args, **kwargs)

        db.execute_sql = counting
        try:
            page = listing.list_public(listing.ListQuery(limit=limit))
        finally:
            del db.execute_sql
        assert len(page["items"]) == limit
        return len(calls), sum(len(i["likers"]) for i in page["items"])

    small, _ = await ctx.db.run(count_queries, 2)
    large, likers = await ctx.db.run(count_queries, 40)
    assert large == small <= 10 and likers == 40


def brute_force(cases: list[dict], center=None, item=None, first=None, last=None) -> dict:
    """The figures of product.md rule 10, recounted in Python from the seeded rows."""

    def in_scope(row: dict, moment: datetime) -> bool:
        day = shanghai_day(moment)
        return (
            (center is None or ITEMS[row["item"]][1] == center)
            and (item is None or row["item"] == item)
            and (first is None or day >= first)
            and (last is None or day <= last)
        )

    # the cohort: cases completed in the period, with their first ratings whenever given
    finished = [c for c in cases if in_scope(c, c["completed_at"])]
    ratings = [c["rating"] for c in finished if c["rating"]]
    levels = [r["overall"] for r in ratings]
    active = [r["overall"] for r in ratings if r["channel"] in ("qr", "miniprogram")]
    callbacks = [r for r in ratings if r["channel"] in ("phone", "sms")]
    unrated = len(finished) - len(active) - len(callbacks)  # a default is no rating

    def rate(part, whole):
        return round(part / whole, 4) if whole else None

    return {
        "total": len(levels),
        "by_level": {str(lv): levels.count(lv) for lv in range(1, 6)},
        "satisfaction_rate": rate(sum(not is_bad(lv) for lv in levels), len(levels)),
        "bad_rate": rate(sum(is_bad(lv) for lv in levels), len(levels)),
        "active_rate": rate(len(active), len(finished)),
        "active_good_rate": rate(sum(not is_bad(lv) for lv in active), len(active)),
        "unrated_rate": rate(unrated, len(finished)),
        "on_time_rectification_rate": None,  # no tickets in this mix: test_figures.py
        "active_total": len(active),
        "finished_cases": len(finished),
        "unrated_cases": unrated,
        "rectification_due": 0,
        "rectified_on_time": 0,
    }


@both_databases
@pytest.mark.asyncio
async def test_stats_equal_a_brute_force_recount(api, ctx):
    rng = random.Random(20260301)
    base = datetime(2026, 2, 27, 12, 0, 0)  # UTC; days straddle Shanghai midnight

    def seed() -> list[dict]:
        seed_catalog(ctx)
        made = []
        for _ in range(240):
            item_code = rng.choice(list(ITEMS))
            completed = base + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
            case_id = insert_case(ctx, item_code, completed)
            row = {"item": item_code, "completed_at": completed, "rating": None}
            if rng.random() < 0.75:
                channel = rng.choice(["qr", "qr", "miniprogram", "phone", "default"])
                overall = 3 if channel == "default" else rng.randint(1, 5)
                created = completed + timedelta(minutes=rng.randrange(1, 3 * 24 * 60))
                insert_rating(
                    case_id,
                    overall,
                    channel=channel,
                    created_at=created,
                    comment_status=rng.choice(["visible", "pending_review", "hidden"]),
                )
                row["rating"] = {"overall": overall, "channel": channel, "created_at": created}
                if rng.random() < 0.2:  # follow-ups never count
                    insert_rating(case_id, rng.randint(1, 5), assess_number=2, created_at=created)
            made.append(row)
        return made

    made = await ctx.db.run(seed)
    assert {c["rating"]["channel"] for c in made if c["rating"]} >= {"default", "qr"}
    assert any(c["rating"] is None for c in made)
    days = sorted({shanghai_day(c["completed_at"]) for c in made})
    scopes = [
        {},
        {"center": CENTER},
        {"center": OTHER_CENTER},
        {"item": "440103-MZ-001"},
        {"center": CENTER, "item": "440104-XX-001"},  # an item of another center: nothing
        {"from": days[2].isoformat()},
        {"to": days[3].isoformat()},
        {"from": days[1].isoformat(), "to": days[1].isoformat()},
        {"center": CENTER, "from": days[2].isoformat(), "to": days[5].isoformat()},
        {"from": "2030-01-01"},  # no data: every rate null
    ]
    for _ in range(6):
        a, b = sorted(rng.sample(days, 2))
        scopes.append({"item": rng.choice(list(ITEMS)), "from": a.isoformat(), "to": b.isoformat()})
    for scope in scopes:
        status, stats = await api("GET", url(STATS, **scope))
        assert status == 200, stats
        expected = brute_force(
            made,
            center=scope.get("center"),
            item=scope.get("item"),
            first=date.fromisoformat(scope["from"]) if "from" in scope else None,
            last=date.fromisoformat(scope["to"]) if "to" in scope else None,
        )
        assert stats == expected, scope
        if not scope:
            assert expected["total"] > 150 and expected["unrated_cases"] > 20
    status, stats = await api("GET", url(STATS, **{"from": "2030-01-01"}))
    assert stats["total"] == 0 and stats["satisfaction_rate"] is None
    assert stats["unrated_rate"] is None and stats["active_good_rate"] is None
    assert stats["active_rate"] is None and stats["bad_rate"] is None
    status, stats = await api("GET", url(STATS, center="nowhere"))
    assert status == 200 and stats["total"] == 0 and stats["finished_cases"] == 0


@both_databases
@pytest.mark.asyncio
async def test_tallies_group_by_center(ctx):
    """The reusable aggregation: grouped by a catalogue column, equal to the ungrouped one."""

    def run():
        seed_catalog(ctx)
        for n in range(30):
            rated_case(ctx, 1 + n % 5, list(ITEMS)[n % 3], channel="default" if n % 7 else "qr")
        insert_case(ctx, "440104-XX-001")
        grouped = figures.tallies(figures.Scope(), group_by="center")
        whole = figures.tallies(figures.Scope())[None]
        return grouped, whole

    grouped, whole = await ctx.db.run(run)
    assert len(grouped) == 2
    assert sum(t.finished_cases for t in grouped.values()) == whole.finished_cases == 31
    assert sum(sum(t.by_level.values()) for t in grouped.values()) == 30
    for level in range(1, 6):
        assert (
            sum(t.active_by_level[level] for t in grouped.values())
            == (whole.active_by_level[level])
        )
    with pytest.raises(ValueError):
        figures.tallies(figures.Scope(), group_by="applicant_id_hash")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        "level=0",
        "level=6",
        "level=abc",
        "level=4.5",
        "level=-1",
        "limit=0",
        "limit=51",
        "limit=ten",
        "cursor=%21%21%21",
        "cursor=abc",  # base64 of something that is not an id
        "cursor=MTA=",  # padded: not the form this server hands out
        "cursor=LTE",  # "-1"
        "center=" + "x" * 65,
    ],
)
async def test_list_rejects_bad_queries(api, ctx, query):
    status, answer = await api("GET", f"{LIST}?{query}")
    assert status == 400 and answer["error"]["code"] == "invalid_query", answer
    assert answer["error"]["parameter"] == query.split("=")[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        "from=2026-13-01",
        "from=20260301",
        "to=2026-02-30",
        "to=yesterday",
        "from=2026-03-02&to=2026-03-01",
    ],
)
async def test_stats_rejects_bad_queries(api, ctx, query):
    status, answer = await api("GET", f"{STATS}?{query}")
    assert status == 400 and answer["error"]["code"] == "invalid_query", answer


def test_cursor_round_trip():
    for last in (1, 9, 10, 123456789, 2**62):
        assert query_args.decode_cursor(query_args.encode_cursor(last)) == last
    assert "=" not in query_args.encode_cursor(10)


def test_shanghai_day_bounds():
    assert query_args.day_start_utc(date(2026, 3, 1)) == datetime(2026, 2, 28, 16, 0, 0)
    assert iso(query_args.day_start_utc(date(2026, 3, 1))) == "2026-03-01T00:00:00+08:00"


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [UNCACHED])
async def test_unrated_case_counts_until_rated(api, ctx):
    def seed():
        seed_catalog(ctx)
        return insert_case(ctx)

    case_id = await ctx.db.run(seed)
    status, stats = await api("GET", STATS)
    assert stats["finished_cases"] == 1 and stats["unrated_rate"] == 1.0
    await ctx.db.run(insert_rating, case_id, 3, channel="default")
    status, stats = await api("GET", STATS)
    # a default rating counts in 满意率 but leaves the case unrated (product.md rule 10)
    assert stats["unrated_rate"] == 1.0 and stats["total"] == 1
    assert stats["satisfaction_rate"] == 1.0 and stats["active_good_rate"] is None
    assert stats["active_rate"] == 0.0
    # a citizen's rating of another case: that one is rated
    other = await ctx.db.run(insert_case, ctx)
    await ctx.db.run(insert_rating, other, 4, channel="qr")
    status, stats = await api("GET", STATS)
    assert stats["finished_cases"] == 2 and stats["unrated_rate"] == 0.5
    assert stats["active_rate"] == 0.5 and stats["active_good_rate"] == 1.0
    # sanity: what the figures read is the database
    done = await ctx.db.run(lambda: Case.select().where(Case.first_rated_at.is_null(False)).count())
    assert done == 2


@pytest.mark.asyncio
async def test_levels_catalogue(api):
    """``GET /api/v1/public/levels``: the labels the pages and the console use, each level
    saying whether it is a 差评 by the one rule (ratings/levels.py); documented in
    /openapi.json."""
    status, answer = await api("GET", "/api/v1/public/levels")
    assert status == 200, answer
    assert answer["levels"] == [
        {"value": 5, "label": "非常满意", "bad": False},
        {"value": 4, "label": "满意", "bad": False},
        {"value": 3, "label": "基本满意", "bad": False},
        {"value": 2, "label": "不满意", "bad": True},
        {"value": 1, "label": "非常不满意", "bad": True},
    ]
    assert answer["bad_max"] == levels.BAD_MAX
    assert [s["code"] for s in answer["stages"]] == ["appointment", "handling", "delivery"]
    assert [t["code"] for t in answer["targets"]] == ["window_staff", "approver", "department"]
    assert {c["code"] for c in answer["channels"]} == {
        "qr",
        "miniprogram",
        "phone",
        "sms",
        "default",
    }
    # the figures count a 差评 by the same rule
    assert tuple(lv["value"] for lv in answer["levels"][::-1] if lv["bad"]) == levels.BAD_LEVELS
    _, doc = await api("GET", "/openapi.json")
    assert doc["paths"]["/api/v1/public/levels"]["get"]["summary"]
