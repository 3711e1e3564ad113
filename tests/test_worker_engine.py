"""The job engine: idempotent scheduling, claims with leases, retries, takeover, stop."""

import asyncio
import collections
from datetime import timedelta

import pytest

from models.base import utcnow
from models.job import Job
from tests.support.databases import both_databases
from wxbackend.db import database
from wxbackend.services.jobs import queue as jobs
from wxbackend.worker import Fail, Retry, Worker


def _schedule_many(n: int, kind: str = "test") -> None:
    with database.atomic():
        for i in range(n):
            jobs.schedule(kind, f"{kind}:{i}", utcnow() - timedelta(seconds=1), {"i": i})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides", [{"worker": {"batch_size": 50, "poll_seconds": 0.1}}]
)
async def test_two_workers_run_each_job_once(ctx):
    await ctx.db.run(_schedule_many, 600)
    seen = collections.Counter()

    async def handler(_ctx, job):
        seen[job.key] += 1
        await asyncio.sleep(0)

    workers = [Worker(ctx, {"test": handler}, owner=f"w{i}") for i in range(2)]
    runs = [asyncio.ensure_future(w.run()) for w in workers]
    for _ in range(200):
        if sum(seen.values()) >= 600:
            break
        await asyncio.sleep(0.05)
    for w in workers:
        w.stop()
    await asyncio.gather(*runs)
    assert len(seen) == 600 and set(seen.values()) == {1}
    assert all(w.processed > 0 for w in workers)
    statuses = await ctx.db.run(lambda: {j.status for j in Job.select()})
    assert statuses == {"done"}


@both_databases
@pytest.mark.asyncio
async def test_simultaneous_claims_each_get_a_full_batch(ctx):
    # Every claim's plain read finds the same oldest due jobs; the claims that lose some of
    # them to another read again inside their transaction instead of coming back short (or
    # empty, and idling a poll interval while work is due).
    await ctx.db.run(_schedule_many, 240)
    for _ in range(3):  # rounds of 8 simultaneous claims of 10 (the database's 8 threads)
        batches = await asyncio.gather(
            *(ctx.db.run(jobs.claim, f"w{i}", 60, 10, ["test"]) for i in range(8))
        )
        if not all(len(batch) == 10 for batch in batches):
            break
    assert [len(batch) for batch in batches] == [10] * 8
    ids = [job.id for batch in batches for job in batch]
    assert len(set(ids)) == len(ids)


@pytest.mark.asyncio
async def test_schedule_is_idempotent(ctx):
    due = utcnow()
    first = await ctx.db.run(jobs.schedule, "test", "same", due)
    again = await ctx.db.run(jobs.schedule, "test", "same", due)
    assert (first, again) == (True, False)
    assert await ctx.db.run(Job.select().count) == 1
    assert await ctx.db.run(jobs.cancel, ["same"]) == 1
    assert await ctx.db.run(jobs.due_count) == 0


@pytest.mark.asyncio
async def test_abandoned_lease_is_taken_over(ctx, clock):
    await ctx.db.run(_schedule_many, 3)
    claimed = await ctx.db.run(jobs.claim, "dead-worker", 0.2, 10)
    assert len(claimed) == 3
    assert await ctx.db.run(jobs.claim, "other", 60, 10) == []  # still leased
    clock.advance(0.3)  # the lease runs out
    taken = await ctx.db.run(jobs.claim, "other", 60, 10)
    assert len(taken) == 3 and all(j.attempts == 2 for j in taken)
    # the dead worker's late completion is refused: it lost the lease
    assert await ctx.db.run(jobs.complete, claimed[0].id, "dead-worker") is False
    assert await ctx.db.run(jobs.complete, taken[0].id, "other") is True


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"worker": {"poll_seconds": 0.1}}])
async def test_retry_and_fail(ctx):
    await ctx.db.run(_schedule_many, 2)
    calls = collections.Counter()

    async def handler(_ctx, job):
        calls[job.key] += 1
        if job.key == "test:0":
            if calls[job.key] == 1:
                raise Retry("busy", at=utcnow())
            return
        raise Fail("configuration error")

    worker = Worker(ctx, {"test": handler})
    run = asyncio.ensure_future(worker.run())
    for _ in range(100):
        done = await ctx.db.run(lambda: {j.key: j.status for j in Job.select()})
        if done == {"test:0": "done", "test:1": "failed"}:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await run
    assert done == {"test:0": "done", "test:1": "failed"}
    assert calls == {"test:0": 2, "test:1": 1}
    error = await ctx.db.run(lambda: Job.get(Job.key == "test:1").last_error)
    assert error == "configuration error"


@pytest.mark.asyncio
async def test_future_jobs_wait(ctx):
    await ctx.db.run(jobs.schedule, "test", "later", utcnow() + timedelta(hours=1))
    assert await ctx.db.run(jobs.claim, "w", 60, 10) == []
