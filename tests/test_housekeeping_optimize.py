"""The hourly ``optimize`` housekeeping on SQLite (``PRAGMA optimize``, which may ANALYZE and
so write) runs as a write transaction like every other writer. Run bare, its reads took a
snapshot before it asked for the write lock; a writer committing meanwhile made that snapshot
stale and SQLite answered ``database is locked`` at once (no busy wait helps a stale
snapshot): a fresh server logged "database is down" at its first housekeeping."""

from __future__ import annotations

import threading
import time

import pytest

from models.base import utcnow
from models.job import Job
from wxbackend.db import database
from wxbackend.services.jobs import housekeeping
from wxbackend.services.jobs import queue as jobs


def _hold_the_write_lock(holding: threading.Event, seconds: float) -> None:
    with database.atomic():
        jobs.schedule("test", "writer", utcnow(), {})
        holding.set()
        time.sleep(seconds)


@pytest.mark.asyncio
async def test_optimize_waits_for_a_writer_instead_of_failing(ctx):
    for n in range(200):  # something for ANALYZE to do
        await ctx.db.run(jobs.schedule, "test", f"k{n}", utcnow(), {})

    def optimize_during_a_write() -> int:
        holding = threading.Event()
        writer = threading.Thread(target=_hold_the_write_lock, args=(holding, 0.3))
        writer.start()
        try:
            holding.wait(5)
            # this connection has queried the job table: optimize will ANALYZE it
            Job.select().where((Job.kind == "test") & (Job.attempts == 0)).count()
            Job.select().where(Job.status == "pending").count()
            return housekeeping.optimize()
        finally:
            writer.join()

    assert await ctx.db.run(optimize_during_a_write) == 1
    analyzed = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'job'"
    assert (await ctx.db.run(lambda: database.execute_sql(analyzed).fetchone()))[0] > 0
