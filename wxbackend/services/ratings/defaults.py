"""Default ratings (默认好评): a finished case not rated within ``rating.default_after_days``
natural days gets 基本满意 (3), channel ``default`` (product.md rule 5).

The worker's ``default_rating`` job (scheduled with the case, due ``completed_at +
rating.default_after_days``) stores it through the same guards as a citizen's first rating:
one transaction that re-reads the case, inserts the evaluation (the unique (case,
assess_number) index makes a concurrent citizen rating win or lose cleanly), sets
``case.first_rated_at``, closes every QR token of the case and cancels its reminders; then
the evaluation is published like any other. It has no user, no name and no rater: public
figures count it as a rating and leave it out of the "active" ones (主动评价). With
``rating.default_enabled = false`` nothing is stored. The hourly housekeeping
(:func:`sweep`) catches cases that never had a job (e.g. reported before this existed).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import peewee

from models.base import utcnow
from models.case import Case
from models.evaluation import Evaluation, catalogue_refs
from models.job import Job
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.messaging import reminders
from wxbackend.services.public import live as realtime
from wxbackend.services.ratings import evaluations
from wxbackend.services.transparency import log as transparency

log = logging.getLogger("wxbackend.default_ratings")

DEFAULT_LEVEL = 3  # 基本满意
CHANNEL = "default"
SWEEP_LIMIT = 500


def apply_default_rating(case_id: int, window_days: int, now: datetime | None = None) -> int | None:
    """Store the default rating of an unrated case past its window (sync, one transaction).

    Returns the new evaluation's id, or None when the case is rated, unknown or still in
    its window.
    """
    now = now or utcnow()
    try:
        with database.atomic():
            case = Case.get_or_none(Case.id == case_id)
            if case is None or case.first_rated_at is not None:
                return None
            if case.completed_at + timedelta(days=window_days) > now:
                return None
            evaluation = Evaluation.create(
                case=case.id,
                assess_number=1,
                channel=CHANNEL,
                user=None,
                rater_id_hash=None,
                name_masked=None,
                overall=DEFAULT_LEVEL,
                comment=None,
                comment_status="visible",
                created_at=now,
                **catalogue_refs(case),
            )
            updated = (
                Case.update(first_rated_at=now)
                .where((Case.id == case.id) & Case.first_rated_at.is_null())
                .execute()
            )
            if updated != 1:
                raise peewee.IntegrityError("rated meanwhile")
            evaluations.close_case_tokens(case.id, None, now)
            reminders.cancel_case_jobs(case.id)
            transparency.append("rating", {"evaluation_id": evaluation.id}, now)
    except peewee.IntegrityError:
        return None  # a citizen (or a callback) rated it first
    return evaluation.id


def due_cases(window_days: int, now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    """Unrated cases past their rating window, oldest first (at most ``limit``)."""
    cutoff = now - timedelta(days=window_days)
    query = (
        Case.select(Case.id)
        .where(Case.first_rated_at.is_null() & (Case.completed_at <= cutoff))
        .order_by(Case.completed_at)
        .limit(limit)
    )
    return [row.id for row in query]


async def rate(ctx: Context, case_id: int) -> int | None:
    """Apply (when enabled) and publish the default rating of one case."""
    if not ctx.settings.rating.default_enabled:
        return None
    evaluation_id = await ctx.db.run(
        apply_default_rating, case_id, ctx.settings.rating.default_after_days
    )
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
    case_ids = await ctx.db.run(due_cases, ctx.settings.rating.default_after_days, utcnow())
    done = 0
    for case_id in case_ids:
        if await rate(ctx, case_id) is not None:
            done += 1
    return done
