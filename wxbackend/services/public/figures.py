"""The satisfaction figures (满意度统计) of product.md rule 10, by SQL aggregation.

- :func:`tallies` and :func:`figures` — the counts and rates, optionally grouped by a
  catalogue column or by day; the admin statistics (``wxbackend.services.admin.stats``) reuse
  them, with follow-ups, rectification and the upheld-appeal exclusion of staff figures
  (``extended``, ``Scope.exclude_upheld``).
- :func:`stats_public` — the figures of the public page for one scope (cached by
  :mod:`.stats_cache`).

Default ratings (channel ``default``) are ratings too: counted, except in the 主动评价好评率.
What counts as satisfied or 差评 is ``wxbackend.services.ratings.levels``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.catalog import Center, ServiceItem
from models.evaluation import LEVELS, Evaluation
from models.ticket import Ticket
from wxbackend.db import database
from wxbackend.services.common import query_args
from wxbackend.services.public.listing import code_id
from wxbackend.services.ratings import levels

RATE_DIGITS = 4
STATS_PARAMETERS = ("center", "item", "from", "to")


@dataclass(frozen=True)
class Scope:
    """What the figures cover: catalogue ids and a time range ``[start, end)`` (naive UTC).

    The range applies to ``created_at`` of ratings and ``completed_at`` of cases.
    ``empty`` marks a filter that matches nothing (an unknown code).
    """

    center_id: int | None = None
    item_id: int | None = None
    department_id: int | None = None
    window_staff_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    empty: bool = False
    exclude_upheld: bool = False  # staff figures: leave out ratings with an upheld appeal


@dataclass(frozen=True)
class StatsQuery:
    center: str | None = None
    item: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def parse_stats_query(args: Mapping[str, str | None]) -> StatsQuery:
    """``center, item, from, to`` (dates in Asia/Shanghai, both inclusive)."""
    start, end = query_args.day_range(args.get("from"), args.get("to"))
    return StatsQuery(
        center=query_args.text(args.get("center"), "center"),
        item=query_args.text(args.get("item"), "item"),
        start=start,
        end=end,
    )


@dataclass
class Tally:
    """Counts behind the figures of one group: first ratings per level (all, and without
    default ratings), finished cases and the unrated ones among them; with ``extended``
    (the admin statistics) also follow-ups and the rectification deadlines of 差评 tickets."""

    by_level: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    active_by_level: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    finished_cases: int = 0
    unrated_cases: int = 0
    follow_ups: int = 0
    rectification_due: int = 0
    rectified_on_time: int = 0


#: What :func:`tallies` groups by: a catalogue column of both Evaluation and Case, or
#: ``day`` (the Asia/Shanghai calendar day of the rating / of the case's completion).
GROUP_COLUMNS = ("center", "item", "department", "window_staff", "approver", "day")
#: Asia/Shanghai has kept UTC+8 without daylight saving since 1991.
SHANGHAI_OFFSET_HOURS = 8


def _rate(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places; 0.0 when there is nothing to divide."""
    return round(part / whole, RATE_DIGITS) if whole else 0.0


def figures(tally: Tally) -> dict[str, Any]:
    """product.md rule 10 from a :class:`Tally`.

    满意率 = satisfied ratings / all ratings; 差评率 = 差评 / all; 主动评价好评率 = satisfied /
    non-default ratings (which levels are which: ``levels.GOOD_LEVELS``, ``levels.BAD_LEVELS``);
    未评价率 = finished cases with no rating / finished cases. Rates are floats rounded to 4
    places, 0.0 when their denominator is 0.
    """
    total = sum(tally.by_level.values())
    active = sum(tally.active_by_level.values())
    return {
        "total": total,
        "by_level": {str(level): tally.by_level[level] for level in LEVELS},
        "satisfaction_rate": _rate(sum(tally.by_level[lv] for lv in levels.GOOD_LEVELS), total),
        "bad_rate": _rate(sum(tally.by_level[lv] for lv in levels.BAD_LEVELS), total),
        "active_good_rate": _rate(
            sum(tally.active_by_level[lv] for lv in levels.GOOD_LEVELS), active
        ),
        "unrated_rate": _rate(tally.unrated_cases, tally.finished_cases),
        "active_total": active,
        "finished_cases": tally.finished_cases,
        "unrated_cases": tally.unrated_cases,
    }


def _scope_where(model: type[peewee.Model], time_column: peewee.Field, scope: Scope) -> list:
    where = []
    for name, value in (
        ("center", scope.center_id),
        ("item", scope.item_id),
        ("department", scope.department_id),
        ("window_staff", scope.window_staff_id),
    ):
        if value is not None:
            where.append(getattr(model, name) == value)
    if scope.start is not None:
        where.append(time_column >= scope.start)
    if scope.end is not None:
        where.append(time_column < scope.end)
    return where


def shanghai_day(column: peewee.Field) -> peewee.Node:
    """SQL for the Asia/Shanghai calendar day of a stored (naive UTC) time column.

    SQLite answers a ``'YYYY-MM-DD'`` string, PostgreSQL a date (see :func:`day_key`).
    """
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        shifted = column + peewee.SQL(f"INTERVAL '{SHANGHAI_OFFSET_HOURS} hours'")
        return peewee.fn.DATE(shifted).coerce(False)
    return peewee.fn.DATE(column, f"+{SHANGHAI_OFFSET_HOURS} hours").coerce(False)


def day_key(value: Any) -> str:
    """A ``day`` group key as ``YYYY-MM-DD`` whatever the database answered."""
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value)


def _group(model: type[peewee.Model], time_column: peewee.Field, group_by: str | None) -> list:
    if group_by is None:
        return []
    if group_by == "day":
        return [shanghai_day(time_column)]
    return [getattr(model, group_by)]


def _key(row: tuple, group_by: str | None) -> Any:
    if group_by is None:
        return None
    return day_key(row[0]) if group_by == "day" and row[0] is not None else row[0]


def not_upheld() -> peewee.Expression:
    """Ratings whose 差评 ticket has no upheld appeal (申诉成立): staff figures leave those out."""
    upheld = Ticket.select(Ticket.evaluation).where(Ticket.appeal_status == "upheld")
    return Evaluation.id.not_in(upheld)


def tallies(
    scope: Scope,
    group_by: str | None = None,
    *,
    extended: bool = False,
    now: datetime | None = None,
) -> dict[Any, Tally]:
    """The counts of ``scope``, by SQL aggregation; keyed by the ``group_by`` column's id
    (one of :data:`GROUP_COLUMNS`; ``day`` keys are ``YYYY-MM-DD``) or by None when not
    grouped.

    Ratings: first ratings (``assess_number`` 1) created in the range, ``GROUP BY overall``;
    with ``scope.exclude_upheld`` those whose ticket's appeal was upheld are left out.
    Cases: finished (``completed_at``) in the range; unrated = ``first_rated_at IS NULL``.
    With ``extended``: follow-ups (``assess_number`` 2) created in the range, and the
    rectification of the tickets of ratings created in the range (see :func:`_tickets`).
    """
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise ValueError(f"cannot group by {group_by!r}")
    result: dict[Any, Tally] = defaultdict(Tally)
    if scope.empty:
        return result
    e_group = _group(Evaluation, Evaluation.created_at, group_by)
    is_default = peewee.Case(None, [(Evaluation.channel == "default", 1)], 0)
    rated_in_scope = _scope_where(Evaluation, Evaluation.created_at, scope)
    if scope.exclude_upheld:
        rated_in_scope.append(not_upheld())
    ratings = (
        Evaluation.select(
            *e_group,
            Evaluation.overall,
            peewee.fn.COUNT(Evaluation.id),
            peewee.fn.SUM(is_default),
        )
        .where(Evaluation.assess_number == 1, *rated_in_scope)
        .group_by(*e_group, Evaluation.overall)
        .tuples()
    )
    for row in ratings:
        key = _key(row, group_by)
        level, count, defaults = row[-3:]
        if level in result[key].by_level:
            result[key].by_level[level] += count
            result[key].active_by_level[level] += count - (defaults or 0)
    c_group = _group(Case, Case.completed_at, group_by)
    unrated = peewee.Case(None, [(Case.first_rated_at.is_null(), 1)], 0)
    cases = (
        Case.select(*c_group, peewee.fn.COUNT(Case.id), peewee.fn.SUM(unrated))
        .where(Case.completed_at.is_null(False), *_scope_where(Case, Case.completed_at, scope))
        .group_by(*c_group)
        .tuples()
    )
    for row in cases:
        key = _key(row, group_by)
        result[key].finished_cases += row[-2]
        result[key].unrated_cases += row[-1] or 0
    if extended:
        _follow_ups(result, scope, group_by, e_group)
        _tickets(result, scope, group_by, e_group, now or utcnow())
    return result


def _follow_ups(result: dict[Any, Tally], scope: Scope, group_by: str | None, group: list) -> None:
    """追评 (``assess_number`` 2) created in the range, counted by their own time and group."""
    rows = (
        Evaluation.select(*group, peewee.fn.COUNT(Evaluation.id))
        .where(
            Evaluation.assess_number == 2,
            *_scope_where(Evaluation, Evaluation.created_at, scope),
        )
        .group_by(*group)
        .tuples()
    )
    for row in rows:
        result[_key(row, group_by)].follow_ups += row[-1]


def _tickets(
    result: dict[Any, Tally], scope: Scope, group_by: str | None, group: list, now: datetime
) -> None:
    """On-time rectification (按时整改) of the 差评 tickets of ratings created in the range.

    Due: tickets not ``invalid`` (an invalid or upheld 差评 needs no rectification) that are
    rectified (``rectified_at`` set) or whose ``rectify_due`` has passed (``< now``); tickets
    still inside their deadline and not rectified are not decided yet and count nowhere.
    On time: due tickets with ``rectified_at <= rectify_due``.
    """
    on_time = peewee.Case(
        None,
        [
            (
                Ticket.rectified_at.is_null(False) & (Ticket.rectified_at <= Ticket.rectify_due),
                1,
            )
        ],
        0,
    )
    where = _scope_where(Evaluation, Evaluation.created_at, scope)
    if scope.exclude_upheld:
        where.append((Ticket.appeal_status.is_null()) | (Ticket.appeal_status != "upheld"))
    rows = (
        Ticket.select(*group, peewee.fn.COUNT(Ticket.id), peewee.fn.SUM(on_time))
        .join(Evaluation, on=(Ticket.evaluation == Evaluation.id))
        .where(
            Ticket.status != "invalid",
            Ticket.rectified_at.is_null(False) | (Ticket.rectify_due < now),
            *where,
        )
        .group_by(*group)
        .tuples()
    )
    for row in rows:
        tally = result[_key(row, group_by)]
        tally.rectification_due += row[-2]
        tally.rectified_on_time += row[-1] or 0


def resolve_scope(query: StatsQuery) -> Scope:
    """Catalogue codes → ids; an unknown code gives an empty scope (all figures 0)."""
    center_id = code_id(Center, Center.code, query.center)
    item_id = code_id(ServiceItem, ServiceItem.code, query.item)
    return Scope(
        center_id=center_id,
        item_id=item_id,
        start=query.start,
        end=query.end,
        empty=-1 in (center_id, item_id),
    )


def stats_public(query: StatsQuery) -> dict[str, Any]:
    """The figures of the public page for one scope."""
    return figures(tallies(resolve_scope(query)).get(None, Tally()))
