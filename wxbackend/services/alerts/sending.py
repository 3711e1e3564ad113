"""Sending staff alerts at most once (the worker's ``staff_alert`` jobs).

Each alert has a key (``alert:<kind>:<ticket_id>``, the job's key too) and a
:class:`~models.alert.StaffAlert` row, and goes in steps:

1. *Prepare*, one transaction: the job must still be ours; a finished alert ends the job;
   an alert left ``sending`` (a worker died after step 3 began) becomes ``unknown`` and is
   never sent again (a robot message cannot be taken back, and WeCom has no idempotency
   key: a duplicate in a staff group is worse than an alert that may be missing, which the
   console still shows); a met deadline or a center without a robot is ``skipped``.
2. *Pace*: one of the robot's 20 slots of the minute (Redis, shared by every worker);
   none left: the job waits for the next minute (not counted as an attempt).
3. *Mark*, one transaction: ``status = 'sending'`` and the attempt counted, committed
   before the robot is called (retried when the database is restarting: idempotent while
   the job is ours; the record of step 4 too, :func:`~wxbackend.worker.record_outcome`).
4. *Send*, then *record* in one transaction: ``sent``; a refusal WeCom documents as final
   (93000, the key names no robot) → ``failed``; 45009 (over the minute's limit: someone else
   uses the robot too) → ``pending`` until the next minute; any other refusal or a refused
   connection → ``pending``, retried with backoff; a timeout or 5xx (it may have landed) →
   ``unknown``, never resent.

A crash before step 3 commits loses nothing (the next worker sends it); a crash after it
never sends twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from models.alert import StaffAlert
from models.base import utcnow
from models.catalog import Center
from models.job import Job
from models.ticket import Ticket
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import DecryptionError, FieldCipher
from wxbackend.services.alerts import content, robot
from wxbackend.services.catalogue.admin_rows import WECOM_KEY_CONTEXT
from wxbackend.services.jobs import queue as jobs
from wxbackend.settings import Settings
from wxbackend.worker import FINISHED, MAX_ATTEMPTS, backoff, record_outcome

log = logging.getLogger("wxbackend.alerts")

KIND = "staff_alert"
FINAL = ("sent", "skipped", "failed", "unknown")


def alert_key(kind: str, ticket_id: int) -> str:
    """The idempotency key of one alert (and of its job)."""
    return f"alert:{kind}:{ticket_id}"


def schedule_alert(kind: str, ticket_id: int, due_at: datetime) -> bool:
    """Schedule an alert once (sync; call it inside the transaction that makes it due).
    Returns True if it was new."""
    payload = {"kind": kind, "ticket_id": ticket_id}
    return jobs.schedule(KIND, alert_key(kind, ticket_id), due_at, payload)


@dataclass(frozen=True)
class Plan:
    """An alert to send now: the robot's key (decrypted) and the markdown."""

    job: Job
    alert_id: int
    robot_key: str
    text: str


def _mine(job: Job) -> bool:
    return (
        Job.select(Job.id)
        .where(
            (Job.id == job.id) & (Job.lease_owner == job.lease_owner) & (Job.status == "running")
        )
        .exists()
    )


def _deadline_met(kind: str, ticket: Ticket) -> str | None:
    """Why a deadline alert is no longer needed, or None."""
    if kind == content.VERIFY_DUE and (ticket.verified_at is not None or ticket.status != "open"):
        return "verified"
    if kind == content.RECTIFY_DUE and (
        ticket.rectified_at is not None or ticket.status not in ("open", "verified")
    ):
        return "rectified"
    return None


def _end(alert: StaffAlert, job: Job, status: str, errcode: str | None) -> None:
    StaffAlert.update(status=status, errcode=errcode).where(StaffAlert.id == alert.id).execute()
    jobs.complete(job.id, job.lease_owner)


def prepare(job: Job, cipher: FieldCipher, settings: Settings) -> Plan | str:
    """Step 1 (sync, one transaction): the :class:`Plan`, or why nothing is sent."""
    payload: dict[str, Any] = json.loads(job.payload)
    kind, ticket_id = payload["kind"], int(payload["ticket_id"])
    with database.atomic():
        if not _mine(job):
            return "lost"
        ticket = Ticket.get_or_none(Ticket.id == ticket_id)
        if ticket is None or kind not in content.KINDS:
            jobs.fail(job.id, job.lease_owner, "no such ticket or kind")
            return "gone"
        alert = StaffAlert.get_or_none(StaffAlert.key == job.key)
        if alert is None:
            alert = StaffAlert.create(
                key=job.key, kind=kind, ticket=ticket.id, center=ticket.center_id
            )
        if alert.status in FINAL:
            jobs.complete(job.id, job.lease_owner)
            return alert.status
        if alert.status == "sending":  # the last worker died mid-send: it may have landed
            _end(alert, job, "unknown", "interrupted")
            return "interrupted"
        center = Center.get_by_id(ticket.center_id)
        reason = _deadline_met(kind, ticket) or (None if center.wecom_key_enc else "no_robot")
        if reason is not None:
            _end(alert, job, "skipped", reason)
            return reason
        try:
            key = cipher.decrypt(center.wecom_key_enc, WECOM_KEY_CONTEXT)
        except DecryptionError:
            StaffAlert.update(status="failed", errcode="key").where(
                StaffAlert.id == alert.id
            ).execute()
            jobs.fail(job.id, job.lease_owner, "the robot key does not decrypt")
            return "key"
        facts = content.facts_of(ticket.id)
        if facts is None:
            _end(alert, job, "skipped", "gone")
            return "gone"
        return Plan(job, alert.id, key, content.markdown(kind, facts, settings))


def mark_sending(plan: Plan) -> bool:
    """Step 3 (sync, one transaction): the alert ``sending``, its attempt counted; False if
    the job is no longer ours or the alert moved meanwhile. Run again after a commit whose
    answer was lost (the database restarting), it finds the alert ``sending`` and says True:
    while the job is ours nobody else can have marked it (step 1 ends a ``sending`` left by
    another), so the alert still goes instead of ending ``unknown`` unsent."""
    this = StaffAlert.id == plan.alert_id
    with database.atomic():
        if not _mine(plan.job):
            return False
        marked = (
            StaffAlert.update(status="sending", attempts=StaffAlert.attempts + 1)
            .where(this & (StaffAlert.status == "pending"))
            .execute()
        )
        return (
            bool(marked)
            or StaffAlert.select().where(this & (StaffAlert.status == "sending")).exists()
        )


def record(plan: Plan, answer: robot.Answer, now: datetime) -> str:
    """Step 4 (sync, one transaction): the alert's status and the job's end; returns the
    alert's new status."""
    job, owner = plan.job, plan.job.lease_owner
    with database.atomic():
        alert = StaffAlert.get_by_id(plan.alert_id)
        if alert.status != "sending":
            return alert.status  # recorded elsewhere meanwhile
        if answer.sent:
            status = "sent"
            jobs.complete(job.id, owner)
        elif answer.maybe_sent:
            status = "unknown"
            jobs.complete(job.id, owner)
        elif answer.errcode == str(robot.RATE_LIMITED):
            status = "pending"
            next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            jobs.defer(job.id, owner, next_minute, "robot over 20 a minute")
        elif answer.errcode == str(robot.INVALID_KEY) or job.attempts >= MAX_ATTEMPTS:
            status = "failed"
            jobs.fail(job.id, owner, f"robot refused: {answer.errcode}")
        else:
            status = "pending"
            jobs.retry(job.id, owner, now + backoff(job.attempts), f"{answer.errcode}")
        values: dict[str, Any] = {"status": status, "errcode": answer.errcode}
        if status == "sent":
            values["sent_at"] = now
        StaffAlert.update(**values).where(StaffAlert.id == alert.id).execute()
        return status


async def handle(ctx: Context, job: Job) -> object:
    """A ``staff_alert`` job: ``{"kind", "ticket_id"}``."""
    plan = await ctx.db.run(prepare, job, ctx.cipher, ctx.settings)
    if not isinstance(plan, Plan):
        return FINISHED
    wait_until = await robot.take_slot(ctx, plan.robot_key, utcnow())
    if wait_until is not None:
        await ctx.db.run(jobs.defer, job.id, job.lease_owner, wait_until, "robot pace")
        return FINISHED
    if not await record_outcome(ctx, mark_sending, plan):
        return FINISHED
    answer = await robot.send(ctx, plan.robot_key, plan.text)
    status = await record_outcome(ctx, record, plan, answer, utcnow())
    if status in ("failed", "unknown"):
        # Never the URL or the key: the job's key names the ticket.
        log.warning(
            "staff alert %s: %s",
            status,
            answer.errcode,
            extra={"fields": {"job": job.key, "errcode": answer.errcode}},
        )
    return FINISHED
