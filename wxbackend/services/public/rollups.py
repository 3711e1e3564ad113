"""Keeping the rollups of the figures (``models/rollup.py``) in step with the rows they count.

Each hook runs inside the caller's transaction and adds a delta with an upsert
(``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n``), so concurrent writers never lose
a count and a rolled-back write leaves no trace:

- :func:`case_reported` — a finished case (``cases/reports.py``);
- :func:`first_rating` — a case's first rating, every channel, and a callback superseding the
  default one (``ratings/writer.py``: defaults and callbacks go through it);
- :func:`follow_up` — a 追评 (``ratings/follow_ups.py``);
- :func:`appeal_upheld` — an upheld appeal moves the case out of staff figures and the
  rating out of the ranking (``tickets/workflow.py``);
- :func:`ticket_changed` — a 差评 ticket opened (``tickets/opening.py``) or moved by its
  workflow: the 按时整改 counters of its rectification deadline's day.

Moderation (hiding or restoring a comment) changes no figure. :func:`rebuild` recomputes every
rollup from the raw rows (``wxbackend rebuild-rollups``; the benchmarks' dataset).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import peewee

from models.case import Case
from models.evaluation import LEVELS, Evaluation
from models.rollup import (
    FIGURE_COUNTERS,
    FIGURE_SHAPES,
    MONTH_SHAPE,
    RANKING_COUNTERS,
    RollupMonth,
    RollupRanking,
)
from models.ticket import Ticket
from wxbackend.db import database, param
from wxbackend.services.ratings import levels

#: Asia/Shanghai has kept UTC+8 without daylight saving since 1991.
SHANGHAI_OFFSET = timedelta(hours=8)
#: Channels of a rating by the citizen themself and of a staff-recorded callback
#: (``wxbackend.services.public.figures``: the rest counts as the system default).
CITIZEN_CHANNELS = ("qr", "miniprogram")
CALLBACK_CHANNELS = ("phone", "sms")
DEFAULT_CHANNEL = "default"
#: Who the ranking ranks, by which target level (``wxbackend.services.admin.ranking``).
RANKED_ROLES = (("window_staff", "target_window_staff"), ("approver", "target_approver"))
APPEAL_UPHELD = "upheld"


def local_day(at: datetime) -> date:
    """The Asia/Shanghai calendar day of a naive UTC moment."""
    return (at + SHANGHAI_OFFSET).date()


def counts_as(channel: str) -> str:
    """``citizen`` (主动评价), ``callback`` (回访评价) or ``default`` (the case unrated)."""
    if channel in CITIZEN_CHANNELS:
        return "citizen"
    return "callback" if channel in CALLBACK_CHANNELS else "default"


def rating_delta(channel: str, overall: int, sign: int = 1) -> dict[str, int]:
    """The figure counters a first rating adds (``sign`` -1: takes away)."""
    if overall not in LEVELS:
        return {}
    kind = counts_as(channel)
    delta = {f"l{overall}": sign}
    delta[{"citizen": f"a{overall}", "callback": "callback", "default": "dflt"}[kind]] = sign
    return delta


# --------------------------------------------------------------------------- upserts


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


def _day_value(day: date) -> Any:
    return day if isinstance(database.obj, peewee.PostgresqlDatabase) else day.isoformat()


def _upsert_builder(model: type[peewee.Model], keys: tuple[str, ...], counters: tuple[str, ...]):
    names = ("day", *keys, *counters)

    def build(count: int = 1) -> tuple[peewee.Query, tuple[()]]:
        """The upsert of ``count`` rows, row ``r``'s column ``j`` bound to argument
        ``r * len(names) + j`` (rows of one statement must have distinct keys)."""
        width = len(names)
        rows = [
            {getattr(model, name): _p(r * width + n) for n, name in enumerate(names)}
            for r in range(count)
        ]
        update = {
            getattr(model, c): getattr(model, c) + getattr(peewee.EXCLUDED, c) for c in counters
        }
        query = model.insert_many(rows).on_conflict(
            conflict_target=[getattr(model, k) for k in ("day", *keys)], update=update
        )
        return query.returning() if database.obj.returning_clause else query, ()

    return build


_BUILDERS = {
    model: _upsert_builder(model, keys, FIGURE_COUNTERS)
    for model, keys in (*FIGURE_SHAPES, MONTH_SHAPE)
}
_BUILDERS[RollupRanking] = _upsert_builder(
    RollupRanking, ("role", "staff", "center", "department"), RANKING_COUNTERS
)


#: Per database: (model, rows) → (SQL, the argument index of each bound parameter).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The deltas a :func:`batched` block collects on this thread: model → {key: counter values}.
_PENDING = threading.local()


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Collect the rollup deltas of the block (the rating writer's transaction: the rating's,
    its ticket's) and write them at its end, one upsert per table with a row per key (the
    deltas of one key summed first). Use it inside the transaction; a block that fails writes
    nothing (its transaction rolls back). Nested blocks belong to the outermost."""
    # The order of locks, the same in every writer: the rows a block names (case, ticket),
    # then the transparency log's head, then the rollup rows, each table's in key order. A
    # writer taking a shared rollup row before the log head while another held the head and
    # waited for that row would deadlock on PostgreSQL (and the rows are the hottest of the
    # transaction: taken last, held shortest).
    if getattr(_PENDING, "rows", None) is not None:
        yield
        return
    _PENDING.rows = {}
    try:
        yield
        pending = _PENDING.rows
    finally:
        _PENDING.rows = None
    for model in sorted(pending, key=lambda m: m._meta.table_name):
        by_key = pending[model]
        ordered = sorted(by_key.items(), key=lambda kv: [(v is None, str(v)) for v in kv[0]])
        rows = [[*key, *values] for key, values in ordered if any(values)]
        if rows:
            _upsert(model, rows)


def _bump(model: type[peewee.Model], key: list[Any], values: list[int]) -> None:
    """Add ``values`` at ``key`` of the model's rollup: now, or at the end of the thread's
    :func:`batched` block."""
    pending = getattr(_PENDING, "rows", None)
    if pending is None:
        _upsert(model, [key + values])
        return
    by_key = pending.setdefault(model, {})
    before = by_key.get(tuple(key))
    if before is not None:
        values = [a + b for a, b in zip(before, values, strict=True)]
    by_key[tuple(key)] = values


def _upsert(model: type[peewee.Model], rows: list[list[Any]]) -> None:
    """Run the model's upsert of ``rows`` (key then counters, distinct keys), compiled once
    per database and row count; arguments bound by position, not looked up by placeholder."""
    per_db = _COMPILED.setdefault(database.obj, {})
    entry = per_db.get((model, len(rows)))
    if entry is None:
        sql, params = _BUILDERS[model](len(rows))[0].sql()
        placeholders = {param(n): n for n in range(len(params))}
        entry = per_db[(model, len(rows))] = (sql, [placeholders[p] for p in params])
    sql, positions = entry
    args = [value for row in rows for value in row]
    database.execute_sql(sql, [args[i] for i in positions])


def case_key(case: Any, upheld: bool = False) -> dict[str, Any]:
    """The rollup key of a case (a :class:`Case` or a row with its columns)."""
    return {
        "day": local_day(case.completed_at),
        "center": case.center_id,
        "item": case.item_id,
        "department": case.department_id,
        "window_staff": case.window_staff_id or 0,
        "approver": case.approver_id or 0,
        "upheld": int(upheld),
    }


def bump_figures(key: Mapping[str, Any], delta: Mapping[str, int], *, staff_only: bool = False):
    """Add ``delta`` (counter → change) to every figure shape and the month shape at ``key``
    (only the finest one, the one that keeps ``upheld`` apart, with ``staff_only``)."""
    if not any(delta.values()):
        return
    values = [delta.get(c, 0) for c in FIGURE_COUNTERS]
    for model, keys in FIGURE_SHAPES[-1:] if staff_only else (*FIGURE_SHAPES, MONTH_SHAPE):
        day = key["day"].replace(day=1) if model is RollupMonth else key["day"]
        _bump(model, [_day_value(day), *(key[k] for k in keys)], values)


def bump_ranking(
    refs: Any, at: datetime, overall: int, targets: Mapping[str, int | None], sign: int
) -> None:
    """Add (``sign`` 1) or take away (-1) a citizen or callback first rating in the ranking
    sums of both roles: its day, person (0: none), center and department."""
    for role, target in RANKED_ROLES:
        rated = targets.get(target)
        level = rated if rated is not None else overall
        person = getattr(refs, f"{role}_id") or 0
        key = [_day_value(local_day(at)), role, person, refs.center_id, refs.department_id]
        values = [sign, sign * level, sign * levels.is_bad(level), sign * (rated is not None)]
        _bump(RollupRanking, key, values)


# --------------------------------------------------------------------------- the hooks


def case_reported(case: Case) -> None:
    """A finished case joins its day's cohort (in the transaction that stores it)."""
    bump_figures(case_key(case), {"finished": 1})


def first_rating(
    case: Any,
    channel: str,
    overall: int,
    targets: Mapping[str, int | None],
    at: datetime,
    superseded_level: int | None = None,
) -> None:
    """A case's first rating (in the writer's transaction); ``superseded_level``: the level of
    the default rating a callback replaces in place."""
    delta = rating_delta(channel, overall)
    if superseded_level is not None:
        for counter, change in rating_delta(DEFAULT_CHANNEL, superseded_level, -1).items():
            delta[counter] = delta.get(counter, 0) + change
    bump_figures(case_key(case), delta)
    if channel != DEFAULT_CHANNEL:
        bump_ranking(case, at, overall, targets, 1)


def _upheld(case_id: int) -> bool:
    return (
        Ticket.select()
        .join(Evaluation, on=(Ticket.evaluation == Evaluation.id))
        .where(
            (Ticket.case == case_id)
            & (Ticket.appeal_status == APPEAL_UPHELD)
            & (Evaluation.assess_number == 1)
        )
        .exists()
    )


def follow_up(case_id: int) -> None:
    """A follow-up (追评) of the case (in its transaction)."""
    case = Case.get_by_id(case_id)
    bump_figures(case_key(case, _upheld(case_id)), {"follow_ups": 1})


def appeal_upheld(evaluation_id: int) -> None:
    """The appeal of the 差评 ``evaluation_id`` (a first rating) was upheld: its case leaves
    the staff figures (moved to ``upheld``) and the rating leaves the ranking."""
    rating = Evaluation.get_by_id(evaluation_id)
    case = Case.get_by_id(rating.case_id)
    moved = {"finished": 1, **rating_delta(rating.channel, rating.overall)}
    follow_ups = (
        Evaluation.select()
        .where((Evaluation.case == case.id) & (Evaluation.assess_number == 2))
        .exists()
    )
    moved["follow_ups"] = int(follow_ups)
    bump_figures(case_key(case), {c: -n for c, n in moved.items()}, staff_only=True)
    bump_figures(case_key(case, True), moved, staff_only=True)
    if rating.channel != DEFAULT_CHANNEL:
        targets = {target: getattr(rating, target) for _, target in RANKED_ROLES}
        bump_ranking(rating, rating.created_at, rating.overall, targets, -1)


def ticket_counts(status: str, rectify_due: datetime, rectified_at: datetime | None) -> dict:
    """The 按时整改 counters of one ticket: an invalid one counts nowhere; a rectified one is
    due (on time or not); the others are ``pending`` (due once their deadline passed)."""
    if status == "invalid":
        return {}
    if rectified_at is None:
        return {"pending": 1}
    return {"rectified": 1, "on_time": int(rectified_at <= rectify_due)}


def ticket_changed(case: Any, before: Ticket | None, changes: Mapping[str, Any]) -> None:
    """A ticket of ``case`` opened (``before`` None, ``changes`` its columns) or changed from
    ``before`` by ``changes`` (in the same transaction): its counts move to its new state."""
    old = {} if before is None else before.__data__
    new = {**old, **changes}
    for state, sign in ((old, -1), (new, 1)):
        if not state:
            continue
        counts = ticket_counts(state["status"], state["rectify_due"], state.get("rectified_at"))
        key = case_key(case, state.get("appeal_status") == APPEAL_UPHELD)
        key["day"] = local_day(state["rectify_due"])
        bump_figures(key, {counter: sign * n for counter, n in counts.items()})
