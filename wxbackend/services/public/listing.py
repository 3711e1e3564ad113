"""The public record (公开): the list of ratings and the satisfaction figures.

Everything here is readable without login, so nothing personal ever leaves: a citizen appears
only as ``name_masked`` (黎**); no openid, ID number, phone or full name, no user or case id.

- :func:`list_public` — first ratings (``assess_number`` 1), newest first, keyset pagination
  on the id (``WHERE id < last``, never OFFSET), so a page costs the same at any depth and
  inserts never shift a page. Related rows are loaded per page with one IN query each.
- :func:`public_shapes` — the public shape of ratings (also published live, see realtime.py).
- :func:`tallies` and :func:`figures` — the figures of product.md rule 10 by SQL aggregation,
  optionally grouped by a catalogue column or by day; the admin statistics
  (``wxbackend.services.admin.stats``) reuse them, with follow-ups, rectification and the
  upheld-appeal exclusion of staff figures (``extended``, ``Scope.exclude_upheld``).
- :func:`public_stats` — ``GET /api/v1/public/stats``: those figures cached in Redis for
  ``public.stats_cache_seconds`` per normalized query, one computation per miss however many
  requests ask at once (:func:`cached_stats`); Redis down, it computes.

The query strings are parsed with ``wxbackend.services.common.query_args``.

A comment held for review or hidden withholds only its text (``comment: null``); the rating
stays in the list and in every figure. Default ratings (channel ``default``) are ratings too:
listed (``name_masked: null``) and counted, except in the 主动评价好评率.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import peewee
from redis.exceptions import RedisError

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
from wxbackend.services.common import query_args

# Re-exported: the tickets, statistics and export services import these from here.
from wxbackend.services.common.query_args import day_start_utc as day_start_utc
from wxbackend.services.common.query_args import decode_cursor as decode_cursor
from wxbackend.services.common.query_args import encode_cursor as encode_cursor
from wxbackend.services.ratings.levels import BAD_LEVELS, GOOD_LEVELS
from wxbackend.timefmt import iso

log = logging.getLogger("wxbackend.public")

DEFAULT_LIMIT = 20
MAX_LIMIT = 50
LIKERS_SHOWN = 10
RATE_DIGITS = 4
LIST_PARAMETERS = ("center", "item", "staff", "level", "cursor", "limit")
STATS_PARAMETERS = ("center", "item", "from", "to")


# --------------------------------------------------------------------------- query parsing


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
    cursor = query_args.text(args.get("cursor"), "cursor")
    limit = query_args.int_in(args.get("limit"), "limit", 1, MAX_LIMIT)
    return ListQuery(
        center=query_args.text(args.get("center"), "center"),
        item=query_args.text(args.get("item"), "item"),
        staff=query_args.text(args.get("staff"), "staff"),
        level=query_args.int_in(args.get("level"), "level", LEVELS[0], LEVELS[-1]),
        before_id=query_args.cursor_id(cursor),
        limit=limit if limit is not None else DEFAULT_LIMIT,
    )


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
    page, more = query_args.newest_first(rows, Evaluation.id, query.before_id, query.limit)
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


# --------------------------------------------------------------------------- the figures, cached

#: Single-flight: the one request that computes missing figures holds this lock (released as
#: soon as it has stored them; the expiry only outlives a crashed holder)…
STATS_LOCK_MS = 5000
#: … while the others poll for the stored figures this long (several times the ~0.1 s of an
#: aggregation over 200,000 ratings), then compute them themselves.
STATS_WAIT_SECONDS = 2.0
#: After a Redis error this process computes without the cache this long before trying Redis
#: again (redis-py retries a dead server for seconds: one request pays that, not each one).
STATS_REDIS_PAUSE_SECONDS = 5.0
_PAUSED_UNTIL = "public.stats_cache.paused_until"  # in ctx.extras: time.monotonic()
_POLL_FIRST_SECONDS = 0.01
_POLL_MAX_SECONDS = 0.1
_REDIS_ERRORS = (TimeoutError, RedisError, OSError)
_RELEASE_LOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def stats_cache_key(ctx: Context, query: StatsQuery) -> str:
    """The Redis key of the figures of ``query``: a digest of the parsed filters, so the
    spellings of one query (``?center=`` or none, a parameter repeated or unknown) share it."""
    filters = [query.center, query.item]
    filters += [t.isoformat() if t else None for t in (query.start, query.end)]
    normalized = json.dumps(filters, ensure_ascii=False, separators=(",", ":"))
    return ctx.rkeys("public", "stats", hashlib.sha256(normalized.encode()).hexdigest()[:32])


class _StatsCache:
    """The Redis side of one request for the figures. At a Redis error it logs once (the
    error's type: no query, no address) and stands aside, so the request computes; so do the
    requests of the next :data:`STATS_REDIS_PAUSE_SECONDS`, without a word."""

    def __init__(self, ctx: Context, query: StatsQuery):
        self.redis = ctx.redis
        self.extras = ctx.extras
        self.key = stats_cache_key(ctx, query)
        self.lock = self.key + ":lock"
        self.owner = secrets.token_hex(8)
        self.down = time.monotonic() < self.extras.get(_PAUSED_UNTIL, 0.0)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            return None
        try:
            return await getattr(self.redis, method)(*args, **kwargs)
        except _REDIS_ERRORS as exc:
            self.down = True
            self.extras[_PAUSED_UNTIL] = time.monotonic() + STATS_REDIS_PAUSE_SECONDS
            log.warning(
                "public stats: Redis unavailable, computing without the cache",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return None

    async def get(self) -> dict[str, Any] | None:
        """The stored figures, or None (missing, unreadable, or Redis down)."""
        found = await self._call("get", self.key)
        if found is None:
            return None
        try:
            return json.loads(found)
        except ValueError:
            return None  # recomputed and overwritten by the lock holder

    async def take_lock(self) -> bool:
        return bool(await self._call("set", self.lock, self.owner, nx=True, px=STATS_LOCK_MS))

    async def release_lock(self) -> None:
        await self._call("eval", _RELEASE_LOCK, 1, self.lock, self.owner)

    async def wait(self) -> dict[str, Any] | None:
        """Poll for the figures another request is computing: at most
        :data:`STATS_WAIT_SECONDS`, then None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STATS_WAIT_SECONDS
        delay = _POLL_FIRST_SECONDS
        while not self.down and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(2 * delay, _POLL_MAX_SECONDS)
            found = await self.get()
            if found is not None:
                return found
        return None

    async def store(self, answer: dict[str, Any], ttl: int, replace: bool) -> None:
        """Keep ``answer`` for ``ttl`` seconds, only when JSON gives it back unchanged (no
        datetime, Decimal, tuple or int key could slip into a cached answer). ``replace``:
        overwrite what is there (the lock holder); others only fill a gap."""
        try:
            encoded = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            faithful = json.loads(encoded) == answer
        except (TypeError, ValueError):
            faithful = False
        if not faithful:
            log.warning("public stats: figures not cached, JSON would change them")
            return
        await self._call("set", self.key, encoded, ex=ttl, nx=not replace)


#: Longest wait for a free computation slot before answering 503 ``unavailable``.
STATS_SLOT_WAIT_SECONDS = 10.0
_STATS_SLOTS = "public.stats_slots"  # in ctx.extras: this process's asyncio.Semaphore


async def compute_stats(ctx: Context, query: StatsQuery) -> dict[str, Any]:
    """Aggregate the figures on the database pool, at most a quarter of its threads at once
    (at least one): a flood of distinct queries (every one a cache miss, ~0.1 s at 200,000
    ratings) queues here instead of taking every thread from ratings, logins and scans.
    No slot within :data:`STATS_SLOT_WAIT_SECONDS` → 503 ``unavailable``."""
    slots = ctx.extras.get(_STATS_SLOTS)
    if slots is None:
        slots = asyncio.Semaphore(max(1, ctx.settings.database.threads // 4))
        ctx.extras[_STATS_SLOTS] = slots
    try:
        await asyncio.wait_for(slots.acquire(), STATS_SLOT_WAIT_SECONDS)
    except TimeoutError:
        raise errors.Unavailable("The figures are busy; try again shortly.") from None
    try:
        return await ctx.db.run(stats_public, query)
    finally:
        slots.release()


async def cached_stats(ctx: Context, query: StatsQuery, ttl: int) -> dict[str, Any]:
    """The figures of ``query`` through Redis, kept ``ttl`` seconds: a hit is one GET; of
    simultaneous misses one request computes (``SET NX PX`` lock) while the others poll for
    its answer, computing themselves only after :data:`STATS_WAIT_SECONDS`. Redis down: each
    request computes."""
    cache = _StatsCache(ctx, query)
    found = await cache.get()
    if found is not None:
        return found
    holder = await cache.take_lock()
    if not holder:
        found = await cache.wait()
        if found is not None:
            return found
    try:
        answer = await compute_stats(ctx, query)
        await cache.store(answer, ttl, replace=holder)
    finally:
        if holder:
            await cache.release_lock()
    return answer


async def public_stats(ctx: Context, args: Mapping[str, str | None]) -> dict[str, Any]:
    """``GET /api/v1/public/stats``: cached for ``public.stats_cache_seconds`` (0: never), so
    a new rating shows there within that time."""
    query = parse_stats_query(args)
    ttl = ctx.settings.public.stats_cache_seconds
    if ttl <= 0:
        return await compute_stats(ctx, query)
    return await cached_stats(ctx, query, ttl)
