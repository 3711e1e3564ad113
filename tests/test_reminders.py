"""Reminders to rate and the rectified notice, through HTTP, the sandbox and real Redis.

accept (POST /api/v1/subscriptions) → case reported (signed partner API) → the worker sends
the reminder (page with case_id, data within the field limits); rated first → none; 43101 →
no_quota, one attempt; quiet hours defer; 47003 → config_error, not retried; -1 → retried,
sent once; a crash mid-send → resent once, never twice; identity bound late; a closed
ticket → rectified notice; housekeeping.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.base import utcnow
from models.case import Case
from models.identity import FaceAttempt
from models.job import Job
from models.messaging import Message, MessageAttempt, Subscription
from tests.support.admins import admin_token
from tests.support.worker import running_worker, wait_for
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.clients.partner import iso_ago, resident_id
from wxbackend.clock import clock as app_clock
from wxbackend.services.jobs import housekeeping
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.messaging import quiet_hours, recipients, schedule, sending, template_data

REMINDER = "Reminder_" + "a" * 34
RECTIFIED = "Rectified-" + "b" * 33
FIELDS = {"thing1": "thing", "time2": "time", "thing3": "thing"}
RECTIFIED_FIELDS = {"thing1": "thing", "phrase2": "phrase", "thing3": "thing", "time4": "time"}
PAGE = "pages/evaluate/index"
SEND = "cgi-bin/message/subscribe/send"
SHANGHAI = ZoneInfo("Asia/Shanghai")
NAME = "黎明"

FIRST_AFTER = 1  # seconds from the report to the first reminder

BASE = {
    "wechat": {"template_reminder": REMINDER, "template_rectified": RECTIFIED},
    "reminders": {
        "first_after_seconds": FIRST_AFTER,
        "second_after_seconds": 86400,
        "quiet_hours": "",
    },
    "worker": {"poll_seconds": 0.2},
}


def overrides(**sections: dict) -> dict:
    merged = {k: dict(v) for k, v in BASE.items()}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged


#: report() and the tests move the application's clock; the wall clock again after each test.
pytestmark = pytest.mark.usefixtures("clock")


@pytest.fixture
def settings_overrides():
    return overrides()


# ---- helpers -----------------------------------------------------------------------------------


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


async def templates(sandbox, fields=None) -> None:
    """The reminder template with ``fields`` (default :data:`FIELDS`); the rectified notice's
    own result template (:data:`RECTIFIED_FIELDS`, conf/default.toml's map)."""
    for template_id, shape in ((REMINDER, fields or FIELDS), (RECTIFIED, RECTIFIED_FIELDS)):
        answer = await sandbox.control(
            "POST", "templates", {"template_id": template_id, "fields": shape}
        )
        assert answer["template_id"] == template_id


async def citizen(api, sandbox, *, accept=True, wechat_quota=1, template=REMINDER):
    """A verified citizen who accepted ``template`` in the mini-program (our quota 1) and
    holds ``wechat_quota`` at WeChat (the sandbox). Returns (token, openid, id_number)."""
    openid, id_number = new_openid(), resident_id()
    token = await verified_user(api, sandbox, NAME, id_number, openid=openid)
    if accept:
        status, answer = await api(
            "POST", "/api/v1/subscriptions", {"results": {template: "accept"}}, token=token
        )
        assert status == 200 and answer["quota"][template] == 1, answer
    if wechat_quota:
        await sandbox.control(
            "POST", "quota", {"openid": openid, "template_id": template, "count": wechat_quota}
        )
    return token, openid, id_number


async def report(partner, id_number: str, **fields) -> int:
    """A finished case of ``id_number`` reported; then the first reminder's time passes (the
    application's clock moves :data:`FIRST_AFTER` on, instead of the test sleeping)."""
    status, answer = await partner.report_case(
        applicant={"name": NAME, "id_number": id_number}, **fields
    )
    assert status == 201, answer
    app_clock.advance(FIRST_AFTER)
    return int(answer["case_id"])


def message_of(key: str) -> Message | None:
    return Message.get_or_none(Message.key == key)


def attempts_of(key: str) -> list[tuple[str, str | None]]:
    return [
        (a.status, a.errcode)
        for a in MessageAttempt.select()
        .join(Message)
        .where(Message.key == key)
        .order_by(MessageAttempt.id)
    ]


def job_of(key: str) -> Job | None:
    return Job.get_or_none(Job.key == key)


def quota_of(openid_user_template: tuple[int, str]) -> int:
    user_id, template_id = openid_user_template
    row = Subscription.get_or_none(
        (Subscription.user == user_id) & (Subscription.template_id == template_id)
    )
    return row.quota if row else 0


async def sends(sandbox) -> int:
    return (await sandbox.stats())["calls"].get(SEND, 0)


async def finished(ctx, key: str, statuses=("done", "failed", "cancelled")) -> bool:
    job = await ctx.db.run(job_of, key)
    return job is not None and job.status in statuses


# ---- the happy path ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_accept_report_remind(api, sandbox, ctx, partner):
    """accept → case reported → the reminder arrives with the right page and data."""
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    job = await ctx.db.run(job_of, key)
    assert job.status == "pending" and job.kind == "reminder"
    second = await ctx.db.run(job_of, schedule.reminder_key(case_id, 2))
    assert second is not None and second.due_at > job.due_at + timedelta(hours=23)
    assert await ctx.db.run(job_of, schedule.default_rating_key(case_id)) is not None

    async with running_worker(ctx):
        got = await wait_for(lambda: _messages(sandbox, openid))
    assert len(got) == 1, got
    message = got[0]
    assert message["template_id"] == REMINDER
    assert message["page"] == f"{PAGE}?case_id={case_id}"
    data = {k: v["value"] for k, v in message["data"].items()}
    assert data["thing1"] == "失业登记"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", data["time2"])
    assert data["thing3"] == "广州市荔湾区海龙街政务服务中心"  # 15 chars: fits a thing (20)
    row = await ctx.db.run(message_of, key)
    assert row.status == "sent" and row.msgid == str(message["msgid"]) and row.sent_at
    assert await ctx.db.run(attempts_of, key) == [("sent", None)]
    assert await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 0  # spent exactly once
    assert (await ctx.db.run(job_of, key)).status == "done"
    # the second reminder waits for its time
    assert (await ctx.db.run(job_of, schedule.reminder_key(case_id, 2))).status == "pending"


async def _messages(sandbox, openid: str) -> list:
    return (await sandbox.control("GET", f"messages?openid={openid}"))["items"]


@pytest.mark.asyncio
async def test_rated_first_sends_nothing(api, sandbox, ctx, partner):
    await templates(sandbox)
    token, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    status, answer = await rate(api, token, case_id=str(case_id), overall=5)
    assert status == 201, answer
    key = schedule.reminder_key(case_id, 1)
    assert (await ctx.db.run(job_of, key)).status == "cancelled"
    assert (await ctx.db.run(job_of, schedule.default_rating_key(case_id))).status == "cancelled"
    # Even a job that escaped the cancel (scheduled again) re-checks at send time.
    await ctx.db.run(
        jobs.schedule, "reminder", f"reminder:{case_id}:9", utcnow(), {"case_id": case_id, "n": 9}
    )
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, f"reminder:{case_id}:9"))
        await asyncio.sleep(0.5)
    assert await _messages(sandbox, openid) == []
    assert await sends(sandbox) == 0
    skipped = await ctx.db.run(message_of, f"reminder:{case_id}:9")
    assert (skipped.status, skipped.errcode) == ("skipped", "rated")


@pytest.mark.asyncio
async def test_no_quota_43101_recorded_once(api, sandbox, ctx, partner):
    """Our record says quota 1, WeChat says none: 43101 → no_quota, quota 0, no retry."""
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox, wechat_quota=0)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
        await asyncio.sleep(1.0)  # no retry storm
    row = await ctx.db.run(message_of, key)
    assert (row.status, row.errcode) == ("no_quota", "43101")
    assert await ctx.db.run(attempts_of, key) == [("no_quota", "43101")]
    assert await sends(sandbox) == 1
    assert await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 0
    assert (await ctx.db.run(job_of, key)).status == "done"


@pytest.mark.asyncio
async def test_without_local_quota_nothing_is_sent(api, sandbox, ctx, partner):
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox, accept=False)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
    row = await ctx.db.run(message_of, key)
    assert (row.status, row.errcode) == ("skipped", "no_quota")
    assert await sends(sandbox) == 0


def _quiet_around_now() -> tuple[str, datetime]:
    """A quiet period from an hour ago to an hour ahead (local), and its end in naive UTC."""
    now = datetime.now(SHANGHAI)
    end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    spec = f"{(now - timedelta(hours=1)):%H:%M}-{end:%H:%M}"
    return spec, end.astimezone(UTC).replace(tzinfo=None)


QUIET, QUIET_END = _quiet_around_now()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides", [overrides(reminders={"quiet_hours": QUIET, "spread_seconds": 0})]
)
async def test_quiet_hours_defer(api, sandbox, ctx, partner):
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    job = await ctx.db.run(job_of, schedule.reminder_key(case_id, 1))
    assert job.due_at == QUIET_END
    # A job that falls due inside quiet hours anyway (e.g. a retry) is deferred, not sent,
    # and the deferral does not count as an attempt.
    await ctx.db.run(lambda: Job.update(due_at=utcnow()).where(Job.id == job.id).execute())
    async with running_worker(ctx):
        assert await wait_for(lambda: _pending_at(ctx, job.id, QUIET_END))
    assert await sends(sandbox) == 0
    again = await ctx.db.run(job_of, job.key)
    assert again.attempts == 0 and again.last_error == "quiet hours"


async def _pending_at(ctx, job_id: int, due: datetime) -> bool:
    job = await ctx.db.run(Job.get_by_id, job_id)
    return job.status == "pending" and job.due_at == due


def test_quiet_hours_rules():
    quiet = quiet_hours.quiet_hours("22:00-08:00", "Asia/Shanghai")

    def utc(local: str) -> datetime:
        value = datetime.fromisoformat(local).replace(tzinfo=SHANGHAI)
        return value.astimezone(UTC).replace(tzinfo=None)

    assert quiet.defer(utc("2026-03-01T23:30")) == utc("2026-03-02T08:00")
    assert quiet.defer(utc("2026-03-02T07:59")) == utc("2026-03-02T08:00")
    assert quiet.defer(utc("2026-03-02T08:00")) == utc("2026-03-02T08:00")
    assert quiet.defer(utc("2026-03-02T12:00")) == utc("2026-03-02T12:00")
    assert quiet.defer(utc("2026-03-02T22:00")) == utc("2026-03-03T08:00")
    lunch = quiet_hours.quiet_hours("12:00-14:00", "Asia/Shanghai")
    assert lunch.defer(utc("2026-03-02T13:00")) == utc("2026-03-02T14:00")
    assert lunch.defer(utc("2026-03-02T15:00")) == utc("2026-03-02T15:00")
    assert quiet_hours.quiet_hours("", "Asia/Shanghai") is None


def test_reminder_plan_rules(settings):
    s = settings.replace(
        reminders__first_after_seconds=7200,
        reminders__second_after_seconds=259200,
        reminders__quiet_hours="",
    )
    completed = datetime(2026, 3, 2, 2, 0)  # 10:00 local
    reported = completed + timedelta(hours=5)
    plan = schedule.plan_reminders(reported, s, reported, catch_up=False)
    assert plan == [(1, reported + timedelta(hours=2)), (2, reported + timedelta(days=3))]
    # reported late: the window runs 7 days from the report (rule 14), so both reminders fit
    late = completed + timedelta(days=5)
    assert schedule.plan_reminders(late, s, late, catch_up=False) == [
        (1, late + timedelta(hours=2)),
        (2, late + timedelta(days=3)),
    ]
    # a reminder that would fall after the 7-day window → none
    short = s.replace(reminders__second_after_seconds=7 * 86400)
    assert schedule.plan_reminders(late, short, late, catch_up=False) == [
        (1, late + timedelta(hours=2))
    ]
    # an identity bound on day 4: both past due → one reminder, now
    now = completed + timedelta(days=4)
    assert schedule.plan_reminders(completed, s, now, catch_up=True) == [(2, now)]
    quiet = s.replace(reminders__quiet_hours="22:00-08:00")
    evening = datetime(2026, 3, 2, 13, 30)  # 21:30 local; +2 h = 23:30 → 08:00 next day
    plan = schedule.plan_reminders(evening, quiet, evening, catch_up=False)
    assert plan[0] == (1, datetime(2026, 3, 3, 0, 0))


def test_template_data_is_cut_to_the_field_limits():
    values = {
        "item_name": "一" * 30,
        "completed_at": datetime(2026, 3, 2, 2, 5),
        "center_name": "海龙街政务服务中心",
        "case_no": "C" * 40,
        "department_name": "劳动和社会保障服务专窗",
    }
    fields = {
        "thing1": "item_name",
        "time2": "completed_at",
        "character_string3": "case_no",
        "phrase4": "department_name",
        "date5": "completed_at",
        "name6": "center_name",
    }
    data = template_data.render_data(fields, values, "Asia/Shanghai")
    assert data["thing1"]["value"] == "一" * 19 + "…"
    assert data["time2"]["value"] == "2026-03-02 10:05"
    assert data["character_string3"]["value"] == "C" * 32
    assert data["phrase4"]["value"] == "劳动和社会"
    assert data["date5"]["value"] == "2026-03-02"
    assert data["name6"]["value"] == "海龙街政务服务中心"
    with pytest.raises(template_data.TemplateFieldsError):
        template_data.render_data({"thing1": "applicant_name"}, values, "Asia/Shanghai")


@pytest.mark.asyncio
async def test_template_mismatch_47003_is_a_config_error(api, sandbox, ctx, partner):
    await templates(sandbox, fields={"thing1": "thing", "number2": "number"})
    _, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
        await asyncio.sleep(1.0)
    row = await ctx.db.run(message_of, key)
    assert (row.status, row.errcode) == ("config_error", "47003")
    assert await ctx.db.run(attempts_of, key) == [("config_error", "47003")]
    job = await ctx.db.run(job_of, key)
    assert job.status == "failed" and job.last_error == "config_error 47003"
    assert await sends(sandbox) == 1  # not retried
    assert await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 1  # WeChat spent nothing
    status, metrics = await api("GET", "/metrics")
    assert 'wxb_messages_total{kind="reminder",status="config_error"} 1.0' in metrics.decode()
    # shown to admins: the message list and the WeChat configuration page
    admin = await admin_token(api, ctx)
    status, page = await api("GET", "/admin/api/messages?status=config_error", token=admin)
    assert status == 200 and len(page["items"]) == 1
    item = page["items"][0]
    assert (item["kind"], item["errcode"], item["attempts"]) == ("reminder", "47003", 1)
    assert item["case_no"] and item["template_id"] == REMINDER
    status, config = await api("GET", "/admin/api/wechat-config", token=admin)
    assert config["problems"]["config_errors_24h"] == 1
    assert config["problems"]["last_errcode"] == "47003"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides",
    [overrides(templates={"reminder_fields": {"thing1": "item_name", "number2": "center_name"}})],
)
async def test_a_value_breaking_its_field_rule_is_a_config_error_without_wechat(
    api, sandbox, ctx, partner
):
    """A center name in a ``number`` field cannot fit (product rule 23): the message is
    ``config_error`` before any call to WeChat, and the citizen's quota is untouched."""
    await templates(sandbox, fields={"thing1": "thing", "number2": "number"})
    _, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
    row = await ctx.db.run(message_of, key)
    assert (row.status, row.errcode) == ("config_error", "fields")
    job = await ctx.db.run(job_of, key)
    assert job.status == "failed" and "number2" in job.last_error
    assert await sends(sandbox) == 0  # WeChat never called
    assert await ctx.db.run(attempts_of, key) == []
    assert await _messages(sandbox, openid) == []


@pytest.mark.asyncio
async def test_busy_once_is_retried_and_sent_once(api, sandbox, ctx, partner):
    """-1 once: the gateway's own retry sends it; one message, one attempt."""
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox)
    await sandbox.fault(SEND, errcode=-1, times=1)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
    assert len(await _messages(sandbox, openid)) == 1
    assert await sends(sandbox) == 2
    assert await ctx.db.run(attempts_of, key) == [("sent", None)]


@pytest.mark.asyncio
async def test_busy_until_the_gateway_gives_up_is_retried_by_the_job(api, sandbox, ctx, partner):
    """-1 on every gateway attempt: the message goes back to pending (quota given back), the
    job retries with backoff and sends it once."""
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox)
    await sandbox.fault(SEND, errcode=-1, times=3)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    async with running_worker(ctx):
        assert await wait_for(lambda: _retrying(ctx, key), seconds=15)
        row = await ctx.db.run(message_of, key)
        assert row.status == "pending"
        assert await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 1
        job = await ctx.db.run(job_of, key)
        assert job.due_at > utcnow()  # backoff
        await ctx.db.run(lambda: Job.update(due_at=utcnow()).where(Job.key == key).execute())
        assert await wait_for(lambda: finished(ctx, key))
    assert len(await _messages(sandbox, openid)) == 1
    assert await ctx.db.run(attempts_of, key) == [("failed", "-1"), ("sent", None)]
    row = await ctx.db.run(message_of, key)
    assert row.status == "sent" and await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 0


async def _retrying(ctx, key: str) -> bool:
    job = await ctx.db.run(job_of, key)
    return job is not None and job.status == "pending" and job.last_error == "-1"


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [overrides(worker={"lease_seconds": 1})])
@pytest.mark.parametrize("first_landed", [True, False])
async def test_crash_mid_send_is_resent_once_never_twice(api, sandbox, ctx, partner, first_landed):
    """A worker died after committing 'sending' (and spending the quota): the next worker
    resends once. If the first call had landed, WeChat's spent quota answers 43101 — counted
    as sent; if not, the resend delivers it. Either way exactly one message arrives."""
    await templates(sandbox)
    _, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)  # due: report() moved the clock
    dead = (await ctx.db.run(jobs.claim, "dead-worker", 0.3, 10, ["reminder"]))[0]
    assert dead.key == key
    config = sending.Templates(REMINDER, PAGE)
    targets = recipients.reminder_targets(ctx.settings)
    plans = await ctx.db.run(
        sending.prepare_batch, [dead], "reminder", config, targets, ctx.settings
    )
    plan = plans[0]
    assert isinstance(plan, sending.SendPlan) and not plan.resend
    assert (await ctx.db.run(message_of, key)).status == "sending"
    if first_landed:
        await ctx.wechat.send_subscribe_message(openid, REMINDER, plan.data, page=plan.page)
    app_clock.advance(1.2)  # the dead worker's lease runs out
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
    assert len(await _messages(sandbox, openid)) == 1
    row = await ctx.db.run(message_of, key)
    assert row.status == "sent"
    expected = [("sending", None), ("no_quota", "43101") if first_landed else ("sent", None)]
    assert await ctx.db.run(attempts_of, key) == expected
    assert await ctx.db.run(quota_of, (row.user_id, REMINDER)) == 0


@pytest.mark.asyncio
async def test_identity_bound_after_the_case_was_reported(api, sandbox, ctx, partner):
    await templates(sandbox)
    openid, id_number = new_openid(), resident_id()
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    assert await ctx.db.run(job_of, key) is None  # nobody to remind yet (its time has passed)
    token = await verified_user(api, sandbox, NAME, id_number, openid=openid)
    job = await ctx.db.run(job_of, key)
    assert job is not None and job.due_at <= utcnow() + timedelta(seconds=1)
    status, _ = await api(
        "POST", "/api/v1/subscriptions", {"results": {REMINDER: "accept"}}, token=token
    )
    assert status == 200
    await sandbox.control("POST", "quota", {"openid": openid, "template_id": REMINDER})
    async with running_worker(ctx):
        got = await wait_for(lambda: _messages(sandbox, openid))
    assert [m["page"] for m in got] == [f"{PAGE}?case_id={case_id}"]


@pytest.mark.asyncio
async def test_a_skipped_reminder_is_scheduled_again_when_the_identity_is_bound(
    api, sandbox, ctx, partner
):
    """The identity was erased before the reminder's time (skipped), then verified again."""
    await templates(sandbox)
    token, openid, id_number = await citizen(api, sandbox)
    case_id = await report(partner, id_number)
    key = schedule.reminder_key(case_id, 1)
    status, _ = await api("DELETE", "/api/v1/me/identity", token=token)
    assert status == 204
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
        assert (await ctx.db.run(message_of, key)).errcode == "no_identity"
        token = await verified_user(api, sandbox, NAME, id_number, openid=openid)
        got = await wait_for(lambda: _messages(sandbox, openid))
    assert len(got) == 1
    assert (await ctx.db.run(message_of, key)).status == "sent"


@pytest.mark.asyncio
async def test_closed_ticket_sends_the_rectified_notice(api, sandbox, ctx, partner):
    await templates(sandbox)
    token, openid, id_number = await citizen(api, sandbox, template=RECTIFIED)
    case_id = await report(partner, id_number)
    status, answer = await rate(
        api, token, case_id=str(case_id), overall=1, indicators=["long_queue"]
    )
    assert status == 201, answer
    admin = await admin_token(api, ctx)
    status, page = await api("GET", "/admin/api/tickets", token=admin)
    tid = next(t["id"] for t in page["items"] if t["evaluation_id"] == answer["evaluation"]["id"])
    for name, body in [
        ("verify", {"valid": True, "note": "属实"}),
        ("rectify", {"note": "已整改"}),
        ("callback", {"channel": "phone", "satisfied": True, "note": "满意"}),
        ("close", None),
    ]:
        status, view = await api("POST", f"/admin/api/tickets/{tid}/{name}", body, token=admin)
        assert status == 200, (name, view)
    key = schedule.rectified_key(int(tid))
    assert (await ctx.db.run(job_of, key)).kind == "rectified"
    async with running_worker(ctx):
        got = await wait_for(lambda: _messages(sandbox, openid))
    assert len(got) == 1
    assert got[0]["template_id"] == RECTIFIED
    assert got[0]["page"] == f"{PAGE}?case_id={case_id}"
    # its own map (templates.rectified_fields) on a result template: it says the outcome
    data = got[0]["data"]
    assert set(data) == set(RECTIFIED_FIELDS) and data["phrase2"]["value"] == "已整改"
    assert data["thing3"]["value"] == "您反映的问题已整改办结"
    assert (await ctx.db.run(message_of, key)).status == "sent"


@pytest.mark.asyncio
async def test_housekeeping_runs_hourly(ctx):
    now = utcnow()
    await ctx.db.run(
        lambda: FaceAttempt.insert_many(
            [
                {
                    "user": _user_id(),
                    "out_seq_no": f"old{i:08d}",
                    "verify_id": f"v-old-{i}",
                    "cert_enc": "",
                    "created_at": now - timedelta(days=40),
                    "expires_at": now - timedelta(days=40),
                }
                for i in range(3)
            ]
        ).execute()
    )
    assert await ctx.db.run(housekeeping.ensure_scheduled, now) == 2 * len(housekeeping.TASKS)
    assert await ctx.db.run(housekeeping.ensure_scheduled, now) == 0  # idempotent
    key = housekeeping.hour_key("purge_face_attempts", now)
    async with running_worker(ctx):
        assert await wait_for(lambda: finished(ctx, key))
    assert await ctx.db.run(FaceAttempt.select().count) == 0
    nxt = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    job = await ctx.db.run(job_of, housekeeping.hour_key("purge_face_attempts", nxt))
    assert job.status == "pending" and job.due_at == nxt
    payload = json.loads(job.payload)
    assert payload == {"task": "purge_face_attempts"}


def _user_id() -> int:
    from models.user import User

    return User.create(openid=new_openid()).id


@pytest.mark.asyncio
async def test_cases_without_identity_get_no_reminder_jobs(ctx, partner):
    case_id = await report(partner, resident_id())
    keys = await ctx.db.run(
        lambda: sorted(j.key for j in Job.select().where(Job.key.contains(f":{case_id}")))
    )
    assert keys == [schedule.default_rating_key(case_id)]
    case = await ctx.db.run(Case.get_by_id, case_id)
    job = await ctx.db.run(job_of, keys[0])
    # the window runs from the later of completion and report (rule 14)
    assert job.due_at == max(case.completed_at, case.reported_at) + timedelta(days=7)


@pytest.mark.asyncio
async def test_case_reported_late_gets_its_full_window(api, sandbox, ctx, partner):
    """Rule 14 (it used to get no reminder): the window runs from the report, so a case
    completed 8 days before it reached us is reminded and default-rated from the report."""
    await templates(sandbox)
    _, _, id_number = await citizen(api, sandbox)
    case_id = await report(
        partner, id_number, accepted_at=iso_ago(days=8, hours=1), completed_at=iso_ago(days=8)
    )
    case = await ctx.db.run(Case.get_by_id, case_id)
    first = await ctx.db.run(job_of, schedule.reminder_key(case_id, 1))
    default = await ctx.db.run(job_of, schedule.default_rating_key(case_id))
    assert first is not None and first.due_at >= case.reported_at
    assert default.due_at == case.reported_at + timedelta(days=7)
