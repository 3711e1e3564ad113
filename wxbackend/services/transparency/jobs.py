"""The log's worker jobs (kind ``transparency``), each rescheduling its next run first:

* ``checkpoint`` every ``transparency.checkpoint_seconds``: sign the tree head when it grew
  (so a new entry is in a signed checkpoint within that time plus the worker's poll);
* ``monitor`` hourly: run the verifier (``wxbackend.verifylog``) against the server's own
  public URL (``transparency.monitor_url`` or ``server.public_url``), keeping its state in
  ``<data_dir>/transparency-monitor.json``. A failure is logged as an error (an alert) and
  counted in ``wxb_transparency_verify_failures``; ``wxb_transparency_verify_ok`` is 1 after a
  run that held, 0 after one that did not.

Keys are per slot (``transparency:checkpoint:<epoch // seconds>``,
``transparency:monitor:<YYYYMMDDHH>``): any number of workers schedule each run once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge

from models.base import utcnow
from models.job import Job
from wxbackend import verifylog
from wxbackend.context import Context
from wxbackend.services.alerts import log_monitor
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.transparency import checkpoints

log = logging.getLogger("wxbackend.transparency")

KIND = "transparency"
STATE_FILE = "transparency-monitor.json"


def _slot(task: str, at: datetime, every: int) -> tuple[str, datetime]:
    """The key and start of the slot after the one ``at`` is in."""
    if task == "monitor":
        start = at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return f"{KIND}:monitor:{start:%Y%m%d%H}", start
    epoch = int(at.replace(tzinfo=UTC).timestamp()) // every + 1
    start = datetime.fromtimestamp(epoch * every, UTC).replace(tzinfo=None)
    return f"{KIND}:checkpoint:{epoch}", start


def ensure_scheduled(every: int, now: datetime | None = None) -> int:
    """Schedule the next run of both tasks (sync; at worker start)."""
    now = now or utcnow()
    new = 0
    for task in ("checkpoint", "monitor"):
        key, _ = _slot(
            task, now - timedelta(seconds=every if task == "checkpoint" else 3600), every
        )
        new += jobs.schedule(KIND, key, now, {"task": task})
    return new


def _metrics(ctx: Context) -> tuple[Counter, Gauge]:
    found = ctx.log_metrics
    if found is None:
        registry = ctx.metrics.registry
        found = ctx.log_metrics = (
            Counter(
                "wxb_transparency_verify_failures",
                "Hourly self-verifications of the transparency log that failed",
                registry=registry,
            ),
            Gauge(
                "wxb_transparency_verify_ok",
                "1 when the last self-verification of the transparency log held",
                registry=registry,
            ),
        )
    return found


async def sign(ctx: Context) -> int:
    """Sign the tree head if it grew; the checkpoint's size (or -1 when nothing changed)."""
    checkpoint = await ctx.db.run(checkpoints.sign_new, checkpoints.signer_of(ctx))
    return -1 if checkpoint is None else checkpoint.tree_size


async def monitor(ctx: Context) -> bool | None:
    """Verify the log at its public URL; None when no URL is configured."""
    settings = ctx.settings
    url = str(settings.transparency.monitor_url or settings.server.public_url)
    if not url:
        return None
    state = os.path.join(str(settings.server.data_dir), STATE_FILE)
    report = await asyncio.to_thread(verifylog.verify, url, state)
    failures, ok = _metrics(ctx)
    ok.set(1 if report.ok else 0)
    if report.ok:
        log.info("transparency log verified", extra={"fields": {"tree_size": report.tree_size}})
    else:
        failures.inc()
        log.error(
            "ALERT: the transparency log does not verify",
            extra={"fields": {"url": url, "problems": report.problems[:20]}},
        )
    await log_monitor.log_check(ctx, url, report.ok, list(report.problems))
    return report.ok


async def handle(ctx: Context, job: Job) -> None:
    """A ``transparency`` job ``{"task"}``: schedule the next run, then do this one."""
    task = json.loads(job.payload)["task"]
    every = max(int(ctx.settings.transparency.checkpoint_seconds), 1)
    key, start = _slot(task, max(job.due_at, utcnow()), every)
    await ctx.db.run(jobs.schedule, KIND, key, start, {"task": task})
    if task == "checkpoint":
        await sign(ctx)
    elif task == "monitor":
        await monitor(ctx)
