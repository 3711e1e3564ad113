"""Ratings in the console over HTTP: the filtered, scoped listing; public replies; moderation;
revealing the real name (superadmin, audited, never logged); callback ratings (回访评价)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest
import pytest_asyncio

from models.base import utcnow
from models.case import Case, QrToken
from models.evaluation import Evaluation, EvaluationIndicator
from models.job import Job
from models.ticket import Ticket
from tests.support.cases import make_case, make_id_number
from tests.support.public_seed import UNCACHED  # figures compared before/after: fresh
from tests.support.tickets import PUBLIC, audits, code_of, public_item, seed_rating, staff_token
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.messaging import schedule
from wxbackend.timefmt import SHANGHAI, iso

E = "/admin/api/evaluations"
CB = "/admin/api/callback-evaluations"
#: Catalogue codes of a case in department HL-CIVIL (the labor handler cannot see it).
CIVIL = {
    "item_code": "440103-MZ-001",
    "department_code": "HL-CIVIL",
    "window_code": "HL-W02",
    "window_staff_no": "HL002",
    "approver_staff_no": "HL102",
}
#: A second center with a department, item and clerk.
OTHER = {
    "centers": [{"code": "440104-XY", "name": "越秀某街政务服务中心", "area_code": "440104"}],
    "departments": [{"code": "XY-GEN", "name": "综合受理", "center": "440104-XY"}],
    "items": [{"code": "440104-ZH-001", "name": "居住证办理", "department": "XY-GEN"}],
    "staff": [
        {
            "staff_no": "XY001",
            "name": "周小红",
            "role": "window",
            "department": "XY-GEN",
            "center": "440104-XY",
        }
    ],
    "windows": [],
}
IN_OTHER = {
    "center_code": "440104-XY",
    "item_code": "440104-ZH-001",
    "department_code": "XY-GEN",
    "window_code": None,
    "window_staff_no": "XY001",
    "approver_staff_no": None,
}


@pytest_asyncio.fixture
async def team(api, ctx, sandbox) -> dict[str, str]:
    """The example catalogue plus center 440104-XY, and a token per kind of admin."""
    from wxbackend.services.catalogue.importer import import_catalog

    await seed_rating(ctx, overall=5, comment=None)  # imports the example catalogue
    await ctx.db.run(import_catalog, OTHER, ctx.hasher)
    return {
        "super": await staff_token(api, ctx, "boss", "superadmin"),
        "center": await staff_token(api, ctx, "hl_admin", "center_admin", "440103-HL"),
        "other": await staff_token(api, ctx, "xy_admin", "center_admin", "440104-XY"),
        "labor": await staff_token(api, ctx, "labor_clerk", "handler", None, "HL-LABOR"),
        "viewer": await staff_token(api, ctx, "watcher", "viewer"),
    }


def ids(page) -> list[str]:
    return [item["id"] for item in page["items"]]


# ---- the listing -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_listing_filters_and_scope(api, ctx, team):
    labor_bad = await seed_rating(ctx, overall=2, name="欧阳娜娜", comment="态度差")
    held = await seed_rating(
        ctx, overall=4, comment="待审核的评论", comment_status="pending_review"
    )
    civil = await seed_rating(ctx, overall=5, comment="很好", **CIVIL)
    other = await seed_rating(ctx, overall=3, comment=None, **IN_OTHER)
    phone = await seed_rating(ctx, overall=4, channel="phone", comment=None)
    old = await seed_rating(ctx, overall=5, comment=None, opened_at=utcnow() - timedelta(days=40))
    mine = [labor_bad, held, civil, other, phone, old]
    token = team["super"]

    status, page = await api("GET", f"{E}?limit=50", token=token)
    assert status == 200 and set(ids(page)) >= {m.evaluation_id for m in mine}
    item = next(i for i in page["items"] if i["id"] == labor_bad.evaluation_id)
    assert item["name_masked"] == "欧**" and item["case_no"] == labor_bad.case_no
    assert item["case_id"] == labor_bad.case_id
    assert item["comment"] == "态度差" and item["comment_status"] == "visible"
    assert item["ticket_status"] == "open" and item["ticket"]["id"] == labor_bad.ticket_id
    assert item["channel"] == "qr" and item["center"]["code"] == "440103-HL"
    assert item["window_staff"] == {"staff_no": "HL001", "name": "黄玉华"}
    assert "欧阳娜娜" not in json.dumps(page, ensure_ascii=False)
    item = next(i for i in page["items"] if i["id"] == held.evaluation_id)
    assert item["comment"] == "待审核的评论" and item["comment_status"] == "pending_review"

    async def listing(query: str, who: str = "super") -> set[str]:
        status, page = await api("GET", f"{E}?limit=50&{query}", token=team[who])
        assert status == 200, page
        return set(ids(page)) & {m.evaluation_id for m in mine}

    assert await listing("center=440104-XY") == {other.evaluation_id}
    assert await listing("center=NOPE") == set()
    assert await listing("item=440103-MZ-001") == {civil.evaluation_id}
    assert await listing("staff=HL002") == {civil.evaluation_id}
    assert await listing("staff=HL102") == {civil.evaluation_id}  # the approver
    assert await listing("level=2") == {labor_bad.evaluation_id}
    assert await listing("channel=phone") == {phone.evaluation_id}
    assert await listing("comment_status=pending_review") == {held.evaluation_id}
    day = datetime.now(SHANGHAI).date()
    old_day = (datetime.now(SHANGHAI) - timedelta(days=40)).date()
    assert old.evaluation_id not in await listing(f"from={day - timedelta(days=1)}")
    assert await listing(f"from={old_day}&to={old_day}") == {old.evaluation_id}

    everyone_a = {labor_bad, held, civil, phone, old}
    assert await listing("", "center") == {m.evaluation_id for m in everyone_a}
    assert await listing("", "other") == {other.evaluation_id}
    assert await listing("", "labor") == {m.evaluation_id for m in everyone_a if m is not civil}
    assert await listing("", "viewer") == {m.evaluation_id for m in mine}

    _, first = await api("GET", f"{E}?limit=2", token=token)
    _, second = await api("GET", f"{E}?limit=2&cursor={first['next_cursor']}", token=token)
    assert len(first["items"]) == 2 and not set(ids(first)) & set(ids(second))
    assert int(ids(first)[-1]) > int(ids(second)[0])

    for bad in ("level=6", "channel=fax", "from=2026-13-01", "cursor=xx", "comment_status=x"):
        status, answer = await api("GET", f"{E}?{bad}", token=token)
        assert (status, code_of(answer)) == (400, "invalid_query"), bad

    assert (await api("GET", f"{E}/{civil.evaluation_id}", token=team["labor"]))[0] == 404
    assert (await api("GET", f"{E}/{other.evaluation_id}", token=team["center"]))[0] == 404
    status, one = await api("GET", f"{E}/{other.evaluation_id}", token=team["other"])
    assert status == 200 and one["center"]["code"] == "440104-XY"


# ---- reply -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reply_is_public_and_audited(api, ctx, team):
    seeded = await seed_rating(ctx, overall=2)
    path = f"{E}/{seeded.evaluation_id}/reply"
    published: list[int] = []

    async def publish(evaluation_id: int) -> None:
        published.append(evaluation_id)

    ctx.publisher = publish
    for text in ("", "   ", "长" * 501):
        status, answer = await api("POST", path, {"text": text}, token=team["center"])
        assert (status, code_of(answer)) == (422, "invalid_field"), text
    assert (await api("POST", path, {"text": 5}, token=team["center"]))[0] == 400
    assert (await api("POST", path, {"text": "x"}, token=team["labor"]))[0] == 403
    assert (await api("POST", path, {"text": "x"}, token=team["viewer"]))[0] == 403
    assert (await api("POST", path, {"text": "x"}, token=team["other"]))[0] == 404
    status, reply = await api(
        "POST", path, {"text": "  感谢反馈，已增设取号窗口。 "}, token=team["center"]
    )
    assert status == 201, reply
    assert reply["text"] == "感谢反馈，已增设取号窗口。" and reply["created_at"].endswith("+08:00")
    assert published == [int(seeded.evaluation_id)]
    status, _ = await api("POST", path, {"text": "长" * 500}, token=team["super"])
    assert status == 201

    item = await public_item(api, seeded.evaluation_id)
    assert [r["text"] for r in item["replies"]] == ["感谢反馈，已增设取号窗口。", "长" * 500]
    _, admin_view = await api("GET", f"{E}/{seeded.evaluation_id}", token=team["labor"])
    assert len(admin_view["replies"]) == 2
    entries = await audits(ctx, "evaluation.reply")
    assert [e.username for e in entries] == ["hl_admin", "boss"]
    assert json.loads(entries[0].detail) == {"reply_id": reply["id"]}


# ---- moderation --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [UNCACHED])
async def test_moderation_hides_text_but_the_rating_counts(api, ctx, team):
    seeded = await seed_rating(
        ctx, overall=4, comment="某某某电话1380000", comment_status="pending_review"
    )
    path = f"{E}/{seeded.evaluation_id}/moderate"
    _, before = await api("GET", "/api/v1/public/stats")
    assert (await public_item(api, seeded.evaluation_id))["comment"] is None  # held

    status, answer = await api("POST", path, {"visible": False}, token=team["center"])
    assert (status, answer["error"]["field"]) == (422, "reason")
    status, answer = await api(
        "POST", path, {"visible": False, "reason": "x" * 201}, token=team["center"]
    )
    assert status == 422
    assert (await api("POST", path, {"visible": True}, token=team["labor"]))[0] == 403
    assert (await api("POST", path, {"visible": True}, token=team["other"]))[0] == 404

    status, view = await api("POST", path, {"visible": True}, token=team["center"])
    assert status == 200 and view["comment_status"] == "visible"
    assert (await public_item(api, seeded.evaluation_id))["comment"] == "某某某电话1380000"

    status, view = await api(
        "POST", path, {"visible": False, "reason": "含个人信息"}, token=team["center"]
    )
    assert status == 200
    assert view["comment_status"] == "hidden" and view["moderation_reason"] == "含个人信息"
    assert view["comment"] == "某某某电话1380000"  # the console still reads it
    item = await public_item(api, seeded.evaluation_id)
    assert item["comment"] is None and item["overall"] == 4
    _, after = await api("GET", "/api/v1/public/stats")
    assert after == before  # the rating still counts, in every figure

    _, page = await api("GET", f"{PUBLIC}?limit=50")
    assert "某某某电话1380000" not in json.dumps(page, ensure_ascii=False)
    entries = await audits(ctx, "evaluation.moderate")
    assert [json.loads(e.detail) for e in entries] == [
        {"from": "pending_review", "to": "visible"},
        {"from": "visible", "to": "hidden"},
    ]

    no_comment = await seed_rating(ctx, overall=5, comment=None)
    status, answer = await api(
        "POST", f"{E}/{no_comment.evaluation_id}/moderate", {"visible": True}, token=team["super"]
    )
    assert (status, code_of(answer)) == (409, "invalid_transition")


# ---- reveal ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reveal_superadmin_only_audited_never_logged(api, ctx, team, caplog):
    caplog.set_level(logging.DEBUG)
    seeded = await seed_rating(ctx, overall=1, name="欧阳娜娜")
    path = f"{E}/{seeded.evaluation_id}/reveal"
    why = {"reason": "群众来电核对身份"}
    for who in ("center", "labor", "viewer", "other"):
        status, answer = await api("POST", path, why, token=team[who])
        assert (status, code_of(answer)) == (403, "forbidden"), who
    assert (await api("POST", path, why, token=None))[0] == 401
    assert (await api("POST", f"{E}/999999/reveal", why, token=team["super"]))[0] == 404
    assert (await api("POST", path, {"x": 1, **why}, token=team["super"]))[0] == 400
    for no_reason in (None, {}, {"reason": "  "}, {"reason": "长" * 501}, {"reason": 7}):
        status, answer = await api("POST", path, no_reason, token=team["super"])
        assert (status, code_of(answer)) == (400, "invalid_body"), no_reason
    status, answer = await api("POST", path, why, token=team["super"])
    assert status == 200 and answer == {"name": "欧阳娜娜"}

    entries = await audits(ctx, "evaluation.reveal")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.username == "boss" and entry.target_id == seeded.evaluation_id
    assert json.loads(entry.detail) == {"case_id": seeded.case_id, "reason": "群众来电核对身份"}
    assert "欧阳娜娜" not in entry.detail
    logged = "\n".join(
        r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str, ensure_ascii=False)
        for r in caplog.records
    )
    assert "reveal" in logged  # the request was logged …
    assert "欧阳娜娜" not in logged and "欧阳" not in caplog.text  # … the name never


# ---- callback ratings --------------------------------------------------------------------------


#: A callback rating's call: when it took place and its record (product rule 18).
CONTACT = {"contact_at": iso(utcnow() - timedelta(hours=1)), "reference": "CALL-20260301-001"}
#: Cases a callback may rate: completed over callback.min_hours_after_completion (24 h) ago.
CALLBACK_AGE = timedelta(hours=30)


async def _case(ctx, **codes) -> tuple[str, str]:
    """A finished, unrated case (completed 30 h ago) with an active QR token:
    ``(case_id, case_no)``."""
    codes.setdefault("completed_at", utcnow() - CALLBACK_AGE)
    case_id, _ = await make_case(ctx, "黎明", make_id_number(4321), **codes)
    case_no = await ctx.db.run(lambda: Case.get_by_id(int(case_id)).case_no)
    return case_id, case_no


@pytest.mark.asyncio
async def test_callback_rating_recorded(api, ctx, team):
    case_id, case_no = await _case(ctx)
    published: list[int] = []

    async def publish(evaluation_id: int) -> None:
        published.append(evaluation_id)

    ctx.publisher = publish
    body = {
        "case_no": case_no,
        "channel": "phone",
        "overall": 5,
        "indicators": ["efficiency"],
        **CONTACT,
    }
    status, answer = await api("POST", CB, {**body, "channel": "wechat"}, token=team["labor"])
    assert (status, answer["error"]["field"]) == (422, "channel")
    status, answer = await api("POST", CB, {**body, "overall": 6}, token=team["labor"])
    assert (status, code_of(answer)) == (422, "invalid_rating")
    status, answer = await api("POST", CB, {**body, "indicators": ["nope"]}, token=team["labor"])
    assert (status, code_of(answer)) == (422, "unknown_indicator")
    status, answer = await api("POST", CB, {**body, "case_no": "NOPE"}, token=team["labor"])
    assert (status, code_of(answer)) == (404, "not_found")
    assert (await api("POST", CB, body, token=team["other"]))[0] == 404
    assert (await api("POST", CB, body, token=team["viewer"]))[0] == 403
    assert (await api("POST", CB, {**body, "user": 1}, token=team["labor"]))[0] == 400

    status, answer = await api(
        "POST", CB, {**body, "comment": "电话回访：满意"}, token=team["labor"]
    )
    assert status == 201, answer
    evaluation = answer["evaluation"]
    assert evaluation["channel"] == "phone" and evaluation["overall"] == 5
    assert evaluation["case_no"] == case_no and evaluation["name_masked"] is None
    assert evaluation["comment"] == "电话回访：满意" and evaluation["ticket"] is None
    assert published == [int(evaluation["id"])]

    def state():
        case = Case.get_by_id(int(case_id))
        row = Evaluation.get_by_id(int(evaluation["id"]))
        tokens = [t.status for t in QrToken.select().where(QrToken.case == case.id)]
        return case.first_rated_at, row.user_id, tokens

    first_rated_at, user_id, tokens = await ctx.db.run(state)
    assert first_rated_at is not None and user_id is None and tokens == ["revoked"]
    entry = (await audits(ctx, "evaluation.callback"))[0]
    assert entry.username == "labor_clerk"
    assert json.loads(entry.detail) == {
        "case_id": case_id,
        "channel": "phone",
        "contact_reference": CONTACT["reference"],
        "overall": 5,
        "superseded_default": False,
    }
    item = await public_item(api, evaluation["id"])
    assert item["channel"] == "phone" and item["name_masked"] is None

    status, answer = await api("POST", CB, body, token=team["super"])
    assert (status, code_of(answer)) == (409, "already_evaluated")


def _schedule_jobs(case_id: int, settings) -> list[str]:
    """The case's default rating and reminders, as when it was reported with a bound user;
    their job keys."""
    case = Case.get_by_id(case_id)
    schedule.schedule_case_jobs(case, settings)
    schedule.schedule_reminders(case, settings, utcnow(), catch_up=False)
    return [job.key for job in Job.select(Job.key)]


def _job_statuses(keys: list[str]) -> dict[str, str]:
    return {job.key: job.status for job in Job.select().where(Job.key.in_(keys))}


@pytest.mark.asyncio
async def test_callback_rating_cancels_the_cases_pending_jobs(api, ctx, team):
    """A callback rating goes through the writer every channel shares: like a citizen's
    rating, it cancels the case's pending reminders and default rating (the callback path
    used to leave them, so the case could still be reminded about and default-rated)."""
    case_id, case_no = await _case(ctx)
    keys = await ctx.db.run(_schedule_jobs, int(case_id), ctx.settings)
    expected = {schedule.default_rating_key(int(case_id))} | {
        schedule.reminder_key(int(case_id), n) for n in schedule.REMINDER_NUMBERS
    }
    assert expected <= set(keys)
    before = await ctx.db.run(_job_statuses, sorted(expected))
    assert set(before.values()) == {"pending"}, before

    body = {"case_no": case_no, "channel": "sms", "overall": 4, **CONTACT}
    status, answer = await api("POST", CB, body, token=team["labor"])
    assert status == 201, answer
    after = await ctx.db.run(_job_statuses, sorted(expected))
    assert after == dict.fromkeys(sorted(expected), "cancelled")


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [UNCACHED])
async def test_callback_bad_rating_supersedes_default_and_opens_ticket(api, ctx, team):
    default = await seed_rating(
        ctx, overall=3, channel="default", comment=None, completed_at=utcnow() - CALLBACK_AGE
    )
    body = {"case_no": default.case_no, "channel": "sms", "overall": 2, **CONTACT}
    status, answer = await api("POST", CB, body, token=team["center"])
    assert (status, code_of(answer)) == (422, "reason_required")
    _, before = await api("GET", "/api/v1/public/stats")

    status, answer = await api(
        "POST", CB, {**body, "indicators": ["repeat_visits"]}, token=team["center"]
    )
    assert status == 201, answer
    evaluation = answer["evaluation"]
    assert evaluation["id"] == default.evaluation_id  # superseded in place
    assert evaluation["channel"] == "sms" and evaluation["overall"] == 2
    assert [i["code"] for i in evaluation["indicators"]] == ["repeat_visits"]
    assert evaluation["ticket_status"] == "open"

    def rows():
        first = Evaluation.select().where(
            (Evaluation.case == int(default.case_id)) & (Evaluation.assess_number == 1)
        )
        ticket = Ticket.get(Ticket.evaluation == int(default.evaluation_id))
        chosen = EvaluationIndicator.select().where(
            EvaluationIndicator.evaluation == int(default.evaluation_id)
        )
        return first.count(), ticket, chosen.count()

    count, ticket, chosen = await ctx.db.run(rows)
    assert count == 1 and chosen == 1 and ticket.status == "open"
    assert ticket.verify_due > utcnow()
    _, after = await api("GET", "/api/v1/public/stats")
    assert after["total"] == before["total"]
    assert after["by_level"]["3"] == before["by_level"]["3"] - 1
    assert after["by_level"]["2"] == before["by_level"]["2"] + 1
    entry = (await audits(ctx, "evaluation.callback"))[0]
    assert json.loads(entry.detail)["superseded_default"] is True
    assert entry.username == "hl_admin"

    status, tickets_page = await api("GET", "/admin/api/tickets", token=team["labor"])
    assert ticket.id in {int(t["id"]) for t in tickets_page["items"]}
    # a staff rating now stands: a second callback is refused
    status, answer = await api(
        "POST", CB, {**body, "overall": 5, "channel": "phone"}, token=team["center"]
    )
    assert (status, code_of(answer)) == (409, "already_evaluated")


@pytest.mark.asyncio
async def test_callback_refused_after_a_citizen_rating(api, sandbox, ctx, team):
    id_number = make_id_number(77)
    case_id, scene = await make_case(ctx, "黎明", id_number, completed_at=utcnow() - CALLBACK_AGE)
    citizen = await verified_user(api, sandbox, "黎明", id_number)
    assert (await rate(api, citizen, scene=scene, overall=5))[0] == 201
    case_no = await ctx.db.run(lambda: Case.get_by_id(int(case_id)).case_no)
    body = {"case_no": case_no, "channel": "phone", "overall": 1, "comment": "差", **CONTACT}
    status, answer = await api("POST", CB, body, token=team["super"])
    assert (status, code_of(answer)) == (409, "already_evaluated")
    for channel in ("miniprogram", "phone", "sms"):
        seeded = await seed_rating(
            ctx, overall=4, channel=channel, comment=None, completed_at=utcnow() - CALLBACK_AGE
        )
        status, answer = await api(
            "POST", CB, {**body, "case_no": seeded.case_no}, token=team["super"]
        )
        assert (status, code_of(answer)) == (409, "already_evaluated"), channel
