"""The public list of ratings (公开评价): ``GET /api/v1/public/evaluations``.

Everything here is readable without login, so nothing personal ever leaves: each item is the
public shape of :mod:`.shape`. First ratings (``assess_number`` 1), newest first, keyset
pagination on the id (``WHERE id < last``, never OFFSET), so a page costs the same at any
depth and inserts never shift a page. The query string is parsed with
``wxbackend.services.common.query_args``.

Page 1 of each filter — what every phone and hall screen polls — is kept by the process
(:class:`FirstPages`): at most ``public.list_cache_seconds`` old, and dropped at once when
this process publishes a change (``live.publish_after_commit`` calls :func:`forget_first_pages`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
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


class FirstPages:
    """Page 1 of the public list per filter, in this process, for at most ``max_age`` seconds.

    One database read per filter however many requests miss at once (they share it). A change
    (:meth:`forget`) drops every page and bumps the generation, so a read that started before
    it is handed to the requests already waiting but never kept.
    """

    max_pages = 256

    def __init__(self, max_age: float):
        self.max_age = max_age
        self.generation = 0
        self.reads = 0  # database reads made for page 1
        self._pages: dict[ListQuery, tuple[float, dict[str, Any]]] = {}
        self._reading: dict[ListQuery, tuple[int, asyncio.Future[dict[str, Any]]]] = {}

    def forget(self) -> None:
        """Something public changed: no page kept so far is served again."""
        self.generation += 1
        self._pages.clear()

    async def get(
        self, query: ListQuery, read: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The page of ``query`` (a page 1), kept or read by ``read``."""
        started = time.monotonic()
        kept = self._pages.get(query)
        if kept is not None and started - kept[0] < self.max_age:
            return kept[1]
        reading = self._reading.get(query)
        if reading is not None and reading[0] == self.generation:
            return await asyncio.shield(reading[1])
        generation = self.generation
        shared: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reading[query] = (generation, shared)
        self.reads += 1
        try:
            page = await read()
        except BaseException as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            if self._reading.get(query, (0, None))[1] is shared:
                del self._reading[query]
        shared.set_result(page)
        if generation == self.generation:
            if len(self._pages) >= self.max_pages:
                self._pages.clear()
            self._pages[query] = (started, page)
        return page


def first_pages(ctx: Context) -> FirstPages | None:
    """This process's :class:`FirstPages` (made on first use); None when the cache is off."""
    max_age = ctx.settings.public.list_cache_seconds
    if max_age <= 0:
        return None
    if not isinstance(ctx.public_pages, FirstPages):
        ctx.public_pages = FirstPages(max_age)
    return ctx.public_pages


def forget_first_pages(ctx: Context) -> None:
    """A public rating changed (stored, followed up, moderated, replied, its ticket moved):
    this process serves page 1 from the database again."""
    if isinstance(ctx.public_pages, FirstPages):
        ctx.public_pages.forget()


async def public_evaluations(ctx: Context, args: Mapping[str, str | None]) -> dict[str, Any]:
    """``GET /api/v1/public/evaluations``: page 1 from :class:`FirstPages`, the others from
    the database."""
    query = parse_list_query(args)
    pages = first_pages(ctx) if query.before_id is None else None
    if pages is None:
        return await ctx.db.run(list_public, query)
    return await pages.get(query, lambda: ctx.db.run(list_public, query))
