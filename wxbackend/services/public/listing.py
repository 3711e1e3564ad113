"""The public list of ratings (公开评价): ``GET /api/v1/public/evaluations``.

Everything here is readable without login, so nothing personal ever leaves: each item is the
public shape of :mod:`.shape`. First ratings (``assess_number`` 1), newest first, keyset
pagination on the id (``WHERE id < last``, never OFFSET), so a page costs the same at any
depth and inserts never shift a page. The query string is parsed with
``wxbackend.services.common.query_args``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import peewee

from models.catalog import Center, ServiceItem, Staff
from models.evaluation import LEVELS, Evaluation
from wxbackend.context import Context
from wxbackend.services.common import query_args
from wxbackend.services.public.shape import SHAPE_COLUMNS, public_shapes

DEFAULT_LIMIT = 20
MAX_LIMIT = 50
LIST_PARAMETERS = ("center", "item", "staff", "level", "cursor", "limit")


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


def code_id(model: type[peewee.Model], column: peewee.Field, code: str | None) -> int | None:
    """The id of a catalogue row by its code; ``-1`` (matches nothing) when unknown."""
    if code is None:
        return None
    found = model.select(model.id).where(column == code).scalar()
    return found if found is not None else -1


def list_public(query: ListQuery) -> dict[str, Any]:
    """One page of the public list: ``{items, next_cursor}`` (``next_cursor`` null at the end)."""
    rows = Evaluation.select(*SHAPE_COLUMNS).where(Evaluation.assess_number == 1).dicts()
    for column, model, code_column, code in (
        (Evaluation.center, Center, Center.code, query.center),
        (Evaluation.item, ServiceItem, ServiceItem.code, query.item),
        (Evaluation.window_staff, Staff, Staff.staff_no, query.staff),
    ):
        found = code_id(model, code_column, code)
        if found == -1:
            return {"items": [], "next_cursor": None}
        if found is not None:
            rows = rows.where(column == found)
    if query.level is not None:
        rows = rows.where(Evaluation.overall == query.level)
    page, more = query_args.newest_first(rows, Evaluation.id, query.before_id, query.limit)
    return {
        "items": public_shapes(page),
        "next_cursor": query_args.encode_cursor(page[-1]["id"]) if more else None,
    }


async def public_evaluations(ctx: Context, args: Mapping[str, str | None]) -> dict[str, Any]:
    """``GET /api/v1/public/evaluations``."""
    return await ctx.db.run(list_public, parse_list_query(args))
