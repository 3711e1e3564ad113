"""The public shape of a rating (公开形态): what the public list and the live feed show.

Nothing personal: a citizen appears only as ``name_masked`` (黎**); no openid, ID number,
phone or full name, no user or case id. A comment held for review or hidden withholds only its
text (``comment: null``); the rating stays public. Related rows are loaded per page with one
IN query each, never one query per rating. Rows are read as plain dicts of the columns the
shape needs (:data:`SHAPE_COLUMNS`), not as models: building a model per row was a quarter of
a page's cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import peewee

from models.catalog import Center, ServiceItem, Staff
from models.evaluation import (
    STAGES,
    TARGETS,
    Evaluation,
    Like,
    Reply,
)
from models.ticket import Ticket
from wxbackend.db import database
from wxbackend.services.ratings.indicators import indicator_labels_of
from wxbackend.timefmt import iso

LIKERS_SHOWN = 10
_STAGE_KEYS = [(name, f"stage_{name}") for name in STAGES]
_TARGET_KEYS = [(name, f"target_{name}") for name in TARGETS]

#: The columns of a first rating the public shape reads (the keys of a row are the fields'
#: names: ``center``, ``item``, ``window_staff`` hold the ids).
SHAPE_COLUMNS = (
    Evaluation.id,
    Evaluation.case,
    Evaluation.overall,
    *(getattr(Evaluation, key) for _, key in _STAGE_KEYS + _TARGET_KEYS),
    Evaluation.comment,
    Evaluation.comment_status,
    Evaluation.name_masked,
    Evaluation.channel,
    Evaluation.item,
    Evaluation.center,
    Evaluation.window_staff,
    Evaluation.created_at,
    Evaluation.like_count,
)


def _levels(row: dict[str, Any], keys: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The levels given (``stage_*`` / ``target_*``), as the rating form sent them."""
    return {name: row[key] for name, key in keys if row[key] is not None}


def public_comment(row: dict[str, Any]) -> str | None:
    """The comment text, or None while held for review or hidden (the rating stays public)."""
    if row["comment_status"] != "visible":
        return None
    return row["comment"] or None


@dataclass
class _Related:
    """The rows around one page of ratings, each loaded with one IN query."""

    indicators: dict[int, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    likers: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    replies: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    follow_ups: dict[int, dict[str, Any]] = field(default_factory=dict)
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


#: The center, item and staff names, when the rows carry them (:func:`public_shapes_of` joins
#: them into its one query; the three queries they would take are skipped).
NAME_COLUMNS = (
    Center.code.alias("center_code"),
    Center.name.alias("center_name"),
    ServiceItem.code.alias("item_code"),
    ServiceItem.name.alias("item_name"),
    Staff.name.alias("staff_name"),
)
_NAME_KEYS = {"center_code", "center_name", "item_code", "item_name", "staff_name"}


def _names_of_rows(page: list[dict[str, Any]], related: _Related) -> None:
    for e in page:
        related.centers[e["center"]] = {"code": e["center_code"], "name": e["center_name"]}
        related.items[e["item"]] = {"code": e["item_code"], "name": e["item_name"]}
        if e["window_staff"] is not None and e["staff_name"] is not None:
            related.staff[e["window_staff"]] = e["staff_name"]


def _load_related(page: list[dict[str, Any]]) -> _Related:
    ids = [e["id"] for e in page]
    related = _Related()
    related.indicators.update(indicator_labels_of(ids))
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
    first_of_case = {e["case"]: e["id"] for e in page}
    follow_ups = Evaluation.select(
        Evaluation.case,
        Evaluation.overall,
        Evaluation.comment,
        Evaluation.comment_status,
        Evaluation.created_at,
    ).where((Evaluation.case.in_(list(first_of_case))) & (Evaluation.assess_number == 2))
    for follow_up in follow_ups.dicts():
        related.follow_ups[first_of_case[follow_up["case"]]] = follow_up
    tickets = Ticket.select(Ticket.evaluation, Ticket.status).where(Ticket.evaluation.in_(ids))
    related.tickets = dict(tickets.tuples())
    if page[0].keys() >= _NAME_KEYS:
        _names_of_rows(page, related)
        return related
    centers = Center.select(Center.id, Center.code, Center.name)
    centers = centers.where(Center.id.in_({e["center"] for e in page})).tuples()
    related.centers = {i: {"code": c, "name": n} for i, c, n in centers}
    items = ServiceItem.select(ServiceItem.id, ServiceItem.code, ServiceItem.name)
    items = items.where(ServiceItem.id.in_({e["item"] for e in page})).tuples()
    related.items = {i: {"code": c, "name": n} for i, c, n in items}
    staff_ids = {e["window_staff"] for e in page if e["window_staff"] is not None}
    if staff_ids:
        staff = Staff.select(Staff.id, Staff.name).where(Staff.id.in_(staff_ids)).tuples()
        related.staff = dict(staff)
    return related


def _shape(e: dict[str, Any], related: _Related) -> dict[str, Any]:
    evaluation_id = e["id"]
    follow_up = related.follow_ups.get(evaluation_id)
    staff_name = related.staff.get(e["window_staff"]) if e["window_staff"] else None
    return {
        "id": str(evaluation_id),
        "overall": e["overall"],
        "stages": _levels(e, _STAGE_KEYS),
        "targets": _levels(e, _TARGET_KEYS),
        "indicators": related.indicators.get(evaluation_id, []),
        "comment": public_comment(e),
        "name_masked": e["name_masked"],
        "channel": e["channel"],
        "item": related.items.get(e["item"]),
        "center": related.centers.get(e["center"]),
        "window_staff": {"name": staff_name} if staff_name is not None else None,
        "created_at": iso(e["created_at"]),
        "like_count": e["like_count"],
        "likers": related.likers.get(evaluation_id, []),
        "replies": related.replies.get(evaluation_id, []),
        "follow_up": None
        if follow_up is None
        else {
            "overall": follow_up["overall"],
            "comment": public_comment(follow_up),
            "created_at": iso(follow_up["created_at"]),
        },
        "ticket_status": related.tickets.get(evaluation_id),
    }


def public_shapes(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The public shape of first ratings (api.md), in the order given; ``page`` holds rows
    of :data:`SHAPE_COLUMNS` as dicts.

    A handful of IN queries whatever the page size (indicators, likers, replies, follow-ups,
    tickets, centers, items, staff): never one query per rating.
    """
    if not page:
        return []
    related = _load_related(page)
    return [_shape(e, related) for e in page]


def public_shapes_of(evaluation_ids: list[int]) -> list[tuple[str, dict[str, Any]] | None]:
    """``(center_code, shape)`` of the public rating each id belongs to, in the order given
    (None for an unknown id); an id given twice, or a rating and its follow-up, get the same
    shape.

    A follow-up (追评) resolves to its first rating, whose shape then carries it. One query
    finds every first rating (joined on the case) with its center, item and staff names,
    then :func:`public_shapes` builds them all at once: the same handful of IN queries for
    one rating or a whole batch.
    """
    if not evaluation_ids:
        return []
    asked = Evaluation.alias()
    firsts = (
        Evaluation.select(*SHAPE_COLUMNS, *NAME_COLUMNS, asked.id.alias("asked_id"))
        .join(asked, on=(asked.case == Evaluation.case))
        .switch(Evaluation)
        .join(Center, on=(Evaluation.center == Center.id))
        .switch(Evaluation)
        .join(ServiceItem, on=(Evaluation.item == ServiceItem.id))
        .switch(Evaluation)
        .join(Staff, peewee.JOIN.LEFT_OUTER, on=(Evaluation.window_staff == Staff.id))
        .where(asked.id.in_(set(evaluation_ids)) & (Evaluation.assess_number == 1))
    )
    first_of: dict[int, int] = {}
    rows: dict[int, dict[str, Any]] = {}
    for row in firsts.dicts():
        first_of[row.pop("asked_id")] = row["id"]
        rows[row["id"]] = row
    shapes = dict(zip(rows, public_shapes(list(rows.values())), strict=True))
    answers: list[tuple[str, dict[str, Any]] | None] = []
    for evaluation_id in evaluation_ids:
        shape = shapes.get(first_of.get(evaluation_id, -1))
        answers.append(None if shape is None else (shape["center"]["code"], shape))
    return answers


def public_shape_of(evaluation_id: int) -> tuple[str, dict[str, Any]] | None:
    """``(center_code, shape)`` of the public rating ``evaluation_id`` belongs to.

    A follow-up (追评) resolves to its first rating, whose shape then carries it. None when
    the id is unknown.
    """
    return public_shapes_of([evaluation_id])[0]
