"""What each kind of public event puts into the log: the leaf's public fields, read from
the rows the caller's transaction just wrote (so the log states what was committed).

Public fields only: ids, codes, levels, the masked name, the comment's *status* and, while
the text is public, its SHA-256 (a hash of a public text reveals nothing more); never the
rater's ID hash, a name, a phone, an admin or a ticket note. A citizen's rating also yields
the fields of its commitment (:func:`rating`'s second value): the comment text and time,
published only as ``SHA-256(salt || canonical JSON)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.catalog import Center, ServiceItem
from models.evaluation import STAGES, TARGETS, Evaluation, EvaluationIndicator, Indicator, Reply
from models.ticket import Ticket, TicketEvent
from wxbackend.db import compiled_rows, param
from wxbackend.timefmt import iso

#: ``builder(refs) -> (evaluation id, public fields, committed fields or None)``.
Builder = Callable[[Mapping[str, Any]], tuple[int | None, dict[str, Any], dict[str, Any] | None]]


def text_sha256(text: str) -> str:
    """Hex SHA-256 of a public text's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def comment_state(status: str, comment: str | None) -> dict[str, Any] | None:
    """``None`` without a comment; else ``{status}`` plus ``sha256`` while it is visible."""
    if comment is None:
        return None
    state: dict[str, Any] = {"status": status}
    if status == "visible":
        state["sha256"] = text_sha256(comment)
    return state


_RATING_COLUMNS = (
    Evaluation.id,
    Evaluation.case,
    Evaluation.assess_number,
    Evaluation.channel,
    Evaluation.user,
    Evaluation.name_masked,
    Evaluation.overall,
    *(getattr(Evaluation, f"stage_{key}") for key in STAGES),
    *(getattr(Evaluation, f"target_{key}") for key in TARGETS),
    Evaluation.comment,
    Evaluation.comment_status,
    Evaluation.created_at,
    Center.code,
    ServiceItem.code,
)


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


def _rating_query() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    query = (
        Evaluation.select(*_RATING_COLUMNS)
        .join_from(Evaluation, Center, on=(Evaluation.center == Center.id))
        .join_from(Evaluation, ServiceItem, on=(Evaluation.item == ServiceItem.id))
        .where(Evaluation.id == _p(0))
    )
    return query, _RATING_COLUMNS


def _codes_query() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    query = (
        Indicator.select(Indicator.code)
        .join(EvaluationIndicator, on=(EvaluationIndicator.indicator == Indicator.id))
        .where(EvaluationIndicator.evaluation == _p(0))
        .order_by(Indicator.sort_order, Indicator.id)
    )
    return query, (Indicator.code,)


def _given(values: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> dict[str, int]:
    return {k: values[prefix + k] for k in keys if values[prefix + k] is not None}


def rating(refs: Mapping[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """A first rating or a follow-up (any channel): ``refs = {"evaluation_id"}``. Two
    compiled queries (the rating writer skips them: it gives :func:`rating_fields` what it
    has just written)."""
    evaluation_id = refs["evaluation_id"]
    row = compiled_rows("tlog.rating", _rating_query, (evaluation_id,))[0]
    names = [f.name for f in _RATING_COLUMNS[:-2]] + ["center_code", "item_code"]
    e = dict(zip(names, row, strict=True))
    codes = [code for (code,) in compiled_rows("tlog.codes", _codes_query, (evaluation_id,))]
    first = None
    if e["assess_number"] != 1:  # a follow-up names the first rating the public list shows
        first = (
            Evaluation.select(Evaluation.id)
            .where((Evaluation.case == e["case"]) & (Evaluation.assess_number == 1))
            .scalar()
        )
    fields = RatingFields(
        evaluation_id=evaluation_id,
        assess_number=e["assess_number"],
        channel=e["channel"],
        center_code=e["center_code"],
        item_code=e["item_code"],
        overall=e["overall"],
        stages=_given(e, "stage_", STAGES),
        targets=_given(e, "target_", TARGETS),
        indicators=codes,
        name_masked=e["name_masked"],
        comment=e["comment"],
        comment_status=e["comment_status"],
        user_id=e["user"],
        created_at=e["created_at"],
        first_id=first,
    )
    return rating_fields(fields)


@dataclass(frozen=True)
class RatingFields:
    """What a rating's leaf states, as stored: ``stages``/``targets`` only the given levels,
    ``indicators`` the codes in display order, ``first_id`` the first rating a follow-up
    follows (None for a first rating)."""

    evaluation_id: int
    assess_number: int
    channel: str
    center_code: str
    item_code: str
    overall: int
    stages: Mapping[str, int]
    targets: Mapping[str, int]
    indicators: list[str]
    name_masked: str | None
    comment: str | None
    comment_status: str
    user_id: int | None
    created_at: datetime
    first_id: int | None = None


def rating_fields(e: RatingFields) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """The leaf of a rating from its stored values: ``(evaluation id, public fields,
    committed fields or None)`` (see :func:`rating`)."""
    public = {
        "evaluation": str(e.evaluation_id),
        "assess_number": e.assess_number,
        "channel": e.channel,
        "center": e.center_code,
        "item": e.item_code,
        "overall": e.overall,
        "stages": dict(e.stages),
        "targets": dict(e.targets),
        "indicators": list(e.indicators),
        "name_masked": e.name_masked,
        "comment": comment_state(e.comment_status, e.comment),
    }
    if e.assess_number != 1:
        public["first"] = str(e.first_id)
    committed = None
    if e.user_id is not None:  # a citizen's own rating: their receipt opens the commitment
        committed = commitment_fields(
            e.evaluation_id,
            e.overall,
            e.stages,
            e.targets,
            e.indicators,
            e.comment,
            e.channel,
            iso(e.created_at),
        )
    return e.evaluation_id, public, committed


def commitment_fields(
    evaluation_id: int,
    overall: int,
    stages: Mapping[str, int],
    targets: Mapping[str, int],
    indicators: list[str],
    comment: str | None,
    channel: str,
    created_at: str | None,
) -> dict[str, Any]:
    """The rating fields a citizen's commitment covers (as their owner view shows them)."""
    return {
        "evaluation": str(evaluation_id),
        "overall": overall,
        "stages": dict(stages),
        "targets": dict(targets),
        "indicators": list(indicators),
        "comment": comment,
        "channel": channel,
        "created_at": created_at,
    }


def moderation(refs: Mapping[str, Any]) -> tuple[int, dict[str, Any], None]:
    """A moderation decision: the comment's new status and the reason; the leaf of the
    rating stays, this one says why its text is (or is no longer) withheld."""
    e = Evaluation.get_by_id(refs["evaluation_id"])
    public = {
        "evaluation": str(e.id),
        "comment": comment_state(e.comment_status, e.comment),
        "reason": e.moderation_reason,
    }
    return e.id, public, None


def reply(refs: Mapping[str, Any]) -> tuple[int, dict[str, Any], None]:
    """A public reply of the center: the SHA-256 of its text (the text itself stays out of
    an append-only log: a reply naming someone must stay removable)."""
    r = Reply.get_by_id(refs["reply_id"])
    public = {"evaluation": str(r.evaluation_id), "text_sha256": text_sha256(r.text)}
    return r.evaluation_id, public, None


def ticket(refs: Mapping[str, Any]) -> tuple[int, dict[str, Any], None]:
    """A ticket's step (an upheld appeal included): status, action, appeal status; never
    the note or who did it."""
    t = Ticket.get_by_id(refs["ticket_id"])
    action = (
        TicketEvent.select(TicketEvent.action)
        .where(TicketEvent.ticket == t.id)
        .order_by(TicketEvent.id.desc())
        .scalar()
    )
    public = {
        "evaluation": str(t.evaluation_id),
        "ticket": str(t.id),
        "status": t.status,
        "action": action,
        "appeal_status": t.appeal_status,
    }
    return t.evaluation_id, public, None


BUILDERS: dict[str, Builder] = {
    "rating": rating,
    "follow_up": rating,
    "moderation": moderation,
    "reply": reply,
    "ticket": ticket,
}
