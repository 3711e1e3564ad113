"""Default ratings (默认好评): a finished case not rated within its rating window gets 基本满意
(3), channel ``default`` (product.md rules 5 and 14). The window is
:mod:`wxbackend.services.ratings.window`'s: ``rating.window_days`` natural days from the later of
completion and report (``rating.default_after_days`` must equal it: one rule).

The worker's ``default_rating`` job (scheduled with the case, due at the window's end) stores
it through the rating writer, the transaction every channel shares
(:mod:`wxbackend.services.ratings.writer`): it re-reads the case, inserts the
evaluation (the unique (case, assess_number) index makes a concurrent citizen rating win or
lose cleanly), sets ``case.first_rated_at``, closes every QR token of the case and cancels its
reminders; then the evaluation is published like any other. It has no user, no name and no
rater: public figures count it as a rating and leave it out of the "active" ones (主动评价). With
``rating.default_enabled = false`` nothing is stored. The hourly housekeeping
(:func:`sweep`) catches cases that never had a job (e.g. reported before this existed).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from models.base import utcnow
from models.case import Case
from models.job import Job
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.jobs import plans
from wxbackend.services.public import live as realtime
from wxbackend.services.ratings import levels, window, writer
from wxbackend.services.ratings.writer import FirstRating
from wxbackend.settings import Settings

log = logging.getLogger("wxbackend.default_ratings")

CHANNEL = writer.DEFAULT_CHANNEL
SWEEP_LIMIT = 500


def apply_default_rating(
    case_id: int,
    window_days: int,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> int | None:
    """Store the default rating of an unrated case past its window through the rating writer
    (sync, one transaction; ``settings`` for the ticket, should the default level ever be a
    差评). Returns the new evaluation's id, or None when the case is rated
    (before or meanwhile), unknown or still in its window. It never touches a rated case."""
    now = now or utcnow()
    case = Case.get_or_none(Case.id == case_id)
    if case is None or case.first_rated_at is not None:
        return None
    if window.is_open(case, window_days, now):
        return None
    first = FirstRating(case_id=case.id, channel=CHANNEL, overall=levels.DEFAULT_LEVEL, at=now)
    try:
        return writer.write(first, settings).evaluation_id
    except errors.AlreadyEvaluated:
        return None  # a citizen (or a callback) rated it first


def due_cases(window_days: int, now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    """Unrated cases past their rating window, oldest first (at most ``limit``), read
    through the partial index of unrated cases (``case_unrated``, migration 12)."""
    query = (
        Case.select(Case.id)
        .where(Case.first_rated_at.is_null() & window.closed_sql(window_days, now))
        .order_by(Case.completed_at)
        .limit(limit)
    )
    return [row[0] for row in plans.indexed_by(query, "case", "case_unrated").execute()]


async def rate(ctx: Context, case_id: int) -> int | None:
    """Apply (when enabled) and publish the default rating of one case."""
    if not ctx.settings.rating.default_enabled:
        return None
    days = ctx.settings.rating.window_days
    evaluation_id = await ctx.db.run(apply_default_rating, case_id, days, None, ctx.settings)
    if evaluation_id is not None:
        log.info("default rating stored", extra={"fields": {"case_id": case_id}})
        await realtime.publish_after_commit(ctx, evaluation_id)
    return evaluation_id


async def handle(ctx: Context, job: Job) -> None:
    """The ``default_rating`` job: ``{"case_id"}``."""
    await rate(ctx, json.loads(job.payload)["case_id"])


async def sweep(ctx: Context) -> int:
    """Default-rate cases past their window that have no pending job; how many."""
    if not ctx.settings.rating.default_enabled:
        return 0
    case_ids = await ctx.db.run(due_cases, ctx.settings.rating.window_days, utcnow())
    done = 0
    for case_id in case_ids:
        if await rate(ctx, case_id) is not None:
            done += 1
    return done
