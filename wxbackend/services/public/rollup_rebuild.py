"""Recomputing every rollup (``models/rollup.py``) from the raw rows: ``wxbackend
rebuild-rollups`` (a repair) and the benchmarks' dataset after a bulk load.

One transaction: the rollups are emptied and refilled by one ``INSERT … SELECT … GROUP BY``
per table, so the database does the counting (no Python loop over rows) and a reader sees the
old counts or the new ones, never a half. Idempotent: the same rows give the same rollups.
"""

from __future__ import annotations

import peewee

from models.case import Case
from models.evaluation import LEVELS, Evaluation
from models.rollup import (
    FIGURE_COUNTERS,
    FIGURE_SHAPES,
    MONTH_SHAPE,
    RANKING_COUNTERS,
    ROLLUP_MODELS,
    RollupRanking,
)
from models.ticket import Ticket
from wxbackend.db import database
from wxbackend.services.public.rollups import (
    APPEAL_UPHELD,
    CALLBACK_CHANNELS,
    CITIZEN_CHANNELS,
    DEFAULT_CHANNEL,
    RANKED_ROLES,
)
from wxbackend.services.ratings import levels

_OFFSET_HOURS = 8
# Literals, not parameters: PostgreSQL matches a grouped expression to the selected one only
# when they are the same text.
_ZERO, _ONE = peewee.SQL("0"), peewee.SQL("1")


def _local_day(db: peewee.Database, column: peewee.Node) -> peewee.Node:
    """SQL for the Asia/Shanghai day of a stored naive UTC time (as the hooks compute it)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        shifted = column + peewee.SQL(f"INTERVAL '{_OFFSET_HOURS} hours'")
        return peewee.fn.DATE(shifted).coerce(False)
    return peewee.fn.DATE(column, f"+{_OFFSET_HOURS} hours").coerce(False)


def _count_if(condition: peewee.Expression) -> peewee.Node:
    return peewee.fn.COALESCE(peewee.fn.SUM(peewee.Case(None, [(condition, 1)], 0)), 0)


def _case_columns(db: peewee.Database, day: peewee.Node, upheld: peewee.Node) -> list:
    """The key of :class:`models.rollup.RollupStaff` for a case's row (a missing clerk or
    approver is 0)."""
    return [
        _local_day(db, day),
        Case.center,
        Case.item,
        Case.department,
        peewee.fn.COALESCE(Case.window_staff, _ZERO),
        peewee.fn.COALESCE(Case.approver, _ZERO),
        peewee.Case(None, [(upheld, _ONE)], _ZERO),
    ]


def _case_rows(db: peewee.Database) -> peewee.Query:
    """Every finished case with its first rating, follow-up and upheld appeal, grouped by the
    key of the finest shape: the case counters of :data:`models.rollup.FIGURE_COUNTERS`."""
    first = Evaluation.alias("first")
    follow = Evaluation.alias("follow")
    upheld = Ticket.alias("upheld")
    group = _case_columns(db, Case.completed_at, upheld.id.is_null(False))
    rated = first.id.is_null(False) & first.overall.in_(LEVELS)
    others = (*CITIZEN_CHANNELS, *CALLBACK_CHANNELS)
    counters = [
        peewee.fn.COUNT(Case.id),
        *(_count_if(rated & (first.overall == level)) for level in LEVELS),
        *(
            _count_if(rated & (first.overall == level) & first.channel.in_(CITIZEN_CHANNELS))
            for level in LEVELS
        ),
        _count_if(rated & first.channel.in_(CALLBACK_CHANNELS)),
        _count_if(rated & first.channel.not_in(others)),
        peewee.fn.COUNT(follow.id),
        _ZERO,
        _ZERO,
        _ZERO,
    ]
    return (
        Case.select(*group, *counters)
        .join_from(
            Case,
            first,
            peewee.JOIN.LEFT_OUTER,
            on=(first.case == Case.id) & (first.assess_number == 1),
        )
        .join_from(
            Case,
            follow,
            peewee.JOIN.LEFT_OUTER,
            on=(follow.case == Case.id) & (follow.assess_number == 2),
        )
        .join_from(
            first,
            upheld,
            peewee.JOIN.LEFT_OUTER,
            on=(upheld.evaluation == first.id) & (upheld.appeal_status == APPEAL_UPHELD),
        )
        .group_by(*group)
    )


def _ticket_rows(db: peewee.Database) -> peewee.Query:
    """The tickets that count (not invalid) by their deadline's day and their case's key:
    rectified, rectified on time, not rectified."""
    upheld = Ticket.appeal_status == peewee.SQL(f"'{APPEAL_UPHELD}'")  # a literal: see _ZERO
    group = _case_columns(db, Ticket.rectify_due, upheld)
    done = Ticket.rectified_at.is_null(False)
    return (
        Ticket.select(
            *group,
            *[_ZERO] * (len(FIGURE_COUNTERS) - 3),
            _count_if(done),
            _count_if(done & (Ticket.rectified_at <= Ticket.rectify_due)),
            _count_if(Ticket.rectified_at.is_null()),
        )
        .join(Case, on=(Ticket.case == Case.id))
        .where(Ticket.status != "invalid")
        .group_by(*group)
    )


def _rebuild_shapes(db: peewee.Database) -> None:
    """The finest shape from the cases and the tickets (two ``INSERT … SELECT``, the second
    adding to the rows of the first), then each coarser one as sums of the finest."""
    finest, finest_keys = FIGURE_SHAPES[-1]
    fields = [finest.day, *(getattr(finest, k) for k in finest_keys)]
    counters = [getattr(finest, c) for c in FIGURE_COUNTERS]
    finest.insert_from(_case_rows(db), fields + counters).execute()
    tickets = ("rectified", "on_time", "pending")
    update = {getattr(finest, c): getattr(peewee.EXCLUDED, c) for c in tickets}
    finest.insert_from(_ticket_rows(db), fields + counters).on_conflict(
        conflict_target=fields, update=update
    ).execute()
    for model, keys in FIGURE_SHAPES[:-1]:
        group = [finest.day, *(getattr(finest, k) for k in keys)]
        sums = [peewee.fn.SUM(c) for c in counters]
        rows = finest.select(*group, *sums).where(finest.day.is_null(False)).group_by(*group)
        targets = [model.day, *(getattr(model, k) for k in keys)]
        model.insert_from(rows, targets + [getattr(model, c) for c in FIGURE_COUNTERS]).execute()


def _month_of(db: peewee.Database, day: peewee.Node) -> peewee.Node:
    """SQL for the first day of a rollup day's month (literals: see ``_ZERO``)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        return peewee.fn.DATE(peewee.fn.DATE_TRUNC(peewee.SQL("'month'"), day)).coerce(False)
    return peewee.fn.STRFTIME(peewee.SQL("'%Y-%m-01'"), day).coerce(False)


def _rebuild_months(db: peewee.Database) -> None:
    """The month shape as sums of the coarsest day shape (the same key columns)."""
    days = FIGURE_SHAPES[0][0]
    months, keys = MONTH_SHAPE
    group = [_month_of(db, days.day), *(getattr(days, k) for k in keys)]
    sums = [peewee.fn.SUM(getattr(days, c)) for c in FIGURE_COUNTERS]
    rows = days.select(*group, *sums).group_by(*group)
    fields = [months.day, *(getattr(months, k) for k in keys)]
    months.insert_from(rows, fields + [getattr(months, c) for c in FIGURE_COUNTERS]).execute()


def rebuild_months(db: peewee.Database) -> None:
    """Recompute the month shape from the day shape (migration 15: the day shapes are kept
    already)."""
    months = MONTH_SHAPE[0]
    with db.bind_ctx([months, FIGURE_SHAPES[0][0]]), db.atomic():
        months.delete().execute()
        _rebuild_months(db)


def _ranking_rows(db: peewee.Database, role: str, target: str) -> peewee.Query:
    """The ranking sums of ``role``: citizen and callback first ratings, no upheld appeal."""
    upheld = Ticket.alias("upheld")
    rated = getattr(Evaluation, target)
    level = peewee.fn.COALESCE(rated, Evaluation.overall)
    group = [
        _local_day(db, Evaluation.created_at),
        peewee.fn.COALESCE(getattr(Evaluation, role), _ZERO),
        Evaluation.center,
        Evaluation.department,
    ]
    return (
        Evaluation.select(
            group[0],
            peewee.Value(role),
            *group[1:],
            peewee.fn.COUNT(Evaluation.id),
            peewee.fn.SUM(level),
            _count_if(levels.bad_sql(level)),
            _count_if(rated.is_null(False)),
        )
        .join(
            upheld,
            peewee.JOIN.LEFT_OUTER,
            on=(upheld.evaluation == Evaluation.id) & (upheld.appeal_status == APPEAL_UPHELD),
        )
        .where(
            (Evaluation.assess_number == 1)
            & (Evaluation.channel != DEFAULT_CHANNEL)
            & upheld.id.is_null()
        )
        .group_by(*group)
    )


def rebuild(db: peewee.Database | None = None) -> dict[str, int]:
    """Recompute every rollup from the raw rows in one transaction (``db``: a database other
    than the app's, e.g. the benchmarks'); the rows each rollup holds afterwards."""
    db = db or database.obj
    models = [*ROLLUP_MODELS, Case, Evaluation, Ticket]
    with db.bind_ctx(models), db.atomic():
        for model in ROLLUP_MODELS:
            model.delete().execute()
        _rebuild_shapes(db)
        _rebuild_months(db)
        names = ("day", "role", "staff", "center", "department", *RANKING_COUNTERS)
        fields = [getattr(RollupRanking, n) for n in names]
        for role, target in RANKED_ROLES:
            RollupRanking.insert_from(_ranking_rows(db, role, target), fields).execute()
        return {model._meta.table_name: model.select().count() for model in ROLLUP_MODELS}
