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
from typing import Any

from models.catalog import Center, ServiceItem
from models.evaluation import STAGES, TARGETS, Evaluation, EvaluationIndicator, Indicator, Reply
from models.ticket import Ticket, TicketEvent
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


def _levels(e: Evaluation, prefix: str, keys: tuple[str, ...]) -> dict[str, int]:
    values = {key: getattr(e, prefix + key) for key in keys}
    return {key: value for key, value in values.items() if value is not None}


def _indicator_codes(evaluation_id: int) -> list[str]:
    rows = (
        Indicator.select(Indicator.code)
        .join(EvaluationIndicator)
        .where(EvaluationIndicator.evaluation == evaluation_id)
        .order_by(Indicator.sort_order, Indicator.id)
        .tuples()
    )
    return [code for (code,) in rows]


def rating(refs: Mapping[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """A first rating or a follow-up (any channel): ``refs = {"evaluation_id"}``."""
    e = (
        Evaluation.select(Evaluation, Center.code, ServiceItem.code)
        .join_from(Evaluation, Center, attr="center_row")
        .join_from(Evaluation, ServiceItem, attr="item_row")
        .where(Evaluation.id == refs["evaluation_id"])
        .get()
    )
    codes = _indicator_codes(e.id)
    stages, targets = _levels(e, "stage_", STAGES), _levels(e, "target_", TARGETS)
    public = {
        "evaluation": str(e.id),
        "assess_number": e.assess_number,
        "channel": e.channel,
        "center": e.center_row.code,
        "item": e.item_row.code,
        "overall": e.overall,
        "stages": stages,
        "targets": targets,
        "indicators": codes,
        "name_masked": e.name_masked,
        "comment": comment_state(e.comment_status, e.comment),
    }
    if e.assess_number != 1:  # a follow-up names the first rating the public list shows
        public["first"] = str(
            Evaluation.select(Evaluation.id)
            .where((Evaluation.case == e.case_id) & (Evaluation.assess_number == 1))
            .scalar()
        )
    committed = None
    if e.user_id is not None:  # a citizen's own rating: their receipt opens the commitment
        committed = commitment_fields(
            e.id, e.overall, stages, targets, codes, e.comment, e.channel, iso(e.created_at)
        )
    return e.id, public, committed


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
    """A public reply of the center (its text is public)."""
    r = Reply.get_by_id(refs["reply_id"])
    return r.evaluation_id, {"evaluation": str(r.evaluation_id), "text": r.text}, None


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
