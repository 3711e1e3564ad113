"""What the worker runs: job kind → handler, shared by ``wxbackend worker`` and the worker
embedded in ``serve`` (``worker.embedded``), and the ways to run one.

Every server process (``serve --processes N``) runs its own embedded worker: workers share
the job table safely (a claim is a conditional UPDATE with a lease; a message's key makes
its send idempotent), so N processes simply mean N workers. ``wxbackend worker`` runs one
more, alone, e.g. on another machine or with ``worker.embedded = false``.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from wxbackend.context import Context
from wxbackend.services.alerts import sending as alerts
from wxbackend.services.jobs import housekeeping
from wxbackend.services.messaging import schedule, sending
from wxbackend.services.ratings import defaults as default_ratings
from wxbackend.services.transparency import jobs as transparency_jobs
from wxbackend.worker import Handler, Worker

log = logging.getLogger("wxbackend.worker")


def handlers() -> dict[str, Handler]:
    """Job kind → the handler the worker runs for it."""
    return {
        schedule.REMINDER: sending.handle_reminders,
        schedule.RECTIFIED: sending.handle_rectified,
        schedule.DEFAULT_RATING: default_ratings.handle,
        housekeeping.KIND: housekeeping.handle,
        alerts.KIND: alerts.handle,
        transparency_jobs.KIND: transparency_jobs.handle,
    }


async def make_worker(ctx: Context, owner: str | None = None, share: float = 1.0) -> Worker:
    """A worker with every handler; housekeeping's recurring jobs are made sure of.
    ``share``: the part of its time a claim loop may be busy (:class:`Worker`)."""
    await ctx.db.run(housekeeping.ensure_scheduled)
    every = ctx.settings.transparency.checkpoint_seconds
    await ctx.db.run(transparency_jobs.ensure_scheduled, max(int(every), 1))
    return Worker(ctx, handlers(), owner=owner, share=share)


class EmbeddedWorker:
    """The worker inside a server process: started after the context, stopped before it."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.worker: Worker | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        # A server's own worker yields to the requests it shares the process with.
        self.worker = await make_worker(self.ctx, share=self.ctx.settings.worker.embedded_share)
        self.task = asyncio.ensure_future(self.worker.run())

    async def stop(self) -> None:
        """Stop claiming; let in-flight jobs finish; hand unstarted ones back."""
        if self.worker is None or self.task is None:
            return
        self.worker.stop()
        try:
            await self.task
        except Exception:  # noqa: BLE001 - stopping anyway; say why
            log.exception("the embedded worker ended with an error")


async def run_until_signalled(ctx: Context, owner: str | None = None) -> int:
    """``wxbackend worker``: run until SIGTERM/SIGINT, then stop gracefully; jobs run."""
    worker = await make_worker(ctx, owner)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()
    return worker.processed
