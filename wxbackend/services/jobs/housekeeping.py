"""Housekeeping (日常维护): hourly recurring jobs run by the worker.

Each task is a ``housekeeping`` job keyed ``housekeeping:<task>:<YYYYMMDDHH>`` (UTC hour):
scheduling is idempotent, so any number of workers starting, or running the job, create
each hour's job once. A run first schedules the next hour's job, then does its work.

- ``flag_overdue``: the sticky ``Ticket.overdue`` flag (:func:`deadlines.flag_overdue`).
- ``purge_face_attempts``: face attempts older than ``identity.attempt_retention_days``.
- ``default_ratings``: default-rate unrated cases past their window that have no job.
- ``purge_jobs``: finished jobs older than :data:`JOB_RETENTION_DAYS` (the messages stay:
  they, not the jobs, are the idempotency record of a reminder).
- ``deadline_alerts``: one staff alert per ticket whose verify or rectify deadline comes
  within ``alerts.before_hours`` (:mod:`wxbackend.services.alerts.deadlines`).
- ``purge_push_receipts``: message-push receipts older than :data:`RECEIPT_RETENTION_DAYS`
  (a receipt only has to outlive WeChat's retries of one delivery, seconds apart).
- ``purge_sessions``: expired citizen and admin sessions and screens' device tokens, in
  batches (:func:`session_store.purge_expired`, :func:`devices.tokens.purge_expired`).
- ``optimize``: SQLite's ``PRAGMA optimize`` (statistics refreshed when they are stale).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from models.base import utcnow
from models.job import Job
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.alerts import deadlines as alert_deadlines
from wxbackend.services.citizens import identity
from wxbackend.services.common import session_store
from wxbackend.services.devices import tokens as device_tokens
from wxbackend.services.jobs import plans
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.messaging import subscriptions
from wxbackend.services.ratings import defaults as default_ratings
from wxbackend.services.ratings import idempotency
from wxbackend.services.tickets import deadlines

log = logging.getLogger("wxbackend.housekeeping")

KIND = "housekeeping"
JOB_RETENTION_DAYS = 30
RECEIPT_RETENTION_DAYS = 2


def hour_key(task: str, at: datetime) -> str:
    """The key of ``task``'s job of the UTC hour of ``at``."""
    return f"{KIND}:{task}:{at:%Y%m%d%H}"


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


#: Rows deleted per transaction: SQLite's write lock is held for one batch at a time.
PURGE_BATCH = 100


def purge_jobs_batch(cutoff: datetime, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` done or cancelled jobs finished before ``cutoff`` (one
    transaction, read through the partial index ``job_finished`` of migration 12)."""
    p = database.obj.param
    hint = ' INDEXED BY "job_finished"' if plans.is_sqlite() else ""
    # a constant hint and an int; the cutoff is a parameter
    sql = f"DELETE FROM job WHERE id IN (SELECT id FROM job{hint} "  # nosec B608
    sql += f"WHERE status IN ('done', 'cancelled') AND finished_at < {p} LIMIT {int(limit)})"  # nosec B608
    with database.atomic():
        return database.execute_sql(sql, [Job.finished_at.db_value(cutoff)]).rowcount


def purge_jobs(now: datetime, days: int = JOB_RETENTION_DAYS) -> int:
    """Delete done and cancelled jobs finished more than ``days`` ago, batch by batch."""
    cutoff = now - timedelta(days=days)
    total = 0
    while (deleted := purge_jobs_batch(cutoff)) > 0:
        total += deleted
        if deleted < PURGE_BATCH:
            break
    return total


async def _flag_overdue(ctx: Context) -> int:
    return await ctx.db.run(deadlines.flag_overdue, utcnow())


async def _purge_face_attempts(ctx: Context) -> int:
    days = ctx.settings.identity.attempt_retention_days
    return await ctx.db.run(identity.purge_face_attempts, days)


async def _purge_jobs(ctx: Context) -> int:
    """:func:`purge_jobs`, one pool call per batch (other work runs between batches)."""
    cutoff = utcnow() - timedelta(days=JOB_RETENTION_DAYS)
    total = 0
    while (deleted := await ctx.db.run(purge_jobs_batch, cutoff)) > 0:
        total += deleted
        if deleted < PURGE_BATCH:
            break
    return total


def optimize() -> int:
    """``PRAGMA optimize`` on SQLite (its documentation: periodically in a long-lived
    process), with a bounded analysis; plans never rely on it. 0 on PostgreSQL."""
    if not plans.is_sqlite():
        return 0
    # A write transaction like every writer's (BEGIN IMMEDIATE, after the process's writers):
    # run bare, its reads took a snapshot before ANALYZE asked for the write lock, and a
    # commit in between made SQLite answer "database is locked" at once (a stale snapshot
    # is not waited out by the busy timeout).
    with database.atomic():
        database.execute_sql("PRAGMA analysis_limit=400")
        database.execute_sql("PRAGMA optimize")
    return 1


async def _optimize(ctx: Context) -> int:
    return await ctx.db.run(optimize)


async def _purge_push_receipts(ctx: Context) -> int:
    before = utcnow() - timedelta(days=RECEIPT_RETENTION_DAYS)
    return await ctx.db.run(subscriptions.prune_receipts, before)


async def _purge_idempotency_keys(ctx: Context) -> int:
    return await ctx.db.run(idempotency.purge)


async def _purge_sessions(ctx: Context) -> int:
    sessions = await ctx.db.run(session_store.purge_expired)
    return sessions + await ctx.db.run(device_tokens.purge_expired)


async def _deadline_alerts(ctx: Context) -> int:
    hours = ctx.settings.alerts.before_hours
    return await ctx.db.run(alert_deadlines.schedule_near_deadlines, utcnow(), hours)


TASKS: dict[str, Callable[[Context], Awaitable[int]]] = {
    "flag_overdue": _flag_overdue,
    "purge_face_attempts": _purge_face_attempts,
    "default_ratings": default_ratings.sweep,
    "purge_jobs": _purge_jobs,
    "purge_push_receipts": _purge_push_receipts,
    "deadline_alerts": _deadline_alerts,
    "purge_idempotency_keys": _purge_idempotency_keys,
    "purge_sessions": _purge_sessions,
    "optimize": _optimize,
}


def ensure_scheduled(now: datetime | None = None) -> int:
    """Schedule this hour's run of every task (due now) and the next hour's (sync). Called
    when a worker starts; returns how many jobs were new."""
    now = now or utcnow()
    new = 0
    for task in TASKS:
        new += jobs.schedule(KIND, hour_key(task, now), now, {"task": task})
        nxt = _hour(now) + timedelta(hours=1)
        new += jobs.schedule(KIND, hour_key(task, nxt), nxt, {"task": task})
    return new


async def handle(ctx: Context, job: Job) -> None:
    """A ``housekeeping`` job: ``{"task"}``. Schedules the next run first (never in the past:
    after downtime the chain resumes from now instead of replaying missed hours)."""
    task = json.loads(job.payload)["task"]
    nxt = _hour(max(job.due_at, utcnow())) + timedelta(hours=1)
    await ctx.db.run(jobs.schedule, KIND, hour_key(task, nxt), nxt, {"task": task})
    run = TASKS.get(task)
    if run is None:
        log.warning("unknown housekeeping task %r", task)
        return
    count = await run(ctx)
    log.info("housekeeping %s: %d", task, count, extra={"fields": {"task": task, "count": count}})
