"""Staff alerts through each center's WeCom group robot (product rule 23), against the
sandbox's robot over HTTP, real Redis and the real worker.

A new 差评 → one markdown alert (item, level, reasons, deadline, console link; nothing
personal); a center without a robot → skipped; a worker dying before or after the call →
sent once, never twice; 20 a minute per robot; a deadline near → one alert per deadline.
The robot key itself (write-only, encrypted) is tested in test_staff_alert_keys.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from models.alert import StaffAlert
from models.base import utcnow
from models.case import Case
from models.catalog import Center, ServiceItem
from models.evaluation import Evaluation
from models.job import Job
from models.ticket import Ticket
from tests.support.public_seed import (
    APPLICANT_ID,
    APPLICANT_NAME,
    APPLICANT_PHONE,
    CENTER,
    OTHER_CENTER,
    rated_case,
    seed_catalog,
)
from tests.support.worker import running_worker, wait_for
from wxbackend.db import database
from wxbackend.services.alerts import content, robot
from wxbackend.services.alerts import sending as alerts
from wxbackend.services.alerts.deadlines import schedule_near_deadlines
from wxbackend.services.catalogue.admin_rows import WECOM_KEY_CONTEXT
from wxbackend.services.jobs import housekeeping
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.tickets.opening import open_ticket

PUBLIC_URL = "https://pj.example.gov.cn"
COMMENT = "窗口人员态度恶劣，电话13800138000"
BASE = {
    "wecom": {"api_base": "sandbox", "timeout_seconds": 2.0},
    "server": {"public_url": PUBLIC_URL},
    "worker": {"poll_seconds": 0.1},
}


@pytest.fixture
def settings_overrides():
    return BASE


# ---- helpers ------------------------------------------------------------------------------


async def robot_for(ctx, sandbox, center: str = CENTER) -> str:
    """A sandbox robot whose key the center stores (as PUT /admin/api/centers does)."""
    key = (await sandbox.expect("POST", "wecom/robots", {}))["key"]

    def store() -> None:
        seed_catalog(ctx)
        enc = ctx.cipher.encrypt(key, WECOM_KEY_CONTEXT)
        Center.update(wecom_key_enc=enc, wecom_key_mask="****" + key[-4:]).where(
            Center.code == center
        ).execute()

    await ctx.db.run(store)
    return key


def new_bad_ticket(ctx, item_code: str = "440103-SY-001") -> int:
    """A 差评 with reasons and a comment, its ticket opened as the rating writer does."""
    with database.atomic():
        seed_catalog(ctx)
        evaluation_id = rated_case(
            ctx, 1, item_code, comment=COMMENT, indicators=("poor_attitude", "long_queue")
        )
        case = Case.get_by_id(Evaluation.get_by_id(evaluation_id).case_id)
        return open_ticket(evaluation_id, case, utcnow(), ctx.settings)


async def robot_messages(sandbox, key: str) -> list[dict]:
    return (await sandbox.expect("GET", f"wecom/messages?key={key}"))["items"]


def alert_of(key: str) -> StaffAlert | None:
    return StaffAlert.get_or_none(StaffAlert.key == key)


async def status_of(ctx, key: str) -> str | None:
    row = await ctx.db.run(alert_of, key)
    return row.status if row else None


# ---- the new 差评 ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_new_bad_rating_reaches_the_robot_without_personal_data(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    job = await ctx.db.run(lambda: Job.get(Job.key == key))
    assert job.kind == alerts.KIND and job.status == "pending"
    async with running_worker(ctx):
        ok = await wait_for(lambda: _is(ctx, key, "sent"))
    assert ok
    [message] = await robot_messages(sandbox, robot_key)
    assert message["msgtype"] == "markdown"
    text = message["content"]
    assert "新差评待核实" in text
    item = await ctx.db.run(lambda: ServiceItem.get(ServiceItem.code == "440103-SY-001").name)
    assert f"办理事项：{item}" in text
    assert "非常不满意" in text
    assert "服务态度差" in text and "排队时间长" in text
    assert "核实期限：" in text and "整改期限：" in text
    assert f"{PUBLIC_URL}/admin/#tickets" in text
    assert f"工单号：{ticket_id}" in text
    for personal in (APPLICANT_NAME, APPLICANT_PHONE, APPLICANT_ID, COMMENT, "态度恶劣"):
        assert personal not in text
    assert len(text.encode()) <= robot.MARKDOWN_MAX_BYTES
    row = await ctx.db.run(alert_of, key)
    assert (row.status, row.attempts, row.errcode) == ("sent", 1, None)
    assert (await ctx.db.run(lambda: Job.get(Job.key == key))).status == "done"


async def _is(ctx, key: str, status: str) -> bool:
    return await status_of(ctx, key) == status


def test_the_item_and_deadlines_are_shown_in_local_time(settings):
    facts = content.Facts(
        ticket_id=7,
        center="海龙街政务服务中心",
        item="**居住证**[办理](x)",
        level=2,
        reasons=(),
        verify_due=datetime(2026, 12, 3, 10, 0),
        rectify_due=datetime(2026, 12, 20, 10, 0),
    )
    text = content.markdown(content.VERIFY_DUE, facts, settings)
    assert "核实期限：2026-12-03 18:00" in text  # Asia/Shanghai
    assert "整改期限" not in text
    assert "不满意" in text and "差评原因：未选择" in text
    assert "**居住证**" not in text and "[办理](x)" not in text  # no markup from names


@pytest.mark.asyncio
async def test_a_center_without_a_robot_is_skipped(ctx, sandbox):
    await robot_for(ctx, sandbox, OTHER_CENTER)  # another center's robot hears nothing
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "skipped"))
    row = await ctx.db.run(alert_of, key)
    assert (row.errcode, row.attempts) == ("no_robot", 0)
    assert (await sandbox.expect("GET", "wecom/messages"))["items"] == []
    assert (await sandbox.stats())["calls"].get(robot.SEND_PATH, 0) == 0


@pytest.mark.asyncio
async def test_an_unknown_robot_fails_without_retries(ctx, sandbox):
    await robot_for(ctx, sandbox)
    await sandbox.expect("POST", "reset")  # the robot is gone: WeCom answers 93000
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "failed"))
    row = await ctx.db.run(alert_of, key)
    assert (row.errcode, row.attempts) == ("93000", 1)
    assert (await ctx.db.run(lambda: Job.get(Job.key == key))).status == "failed"


@pytest.mark.asyncio
async def test_a_system_error_is_retried_and_sent_once(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    await sandbox.expect("POST", "faults", {"path": robot.SEND_PATH, "errcode": -1, "times": 1})
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(
            lambda: ctx.db.run(lambda: Job.get(Job.key == key).last_error == "-1")
        )
        await ctx.db.run(  # the backoff, shortened
            lambda: Job.update(due_at=utcnow()).where(Job.key == key).execute()
        )
        assert await wait_for(lambda: _is(ctx, key, "sent"))
    assert len(await robot_messages(sandbox, robot_key)) == 1
    assert (await ctx.db.run(alert_of, key)).attempts == 2


# ---- crashes ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides", [{**BASE, "worker": {"poll_seconds": 0.1, "lease_seconds": 1}}]
)
@pytest.mark.parametrize("died", ["after_claim", "after_send"])
async def test_a_worker_dying_never_sends_twice(ctx, sandbox, died):
    """Killed between the claim and the call: the next worker sends it. Killed after the
    call (before recording it): the alert is ``unknown`` and never sent again."""
    robot_key = await robot_for(ctx, sandbox)
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    [dead] = await ctx.db.run(jobs.claim, "dead-worker", 0.5, 10, [alerts.KIND])
    assert dead.key == key
    if died == "after_send":
        plan = await ctx.db.run(alerts.prepare, dead, ctx.cipher, ctx.settings)
        assert isinstance(plan, alerts.Plan)
        assert await ctx.db.run(alerts.mark_sending, plan)
        assert (await robot.send(ctx, plan.robot_key, plan.text)).sent
    await asyncio.sleep(1.0)  # the dead worker's lease runs out
    async with running_worker(ctx):
        assert await wait_for(lambda: ctx.db.run(lambda: Job.get(Job.key == key).status == "done"))
    assert len(await robot_messages(sandbox, robot_key)) == 1
    row = await ctx.db.run(alert_of, key)
    if died == "after_send":
        assert (row.status, row.errcode, row.attempts) == ("unknown", "interrupted", 1)
    else:
        assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.asyncio
async def test_a_mark_committed_but_unanswered_still_sends_once(ctx, sandbox):
    """The database restarting as the mark commits: the worker cannot tell whether it landed
    and marks again; the alert is still sent (once), never left ``unknown`` unsent."""
    robot_key = await robot_for(ctx, sandbox)
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    [job] = await ctx.db.run(jobs.claim, "w", 30, 10, [alerts.KIND])
    plan = await ctx.db.run(alerts.prepare, job, ctx.cipher, ctx.settings)
    assert isinstance(plan, alerts.Plan)
    assert await ctx.db.run(alerts.mark_sending, plan)  # committed; its answer lost
    assert await ctx.db.run(alerts.mark_sending, plan)  # the retry: still ours to send
    answer = await robot.send(ctx, plan.robot_key, plan.text)
    assert await ctx.db.run(alerts.record, plan, answer, utcnow()) == "sent"
    assert len(await robot_messages(sandbox, robot_key)) == 1
    row = await ctx.db.run(alert_of, key)
    assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.asyncio
async def test_a_timeout_is_never_resent(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    await sandbox.expect("POST", "faults", {"path": robot.SEND_PATH, "hang_seconds": 5, "times": 1})
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "unknown"), seconds=8)
    row = await ctx.db.run(alert_of, key)
    assert row.errcode == "599" and row.attempts == 1
    assert await robot_messages(sandbox, robot_key) == []  # the hung call answered nothing


# ---- pace: 20 a minute per robot -------------------------------------------------------------


async def _start_of_a_minute() -> None:
    """Wait until at most 30 s of the current minute are gone (the test fits in it)."""
    second = utcnow().second
    if second > 30:
        await asyncio.sleep(60.5 - second)


@pytest.mark.asyncio
async def test_twenty_a_minute_per_robot(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    other_key = await robot_for(ctx, sandbox, OTHER_CENTER)
    await _start_of_a_minute()

    def many() -> list[int]:
        ours = [new_bad_ticket(ctx) for _ in range(25)]
        return ours + [new_bad_ticket(ctx, "440104-XX-001") for _ in range(3)]

    await ctx.db.run(many)
    minute = utcnow().replace(second=0, microsecond=0)

    async def settled() -> bool:
        def count() -> tuple[int, int]:
            sent = StaffAlert.select().where(StaffAlert.status == "sent").count()
            paced = Job.select().where((Job.last_error == "robot pace") & (Job.status == "pending"))
            return sent, paced.count()

        return await ctx.db.run(count) == (23, 5)

    async with running_worker(ctx):
        assert await wait_for(settled)
    assert len(await robot_messages(sandbox, robot_key)) == 20
    assert len(await robot_messages(sandbox, other_key)) == 3  # its own 20
    waiting = (Job.last_error == "robot pace") & (Job.status == "pending")
    paced = await ctx.db.run(lambda: list(Job.select().where(waiting)))
    assert {job.due_at for job in paced} == {minute + timedelta(minutes=1)}
    # Never over WeCom's limit: no call was answered 45009.
    assert (await sandbox.stats())["calls"][robot.SEND_PATH] == 23


@pytest.mark.asyncio
async def test_wecom_over_its_limit_waits_for_the_next_minute(ctx, sandbox):
    """Someone else used the robot's minute up (45009): the alert waits, unsent."""
    robot_key = await robot_for(ctx, sandbox)
    await _start_of_a_minute()
    for _ in range(robot.PER_MINUTE):
        assert (await robot.send(ctx, robot_key, "其他系统的消息")).sent
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)
    key = alerts.alert_key(content.BAD, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: ctx.db.run(lambda: Job.get(Job.key == key).last_error))
    row = await ctx.db.run(alert_of, key)
    assert (row.status, row.errcode) == ("pending", "45009")
    job = await ctx.db.run(lambda: Job.get(Job.key == key))
    assert job.last_error == "robot over 20 a minute"
    assert job.status == "pending" and job.attempts == 0  # a wait, not a failed attempt
    assert job.due_at.second == 0 and job.due_at > utcnow()


# ---- deadlines near --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_deadline_near_is_alerted_once_per_deadline(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    now = utcnow()

    def tickets() -> tuple[int, int, int]:
        near, verified, far = (new_bad_ticket(ctx) for _ in range(3))
        Ticket.update(verify_due=now + timedelta(hours=3)).where(Ticket.id == near).execute()
        Ticket.update(
            status="verified", verified_at=now, verify_due=now + timedelta(hours=3)
        ).where(Ticket.id == verified).execute()
        Ticket.update(verify_due=now + timedelta(hours=30)).where(Ticket.id == far).execute()
        # The first scan only sees deadlines: the new-差评 alerts are done already.
        Job.update(status="done").where(Job.kind == alerts.KIND).execute()
        return near, verified, far

    near, verified, far = await ctx.db.run(tickets)
    before = ctx.settings.alerts.before_hours
    assert before == 24.0
    assert await housekeeping.TASKS["deadline_alerts"](ctx) == 1
    assert await ctx.db.run(schedule_near_deadlines, utcnow(), before) == 0  # idempotent
    key = alerts.alert_key(content.VERIFY_DUE, near)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "sent"))
    [message] = await robot_messages(sandbox, robot_key)
    assert "差评核实期限临近" in message["content"]
    assert f"工单号：{near}" in message["content"]
    assert APPLICANT_NAME not in message["content"]
    # Within 30 days: the far verify deadline and the three rectify deadlines (15 working
    # days); the near verify deadline was scheduled already, the verified one is met.
    assert await ctx.db.run(schedule_near_deadlines, utcnow(), 24 * 30) == 4


@pytest.mark.asyncio
async def test_a_deadline_met_before_the_alert_goes_is_skipped(ctx, sandbox):
    robot_key = await robot_for(ctx, sandbox)
    ticket_id = await ctx.db.run(new_bad_ticket, ctx)

    def setup() -> None:
        Job.update(status="done").where(Job.kind == alerts.KIND).execute()
        alerts.schedule_alert(content.VERIFY_DUE, ticket_id, utcnow())
        Ticket.update(status="verified", verified_at=utcnow()).where(
            Ticket.id == ticket_id
        ).execute()

    await ctx.db.run(setup)
    key = alerts.alert_key(content.VERIFY_DUE, ticket_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "skipped"))
    assert (await ctx.db.run(alert_of, key)).errcode == "verified"
    assert await robot_messages(sandbox, robot_key) == []
