"""Default ratings (product.md rule 5): 基本满意 (3), channel default, after the window."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from models.base import utcnow
from models.case import Case, QrToken
from models.evaluation import Evaluation
from models.job import Job
from tests.support.cases import make_case, make_id_number
from tests.support.worker import running_worker, wait_for
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.clients.partner import iso_ago, resident_id
from wxbackend.services.jobs import housekeeping
from wxbackend.services.messaging import schedule
from wxbackend.services.ratings import defaults as default_ratings

FAST = {"worker": {"poll_seconds": 0.2}}


@pytest.fixture
def settings_overrides():
    return FAST


def evaluations_of(case_id: int) -> list[Evaluation]:
    return list(Evaluation.select().where(Evaluation.case == case_id))


async def job_status(ctx, key: str) -> str | None:
    job = await ctx.db.run(lambda: Job.get_or_none(Job.key == key))
    return job.status if job else None


async def report_old_case(ctx, partner, days: float = 8) -> tuple[int, str]:
    """A case completed ``days`` ago and reported then (the window runs from the later of
    completion and report, rule 14): reported now, then its report time and default-rating
    job moved back to its completion."""
    status, answer = await partner.report_case(
        accepted_at=iso_ago(days=days, hours=1), completed_at=iso_ago(days=days)
    )
    assert status == 201, answer
    case_id = int(answer["case_id"])

    def backdate() -> None:
        case = Case.get_by_id(case_id)
        case.reported_at = case.completed_at
        case.save()
        due = schedule.rating_window_end(case, ctx.settings)
        Job.update(due_at=due).where(Job.key == schedule.default_rating_key(case_id)).execute()

    await ctx.db.run(backdate)
    return case_id, answer["scene"]


@pytest.mark.asyncio
async def test_default_rating_after_the_window(api, sandbox, ctx, partner):
    """A case completed 8 days ago and never rated: 基本满意 (3), channel default, no user or
    name, first_rated_at set, its token closed, counted in figures but not in active ones."""
    old_case, old_scene = await report_old_case(ctx, partner)
    # a citizen's own 5-star rating of another case, for the figures
    id_number = make_id_number(42)
    fresh_case, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    status, rated = await rate(api, token, scene=scene, overall=5)
    assert status == 201, rated

    key = schedule.default_rating_key(old_case)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "done"))
    rows = await ctx.db.run(evaluations_of, old_case)
    assert len(rows) == 1
    default = rows[0]
    assert (default.channel, default.overall, default.assess_number) == ("default", 3, 1)
    assert default.user_id is None and default.name_masked is None
    assert default.rater_id_hash is None and default.comment is None
    case = await ctx.db.run(Case.get_by_id, old_case)
    assert case.first_rated_at == default.created_at
    tokens = await ctx.db.run(
        lambda: [t.status for t in QrToken.select().where(QrToken.case == old_case)]
    )
    assert tokens == ["revoked"]
    status, answer = await api("POST", "/api/v1/scan", {"scene": old_scene}, token=token)
    assert status == 410, answer

    status, stats = await api("GET", "/api/v1/public/stats")
    assert status == 200, stats
    assert stats["total"] == 2 and stats["by_level"]["3"] == 1 and stats["by_level"]["5"] == 1
    assert stats["satisfaction_rate"] == 1.0
    assert stats["active_good_rate"] == 1.0  # the default rating is not an active one
    status, page = await api("GET", "/api/v1/public/evaluations")
    assert {str(default.id), rated["evaluation"]["id"]} <= {i["id"] for i in page["items"]}
    assert fresh_case != str(old_case)


async def _is(ctx, key: str, status: str) -> bool:
    return await job_status(ctx, key) == status


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{**FAST, "rating": {"default_enabled": False}}])
async def test_default_ratings_can_be_turned_off(ctx, partner):
    case_id, _ = await report_old_case(ctx, partner)
    key = schedule.default_rating_key(case_id)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "done"))
        assert await default_ratings.sweep(ctx) == 0
    assert await ctx.db.run(evaluations_of, case_id) == []
    assert (await ctx.db.run(Case.get_by_id, case_id)).first_rated_at is None


@pytest.mark.asyncio
async def test_not_before_the_window_ends(ctx, partner):
    case_id, _ = await report_old_case(ctx, partner, days=6.9)
    key = schedule.default_rating_key(case_id)
    assert await job_status(ctx, key) == "pending"
    async with running_worker(ctx):
        await asyncio.sleep(0.6)
    assert await job_status(ctx, key) == "pending"  # due in ~2.4 hours
    assert await ctx.db.run(default_ratings.apply_default_rating, case_id, 7) is None
    assert await ctx.db.run(evaluations_of, case_id) == []


@pytest.mark.asyncio
async def test_a_citizen_rating_wins(api, sandbox, ctx, partner):
    """Rated in time: the default job is cancelled, and even if it ran it would store
    nothing (the guarded path re-reads the case; the unique index backs it)."""
    id_number = resident_id()
    status, answer = await partner.report_case(
        applicant={"name": "黎明", "id_number": id_number},
        accepted_at=iso_ago(days=6, hours=1),
        completed_at=iso_ago(days=6),
    )
    case_id = int(answer["case_id"])
    token = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await rate(api, token, case_id=str(case_id), overall=4)
    assert status == 201, answer
    assert await job_status(ctx, schedule.default_rating_key(case_id)) == "cancelled"
    later = utcnow() + timedelta(days=2)
    assert await ctx.db.run(default_ratings.apply_default_rating, case_id, 7, later) is None
    rows = await ctx.db.run(evaluations_of, case_id)
    assert [(r.channel, r.overall) for r in rows] == [("miniprogram", 4)]


@pytest.mark.asyncio
async def test_housekeeping_sweeps_cases_without_a_job(ctx):
    """Cases that never had a job (inserted before the worker existed) are caught hourly."""
    case_id, _ = await make_case(
        ctx, "黎明", make_id_number(7), completed_at=utcnow() - timedelta(days=9)
    )
    now = utcnow()
    await ctx.db.run(housekeeping.ensure_scheduled, now)
    key = housekeeping.hour_key("default_ratings", now)
    async with running_worker(ctx):
        assert await wait_for(lambda: _is(ctx, key, "done"))
    rows = await ctx.db.run(evaluations_of, int(case_id))
    assert [(r.channel, r.overall) for r in rows] == [("default", 3)]
