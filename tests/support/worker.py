"""An in-process job worker for a test, and a polling wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from wxbackend.services.jobs.registry import handlers
from wxbackend.worker import Worker


@contextlib.asynccontextmanager
async def running_worker(ctx) -> AsyncIterator[Worker]:
    """A :class:`Worker` with every job handler, running in this event loop until the block ends."""
    worker = Worker(ctx, handlers())
    task = asyncio.ensure_future(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def wait_for(predicate, seconds: float = 10.0, every: float = 0.05):
    """Await ``predicate()`` every ``every`` seconds until it is truthy or ``seconds`` pass;
    its last value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(every)
