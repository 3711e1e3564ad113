"""The rollups of the figures (models/rollup.py) after random histories written through the
real paths — case reports, ratings of every level and channel, defaults, callbacks superseding
them, follow-ups, comment moderation, tickets through their states, appeals upheld and
rejected, over several centers, items, staff and days, around Shanghai midnights and the end
of a Shanghai month — equal a recount from the raw rows: the rollups themselves (the month
one: the sums of the day one), every grouping of the figures over ranges of days and of whole
months with days at their ends (against the count from the cases and ratings), and the staff
ranking's sums (recounted here)."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from models.base import utcnow
from models.case import Case
from models.evaluation import Evaluation
from models.rollup import (
    FIGURE_COUNTERS,
    FIGURE_SHAPES,
    RANKING_COUNTERS,
    ROLLUP_MODELS,
    RollupRanking,
)
from models.ticket import Ticket
from tests.support.cases import make_id_number
from tests.support.cli import run_cli
from tests.support.databases import both_databases
from tests.support.public_seed import ITEMS, seed_catalog
from wxbackend.db import database
from wxbackend.security import token_digest
from wxbackend.services.admin.audit import Actor
from wxbackend.services.admin.moderation import moderate
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.cases import reports
from wxbackend.services.cases.tokens import new_scene
from wxbackend.services.public import figures
from wxbackend.services.public.rollup_rebuild import rebuild
from wxbackend.services.ratings import defaults, writer
from wxbackend.services.ratings.follow_ups import FollowUpBase, store_follow_up
from wxbackend.services.ratings.levels import is_bad
from wxbackend.services.ratings.rules import Rating
from wxbackend.services.tickets import workflow

#: 2026-03-10 00:00 in Shanghai, as naive UTC: the histories straddle local midnights.
MIDNIGHT = datetime(2026, 3, 9, 16, 0, 0)
#: 2026-03-30 00:00 in Shanghai: half the cases end around 04-01 00:00 local (still March
#: in UTC), so the month rollup and the ranges crossing a month have both sides.
MONTH_END = datetime(2026, 3, 29, 16, 0, 0)
STAFF = {"440103-SY-001": ("HL001", "HL101"), "440103-MZ-001": ("HL002", "HL101")}
ROOT = Principal(1, "root", "superadmin", None, None)
APPELLANT, DECIDER = Actor(1, "clerk-lead"), Actor(2, "root")


def _report(ctx: Any, rng: random.Random, seed: int, n: int) -> int:
    """A case through the partner report's transaction, completed around a local midnight."""
    item = rng.choice(sorted(ITEMS))
    department, center = ITEMS[item]
    clerk, approver = STAFF.get(item, ("XX001", None))
    anchor = MONTH_END if n % 2 else MIDNIGHT
    done = anchor + timedelta(days=rng.randrange(4), seconds=rng.randrange(-7200, 7200))
    body = {
        "case_no": f"R{seed}-{n:06d}",
        "item_code": item,
        "center_code": center,
        "department_code": department,
        "window_staff_no": clerk if rng.random() < 0.8 else None,
        "approver_staff_no": approver if rng.random() < 0.7 else None,
        "applicant": {"name": "黎明", "id_number": make_id_number(n)},
        "accepted_at": (done - timedelta(hours=1)).isoformat() + "Z",
        "completed_at": done.isoformat() + "Z",
    }
    report = reports.parse_report(body, now=MIDNIGHT + timedelta(days=30))
    sealed = reports.seal_applicant(ctx, report.applicant)
    expires = done + timedelta(days=30)
    return reports.store_case(report, sealed, None, token_digest(new_scene()), expires)


def _rate(ctx: Any, rng: random.Random, case_id: int, channel: str, at: datetime) -> int:
    targets = {t: rng.randint(1, 5) for t in ("window_staff", "approver") if rng.random() < 0.5}
    first = writer.FirstRating(
        case_id=case_id,
        channel=channel,
        overall=rng.randint(1, 5),
        targets=targets,
        comment="办事很慢" if rng.random() < 0.5 else None,
        at=at,
    )
    supersede = channel in ("phone", "sms")
    return writer.write(first, ctx.settings, supersede_default=supersede).evaluation_id


def _ticket_steps(rng: random.Random, evaluation_id: int, at: datetime) -> None:
    """A 差评's ticket: appealed (upheld or rejected), rectified, or left open."""
    found = Ticket.get(Ticket.evaluation == evaluation_id)
    ticket = found.id
    lead = Principal(3, APPELLANT.username, "center_admin", found.center_id, None)
    roll = rng.random()
    if roll < 0.5:
        workflow.appeal(lead, APPELLANT, ticket, "不是本窗口的问题", at)
        workflow.decide_appeal(ROOT, DECIDER, ticket, rng.random() < 0.6, "", at)
    elif roll < 0.75:
        workflow.verify(ROOT, DECIDER, ticket, True, "属实", at)
        workflow.rectify(ROOT, DECIDER, ticket, "已整改", at)


def history(ctx: Any, seed: int, cases: int) -> None:
    """A random history of ``cases`` cases (sync: run it through ``ctx.db.run``)."""
    rng = random.Random(seed)
    seed_catalog(ctx)
    for n in range(cases):
        case_id = _report(ctx, rng, seed, n)
        done = Case.get_by_id(case_id).completed_at
        at = done + timedelta(seconds=rng.randrange(60, 2 * 86400))
        roll = rng.random()
        if roll < 0.15:
            continue  # never rated
        if roll < 0.35:
            # the rating window runs from the report (today), not from the completion
            late = utcnow() + timedelta(days=2)
            assert defaults.apply_default_rating(case_id, 0, late, ctx.settings)
            if rng.random() < 0.5:  # a callback supersedes the default
                _rate(ctx, rng, case_id, rng.choice(("phone", "sms")), at + timedelta(hours=5))
            continue
        channel = rng.choice(("qr", "miniprogram", "qr", "phone", "sms"))
        evaluation_id = _rate(ctx, rng, case_id, channel, at)
        rating = Evaluation.get_by_id(evaluation_id)
        if rating.comment and rng.random() < 0.5:
            moderate(ROOT, DECIDER, evaluation_id, False, "含个人信息")
            if rng.random() < 0.5:
                moderate(ROOT, DECIDER, evaluation_id, True, None)
        if is_bad(rating.overall):
            _ticket_steps(rng, evaluation_id, at + timedelta(hours=1))
        if rng.random() < 0.3:
            again = Rating(rng.randint(1, 5), {}, {}, (), None)
            store_follow_up(FollowUpBase(evaluation_id, "openid"), again, {}, "visible")


def snapshot() -> dict[str, dict[tuple, tuple]]:
    """Every rollup row with a non-zero counter: key columns → counters."""
    out: dict[str, dict[tuple, tuple]] = {}
    for model in ROLLUP_MODELS:
        counters = RANKING_COUNTERS if model is RollupRanking else FIGURE_COUNTERS
        names = [f.name for f in model._meta.sorted_fields if f.name != "id"]
        keys = [n for n in names if n not in counters]
        rows = {}
        for row in model.select().dicts():
            values = tuple(row[n] for n in counters)
            if any(values):
                rows[tuple(str(row[k]) for k in keys)] = values
        out[model._meta.table_name] = rows
    return out


def _local(day: str) -> datetime:
    """00:00 of an Asia/Shanghai day as naive UTC."""
    return datetime.fromisoformat(day) - timedelta(hours=8)


def _months_of(days: dict[tuple, tuple]) -> dict[tuple, tuple]:
    """The month rollup recounted here from the day × center one."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(FIGURE_COUNTERS))
    for (day, center), values in days.items():
        for i, value in enumerate(values):
            sums[(day[:8] + "01", center)][i] += value
    return {key: tuple(values) for key, values in sums.items() if any(values)}


def _figures_both_ways(
    scope: figures.Scope, group_by: str | None, now: datetime
) -> tuple[dict, dict]:
    """The tallies of ``scope`` at ``now`` from the rollups and from the cases, ratings and
    tickets themselves."""
    from_rollups: dict[Any, figures.Tally] = defaultdict(figures.Tally)
    from_rows: dict[Any, figures.Tally] = defaultdict(figures.Tally)
    assert figures._from_rollups(from_rollups, scope, group_by, True, now)
    figures._from_rows(from_rows, scope, group_by, True)
    figures._tickets(from_rows, scope, group_by, now)
    return dict(from_rollups), dict(from_rows)


def _ranking_recount() -> dict[tuple, list[int]]:
    """The ranking sums, counted here rating by rating (not by the SQL of the rebuild)."""
    upheld = {t.evaluation_id for t in Ticket.select().where(Ticket.appeal_status == "upheld")}
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for e in Evaluation.select().where(Evaluation.assess_number == 1):
        if e.channel == "default" or e.id in upheld:
            continue
        day = (e.created_at + timedelta(hours=8)).date().isoformat()
        for role in ("window_staff", "approver"):
            target = getattr(e, f"target_{role}")
            level = target if target is not None else e.overall
            key = (day, role, getattr(e, f"{role}_id") or 0, e.center_id, e.department_id)
            for i, value in enumerate((1, level, is_bad(level), target is not None)):
                sums[key][i] += value
    return {k: v for k, v in sums.items() if any(v)}


def check_recount() -> None:
    """The rollups kept by the writers equal the rebuilt ones and an independent recount."""
    kept = snapshot()
    assert kept["rollup_staff"], "the history counted nothing"
    assert kept["rollup_month"] == _months_of(kept["rollup_center"])
    assert {day[:7] for day, _ in kept["rollup_month"]} >= {"2026-03", "2026-04"}
    ranking = {
        (str(r.day), r.role, r.staff, r.center, r.department): [
            r.n,
            r.stars,
            r.bad,
            r.target_rated,
        ]
        for r in RollupRanking.select()
        if any((r.n, r.stars, r.bad, r.target_rated))
    }
    assert ranking == _ranking_recount()
    scopes = [
        figures.Scope(),
        figures.Scope(start=MIDNIGHT + timedelta(days=1), end=MIDNIGHT + timedelta(days=3)),
        figures.Scope(exclude_upheld=True),
        figures.Scope(center_id=Case.select(Case.center).scalar(), exclude_upheld=True),
        # whole months and the days at each end (Shanghai months)
        figures.Scope(start=_local("2026-03-01"), end=_local("2026-05-01")),
        figures.Scope(start=_local("2026-03-11"), end=_local("2026-06-02")),
        figures.Scope(center_id=Case.select(Case.center).scalar(), start=_local("2026-03-31")),
        figures.Scope(end=_local("2026-04-02")),
    ]
    # now: before, among (at one: not yet passed; an hour later: passed) and after the
    # rectification deadlines; a day of deadlines is split by now
    deadlines = sorted(t.rectify_due for t in Ticket.select(Ticket.rectify_due))
    middle = deadlines[len(deadlines) // 2]
    nows = [deadlines[0] - timedelta(days=1), middle, middle + timedelta(hours=1)]
    nows.append(deadlines[-1] + timedelta(days=60))
    split = 0
    for scope in scopes:
        for group_by in (None, *figures.GROUP_COLUMNS):
            for now in nows:
                days = [
                    (m + timedelta(hours=8)).date() if m else None for m in (scope.start, scope.end)
                ]
                split += figures.month_split(*days, (now + timedelta(hours=8)).date()) is not None
                from_rollups, from_rows = _figures_both_ways(scope, group_by, now)
                assert from_rollups == from_rows, (scope, group_by, now)
    assert split, "no range read whole months"
    due = [figures.tallies(figures.Scope(), now=now)[None].rectification_due for now in nows]
    assert due[0] < due[-1] and due == sorted(due), due
    rebuilt = rebuild()
    assert snapshot() == kept
    assert rebuilt["rollup_center"] == len(kept["rollup_center"])
    assert [m for m, _ in FIGURE_SHAPES] == list(ROLLUP_MODELS[:3])


@both_databases
@pytest.mark.asyncio
async def test_rollups_equal_a_recount(ctx):
    """Fifty cases on each database: kept, rebuilt and recounted agree."""
    await ctx.db.run(history, ctx, 7, 50)
    await ctx.db.run(check_recount)


@pytest.mark.slow  # ~10 s
@pytest.mark.asyncio
async def test_rollups_equal_a_recount_over_more_histories(ctx):
    """Two more seeds on SQLite, eighty cases each (one database, growing)."""
    for seed in (11, 12):
        await ctx.db.run(history, ctx, seed, 80)
        await ctx.db.run(check_recount)

    def covered() -> set[str]:
        kinds = {e.channel for e in Evaluation.select(Evaluation.channel).distinct()}
        if Ticket.select().where(Ticket.appeal_status == "upheld").exists():
            kinds.add("upheld")
        if Evaluation.select().where(Evaluation.assess_number == 2).exists():
            kinds.add("follow-up")
        return kinds

    everything = {"qr", "miniprogram", "phone", "sms", "default", "upheld", "follow-up"}
    assert await ctx.db.run(covered) == everything


@pytest.mark.asyncio
async def test_a_lost_count_is_found_and_repaired(ctx):
    """The recount notices a rollup that drifted, and rebuild repairs it (idempotently)."""
    await ctx.db.run(history, ctx, 5, 20)

    def drift() -> None:
        model = FIGURE_SHAPES[0][0]
        model.update(finished=model.finished + 1).where(
            model.id == model.select().scalar()
        ).execute()
        with pytest.raises(AssertionError):
            check_recount()
        rebuild()
        repaired = snapshot()
        rebuild()
        assert snapshot() == repaired
        check_recount()

    await ctx.db.run(drift)


def test_month_split():
    """Whole Shanghai months of a range of days, none reaching into today's month."""
    split, day = figures.month_split, date.fromisoformat
    today = day("2026-05-20")
    assert split(None, None, today) == (None, day("2026-05-01"))
    assert split(day("2026-03-01"), day("2026-05-01"), today) == (
        day("2026-03-01"),
        day("2026-05-01"),
    )
    assert split(day("2026-03-02"), day("2026-04-30"), today) is None
    assert split(day("2025-12-31"), None, today) == (day("2026-01-01"), day("2026-05-01"))
    assert split(day("2026-02-15"), day("2026-12-31"), day("2026-04-01")) == (
        day("2026-03-01"),
        day("2026-04-01"),
    )
    assert split(day("2026-04-02"), None, today) is None


@pytest.mark.slow  # starts OS processes
def test_rebuild_rollups_command(tmp_path):
    """``wxbackend rebuild-rollups`` recounts from the raw rows (a count that drifted is gone),
    again and again to the same result, each run audited with the OS user."""
    assert run_cli(tmp_path, "migrate").returncode == 0
    db = sqlite3.connect(tmp_path / "data" / "wxbackend.db")
    try:
        columns = ", ".join(FIGURE_COUNTERS)
        values = ", ".join(["7"] + ["0"] * (len(FIGURE_COUNTERS) - 1))
        with db:  # a count that drifted
            db.execute(
                f"insert into rollup_center (day, center, {columns})"
                f" values ('2026-03-10', 1, {values})"
            )
        for _ in range(2):
            done = run_cli(tmp_path, "rebuild-rollups")
            assert done.returncode == 0, done.stderr
            assert b"rollup_center: 0 rows" in done.stdout
        assert db.execute("select count(*) from rollup_center").fetchone() == (0,)
        audits = db.execute(
            "select username, detail from audit_entry where action = 'rollups.rebuild'"
        ).fetchall()
    finally:
        db.close()
    assert len(audits) == 2
    assert all(user.startswith("cli:") and "rollup_staff" in detail for user, detail in audits)


@pytest.mark.asyncio
async def test_every_writer_locks_the_log_head_before_the_rollup_rows(ctx) -> None:
    """Ratings, defaults, callbacks, follow-ups, moderation and ticket steps (a random
    history through the real paths): in every transaction that touches both, the
    transparency log's head comes before any rollup row, so two writers never wait on each
    other in opposite orders (a deadlock on PostgreSQL)."""

    def run() -> list[list[str]]:
        db = database.obj
        me = threading.get_ident()
        segments: list[list[str]] = [[]]
        original_sql, original_begin = db.execute_sql, db.begin

        def sql(query, params=None, *args, **kwargs):
            if threading.get_ident() == me:
                segments[-1].append(query)
            return original_sql(query, params, *args, **kwargs)

        def begin(*args, **kwargs):
            if threading.get_ident() == me:
                segments.append([])
            return original_begin(*args, **kwargs)

        db.execute_sql, db.begin = sql, begin
        try:
            history(ctx, 11, 40)
        finally:
            del db.execute_sql, db.begin
        return segments

    both = 0
    for statements in await ctx.db.run(run):
        heads = [i for i, s in enumerate(statements) if '"log_head"' in s]
        rolls = [i for i, s in enumerate(statements) if '"rollup_' in s]
        if heads and rolls:
            both += 1
            assert max(heads) < min(rolls), statements
    assert both >= 10  # ratings, follow-ups and ticket steps were seen
