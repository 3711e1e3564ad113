"""Sending subscribe messages exactly once (the worker's ``reminder`` and ``rectified`` jobs).

Each message has a key (``reminder:<case_id>:<n>``, ``rectified:<ticket_id>``) and goes in
three steps:

1. *Prepare*, one transaction: the job must still be ours (lease renewed); a finished
   :class:`~models.messaging.Message` ends the job; the case must be unrated and in its
   window (reminders), the identity bound, the template configured, and
   ``subscriptions.spend_quota`` must succeed — otherwise the message is ``skipped`` with the
   reason in ``errcode``. Then ``status = 'sending'`` and an attempt row (``sending``) are
   committed *together with the spent quota*, before WeChat is called.
2. *Send* ``subscribe/send`` (page ``<miniprogram_page>?case_id=<id>``, never a scene).
3. *Record*, one transaction: the attempt's outcome, the message's status and the job's end.

Outcomes: ok → ``sent`` (msgid kept); 43101 → ``no_quota``, quota zeroed, no retry;
47003/40037/41030 → ``config_error`` (quota given back, WARNING logged without personal
data, the job ``failed``, no retry); WeChat busy (-1) → the message goes back to
``pending`` and the quota is given back, then the job is retried with backoff; a timeout,
network error or 5xx (the call may have reached WeChat) keeps the message ``sending``.

**Takeover of a ``sending`` message** (the previous worker died mid-send, or its call
ended ambiguously): the message is sent again *once more* without spending quota again. If
the first call had landed, WeChat's one-time quota is gone and it answers 43101: after an
ambiguous attempt that is counted as ``sent`` (errcode ``43101``), never as ``no_quota``.
So a crash never loses a message; it can only duplicate one when the citizen holds more
than one unused one-time quota for the template (WeChat's send has no idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee
from prometheus_client import Counter
from redis.exceptions import RedisError

from models.base import utcnow
from models.job import Job
from models.messaging import Message, MessageAttempt
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.messaging import recipients, subscriptions
from wxbackend.services.messaging.quiet_hours import defer_quiet, quiet_hours
from wxbackend.services.messaging.recipients import CONFIG_PREFIX, Target, Targets
from wxbackend.services.messaging.schedule import FINAL_STATUSES, RECTIFIED, REMINDER
from wxbackend.services.messaging.template_data import page_for
from wxbackend.settings import Settings
from wxbackend.wechat import errors as wx
from wxbackend.worker import MAX_ATTEMPTS, backoff, record_outcome

log = logging.getLogger("wxbackend.reminders")

#: WeChat calls in flight per process (each also takes a Redis connection for the token).
SEND_CONCURRENCY = 32
#: WeChat answers that mean the template, its data or the page are misconfigured.
CONFIG_ERRORS = (wx.TemplateDataError, wx.InvalidTemplateError, wx.InvalidPageError)


@dataclass(frozen=True)
class SendPlan:
    """A message committed as ``sending``: call WeChat with these values."""

    job: Job
    message_id: int
    attempt_id: int
    user_id: int
    openid: str
    template_id: str
    page: str
    data: dict[str, dict[str, str]]
    resend: bool  # a previous attempt's outcome is unknown


@dataclass(frozen=True)
class Templates:
    """What the prepare step needs of the WeChat configuration."""

    template_id: str
    page: str


def _still_mine(batch: list[Job], lease_seconds: float, now: datetime) -> list[Job]:
    """The jobs of ``batch`` this worker still holds, their leases renewed."""
    owner = batch[0].lease_owner
    mine = Job.id.in_([j.id for j in batch]) & (Job.lease_owner == owner)
    mine &= Job.status == "running"
    Job.update(lease_until=now + timedelta(seconds=lease_seconds)).where(mine).execute()
    held = {row.id for row in Job.select(Job.id).where(mine)}
    return [j for j in batch if j.id in held]


def _set_message(message: Message | None, key: str, kind: str, **values: Any) -> None:
    if message is None:
        Message.create(key=key, kind=kind, **values)
    else:
        Message.update(**values).where(Message.id == message.id).execute()


def prepare_batch(
    batch: list[Job], kind: str, templates: Templates, targets: Targets, settings: Settings
) -> list[SendPlan]:
    """Step 1 for a batch of jobs (sync, ONE transaction): the :class:`SendPlan` of each
    message to send now. Jobs no longer ours are left alone; finished messages end their
    job; ineligible ones are ``skipped`` (job done); in quiet hours jobs are deferred."""
    now = utcnow()
    with database.atomic():
        mine = _still_mine(batch, settings.worker.lease_seconds, now) if batch else []
        if not mine:
            return []
        owner = mine[0].lease_owner
        messages = {
            m.key: m for m in Message.select().where(Message.key.in_([j.key for j in mine]))
        }
        done = [
            j.id for j in mine if j.key in messages and messages[j.key].status in FINAL_STATUSES
        ]
        open_jobs = [j for j in mine if j.id not in set(done)]
        found = targets(open_jobs, now) if open_jobs else {}
        quiet = quiet_hours(settings.reminders.quiet_hours, settings.reminders.timezone)
        in_quiet = quiet is not None and quiet.contains(now)
        spent = _spend(
            [
                (job.id, t.user_id)
                for job in open_jobs
                if isinstance(t := found[job.id], Target)
                and not in_quiet
                and not (job.key in messages and messages[job.key].status == "sending")
            ],
            templates.template_id,
        )
        to_send: list[tuple[Job, Target, bool]] = []
        for job in open_jobs:
            message, target = messages.get(job.key), found[job.id]
            resend = message is not None and message.status == "sending"
            if isinstance(target, str) and target.startswith(CONFIG_PREFIX):
                _set_message(message, job.key, kind, status="config_error", errcode="fields")
                jobs.fail(job.id, owner, target)
            elif isinstance(target, str):
                _set_message(message, job.key, kind, status="skipped", errcode=target)
                done.append(job.id)
            elif quiet is not None and in_quiet:
                jobs.defer(job.id, owner, defer_quiet(now, settings, job.key), "quiet hours")
            elif resend or job.id in spent:
                to_send.append((job, target, resend))
            else:
                values = {"user": target.user_id, "case": target.case_id}
                _set_message(message, job.key, kind, status="skipped", errcode="no_quota", **values)
                done.append(job.id)
        jobs.complete_many(done, owner)
        return _mark_sending(to_send, messages, kind, templates, now)


def _spend(wanted: list[tuple[int, int]], template_id: str) -> set[int]:
    """Spend one quota per ``(job_id, user_id)``; the job ids that got one. Uses the
    subscriptions service's bulk ``spend_quotas(user_ids, template_id) -> set(user_ids)``
    when it has one (one statement instead of one per message), else ``spend_quota``."""
    bulk = getattr(subscriptions, "spend_quotas", None)
    got: set[int] = set()
    rest = wanted
    if bulk is not None:
        first: dict[int, int] = {}
        for job_id, user_id in wanted:
            first.setdefault(user_id, job_id)
        ok = bulk(list(first), template_id)
        got = {job_id for user_id, job_id in first.items() if user_id in ok}
        rest = [(j, u) for j, u in wanted if first[u] != j]  # a user's 2nd message
    for job_id, user_id in rest:
        if subscriptions.spend_quota(user_id, template_id):
            got.add(job_id)
    return got


def _mark_sending(
    to_send: list[tuple[Job, Target, bool]],
    messages: dict[str, Message],
    kind: str,
    templates: Templates,
    now: datetime,
) -> list[SendPlan]:
    """Messages → ``sending`` and one ``sending`` attempt each (bulk statements)."""
    if not to_send:
        return []
    fresh = []
    for job, target, resend in to_send:
        if resend:
            continue
        values = {
            "status": "sending",
            "errcode": None,
            "user": target.user_id,
            "case": target.case_id,
            "template_id": templates.template_id,
        }
        if job.key in messages:  # pending or skipped before
            Message.update(**values).where(Message.id == messages[job.key].id).execute()
        else:
            fresh.append({"key": job.key, "kind": kind, "created_at": now, **values})
    for start in range(0, len(fresh), 200):
        Message.insert_many(fresh[start : start + 200]).execute()
    keys = [job.key for job, _, _ in to_send]
    rows = {
        m.key: m
        for m in Message.select(Message.id, Message.key, Message.template_id).where(
            Message.key.in_(keys)
        )
    }
    MessageAttempt.insert_many(
        [{"message": rows[key].id, "status": "sending", "at": now} for key in keys]
    ).execute()
    attempts = {
        a.message_id: a.id
        for a in MessageAttempt.select(MessageAttempt.id, MessageAttempt.message).where(
            MessageAttempt.message.in_([m.id for m in rows.values()])
            & (MessageAttempt.status == "sending")
            & (MessageAttempt.at == now)
        )
    }
    return [
        SendPlan(
            job=job,
            message_id=rows[job.key].id,
            attempt_id=attempts[rows[job.key].id],
            user_id=target.user_id,
            openid=target.openid,
            template_id=rows[job.key].template_id,
            page=page_for(templates.page, target.case_id),
            data=target.data,
            resend=resend,
        )
        for job, target, resend in to_send
    ]


@dataclass(frozen=True)
class Outcome:
    """What one send led to (step 3)."""

    attempt_status: str  # sent, no_quota, config_error, failed
    errcode: str | None
    message_status: str  # sent, no_quota, config_error, failed, pending, sending
    job: str  # complete, fail, retry
    quota: str | None = None  # restore, zero
    msgid: str | None = None
    retry_at: datetime | None = None
    reason: str = ""


def record_batch(results: list[tuple[SendPlan, Outcome]]) -> None:
    """Step 3 for a batch (sync, ONE transaction): attempts, messages, quotas, jobs."""
    if not results:
        return
    now = utcnow()
    with database.atomic():
        by_attempt: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for plan, outcome in results:
            by_attempt[(outcome.attempt_status, outcome.errcode)].append(plan.attempt_id)
        for (status, errcode), ids in by_attempt.items():
            MessageAttempt.update(status=status, errcode=errcode, at=now).where(
                MessageAttempt.id.in_(ids)
            ).execute()
        ids = [plan.message_id for plan, _ in results]
        sending = {
            m.id
            for m in Message.select(Message.id).where(
                Message.id.in_(ids) & (Message.status == "sending")
            )
        }
        _update_messages([(p, o) for p, o in results if p.message_id in sending], now)
        for plan, outcome in results:
            if plan.message_id not in sending:
                continue  # another worker recorded it meanwhile
            if outcome.quota == "restore":
                subscriptions.restore_quota(plan.user_id, plan.template_id)
            elif outcome.quota == "zero":
                subscriptions.zero_quota(plan.user_id, plan.template_id)
        owner = results[0][0].job.lease_owner
        jobs.complete_many([p.job.id for p, o in results if o.job == "complete"], owner)
        for plan, outcome in results:
            if outcome.job == "fail":
                jobs.fail(plan.job.id, owner, outcome.reason)
            elif outcome.job == "retry":
                jobs.retry(plan.job.id, owner, outcome.retry_at or now, outcome.reason)


def _update_messages(results: list[tuple[SendPlan, Outcome]], now: datetime) -> None:
    groups: dict[tuple[str, str | None], list[tuple[SendPlan, Outcome]]] = defaultdict(list)
    for plan, outcome in results:
        if outcome.message_status != "sending":  # ambiguous: stays sending, resent later
            groups[(outcome.message_status, outcome.errcode)].append((plan, outcome))
    for (status, errcode), members in groups.items():
        values: dict[Any, Any] = {Message.status: status, Message.errcode: errcode}
        if status == "sent":
            values[Message.sent_at] = now
            msgids = [(p.message_id, o.msgid) for p, o in members if o.msgid is not None]
            if msgids:
                values[Message.msgid] = peewee.Case(Message.id, msgids, None)
        ids = [p.message_id for p, _ in members]
        Message.update(values).where(Message.id.in_(ids) & (Message.status == "sending")).execute()


# --------------------------------------------------------------------------- sending: flow


def classify(exc: Exception | None, plan: SendPlan, answer: Any = None) -> Outcome:
    """The :class:`Outcome` of a send that raised ``exc`` (None: success, ``answer``)."""
    if exc is None:
        return Outcome("sent", None, "sent", "complete", msgid=_msgid(answer))
    code = str(exc.errcode) if isinstance(exc, wx.WeChatError) else type(exc).__name__
    code = code[:16]
    if isinstance(exc, wx.QuotaExhaustedError):
        if plan.resend:  # the earlier, ambiguous attempt landed and used the quota
            return Outcome("no_quota", code, "sent", "complete", "zero")
        return Outcome("no_quota", code, "no_quota", "complete", "zero")
    give_back = None if plan.resend else "restore"
    if isinstance(exc, CONFIG_ERRORS):
        return Outcome(
            "config_error", code, "config_error", "fail", give_back, reason=f"config_error {code}"
        )
    if isinstance(exc, wx.InvalidUserError):
        return Outcome("failed", code, "failed", "fail", give_back, reason=f"errcode {code}")
    ours = isinstance(exc, RedisError)  # our own outage, before any call: never gives up
    if plan.job.attempts >= MAX_ATTEMPTS and not ours:
        return Outcome("failed", code, "failed", "fail", give_back, reason=f"gave up: {code}")
    retry_at = utcnow() + backoff(min(plan.job.attempts, 3 if ours else MAX_ATTEMPTS))
    # WeChat busy (-1), HTTP 5xx, a refused connection, another WeChat error or a failure
    # before the call: nothing was sent. A timeout or a connection lost after sending
    # (the gateway marks those ambiguous and does not resend them itself): it may have been.
    maybe_sent = isinstance(exc, wx.WeChatUnavailableError) and exc.ambiguous
    if not maybe_sent and not plan.resend:
        return Outcome("failed", code, "pending", "retry", "restore", None, retry_at, code)
    return Outcome("failed", code, "sending", "retry", None, None, retry_at, code)


def _msgid(answer: Any) -> str | None:
    msgid = answer.get("msgid") if isinstance(answer, dict) else None
    return str(msgid)[:32] if msgid is not None else None


def _metrics(ctx: Context) -> Counter:
    counter = ctx.messages_counter
    if counter is None:
        counter = Counter(
            "wxb_messages",
            "Subscribe-message sends by kind and outcome (sent, no_quota, config_error, ...)",
            ["kind", "status"],
            registry=ctx.metrics.registry,
        )
        ctx.messages_counter = counter
    return counter


def _templates(ctx: Context, kind: str) -> Templates:
    config = ctx.wechat_config.config()
    template_id = config.template_reminder if kind == REMINDER else config.template_rectified
    return Templates(template_id, config.miniprogram_page)


def _no_template(targets: Targets) -> Targets:
    """No template configured: every message that could go is skipped instead."""

    def find(batch: list[Job], now: datetime) -> dict[int, Target | str]:
        return {
            job_id: t if isinstance(t, str) else "no_template"
            for job_id, t in targets(batch, now).items()
        }

    return find


def _send_slots(ctx: Context) -> asyncio.Semaphore:
    slots = ctx.send_slots
    if slots is None:
        slots = ctx.send_slots = asyncio.Semaphore(SEND_CONCURRENCY)
    return slots


async def _send(ctx: Context, plan: SendPlan) -> Outcome:
    """Step 2: one ``subscribe/send``; every failure becomes an :class:`Outcome`."""
    try:
        async with _send_slots(ctx):
            answer = await ctx.wechat.send_subscribe_message(
                plan.openid,
                plan.template_id,
                plan.data,
                page=plan.page,
                miniprogram_state=ctx.settings.wechat.miniprogram_state,
            )
    except Exception as exc:  # noqa: BLE001 - every failure is recorded as an attempt
        return classify(exc, plan)
    return classify(None, plan, answer)


async def send_batch(ctx: Context, batch: list[Job], kind: str, targets: Targets) -> None:
    """Prepare (one transaction), send (concurrently), record (one transaction)."""
    templates = _templates(ctx, kind)
    if not templates.template_id:
        targets = _no_template(targets)
    plans = await ctx.db.run(prepare_batch, batch, kind, templates, targets, ctx.settings)
    if not plans:
        return
    outcomes = await asyncio.gather(*(_send(ctx, plan) for plan in plans))
    results = list(zip(plans, outcomes, strict=True))
    await record_outcome(ctx, record_batch, results)  # sent: the outcome must not be lost
    counter = _metrics(ctx)
    for plan, outcome in results:
        counter.labels(kind, outcome.attempt_status).inc()
        if outcome.attempt_status == "config_error":
            log.warning(
                "subscribe message refused as a configuration error: fix the template or page",
                extra={
                    "fields": {
                        "kind": kind,
                        "errcode": outcome.errcode,
                        "meaning": wx.meaning(outcome.errcode or ""),
                        "job": plan.job.key,
                    }
                },
            )
        elif outcome.job == "retry":
            log.info(
                "subscribe message failed; will retry",
                extra={"fields": {"kind": kind, "errcode": outcome.errcode, "job": plan.job.key}},
            )


async def handle_reminders(ctx: Context, batch: list[Job]) -> None:
    """``reminder`` jobs (``{"case_id", "n"}``), a claimed batch at a time."""
    fields = ctx.wechat_config.config().reminder_fields
    await send_batch(ctx, batch, REMINDER, recipients.reminder_targets(ctx.settings, fields))


async def handle_rectified(ctx: Context, batch: list[Job]) -> None:
    """``rectified`` jobs (``{"ticket_id"}``), a claimed batch at a time."""
    fields = ctx.wechat_config.config().rectified_fields
    await send_batch(ctx, batch, RECTIFIED, recipients.rectified_targets(ctx.settings, fields))


handle_reminders.batch = True  # type: ignore[attr-defined]
handle_rectified.batch = True  # type: ignore[attr-defined]
