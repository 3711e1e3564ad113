"""The public record (公开): the list of ratings and the satisfaction figures.

Everything here is readable without login, so nothing personal ever leaves: a citizen appears
only as ``name_masked`` (黎**); no openid, ID number, phone or full name, no user or case id.

- :func:`list_public` — first ratings (``assess_number`` 1), newest first, keyset pagination
  on the id (``WHERE id < last``, never OFFSET), so a page costs the same at any depth and
  inserts never shift a page. Related rows are loaded per page with one IN query each.
- :func:`public_shapes` — the public shape of ratings (also published live, see realtime.py).
- :func:`tallies` and :func:`figures` — the figures of product.md rule 10 by SQL aggregation,
  optionally grouped by a catalogue column or by day; the admin statistics
  (``wxbackend.services.stats``) reuse them, with follow-ups, rectification and the
  upheld-appeal exclusion of staff figures (``extended``, ``Scope.exclude_upheld``).

A comment held for review or hidden withholds only its text (``comment: null``); the rating
stays in the list and in every figure. Default ratings (channel ``default``) are ratings too:
listed (``name_masked: null``) and counted, except in the 主动评价好评率.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.catalog import Center, ServiceItem, Staff
from models.evaluation import (
    LEVELS,
    STAGES,
    TARGETS,
    Evaluation,
    EvaluationIndicator,
    Indicator,
    Like,
    Reply,
)
from models.ticket import Ticket
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.timefmt import SHANGHAI, iso

DEFAULT_LIMIT = 20
MAX_LIMIT = 50
LIKERS_SHOWN = 10
GOOD_LEVELS = (3, 4, 5)  # 满意 (incl. 基本满意)
BAD_LEVELS = (1, 2)  # 差评
RATE_DIGITS = 4
_MAX_ID = 2**63 - 1
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT = re.compile(r"[0-9]{1,4}")
LIST_PARAMETERS = ("center", "item", "staff", "level", "cursor", "limit")
STATS_PARAMETERS = ("center", "item", "from", "to")


# --------------------------------------------------------------------------- query parsing


def _invalid(name: str, message: str) -> errors.ContractError:
    return errors.InvalidQuery(message, parameter=name)


def _text(args: Mapping[str, str | None], name: str) -> str | None:
    """A query parameter; absent and empty (``center=``) both mean "no filter"."""
    value = args.get(name)
    if value is None or value == "":
        return None
    if len(value) > 64:
        raise _invalid(name, f"Parameter {name} is too long.")
    return value


def _int_in(args: Mapping[str, str | None], name: str, low: int, high: int) -> int | None:
    value = _text(args, name)
    if value is None:
        return None
    if not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise _invalid(name, f"Parameter {name} must be an integer from {low} to {high}.")
    return int(value)


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of a page: URL-safe base64 of the last id shown."""
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The last id shown, from a cursor of :func:`encode_cursor` (400 ``invalid_query``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise _invalid("cursor", "The cursor is not valid.") from None
    if not raw.isdigit() or not 0 < int(raw) <= _MAX_ID or encode_cursor(int(raw)) != cursor:
        raise _invalid("cursor", "The cursor is not valid.")
    return int(raw)


@dataclass(frozen=True)
class ListQuery:
    """Filters of the public list (catalogue codes, as the public page knows them)."""

    center: str | None = None
    item: str | None = None
    staff: str | None = None  # a window clerk's staff_no
    level: int | None = None
    before_id: int | None = None  # from the cursor
    limit: int = DEFAULT_LIMIT


def parse_list_query(args: Mapping[str, str | None]) -> ListQuery:
    """``center, item, staff, level (1–5), cursor, limit (1–50, default 20)``; others ignored."""
    cursor = _text(args, "cursor")
    limit = _int_in(args, "limit", 1, MAX_LIMIT)
    return ListQuery(
        center=_text(args, "center"),
        item=_text(args, "item"),
        staff=_text(args, "staff"),
        level=_int_in(args, "level", LEVELS[0], LEVELS[-1]),
        before_id=decode_cursor(cursor) if cursor is not None else None,
        limit=limit if limit is not None else DEFAULT_LIMIT,
    )


def _parse_day(args: Mapping[str, str | None], name: str) -> date | None:
    value = _text(args, name)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(name, f"Parameter {name} must be a date YYYY-MM-DD.") from None


def day_start_utc(day: date) -> datetime:
    """Midnight of ``day`` in Asia/Shanghai, as the naive UTC the database stores."""
    local = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    return local.astimezone(UTC).replace(tzinfo=None)


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
    first = _parse_day(args, "from")
    last = _parse_day(args, "to")
    if first and last and first > last:
        raise _invalid("from", "Parameter from is after to.")
    return StatsQuery(
        center=_text(args, "center"),
        item=_text(args, "item"),
        start=day_start_utc(first) if first else None,
        end=day_start_utc(last + timedelta(days=1)) if last else None,
    )


# --------------------------------------------------------------------------- the list


def _code_id(model: type[peewee.Model], column: peewee.Field, code: str | None) -> int | None:
    """The id of a catalogue row by its code; ``-1`` (matches nothing) when unknown."""
    if code is None:
        return None
    found = model.select(model.id).where(column == code).scalar()
    return found if found is not None else -1


def list_public(query: ListQuery) -> dict[str, Any]:
    """One page of the public list: ``{items, next_cursor}`` (``next_cursor`` null at the end)."""
    rows = Evaluation.select().where(Evaluation.assess_number == 1)
    for column, model, code_column, code in (
        (Evaluation.center, Center, Center.code, query.center),
        (Evaluation.item, ServiceItem, ServiceItem.code, query.item),
        (Evaluation.window_staff, Staff, Staff.staff_no, query.staff),
    ):
        found = _code_id(model, code_column, code)
        if found == -1:
            return {"items": [], "next_cursor": None}
        if found is not None:
            rows = rows.where(column == found)
    if query.level is not None:
        rows = rows.where(Evaluation.overall == query.level)
    if query.before_id is not None:
        rows = rows.where(Evaluation.id < query.before_id)
    page = list(rows.order_by(Evaluation.id.desc()).limit(query.limit + 1))
    more = len(page) > query.limit
    page = page[: query.limit]
    return {
        "items": public_shapes(page),
        "next_cursor": encode_cursor(page[-1].id) if more else None,
    }


async def public_evaluations(ctx: Context, args: Mapping[str, str | None]) -> dict[str, Any]:
    """``GET /api/v1/public/evaluations``."""
    return await ctx.db.run(list_public, parse_list_query(args))


# --------------------------------------------------------------------------- the public shape


def _levels(evaluation: Evaluation, prefix: str, names: Iterable[str]) -> dict[str, int]:
    """The levels given (``stage_*`` / ``target_*``), as the rating form sent them."""
    found = {}
    for name in names:
        value = getattr(evaluation, f"{prefix}{name}")
        if value is not None:
            found[name] = value
    return found


def public_comment(evaluation: Evaluation) -> str | None:
    """The comment text, or None while held for review or hidden (the rating stays public)."""
    if evaluation.comment_status != "visible":
        return None
    return evaluation.comment or None


@dataclass
class _Related:
    """The rows around one page of ratings, each loaded with one IN query."""

    indicators: dict[int, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    likers: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    replies: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    follow_ups: dict[int, Evaluation] = field(default_factory=dict)
    tickets: dict[int, str] = field(default_factory=dict)
    centers: dict[int, dict[str, str]] = field(default_factory=dict)
    items: dict[int, dict[str, str]] = field(default_factory=dict)
    staff: dict[int, str] = field(default_factory=dict)


def _first_likers(ids: list[int]) -> peewee.Select:
    """The first :data:`LIKERS_SHOWN` likers of each rating, by like id (a window function)."""
    ranked = (
        Like.select(
            Like.evaluation,
            Like.id,
            Like.name_masked,
            peewee.fn.ROW_NUMBER()
            .over(partition_by=[Like.evaluation], order_by=[Like.id])
            .alias("rn"),
        )
        .where(Like.evaluation.in_(ids))
        .alias("ranked")
    )
    return (
        peewee.Select([ranked], [ranked.c.evaluation_id, ranked.c.name_masked])
        .where(ranked.c.rn <= LIKERS_SHOWN)
        .order_by(ranked.c.evaluation_id, ranked.c.id)
        .bind(database)
    )


def _load_related(page: list[Evaluation]) -> _Related:
    ids = [e.id for e in page]
    related = _Related()
    chosen = (
        EvaluationIndicator.select(EvaluationIndicator.evaluation, Indicator.code, Indicator.label)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation.in_(ids))
        .order_by(Indicator.sort_order, Indicator.id)
        .tuples()
    )
    for evaluation_id, code, label in chosen:
        related.indicators[evaluation_id].append({"code": code, "label": label})
    for evaluation_id, name_masked in _first_likers(ids).tuples():
        related.likers[evaluation_id].append(name_masked)
    replies = (
        Reply.select(Reply.evaluation, Reply.text, Reply.created_at)
        .where(Reply.evaluation.in_(ids))
        .order_by(Reply.id)
        .tuples()
    )
    for evaluation_id, text, created_at in replies:
        related.replies[evaluation_id].append({"text": text, "created_at": iso(created_at)})
    first_of_case = {e.case_id: e.id for e in page}
    follow_ups = Evaluation.select(
        Evaluation.case,
        Evaluation.overall,
        Evaluation.comment,
        Evaluation.comment_status,
        Evaluation.created_at,
    ).where((Evaluation.case.in_(list(first_of_case))) & (Evaluation.assess_number == 2))
    for follow_up in follow_ups:
        related.follow_ups[first_of_case[follow_up.case_id]] = follow_up
    tickets = Ticket.select(Ticket.evaluation, Ticket.status).where(Ticket.evaluation.in_(ids))
    related.tickets = dict(tickets.tuples())
    centers = Center.select(Center.id, Center.code, Center.name)
    centers = centers.where(Center.id.in_({e.center_id for e in page})).tuples()
    related.centers = {i: {"code": c, "name": n} for i, c, n in centers}
    items = ServiceItem.select(ServiceItem.id, ServiceItem.code, ServiceItem.name)
    items = items.where(ServiceItem.id.in_({e.item_id for e in page})).tuples()
    related.items = {i: {"code": c, "name": n} for i, c, n in items}
    staff_ids = {e.window_staff_id for e in page if e.window_staff_id is not None}
    if staff_ids:
        staff = Staff.select(Staff.id, Staff.name).where(Staff.id.in_(staff_ids)).tuples()
        related.staff = dict(staff)
    return related


def _shape(e: Evaluation, related: _Related) -> dict[str, Any]:
    follow_up = related.follow_ups.get(e.id)
    staff_name = related.staff.get(e.window_staff_id) if e.window_staff_id else None
    return {
        "id": str(e.id),
        "overall": e.overall,
        "stages": _levels(e, "stage_", STAGES),
        "targets": _levels(e, "target_", TARGETS),
        "indicators": related.indicators.get(e.id, []),
        "comment": public_comment(e),
        "name_masked": e.name_masked,
        "channel": e.channel,
        "item": related.items.get(e.item_id),
        "center": related.centers.get(e.center_id),
        "window_staff": {"name": staff_name} if staff_name is not None else None,
        "created_at": iso(e.created_at),
        "like_count": e.like_count,
        "likers": related.likers.get(e.id, []),
        "replies": related.replies.get(e.id, []),
        "follow_up": None
        if follow_up is None
        else {
            "overall": follow_up.overall,
            "comment": public_comment(follow_up),
            "created_at": iso(follow_up.created_at),
        },
        "ticket_status": related.tickets.get(e.id),
    }


def public_shapes(page: list[Evaluation]) -> list[dict[str, Any]]:
    """The public shape of first ratings (api.md), in the order given.

    A handful of IN queries whatever the page size (indicators, likers, replies, follow-ups,
    tickets, centers, items, staff): never one query per rating.
    """
    if not page:
        return []
    related = _load_related(page)
    return [_shape(e, related) for e in page]


def public_shape_of(evaluation_id: int) -> tuple[str, dict[str, Any]] | None:
    """``(center_code, shape)`` of the public rating ``evaluation_id`` belongs to.

    A follow-up (追评) resolves to its first rating, whose shape then carries it. None when
    the id is unknown.
    """
    evaluation = Evaluation.get_or_none(Evaluation.id == evaluation_id)
    if evaluation is None:
        return None
    if evaluation.assess_number != 1:
        evaluation = Evaluation.get_or_none(
            (Evaluation.case == evaluation.case_id) & (Evaluation.assess_number == 1)
        )
        if evaluation is None:
            return None
    shape = public_shapes([evaluation])[0]
    return shape["center"]["code"], shape


# --------------------------------------------------------------------------- the figures


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

    满意率 = levels 3–5 / all ratings; 差评率 = levels 1–2 / all; 主动评价好评率 = levels 3–5 /
    non-default ratings; 未评价率 = finished cases with no rating / finished cases. Rates are
    floats rounded to 4 places, 0.0 when their denominator is 0.
    """
    total = sum(tally.by_level.values())
    active = sum(tally.active_by_level.values())
    return {
        "total": total,
        "by_level": {str(level): tally.by_level[level] for level in LEVELS},
        "satisfaction_rate": _rate(sum(tally.by_level[lv] for lv in GOOD_LEVELS), total),
        "bad_rate": _rate(sum(tally.by_level[lv] for lv in BAD_LEVELS), total),
        "active_good_rate": _rate(sum(tally.active_by_level[lv] for lv in GOOD_LEVELS), active),
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
    center_id = _code_id(Center, Center.code, query.center)
    item_id = _code_id(ServiceItem, ServiceItem.code, query.item)
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


async def public_stats(ctx: Context, args: Mapping[str, str | None]) -> dict[str, Any]:
    """``GET /api/v1/public/stats``."""
    return await ctx.db.run(stats_public, parse_stats_query(args))
