"""The public shape of a rating (公开形态): what the public list and the live feed show.

Nothing personal: a citizen appears only as ``name_masked`` (黎**); no openid, ID number,
phone or full name, no user or case id. A comment held for review or hidden withholds only its
text (``comment: null``); the rating stays public. Related rows are loaded per page with one
IN query each, never one query per rating.
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
