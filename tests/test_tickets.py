"""The 差评 closed loop over HTTP: states and transitions, appeals, overdue, scope, history,
the public ticket status, and the working-day deadlines (weekend, statutory holiday, make-up
working Sunday, local overrides).

The rated cases and admins come from ``tests/support/tickets.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import pytest_asyncio

from models.base import utcnow
from models.ticket import Ticket
from tests.support.cases import make_case, make_id_number
from tests.support.public_seed import UNCACHED
from tests.support.tickets import (
    T,
    audits,
    code_of,
    public_item,
    seed_rating,
    staff_token,
    step,
)
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.tickets import deadlines
from wxbackend.services.tickets.workdays import WorkCalendar
from wxbackend.timefmt import SHANGHAI, parse_iso


@pytest_asyncio.fixture
async def team(api, ctx, sandbox) -> dict[str, str]:
    """Tokens: superadmin, center_admin of 440103-HL, handler of HL-LABOR, handler of
    HL-CIVIL, viewer."""
    await seed_rating(ctx, overall=5)  # imports the example catalogue
    return {
        "super": await staff_token(api, ctx, "boss", "superadmin"),
        "center": await staff_token(api, ctx, "hl_admin", "center_admin", "440103-HL"),
        "labor": await staff_token(api, ctx, "labor_clerk", "handler", None, "HL-LABOR"),
        "civil": await staff_token(api, ctx, "civil_clerk", "handler", None, "HL-CIVIL"),
        "viewer": await staff_token(api, ctx, "watcher", "viewer"),
    }


# ---- the loop ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_full_loop_from_a_citizen_rating(api, sandbox, ctx, team):
    """A citizen's 差评 → open → verified → rectified → called_back (not satisfied) →
    verified → rectified → called_back → closed, with history, audit and public status."""
    id_number = make_id_number(11)
    _, scene = await make_case(ctx, "黎明", id_number)
    citizen = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await rate(api, citizen, scene=scene, overall=1, indicators=["long_queue"])
    assert status == 201, answer
    evaluation_id = answer["evaluation"]["id"]

    status, page = await api("GET", T, token=team["labor"])
    assert status == 200
    ticket = next(t for t in page["items"] if t["evaluation_id"] == evaluation_id)
    assert ticket["status"] == "open" and ticket["overdue"] is False
    assert ticket["verify_due"].endswith("23:59:59+08:00") and ticket["rectify_due"]
    assert ticket["history"] == [
        {
            "status": "open",
            "action": "open",
            "by": "system",
            "note": "",
            "at": ticket["history"][0]["at"],
        }
    ]
    assert (await public_item(api, evaluation_id))["ticket_status"] == "open"
    tid = ticket["id"]
    labor, center = team["labor"], team["center"]

    long_note = "核" * 2000
    loop = [
        (labor, "verify", {"valid": True, "note": long_note}, "verified"),
        (labor, "rectify", {"note": "已对窗口人员进行批评教育"}, "rectified"),
        (
            center,
            "callback",
            {"channel": "phone", "satisfied": False, "note": "仍不满意"},
            "verified",
        ),
        (labor, "rectify", {"note": "增设取号机"}, "rectified"),
        (center, "callback", {"channel": "sms", "satisfied": True, "note": "满意"}, "called_back"),
        (center, "close", None, "closed"),
    ]
    for token, name, body, expected in loop:
        status, view = await step(api, token, tid, name, body)
        assert status == 200, (name, view)
        assert view["status"] == expected
        assert (await public_item(api, evaluation_id))["ticket_status"] == expected

    status, view = await api("GET", f"{T}/{tid}", token=team["viewer"])
    assert status == 200 and view["status"] == "closed" and view["closed_at"]
    history = [(h["status"], h["action"], h["by"]) for h in view["history"]]
    assert history == [
        ("open", "open", "system"),
        ("verified", "verify", "labor_clerk"),
        ("rectified", "rectify", "labor_clerk"),
        ("verified", "callback_phone", "hl_admin"),
        ("rectified", "rectify", "labor_clerk"),
        ("called_back", "callback_sms", "hl_admin"),
        ("closed", "close", "hl_admin"),
    ]
    assert view["history"][1]["note"] == long_note
    assert view["history"][3]["channel"] == "phone" and view["history"][3]["satisfied"] is False
    assert view["history"][5]["satisfied"] is True
    assert all(h["at"].endswith("+08:00") for h in view["history"])

    entries = await audits(ctx, "ticket.")
    assert [e.action for e in entries] == [
        "ticket.verify",
        "ticket.rectify",
        "ticket.callback",
        "ticket.rectify",
        "ticket.callback",
        "ticket.close",
    ]
    assert json.loads(entries[2].detail) == {
        "from": "rectified",
        "to": "verified",
        "channel": "phone",
        "satisfied": False,
    }
    assert all(long_note not in e.detail for e in entries)


@pytest.mark.asyncio
async def test_invalid_path_and_notes(api, ctx, team):
    seeded = await seed_rating(ctx)
    tid = seeded.ticket_id
    status, answer = await step(api, team["labor"], tid, "verify", {"valid": False})
    assert status == 422 and answer["error"]["field"] == "note"
    status, answer = await step(api, team["labor"], tid, "verify", {"valid": "no"})
    assert status == 400 and code_of(answer) == "invalid_body"
    status, answer = await step(
        api, team["labor"], tid, "verify", {"valid": True, "note": "x" * 2001}
    )
    assert status == 422 and code_of(answer) == "invalid_field"
    # declaring a 差评 invalid takes two people (product rule 19): a proposal first
    status, view = await step(
        api, team["labor"], tid, "verify", {"valid": False, "note": "非本窗口办件"}
    )
    assert status == 200 and view["status"] == "open"
    assert view["pending_invalidation"]["by"] == "labor_clerk"
    assert view["pending_invalidation"]["note"] == "非本窗口办件"
    assert (await public_item(api, seeded.evaluation_id))["ticket_status"] == "open"
    status, answer = await step(
        api, team["labor"], tid, "verify", {"valid": False, "note": "再提一次"}
    )
    assert status == 409 and code_of(answer) == "invalid_transition"  # one at a time
    decide = "invalidation/decide"
    status, answer = await step(api, team["labor"], tid, decide, {"confirm": True})
    assert status == 403  # a handler cannot confirm
    status, view = await step(api, team["center"], tid, decide, {"confirm": True, "note": "核实"})
    assert status == 200 and view["status"] == "invalid" and view["verified_at"]
    assert (await public_item(api, seeded.evaluation_id))["ticket_status"] == "invalid"
    for name, body in (
        ("verify", {"valid": True}),
        ("rectify", {"note": "x"}),
        ("callback", {"channel": "phone", "satisfied": True}),
        ("close", None),
        ("appeal", {"reason": "恶意差评"}),
    ):
        status, answer = await step(api, team["labor"], tid, name, body)
        assert status == 409 and code_of(answer) == "invalid_transition", name


# every step with a body it would accept; the statuses from which each is allowed
STEPS = {
    "verify": ({"valid": True, "note": "属实"}, {"open"}),
    "rectify": ({"note": "已整改"}, {"verified"}),
    "callback": ({"channel": "wechat", "satisfied": True}, {"rectified"}),
    "close": ({}, {"called_back"}),
    "appeal": ({"reason": "误评"}, {"open", "verified"}),
    "appeal/decide": ({"upheld": False}, set()),  # only with a pending appeal
    "invalidation/decide": ({"confirm": False}, set()),  # only with a pending proposal
}
#: How to bring a fresh ticket to each status.
PATHS = {
    "open": [],
    "verified": ["verify"],
    "rectified": ["verify", "rectify"],
    "called_back": ["verify", "rectify", "callback"],
    "closed": ["verify", "rectify", "callback", "close"],
    "invalid": [],  # proposed by verify(valid=false), confirmed by another admin
}


@pytest.mark.asyncio
async def test_every_invalid_transition_is_409(api, ctx, team):
    token = team["center"]
    for status_name, path in PATHS.items():
        for name, (body, allowed_from) in STEPS.items():
            if status_name in allowed_from:
                continue
            seeded = await seed_rating(ctx)
            tid = seeded.ticket_id
            for earlier in path:
                assert (await step(api, token, tid, earlier, STEPS[earlier][0]))[0] == 200
            if status_name == "invalid":
                body_invalid = {"valid": False, "note": "无效"}
                assert (await step(api, token, tid, "verify", body_invalid))[0] == 200
                confirm = {"confirm": True}
                decided = await step(api, team["super"], tid, "invalidation/decide", confirm)
                assert decided[0] == 200
            status, answer = await step(api, token, tid, name, body)
            assert (status, code_of(answer)) == (409, "invalid_transition"), (status_name, name)
            assert answer["error"]["status"] == status_name

    # one appeal per ticket; no close while an appeal is pending
    seeded = await seed_rating(ctx)
    tid = seeded.ticket_id
    assert (await step(api, team["labor"], tid, "appeal", {"reason": "误评"}))[0] == 200
    status, answer = await step(api, team["labor"], tid, "appeal", {"reason": "再次申诉"})
    assert (status, code_of(answer)) == (409, "invalid_transition")
    for name in ("verify", "rectify", "callback"):
        assert (await step(api, token, tid, name, STEPS[name][0]))[0] == 200
    status, answer = await step(api, token, tid, "close")
    assert (status, code_of(answer)) == (409, "invalid_transition")
    assert "appeal" in answer["error"]["message"]


# ---- appeals -----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [UNCACHED])  # public figures before/after
async def test_appeal_upheld_excludes_from_staff_figures_but_stays_public(api, ctx, team):
    seeded = await seed_rating(ctx)
    tid = seeded.ticket_id
    _, before = await api("GET", "/api/v1/public/stats")
    # viewers and superadmins do not file appeals; handlers do not decide them
    assert (await step(api, team["viewer"], tid, "appeal", {"reason": "x"}))[0] == 403
    assert (await step(api, team["super"], tid, "appeal", {"reason": "x"}))[0] == 403
    status, answer = await step(api, team["labor"], tid, "appeal", {"reason": "办事人恶意差评"})
    assert status == 200 and answer["status"] == "open" and answer["appeal_status"] == "pending"
    assert (await step(api, team["labor"], tid, "appeal/decide", {"upheld": True}))[0] == 403
    status, view = await step(
        api, team["super"], tid, "appeal/decide", {"upheld": True, "note": "证据充分"}
    )
    assert status == 200, view
    assert view["status"] == "invalid" and view["appeal_status"] == "upheld"
    assert view["excluded_from_staff_figures"] is True
    assert [h["action"] for h in view["history"]] == ["open", "appeal", "appeal_upheld"]
    assert view["history"][1]["by"] == "labor_clerk" and view["history"][2]["by"] == "boss"

    item = await public_item(api, seeded.evaluation_id)
    assert item["ticket_status"] == "invalid" and item["comment"] == "窗口排队太久"
    _, after = await api("GET", "/api/v1/public/stats")
    assert after["total"] == before["total"] and after["by_level"] == before["by_level"]
    excluded = await ctx.db.run(
        lambda: [e.evaluation_id for e in deadlines.excluded_from_staff_figures()]
    )
    assert excluded == [int(seeded.evaluation_id)]
    status, answer = await step(api, team["super"], tid, "appeal/decide", {"upheld": False})
    assert (status, code_of(answer)) == (409, "invalid_transition")


@pytest.mark.asyncio
async def test_appeal_rejected_and_no_self_decision(api, ctx, team):
    seeded = await seed_rating(ctx)
    tid = seeded.ticket_id
    assert (await step(api, team["labor"], tid, "verify", {"valid": True}))[0] == 200
    assert (await step(api, team["center"], tid, "appeal", {"reason": "误评"}))[0] == 200
    status, answer = await step(api, team["center"], tid, "appeal/decide", {"upheld": True})
    assert (status, code_of(answer)) == (403, "forbidden")  # never one's own appeal
    status, view = await step(
        api, team["super"], tid, "appeal/decide", {"upheld": False, "note": "理由不足"}
    )
    assert status == 200 and view["status"] == "verified" and view["appeal_status"] == "rejected"
    assert view["excluded_from_staff_figures"] is False
    for name in ("rectify", "callback", "close"):
        status, view = await step(api, team["labor"], tid, name, STEPS[name][0])
        assert status == 200, view
    assert view["status"] == "closed"
    actions = [e.action for e in await audits(ctx, "ticket.")]
    assert actions == [
        "ticket.verify",
        "ticket.appeal",
        "ticket.appeal_decide",
        "ticket.rectify",
        "ticket.callback",
        "ticket.close",
    ]


# ---- scope, list, filters ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scope_and_list_filters(api, ctx, team):
    labor = await seed_rating(ctx)
    civil = await seed_rating(
        ctx,
        item_code="440103-MZ-001",
        department_code="HL-CIVIL",
        window_code="HL-W02",
        window_staff_no="HL002",
        approver_staff_no="HL102",
    )
    assert (await api("GET", f"{T}/{civil.ticket_id}", token=team["labor"]))[0] == 404
    status, answer = await step(api, team["labor"], civil.ticket_id, "verify", {"valid": True})
    assert (status, code_of(answer)) == (404, "not_found")
    assert (await step(api, team["viewer"], labor.ticket_id, "verify", {"valid": True}))[0] == 403
    assert (await api("GET", f"{T}/{labor.ticket_id}", token=None))[0] == 401
    assert (await api("GET", f"{T}/999999", token=team["super"]))[0] == 404
    assert (await api("GET", f"{T}/abc", token=team["super"]))[0] == 404

    _, mine = await api("GET", T, token=team["labor"])
    assert [t["id"] for t in mine["items"]] == [labor.ticket_id]
    _, everything = await api("GET", T, token=team["center"])
    assert [t["id"] for t in everything["items"]] == [civil.ticket_id, labor.ticket_id]
    assert everything["items"][0]["case_no"] == civil.case_no

    _, page = await api("GET", f"{T}?limit=1", token=team["super"])
    assert [t["id"] for t in page["items"]] == [civil.ticket_id] and page["next_cursor"]
    _, rest = await api("GET", f"{T}?limit=1&cursor={page['next_cursor']}", token=team["super"])
    assert [t["id"] for t in rest["items"]] == [labor.ticket_id] and rest["next_cursor"] is None

    assert (await step(api, team["labor"], labor.ticket_id, "verify", {"valid": True}))[0] == 200
    _, verified = await api("GET", f"{T}?status=verified", token=team["super"])
    assert [t["id"] for t in verified["items"]] == [labor.ticket_id]
    for bad in ("status=done", "overdue=yes", "cursor=zz", "limit=0"):
        status, answer = await api("GET", f"{T}?{bad}", token=team["super"])
        assert (status, code_of(answer)) == (400, "invalid_query"), bad


# ---- overdue -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_overdue_computed_filtered_and_flagged(api, ctx, team):
    fresh = await seed_rating(ctx)
    late_verify = await seed_rating(ctx, opened_at=utcnow() - timedelta(days=10))
    late_rectify = await seed_rating(ctx, opened_at=utcnow() - timedelta(days=40))
    token = team["super"]
    assert (await step(api, token, late_rectify.ticket_id, "verify", {"valid": True}))[0] == 200

    _, view = await api("GET", f"{T}/{fresh.ticket_id}", token=token)
    assert view["overdue"] is False
    _, view = await api("GET", f"{T}/{late_verify.ticket_id}", token=token)
    assert view["overdue"] is True
    _, view = await api("GET", f"{T}/{late_rectify.ticket_id}", token=token)
    assert view["status"] == "verified" and view["overdue"] is True

    _, overdue = await api("GET", f"{T}?overdue=true", token=token)
    assert {t["id"] for t in overdue["items"]} == {late_verify.ticket_id, late_rectify.ticket_id}
    _, on_time = await api("GET", f"{T}?overdue=false", token=token)
    assert [t["id"] for t in on_time["items"]] == [fresh.ticket_id]

    # the late step set the sticky flag already; the housekeeping flags the other one
    flags = lambda: {str(t.id): t.overdue for t in Ticket.select()}  # noqa: E731
    assert (await ctx.db.run(flags))[late_rectify.ticket_id] is True
    assert await ctx.db.run(deadlines.flag_overdue, utcnow()) == 1
    assert await ctx.db.run(deadlines.flag_overdue, utcnow()) == 0
    stored = await ctx.db.run(flags)
    assert stored == {
        fresh.ticket_id: False,
        late_verify.ticket_id: True,
        late_rectify.ticket_id: True,
    }
    # far in the future the fresh one is late too
    assert await ctx.db.run(deadlines.flag_overdue, utcnow() + timedelta(days=60)) == 1

    # rectified: no longer overdue (computed), though the flag records it ran late
    status, view = await step(api, token, late_rectify.ticket_id, "rectify", {"note": "已整改"})
    assert status == 200 and view["overdue"] is False


def test_is_overdue_boundaries():
    due_v = datetime(2026, 3, 9, 15, 59, 59)
    due_r = datetime(2026, 3, 27, 15, 59, 59)
    ticket = Ticket(status="open", verify_due=due_v, rectify_due=due_r)
    assert not deadlines.is_overdue(ticket, due_v)
    assert deadlines.is_overdue(ticket, due_v + timedelta(seconds=1))
    ticket.status = "verified"
    assert not deadlines.is_overdue(ticket, due_r)
    assert deadlines.is_overdue(ticket, due_r + timedelta(seconds=1))
    for done in ("rectified", "called_back", "closed", "invalid"):
        ticket.status = done
        assert not deadlines.is_overdue(ticket, due_r + timedelta(days=30))


# ---- deadlines on the working-day calendar ----------------------------------------------------


def local(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """A time in Asia/Shanghai as the naive UTC the database stores."""
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI).astimezone(UTC).replace(tzinfo=None)


def end_of(day: date) -> datetime:
    """23:59:59 Asia/Shanghai of ``day``, as naive UTC."""
    return local(day.year, day.month, day.day, 23, 59) + timedelta(seconds=59)


def test_calendar_of_2026():
    """The facts the deadlines rest on (holidays ≥0.109, China 2026)."""
    cal = WorkCalendar()
    assert not cal.is_working_day(date(2026, 3, 7))  # Saturday
    assert cal.is_working_day(date(2026, 1, 4))  # Sunday, make-up working day
    assert cal.is_working_day(date(2026, 9, 20))  # Sunday, make-up for National Day
    assert cal.is_working_day(date(2026, 10, 10))  # Saturday, make-up for National Day
    assert not any(cal.is_working_day(date(2026, 10, d)) for d in range(1, 8))
    assert cal.is_working_day(date(2026, 10, 8))


@pytest.mark.parametrize(
    ("opened", "days", "due"),
    [
        # a Friday → the Monday
        (local(2026, 3, 6), 1, date(2026, 3, 9)),
        # late on a Friday evening (still Friday in Shanghai, Saturday nowhere) → Monday
        (local(2026, 3, 6, 23, 30), 1, date(2026, 3, 9)),
        # a Saturday → Monday
        (local(2026, 3, 7), 1, date(2026, 3, 9)),
        # Wed 2026-09-30, the eve of National Day (10-01..10-07) → Thu 10-08
        (local(2026, 9, 30), 1, date(2026, 10, 8)),
        # 15 working days across it: 10-08, 09, 10 (make-up Saturday), 12..16, 19..23, 26, 27
        (local(2026, 9, 30), 15, date(2026, 10, 27)),
        # Wed 2025-12-31: 01-01/02 off, Sat 01-03 → the make-up working Sunday 01-04
        (local(2025, 12, 31), 1, date(2026, 1, 4)),
        # Fri 2026-09-18 → the make-up working Sunday 09-20
        (local(2026, 9, 18), 1, date(2026, 9, 20)),
    ],
)
def test_work_calendar_due(opened, days, due):
    assert WorkCalendar().due(opened, days) == end_of(due)


def test_work_calendar_local_overrides():
    cal = WorkCalendar(extra_holidays=["2026-03-09"], extra_workdays=["2026-03-07"])
    assert cal.due(local(2026, 3, 6), 1) == end_of(date(2026, 3, 7))  # the extra Saturday
    assert cal.due(local(2026, 3, 7), 1) == end_of(date(2026, 3, 10))  # Monday is off


@pytest.mark.asyncio
async def test_ticket_deadlines_when_opened_before_national_day(api, ctx, team):
    """A ticket opened at a fixed time: deadlines as the calendar says, shown in Shanghai."""
    seeded = await seed_rating(ctx, opened_at=local(2026, 9, 30, 16, 45))
    _, view = await api("GET", f"{T}/{seeded.ticket_id}", token=team["super"])
    assert view["verify_due"] == "2026-10-08T23:59:59+08:00"
    assert view["rectify_due"] == "2026-10-27T23:59:59+08:00"
    assert parse_iso(view["opened_at"]) == local(2026, 9, 30, 16, 45)

    friday = await seed_rating(ctx, opened_at=local(2026, 3, 6, 9, 0))
    _, view = await api("GET", f"{T}/{friday.ticket_id}", token=team["super"])
    assert view["verify_due"] == "2026-03-09T23:59:59+08:00"
    # 15 working days from Fri 03-06: 03-09..13, 16..20, 23..27
    assert view["rectify_due"] == "2026-03-27T23:59:59+08:00"

    new_year = await seed_rating(ctx, opened_at=local(2025, 12, 31, 11, 0))
    _, view = await api("GET", f"{T}/{new_year.ticket_id}", token=team["super"])
    assert view["verify_due"] == "2026-01-04T23:59:59+08:00"  # a working Sunday


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "tickets": {
                "extra_holidays": ["2026-03-09", "2026-03-10"],
                "extra_workdays": ["2026-03-08"],
                "rectify_working_days": 3,
            }
        }
    ],
)
@pytest.mark.asyncio
async def test_ticket_deadlines_with_local_overrides(ctx, settings_overrides):
    """``tickets.extra_holidays`` / ``extra_workdays`` / working days from settings."""
    seeded = await seed_rating(ctx, opened_at=local(2026, 3, 6, 9, 0))

    def read() -> Ticket:
        return Ticket.get_by_id(int(seeded.ticket_id))

    ticket = await ctx.db.run(read)
    assert ticket.verify_due == end_of(date(2026, 3, 8))  # the extra working Sunday
    # 03-08 (extra), 03-09/10 off, 03-11, 03-12
    assert ticket.rectify_due == end_of(date(2026, 3, 12))
