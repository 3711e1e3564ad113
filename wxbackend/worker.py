"""The worker: runs due jobs (reminders, default ratings, housekeeping) within seconds.

Several workers, in several processes or machines, share one job table: each claims a
batch with a lease (see :mod:`wxbackend.services.jobs.queue`), runs it, and records the outcome
only while it still holds the lease. Redis carries wake-ups (``jobs`` channel) so new due
work starts at once; without them a worker still polls every ``worker.poll_seconds``.
SIGTERM lets in-flight jobs finish and hands unstarted ones back. A database or Redis outage
never stops the worker: what a send did is recorded with retries until the database is back
(:func:`record_outcome`), and a job whose end cannot be written runs again once its lease
runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import peewee

from models.base import utcnow
from models.job import Job
from wxbackend.cache import ChannelWatcher
from wxbackend.context import Context
from wxbackend.services.common import outages
from wxbackend.services.jobs import queue as jobs

log = logging.getLogger("wxbackend.worker")

MAX_ATTEMPTS = 8
CONCURRENCY = 64
PROGRESS_EVERY_SECONDS = 10.0
PIPELINE = 2
#: How long the outcome of a send is retried against a database that is down or restarting
#: (:func:`record_outcome`) before the worker gives it up to the job's lease.
RECORD_PATIENCE_SECONDS = 300.0
#: The same for handing unstarted jobs back on SIGTERM (a stop must not wait long).
RELEASE_PATIENCE_SECONDS = 5.0
#: A connection lost, refused or cut (PostgreSQL restarting, SQLite busy): retrying helps.
CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError)

T = TypeVar("T")


class Retry(Exception):
    """Run the job again at ``at`` (or after the default backoff)."""

    def __init__(self, reason: str, at: datetime | None = None):
        self.reason = reason
        self.at = at
        super().__init__(reason)


class Fail(Exception):
    """Give up on the job for good (a configuration error, a bad payload)."""


class Defer(Exception):
    """Not now: run the job at ``at`` without counting an attempt (e.g. quiet hours)."""

    def __init__(self, reason: str, at: datetime):
        self.reason = reason
        self.at = at
        super().__init__(reason)


#: A handler returns this when it recorded the job's end itself (in its own transaction).
FINISHED = object()


#: ``async handler(ctx, job)``; or, with ``handler.batch = True``, ``async handler(ctx, jobs)``
#: taking every claimed job of its kind at once and recording each job's end itself.
Handler = Callable[[Context, Any], Awaitable[object]]


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 3600))


async def record_outcome(
    ctx: Context, fn: Callable[..., T], *args: Any, patience: float = RECORD_PATIENCE_SECONDS
) -> T:
    """Run ``fn(*args)`` on the database, retrying connection errors for up to ``patience``
    seconds: for writes that record what already happened outside (a message sent). Lost,
    such an outcome would make the next worker send again; ``fn`` must be idempotent (its
    first try may have committed before the connection was cut)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause, failures = 0.1, 0
    while True:
        try:
            result = await ctx.db.run(fn, *args)
        except CONNECTION_ERRORS as exc:
            if loop.time() + pause > deadline:
                raise
            if failures == 0:
                log.warning("worker: database unavailable (%s); retrying", type(exc).__name__)
            failures += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        if failures:
            log.info("worker: database back after %d retries", failures)
        return result


class Worker:
    """Claims and runs jobs with the registered handlers until told to stop."""

    def __init__(
        self,
        ctx: Context,
        handlers: dict[str, Handler],
        owner: str | None = None,
        concurrency: int = CONCURRENCY,
        share: float = 1.0,
    ):
        self.ctx = ctx
        self.handlers = handlers
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.semaphore = asyncio.Semaphore(concurrency)
        self.wakeup = asyncio.Event()
        self.stopping = asyncio.Event()
        self.channel = ctx.rkeys("jobs")
        self.processed = 0
        self.held: set[int] = set()  # claimed jobs not finished yet (their leases are renewed)
        self._last_progress = 0.0
        # The part of its time the worker may be busy, over its PIPELINE claim loops: after a
        # batch that took t s a loop rests t * (PIPELINE / share - 1) s (a worker embedded in
        # a server leaves the rest of the process, and of SQLite's write lock, to requests).
        self.share = min(max(share, 0.01), 1.0)
        self._rest_factor = PIPELINE / self.share - 1 if self.share < 1.0 else 0.0

    def _log_failure(self, what: str, exc: Exception) -> None:
        """An outage (the database, Redis, the disk) is one line per outage and process, and
        one when it ends (common.outages), not a line per poll or job; a PostgreSQL conflict
        (deadlock, serialization) one line, no outage; anything else its traceback."""
        found = outages.note(self.ctx, exc)
        if found is None:
            log.exception("%s failed", what)
        elif found.conflict:  # the database answered: the job is retried (its backoff)
            log.warning("%s: the database rolled it back (a conflict)", what)

    async def run(self) -> None:
        log.info("worker %s started", self.owner)

        async def wake(_data: str) -> None:
            self.wakeup.set()

        # Wake up on Redis announcements of new due work (polling covers any gap).
        listener = ChannelWatcher(self.ctx.redis, self.channel, wake)
        listener.start()
        heartbeat = asyncio.ensure_future(self._renew_leases())
        try:
            # Two claim loops: one batch is claimed and prepared while the other's WeChat
            # calls are in flight, so neither the database nor WeChat sits idle.
            await asyncio.gather(*(self._loop() for _ in range(PIPELINE)))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await listener.stop()
            log.info("worker %s stopped after %d jobs", self.owner, self.processed)

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            ran = await self.run_once()
            if ran == 0:
                await self._idle()

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    async def run_once(self) -> int:
        """Claim one batch and run it; returns how many jobs ran."""
        settings = self.ctx.settings.worker
        try:
            batch = await self.ctx.db.run(
                jobs.claim,
                self.owner,
                settings.lease_seconds,
                settings.batch_size,
                list(self.handlers),
            )
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the worker
            self._log_failure("worker: claim", exc)
            await asyncio.sleep(settings.poll_seconds)
            return 0
        if not batch:
            return 0
        started = time.monotonic()
        self.held.update(job.id for job in batch)
        by_kind: dict[str, list[Job]] = {}
        for job in batch:
            by_kind.setdefault(job.kind, []).append(job)
        tasks = []
        for kind, group in by_kind.items():
            if getattr(self.handlers[kind], "batch", False):
                tasks.append(asyncio.ensure_future(self._run_batch(group)))
            else:
                tasks += [asyncio.ensure_future(self._run_job(job)) for job in group]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.held.difference_update(job.id for job in batch)
        self.processed += len(batch)
        await self._progress(len(batch))
        await self._rest(time.monotonic() - started)
        return len(batch)

    async def _settle(
        self, fn: Callable[..., Any], *args: Any, patience: float = RECORD_PATIENCE_SECONDS
    ) -> None:
        """Record a job's end or return (retried as by :func:`record_outcome`); if the
        database stays away, the job keeps its lease until it runs out and then runs again:
        never lost, and the worker goes on."""
        try:
            await record_outcome(self.ctx, fn, *args, patience=patience)
        except CONNECTION_ERRORS as exc:
            log.warning("worker: a job's outcome is not recorded: %s", type(exc).__name__)

    async def _rest(self, busy: float) -> None:
        """Rest in proportion to the time the last batch took (:attr:`share`)."""
        if not self._rest_factor or self.stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), busy * self._rest_factor)

    async def _run_batch(self, group: list[Job]) -> None:
        """A batch handler (``handler.batch = True``) gets every claimed job of its kind at
        once and records each job's end itself; if it raises, the jobs it left running are
        retried (or failed after :data:`MAX_ATTEMPTS`)."""
        if self.stopping.is_set():
            await self._settle(
                jobs.release,
                [job.id for job in group],
                self.owner,
                patience=RELEASE_PATIENCE_SECONDS,
            )
            return
        try:
            await self.handlers[group[0].kind](self.ctx, group)
        except Exception as exc:  # noqa: BLE001 - record it, retry later
            self._log_failure(f"batch of {len(group)} {group[0].kind} job(s)", exc)
            for job in group:
                reason = type(exc).__name__
                if job.attempts >= MAX_ATTEMPTS:
                    await self._settle(jobs.fail, job.id, self.owner, reason)
                else:
                    due = utcnow() + backoff(job.attempts)
                    await self._settle(jobs.retry, job.id, self.owner, due, reason)

    async def _run_job(self, job: Job) -> None:
        async with self.semaphore:
            if self.stopping.is_set():
                await self._settle(
                    jobs.release, [job.id], self.owner, patience=RELEASE_PATIENCE_SECONDS
                )
                return
            try:
                result = await self.handlers[job.kind](self.ctx, job)
            except Defer as exc:
                await self._settle(jobs.defer, job.id, self.owner, exc.at, exc.reason)
                return
            except Retry as exc:
                at = exc.at or utcnow() + backoff(job.attempts)
                if job.attempts >= MAX_ATTEMPTS:
                    await self._settle(jobs.fail, job.id, self.owner, f"gave up: {exc.reason}")
                else:
                    await self._settle(jobs.retry, job.id, self.owner, at, exc.reason)
                return
            except Fail as exc:
                await self._settle(jobs.fail, job.id, self.owner, str(exc))
                return
            except Exception as exc:  # noqa: BLE001 - record it, retry later
                self._log_failure(f"job {job.id} ({job.kind})", exc)
                reason = f"{type(exc).__name__}"
                if job.attempts >= MAX_ATTEMPTS:
                    await self._settle(jobs.fail, job.id, self.owner, reason)
                else:
                    due = utcnow() + backoff(job.attempts)
                    await self._settle(jobs.retry, job.id, self.owner, due, reason)
                return
            if result is not FINISHED:
                await self._settle(jobs.complete, job.id, self.owner)

    async def _renew_leases(self) -> None:
        """Keep the leases of held jobs alive while this worker lives (a slow send or a long
        queue never lets another worker take over a job that is still being worked on)."""
        settings = self.ctx.settings.worker
        every = max(settings.lease_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(every)
            if not self.held:
                continue
            try:
                await self.ctx.db.run(
                    jobs.renew, list(self.held), self.owner, settings.lease_seconds
                )
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                self._log_failure("worker: lease renewal", exc)

    async def _progress(self, ran: int) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        try:
            left = await self.ctx.db.run(jobs.due_count, list(self.handlers))
        except CONNECTION_ERRORS:
            return  # only a progress line
        if left:
            log.info(
                "worker catching up: %d due job(s) left, %d done so far",
                left,
                self.processed,
                extra={"fields": {"due": left, "done": self.processed}},
            )

    async def _idle(self) -> None:
        self.wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), self.ctx.settings.worker.poll_seconds)


async def announce(ctx: Context) -> None:
    """Tell workers that work became due now (best effort)."""
    with contextlib.suppress(Exception):
        await ctx.redis.publish(ctx.rkeys("jobs"), "1")
