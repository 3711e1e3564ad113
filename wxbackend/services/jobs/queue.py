"""Durable scheduled jobs: schedule, claim with a lease, finish. Synchronous (DB thread).

The database is the one arbiter of who runs a job: a claim is a conditional UPDATE that
only one worker can win per row (SQLite serialises it with IMMEDIATE transactions;
PostgreSQL re-checks the WHERE clause under the row lock). A worker that dies keeps its
jobs only until ``lease_until``; then any worker takes them over.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.job import Job
from wxbackend.db import compiled_rows, database, insert_values, param
from wxbackend.services.jobs import plans


def schedule(kind: str, key: str, due_at: datetime, payload: dict[str, Any] | None = None) -> bool:
    """Schedule a job once per ``key`` (idempotent). Returns True if it was new.

    Call it inside the transaction of the change that makes the work due.
    """
    row = {
        "kind": kind,
        "key": key,
        "due_at": due_at,
        "payload": json.dumps(payload or {}, ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "created_at": utcnow(),
    }
    inserted = insert_values(Job, row, ignore_conflict=True)  # compiled once
    return inserted > 0


def cancel(keys: Iterable[str], now: datetime | None = None) -> int:
    """Cancel pending jobs by key (e.g. the reminders of a case that was just rated)."""
    keys = list(keys)
    if not keys:
        return 0
    finished_at = Job.finished_at.db_value(now or utcnow())
    # One compiled statement per number of keys (a rated case always cancels the same three).
    build = functools.partial(_cancel_query, len(keys))
    return compiled_rows(f"jobs.cancel.{len(keys)}", build, [finished_at, *keys])


def _cancel_query(n_keys: int) -> tuple[peewee.Query, tuple[()]]:
    keys = [peewee.Value(param(1 + n), converter=False) for n in range(n_keys)]
    query = Job.update(
        status="cancelled", finished_at=peewee.Value(param(0), converter=False)
    ).where(Job.key.in_(keys) & (Job.status == "pending"))
    # By key alone: SQLite without statistics would otherwise take job_status_due_at
    # (status=?) and walk every pending job inside the write lock (issue 14).
    return plans.indexed_by(query, "job", "job_key"), ()


#: A claim reads two index ranges, never an OR over the table (issue 14): pending jobs due
#: now (partial index job_pending_due, migrations 12 and 17: it carries kind, so both the
#: claim and the count read the index alone), and running jobs whose lease ran out
#: (partial index job_running_lease). The statuses are literals so the partial indexes apply.
_DUE_SQL = {
    "pending": (
        "SELECT id, due_at FROM job{hint} WHERE status = 'pending' AND due_at <= {p}{kinds} "
        "ORDER BY due_at, id LIMIT {limit}",
        "job_pending_due",
    ),
    "running": (
        "SELECT id, due_at FROM job{hint} WHERE status = 'running' AND lease_until < {p}{kinds} "
        "ORDER BY lease_until, id LIMIT {limit}",
        "job_running_lease",
    ),
}


def _due_ids(
    now: datetime, limit: int, kinds: list[str] | None, skip_locked: bool = False
) -> list[int]:
    """Up to ``limit`` claimable job ids, oldest due first (two index ranges, merged).
    ``skip_locked`` (inside a claim's transaction): on PostgreSQL, lock the rows read and skip
    those another claim is taking (SQLite's write lock already keeps other claims out)."""
    found: list[tuple[Any, int]] = []
    for status in ("pending", "running"):
        sql, args = plans.range_sql(*_DUE_SQL[status], kinds, limit)
        if skip_locked and not plans.is_sqlite():
            sql += " FOR UPDATE SKIP LOCKED"
        rows = database.execute_sql(sql, [Job.due_at.db_value(now), *args]).fetchall()
        found += [(Job.due_at.python_value(due), job_id) for job_id, due in rows]
    return [job_id for _, job_id in sorted(found)[:limit]]


def _claimable(now: datetime) -> peewee.Expression:
    """A claimable job (only ever combined with ``id IN (…)``: the row lookups decide)."""
    pending = (Job.status == "pending") & (Job.due_at <= now)
    abandoned = (Job.status == "running") & (Job.lease_until < now)
    return pending | abandoned


def claim(
    owner: str, lease_seconds: float, limit: int, kinds: Iterable[str] | None = None
) -> list[Job]:
    """Claim up to ``limit`` due jobs (oldest due first) for ``owner``."""
    now = utcnow()
    lease_until = now + timedelta(seconds=lease_seconds)
    kinds = None if kinds is None else list(kinds)
    # A plain read first: a poll that finds nothing never takes SQLite's write lock. The
    # conditional UPDATE below decides (a job another worker took meanwhile is not ours).
    ids = _due_ids(now, limit, kinds)
    if not ids:
        return []
    with database.atomic():
        taken = _take(ids, owner, now, lease_until)
        if taken < len(ids):
            # Another worker took some of them meanwhile (every claim's plain read finds the
            # same oldest jobs): read again inside the transaction (under SQLite's write lock
            # the read is exact) instead of running a short batch, or none and idling a poll.
            again = _due_ids(now, limit - taken, kinds, skip_locked=True)
            if again:
                _take(again, owner, now, lease_until)
                ids += again
        return list(
            Job.select().where(
                Job.id.in_(ids) & (Job.lease_owner == owner) & (Job.lease_until == lease_until)
            )
        )


def _take(ids: list[int], owner: str, now: datetime, lease_until: datetime) -> int:
    """Lease the jobs of ``ids`` still claimable to ``owner``; how many it took."""
    query = Job.update(
        status="running", lease_owner=owner, lease_until=lease_until, attempts=Job.attempts + 1
    ).where(Job.id.in_(ids) & _claimable(now))
    return query.execute()


def _mine(job_id: int, owner: str) -> peewee.Expression:
    return (Job.id == job_id) & (Job.lease_owner == owner) & (Job.status == "running")


def complete(job_id: int, owner: str) -> bool:
    """Mark done; False if the lease was lost meanwhile (another worker owns it now)."""
    return bool(
        Job.update(status="done", finished_at=utcnow(), lease_until=None, last_error=None)
        .where(_mine(job_id, owner))
        .execute()
    )


def complete_many(job_ids: Iterable[int], owner: str) -> int:
    """:func:`complete` for many jobs in one statement; returns how many were still ours."""
    ids = list(job_ids)
    if not ids:
        return 0
    return (
        Job.update(status="done", finished_at=utcnow(), lease_until=None, last_error=None)
        .where(Job.id.in_(ids) & (Job.lease_owner == owner) & (Job.status == "running"))
        .execute()
    )


def retry(job_id: int, owner: str, due_at: datetime, error: str) -> bool:
    """Put a claimed job back until ``due_at`` after a failed attempt (it counts)."""
    return _reschedule(job_id, owner, due_at, error, counted=True)


def fail(job_id: int, owner: str, error: str) -> bool:
    return bool(
        Job.update(status="failed", finished_at=utcnow(), lease_until=None, last_error=error[:300])
        .where(_mine(job_id, owner))
        .execute()
    )


def defer(job_id: int, owner: str, due_at: datetime, note: str) -> bool:
    """Put a claimed job back until ``due_at`` without counting the attempt (quiet hours)."""
    return _reschedule(job_id, owner, due_at, note, counted=False)


def _reschedule(job_id: int, owner: str, due_at: datetime, note: str, *, counted: bool) -> bool:
    values: dict[str, Any] = {
        "status": "pending",
        "due_at": due_at,
        "lease_owner": None,
        "lease_until": None,
        "last_error": note[:300],
    }
    if not counted:
        values["attempts"] = Job.attempts - 1
    return bool(Job.update(**values).where(_mine(job_id, owner)).execute())


def renew(job_ids: Iterable[int], owner: str, lease_seconds: float) -> int:
    """Extend the leases of jobs ``owner`` still runs (the worker's heartbeat)."""
    ids = list(job_ids)
    if not ids:
        return 0
    until = utcnow() + timedelta(seconds=lease_seconds)
    return (
        Job.update(lease_until=until)
        .where(Job.id.in_(ids) & (Job.lease_owner == owner) & (Job.status == "running"))
        .execute()
    )


def release(job_ids: Iterable[int], owner: str) -> int:
    """Give unstarted claimed jobs back (graceful stop)."""
    ids = list(job_ids)
    if not ids:
        return 0
    return (
        Job.update(status="pending", lease_owner=None, lease_until=None, attempts=Job.attempts - 1)
        .where(Job.id.in_(ids) & (Job.lease_owner == owner) & (Job.status == "running"))
        .execute()
    )


def due_count(kinds: Iterable[str] | None = None) -> int:
    """How many jobs are claimable now (the two index ranges of a claim, counted)."""
    now = Job.due_at.db_value(utcnow())
    kinds = None if kinds is None else list(kinds)
    total = 0
    with database.atomic():
        if not plans.is_sqlite():
            # PostgreSQL multiplies the selectivities of status and due_at (correlated) and
            # would start parallel workers (~15 ms) to count a handful of rows.
            database.execute_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        for template, index in _DUE_SQL.values():
            sql, args = plans.range_sql(template, index, kinds, None)
            counted = f"SELECT COUNT(*) FROM ({sql}) AS due"  # nosec B608 - our own statement
            total += database.execute_sql(counted, [now, *args]).fetchone()[0]
    return total
