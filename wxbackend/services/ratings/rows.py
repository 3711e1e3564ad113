"""The rows of a case's first rating: :class:`FirstRating` (what the writer stores, whatever
the channel) and the compiled statements of the writer's transaction
(:mod:`~wxbackend.services.ratings.writer`), each built once per database by peewee and then
run as plain parameterised SQL (``db.compiled_rows``): the transaction runs for every rating,
inside the write lock, where peewee's query building cost more than SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, ServiceItem
from models.evaluation import STAGES, TARGETS, Evaluation, EvaluationIndicator, catalogue_refs
from wxbackend import errors
from wxbackend.db import compiled_rows, insert_values, param
from wxbackend.services.ratings.rules import Rating
from wxbackend.services.transparency.events import RatingFields

#: The channel of the system's default rating, the one a callback may supersede.
DEFAULT_CHANNEL = "default"


@dataclass(frozen=True)
class FirstRating:
    """Everything the writer stores as a case's first rating, whatever the channel.

    ``token_id``: the scanned token (``qr``), checked usable in the transaction and marked
    used; ``user_id``/``rater_id_hash``/``name_masked``: the citizen (None for staff and the
    system); ``indicator_ids``: ``{code: id}`` of the checked ``indicators``.
    """

    case_id: int
    channel: str
    overall: int
    stages: Mapping[str, int] = field(default_factory=dict)
    targets: Mapping[str, int] = field(default_factory=dict)
    indicators: tuple[str, ...] = ()
    indicator_ids: Mapping[str, int] = field(default_factory=dict)
    comment: str | None = None
    comment_status: str = "visible"
    user_id: int | None = None
    rater_id_hash: str | None = None
    name_masked: str | None = None
    token_id: int | None = None
    at: datetime = field(default_factory=utcnow)
    contact_at: datetime | None = None  # a callback: when the call or SMS took place
    contact_reference: str | None = None  # … and the call record or SMS id

    @classmethod
    def of(cls, rating: Rating, indicator_ids: Mapping[str, int], **who: Any) -> FirstRating:
        """A checked :class:`~wxbackend.services.ratings.rules.Rating` as the writer stores
        it; ``who``: ``case_id``, ``channel`` and the other fields (rater, token, status)."""
        return cls(
            overall=rating.overall,
            stages=rating.stages,
            targets=rating.targets,
            indicators=rating.indicators,
            indicator_ids=indicator_ids,
            comment=rating.comment,
            **who,
        )


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


def _db_time(value: datetime) -> Any:
    return Case.first_rated_at.db_value(value)


#: The case columns the transaction needs (its state and what the rating copies).
_CASE_COLUMNS = (
    Case.id,
    Case.first_rated_at,
    Case.center,
    Case.item,
    Case.department,
    Case.window_staff,
    Case.approver,
    Case.completed_at,
)
_TOKEN_COLUMNS = (QrToken.id, QrToken.status, QrToken.expires_at)
#: The codes the rating's transparency leaf names (its center and item are the case's).
_CODE_COLUMNS = (Center.code, ServiceItem.code)


def _case_and_token_query() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    fields = _CASE_COLUMNS + _TOKEN_COLUMNS + _CODE_COLUMNS
    query = (
        Case.select(*fields)
        .join_from(
            Case,
            QrToken,
            peewee.JOIN.LEFT_OUTER,
            on=((QrToken.case == Case.id) & (QrToken.id == _p(1))),
        )
        .join_from(Case, Center, peewee.JOIN.LEFT_OUTER, on=(Case.center == Center.id))
        .join_from(Case, ServiceItem, peewee.JOIN.LEFT_OUTER, on=(Case.item == ServiceItem.id))
        .where(Case.id == _p(0))
    )
    return query, fields


@dataclass(frozen=True)
class Read:
    """What the transaction reads first: the case, the scanned token (if one of the case's)
    and the codes of the case's center and item."""

    case: Case
    token: QrToken | None
    center_code: str | None
    item_code: str | None


def case_and_token(case_id: int, token_id: int | None) -> Read:
    """The case (DoesNotExist when missing) and, when ``token_id`` is one of the case's
    tokens, that token: one compiled query."""
    rows = compiled_rows("ratings.case_token", _case_and_token_query, (case_id, token_id))
    if not rows:
        raise Case.DoesNotExist(f"Case {case_id} does not exist.")
    row = rows[0]
    case = Case(**{f.name: v for f, v in zip(_CASE_COLUMNS, row, strict=False)})
    tid, status, expires_at, center_code, item_code = row[len(_CASE_COLUMNS) :]
    token = QrToken(id=tid, status=status, expires_at=expires_at) if tid is not None else None
    return Read(case, token, center_code, item_code)


def leaf_values(read: Read, first: FirstRating, evaluation_id: int) -> RatingFields | None:
    """The stored first rating as its transparency leaf states it, from the values this
    transaction has just written (no read-back); None when a code is missing (the log then
    reads the rows)."""
    if read.center_code is None or read.item_code is None:
        return None
    return RatingFields(
        evaluation_id=evaluation_id,
        assess_number=1,
        channel=first.channel,
        center_code=read.center_code,
        item_code=read.item_code,
        overall=first.overall,
        stages={k: first.stages[k] for k in STAGES if first.stages.get(k) is not None},
        targets={k: first.targets[k] for k in TARGETS if first.targets.get(k) is not None},
        indicators=list(first.indicator_ids),  # display order (check_indicators), as stored
        name_masked=first.name_masked,
        comment=first.comment,
        comment_status=first.comment_status,
        user_id=first.user_id,
        created_at=first.at,
    )


def _mark_rated_query() -> tuple[peewee.Query, tuple[()]]:
    query = Case.update(first_rated_at=_p(1)).where(
        (Case.id == _p(0)) & Case.first_rated_at.is_null()
    )
    return query, ()


def mark_rated(case_id: int, now: datetime) -> bool:
    """Set the case's ``first_rated_at`` unless it is set already (then False)."""
    return compiled_rows("ratings.mark_rated", _mark_rated_query, (case_id, _db_time(now))) == 1


def _close_tokens_query() -> tuple[peewee.Query, tuple[()]]:
    """Every active token of case ``param(0)``: ``param(1)`` (may be NULL) becomes used at
    ``param(2)``, the others revoked; one statement."""
    is_used = QrToken.id == _p(1)
    query = QrToken.update(
        status=peewee.Case(None, [(is_used, "used")], "revoked"),
        used_at=peewee.Case(None, [(is_used, _p(2))], QrToken.used_at),
    ).where((QrToken.case == _p(0)) & (QrToken.status == "active"))
    return query, ()


def close_tokens(case_id: int, used_token_id: int | None, now: datetime) -> None:
    """Rating a case closes it to every token: the scanned one used, the others revoked."""
    args = (case_id, used_token_id, _db_time(now))
    compiled_rows("ratings.close_tokens", _close_tokens_query, args)


def _rating_columns(first: FirstRating) -> dict[str, Any]:
    """The columns a first rating sets (all but the case and its catalogue references)."""
    return {
        "channel": first.channel,
        "user": first.user_id,
        "rater_id_hash": first.rater_id_hash,
        "name_masked": first.name_masked,
        "overall": first.overall,
        "comment": first.comment,
        "comment_status": first.comment_status,
        "moderation_reason": None,
        "created_at": first.at,
        "contact_at": first.contact_at,
        "contact_reference": first.contact_reference,
        **{f"stage_{key}": first.stages.get(key) for key in STAGES},
        **{f"target_{key}": first.targets.get(key) for key in TARGETS},
    }


def insert_evaluation(case: Case, first: FirstRating) -> int:
    """INSERT the first rating (every column given, through a statement compiled once)."""
    values: dict[str, Any] = {
        "case": case.id,
        "assess_number": 1,
        "like_count": 0,
        **catalogue_refs(case),
        **_rating_columns(first),
    }
    return insert_values(Evaluation, values)


def first_rating_of(case_id: int) -> tuple[int, str, int] | None:
    """``(id, channel, overall)`` of the case's first rating, if it has one."""
    row = (
        Evaluation.select(Evaluation.id, Evaluation.channel, Evaluation.overall)
        .where((Evaluation.case == case_id) & (Evaluation.assess_number == 1))
        .tuples()
        .first()
    )
    return None if row is None else (row[0], row[1], row[2])


def supersede(existing: tuple[int, str, int], first: FirstRating) -> int:
    """Replace the case's default rating in place (same row: the unique index still guards
    the case); a compare-and-set on the channel, so two concurrent callbacks cannot both
    supersede it. Any other first rating → 409 ``already_evaluated``."""
    evaluation_id, channel, _ = existing
    if channel != DEFAULT_CHANNEL:
        raise errors.AlreadyEvaluated()
    updated = (
        Evaluation.update(**_rating_columns(first))
        .where((Evaluation.id == evaluation_id) & (Evaluation.channel == DEFAULT_CHANNEL))
        .execute()
    )
    if updated != 1:
        raise errors.AlreadyEvaluated()
    EvaluationIndicator.delete().where(EvaluationIndicator.evaluation == evaluation_id).execute()
    return evaluation_id
