"""The satisfaction figures (满意度统计) of product.md rule 10, by SQL aggregation.

The one place the figures are defined: the public page, the admin statistics
(``wxbackend.services.admin.stats``) and the export all read them here.

- :func:`tallies` and :func:`figures` — the counts and rates, optionally grouped by a
  catalogue column or by day; the admin statistics add follow-ups and the upheld-appeal
  exclusion of staff figures (``extended``, ``Scope.exclude_upheld``).
- :func:`stats_public` — the figures of the public page for one scope (cached by
  :mod:`.stats_cache`).

The counts come from the rollups (``models/rollup.py``, kept by every writer in its own
transaction: ``wxbackend.services.public.rollups``) whenever the range is made of whole
Asia/Shanghai days — every request's is — so a computation reads O(days × groups) rows (by
center or overall: the whole past months from the month shape, the days at each end); other
ranges are counted from the cases, ratings and tickets themselves.

A period selects **cases by completion day** (Asia/Shanghai) and counts their first ratings,
so numerators and denominators cover the same cases. Default ratings (channel ``default``)
count in 满意率 and 差评率 but are no citizen rating: the case counts as unrated. A rate with
nothing to divide by is None (JSON ``null``, shown "—"). What counts as satisfied or 差评 is
``wxbackend.services.ratings.levels``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.catalog import Center, ServiceItem
from models.evaluation import LEVELS, Evaluation
from models.rollup import FIGURE_COUNTERS, FIGURE_SHAPES, RollupMonth
from models.ticket import Ticket
from wxbackend.db import database
from wxbackend.services.common import query_args
from wxbackend.services.public.listing import code_id
from wxbackend.services.public.rollups import counts_as
from wxbackend.services.ratings import levels

RATE_DIGITS = 4
STATS_PARAMETERS = ("center", "item", "from", "to")


@dataclass(frozen=True)
class Scope:
    """What the figures cover: catalogue ids and a time range ``[start, end)`` (naive UTC).

    The range applies to ``completed_at`` of cases and ``rectify_due`` of tickets.
    ``empty`` marks a filter that matches nothing (an unknown code).
    """

    center_id: int | None = None
    item_id: int | None = None
    department_id: int | None = None
    window_staff_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    empty: bool = False
    exclude_upheld: bool = False  # staff figures: leave out cases with an upheld appeal


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
    """Counts behind the figures of one group's cohort: the cases finished in the period and
    their first ratings per level (every channel, and the citizens' own), the callback and
    default ones, their follow-ups (``extended``), and the 差评 tickets whose rectification
    fell due in the period."""

    by_level: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    active_by_level: dict[int, int] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0))
    finished_cases: int = 0
    callback_cases: int = 0
    default_cases: int = 0
    follow_ups: int = 0
    rectification_due: int = 0
    rectified_on_time: int = 0

    @property
    def unrated_cases(self) -> int:
        """Finished cases without a citizen or callback rating (a default is no rating)."""
        return self.finished_cases - sum(self.active_by_level.values()) - self.callback_cases


#: What :func:`tallies` groups by: a catalogue column of the case (and of its ticket), or
#: ``day`` (the Asia/Shanghai calendar day of the case's completion / of a ticket's
#: rectification deadline).
GROUP_COLUMNS = ("center", "item", "department", "window_staff", "approver", "day")
#: Asia/Shanghai has kept UTC+8 without daylight saving since 1991.
SHANGHAI_OFFSET_HOURS = 8
SHANGHAI_OFFSET = timedelta(hours=SHANGHAI_OFFSET_HOURS)


def rate(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to 4 places; None (shown "—") when ``whole`` is 0."""
    return round(part / whole, RATE_DIGITS) if whole else None


def figures(tally: Tally) -> dict[str, Any]:
    """product.md rule 10 from a :class:`Tally` (which levels are satisfied or 差评:
    ``levels.GOOD_LEVELS`` / ``levels.BAD_LEVELS``).

    Over the cases finished in the period: 满意率 = rated at a good level / rated (every
    channel, defaults included); 差评率 = rated at a 差评 level / rated; 主动评价率 = rated by
    the citizen (:data:`CITIZEN_CHANNELS`) / finished; 主动评价好评率 = good among
    citizen-rated / citizen-rated; 未评价率 = no citizen or callback rating / finished;
    按时整改率 = tickets rectified by their deadline / tickets due in the period. Rates are
    rounded to 4 places, None when their denominator is 0.
    """
    total = sum(tally.by_level.values())
    active = sum(tally.active_by_level.values())
    return {
        "total": total,
        "by_level": {str(level): tally.by_level[level] for level in LEVELS},
        "satisfaction_rate": rate(sum(tally.by_level[lv] for lv in levels.GOOD_LEVELS), total),
        "bad_rate": rate(sum(tally.by_level[lv] for lv in levels.BAD_LEVELS), total),
        "active_rate": rate(active, tally.finished_cases),
        "active_good_rate": rate(
            sum(tally.active_by_level[lv] for lv in levels.GOOD_LEVELS), active
        ),
        "unrated_rate": rate(tally.unrated_cases, tally.finished_cases),
        "on_time_rectification_rate": rate(tally.rectified_on_time, tally.rectification_due),
        "active_total": active,
        "finished_cases": tally.finished_cases,
        "unrated_cases": tally.unrated_cases,
        "rectification_due": tally.rectification_due,
        "rectified_on_time": tally.rectified_on_time,
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


def _group(time_column: peewee.Field, group_by: str | None) -> list:
    if group_by is None:
        return []
    if group_by == "day":
        return [shanghai_day(time_column)]
    return [getattr(Case, group_by)]


def _key(row: tuple, group_by: str | None) -> Any:
    if group_by is None:
        return None
    return day_key(row[0]) if group_by == "day" and row[0] is not None else row[0]


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

    The cohort: cases completed in the range (``case.completed_at`` index), each with its
    first rating (``assess_number`` 1, through the unique (case, assess_number) index) and,
    with ``extended``, its follow-up (追评); with ``scope.exclude_upheld`` the cases whose
    first rating's appeal was upheld are left out. Tickets: see :func:`_tickets`.
    """
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise ValueError(f"cannot group by {group_by!r}")
    result: dict[Any, Tally] = defaultdict(Tally)
    if scope.empty:
        return result
    now = now or utcnow()
    if not _from_rollups(result, scope, group_by, extended, now):
        _from_rows(result, scope, group_by, extended)
        _tickets(result, scope, group_by, now)
    return result


def _from_rows(
    result: dict[Any, Tally], scope: Scope, group_by: str | None, extended: bool
) -> None:
    """The cohort's counts from the cases and ratings themselves (a range not made of whole
    days; the rollups are the same counts, kept by day)."""
    group = _group(Case.completed_at, group_by)
    joined = Evaluation.case == Case.id
    if not extended:
        joined &= Evaluation.assess_number == 1
    where = [Case.completed_at.is_null(False), *_scope_where(Case, Case.completed_at, scope)]
    if scope.exclude_upheld:
        upheld = (
            Ticket.select(Ticket.case)
            .join(Evaluation, on=(Ticket.evaluation == Evaluation.id))
            .where(Ticket.appeal_status == "upheld", Evaluation.assess_number == 1)
        )
        where.append(Case.id.not_in(upheld))
    rows = (
        Case.select(
            *group,
            Evaluation.assess_number,
            Evaluation.channel,
            Evaluation.overall,
            peewee.fn.COUNT(Case.id),
        )
        .join(Evaluation, peewee.JOIN.LEFT_OUTER, on=joined)
        .where(*where)
        .group_by(*group, Evaluation.assess_number, Evaluation.channel, Evaluation.overall)
        .tuples()
    )
    for row in rows:
        _count(result[_key(row, group_by)], *row[-4:])


def _whole_day(moment: datetime | None) -> bool:
    return moment is None or (moment + SHANGHAI_OFFSET).time() == time(0)


def _from_rollups(
    result: dict[Any, Tally], scope: Scope, group_by: str | None, extended: bool, now: datetime
) -> bool:
    """The cohort's and the tickets' counts from the coarsest rollup whose key holds every
    column the scope filters or groups by (``models/rollup.py``): O(days × groups), plus the
    tickets not rectified whose deadline falls today before ``now`` (a day the rollups cannot
    split). False when the range is not made of whole Asia/Shanghai days (then
    :func:`_from_rows` and :func:`_tickets` count)."""
    if not (_whole_day(scope.start) and _whole_day(scope.end)):
        return False
    filters = {
        "center": scope.center_id,
        "item": scope.item_id,
        "department": scope.department_id,
        "window_staff": scope.window_staff_id,
    }
    needed = {name for name, value in filters.items() if value is not None}
    needed |= {"upheld"} if scope.exclude_upheld else set()
    needed |= {group_by} if group_by not in (None, "day") else set()
    model, _ = next((m, keys) for m, keys in FIGURE_SHAPES if needed <= set(keys))
    today = (now + SHANGHAI_OFFSET).date()
    first, last = ((m + SHANGHAI_OFFSET).date() if m else None for m in (scope.start, scope.end))
    parts = [(model, first, last)]
    months = month_split(first, last, today)
    if model is FIGURE_SHAPES[0][0] and group_by != "day" and months:
        low, high = months  # the whole months from the month shape, the days at each end
        parts = [(RollupMonth, low, high), (model, high, last)]
        parts += [(model, first, low)] if low is not None else []
    for part, since, until in parts:
        if since is None or until is None or since < until:
            where = [getattr(part, n) == v for n, v in filters.items() if v is not None]
            where += [part.upheld == 0] if scope.exclude_upheld else []
            where += [part.day >= since] if since is not None else []
            where += [part.day < until] if until is not None else []
            _add_rollup_rows(result, part, where, group_by, today, extended)
    today_start = datetime.combine(today, time(0)) - SHANGHAI_OFFSET
    _tickets(result, scope, group_by, now, pending_since=today_start)
    return True


def month_split(first: date | None, last: date | None, today: date) -> tuple | None:
    """The whole months ``[low, high)`` (first days; ``low`` None: since the beginning) of the
    days ``[first, last)`` (None: unbounded) that ended before ``today``'s month began (the
    month shape cannot tell a pending ticket due before today from one due later); None when
    there is no such month."""
    low = first if first is None or first.day == 1 else _next_month(first)
    high = min(last or today, today).replace(day=1)
    return None if low is not None and low >= high else (low, high)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _add_rollup_rows(
    result: dict[Any, Tally],
    model: type[peewee.Model],
    where: list,
    group_by: str | None,
    today: date,
    extended: bool,
) -> None:
    """Add the sums of one rollup's rows matching ``where`` to their groups' tallies."""
    group = [] if group_by is None else [getattr(model, group_by)]
    sums = [peewee.fn.SUM(getattr(model, c)) for c in FIGURE_COUNTERS]
    passed = peewee.fn.SUM(peewee.Case(None, [(model.day < today, model.pending)], 0))
    counted = (sums[0] > 0) | (sums[FIGURE_COUNTERS.index("rectified")] > 0) | (passed > 0)
    query = model.select(*group, *sums, passed).group_by(*group).having(counted).tuples()
    for row in query.where(*where) if where else query:
        counts = dict(zip((*FIGURE_COUNTERS, "passed"), row[len(group) :], strict=True))
        key = None if group_by is None else row[0]
        if group_by == "day":
            key = day_key(key)
        elif group_by is not None and not key:
            key = None  # no clerk / approver
        _add(result[key], counts, extended)


def _add(tally: Tally, counts: dict[str, int], extended: bool) -> None:
    """Add one group's rollup sums to its tally."""
    tally.finished_cases += counts["finished"]
    for level in LEVELS:
        tally.by_level[level] += counts[f"l{level}"]
        tally.active_by_level[level] += counts[f"a{level}"]
    tally.callback_cases += counts["callback"]
    tally.default_cases += counts["dflt"]
    tally.rectification_due += counts["rectified"] + counts["passed"]
    tally.rectified_on_time += counts["on_time"]
    if extended:
        tally.follow_ups += counts["follow_ups"]


def _count(tally: Tally, assess_number: int | None, channel: str, level: int, n: int) -> None:
    """Add one aggregated row of the cohort (a case without a rating: ``assess_number`` None)."""
    if assess_number == 2:
        tally.follow_ups += n
        return
    tally.finished_cases += n
    if assess_number is None or level not in tally.by_level:
        return
    tally.by_level[level] += n
    kind = counts_as(channel)
    if kind == "citizen":
        tally.active_by_level[level] += n
    elif kind == "callback":
        tally.callback_cases += n
    else:
        tally.default_cases += n


def _tickets(
    result: dict[Any, Tally],
    scope: Scope,
    group_by: str | None,
    now: datetime,
    pending_since: datetime | None = None,
) -> None:
    """按时整改: the 差评 tickets whose rectification fell due in the range (``rectify_due``
    index), grouped by their case's column or the Shanghai day of the deadline; with
    ``pending_since``, only the ones not rectified whose deadline passed since then.

    Due: not ``invalid`` (an invalid 差评 needs no rectification), ``rectify_due`` in the
    range and either passed (``< now``) or already rectified; a ticket inside its deadline
    and not rectified is not decided yet. On time: ``rectified_at <= rectify_due``. With
    ``scope.exclude_upheld`` tickets whose appeal was upheld are left out.
    """
    on_time = peewee.Case(
        None,
        [(Ticket.rectified_at.is_null(False) & (Ticket.rectified_at <= Ticket.rectify_due), 1)],
        0,
    )
    group = _group(Ticket.rectify_due, group_by)
    where = _scope_where(Case, Ticket.rectify_due, scope)
    if scope.exclude_upheld:
        where.append(Ticket.appeal_status.is_null() | (Ticket.appeal_status != "upheld"))
    if pending_since is not None:
        where += [Ticket.rectified_at.is_null(), Ticket.rectify_due >= pending_since]
    rows = (
        Ticket.select(*group, peewee.fn.COUNT(Ticket.id), peewee.fn.SUM(on_time))
        .join(Case, on=(Ticket.case == Case.id))
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
