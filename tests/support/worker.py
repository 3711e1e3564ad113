"""The real worker for tests: run it for a block, and wait for what it should bring about.

async with running_worker(ctx):
    assert await wait_for(lambda: is_done(ctx, key))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from wxbackend.services.jobs.registry import handlers
from wxbackend.worker import Worker


@contextlib.asynccontextmanager
async def running_worker(ctx: Any) -> AsyncIterator[Worker]:
    """A worker with every handler, running until the block ends (then stopped gracefully)."""
    worker = Worker(ctx, handlers())
    task = asyncio.ensure_future(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await task


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], seconds: float = 10.0, every: float = 0.05
) -> Any:
    """Poll ``predicate`` until it is truthy or ``seconds`` pass; its last value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await predicate()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(every)
