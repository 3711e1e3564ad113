"""The one writer of a case's first rating (一事一评), for every channel: ``qr`` and
``miniprogram`` (citizens), ``phone`` and ``sms`` (callback ratings staff record) and
``default`` (基本满意, given by the system when a case is not rated in time).

:func:`write` is the ONE transaction, the same for all: it re-reads the case (and, for a
scanned code, the token), inserts the evaluation — or, for a callback, supersedes the case's
default rating in place — sets ``case.first_rated_at``, closes every token of the case (the
scanned one used, the others revoked), cancels the case's pending jobs (reminders, default
rating), stores the indicators, opens the ticket of a 差评 and runs the caller's ``within``
hook (the audit entry of a callback). The unique (case, assess_number) index is the final
word on "one first rating per case": a concurrent second one is 409 ``already_evaluated``,
whatever Redis says.

:func:`record` is the async side: the Redis claim for the callers that have one (citizens:
``SET NX EX`` per case turns concurrent submissions away fast; Redis being down skips it),
the transaction through the database pool, then publishing after commit (best effort).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee
from redis.exceptions import RedisError

from models.base import utcnow
from models.case import Case, QrToken
from models.evaluation import STAGES, TARGETS, Evaluation, EvaluationIndicator, catalogue_refs
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import compiled_insert, compiled_rows, database, param
from wxbackend.services.cases.tokens import check_token_usable
from wxbackend.services.devices import screen
from wxbackend.services.messaging import schedule
from wxbackend.services.public import live as realtime
from wxbackend.services.public import rollups
from wxbackend.services.ratings import levels
from wxbackend.services.ratings.rules import Rating, insert_indicators
from wxbackend.services.tickets.opening import open_ticket
from wxbackend.services.transparency import log as transparency
from wxbackend.settings import Settings

log = logging.getLogger("wxbackend.evaluations")

#: How long a submission waits for another one of the same case to finish storing.
CLAIM_WAIT_SECONDS = 3.0
CLAIM_POLL_SECONDS = 0.05
#: ``Retry-After`` of 409 ``rating_in_progress``.
CLAIM_RETRY_AFTER_SECONDS = 2
#: Seconds a Redis claim on a case lasts. It is taken after the text check, so it covers only
#: the transaction; one expiring while its holder still waits is harmless (the unique index
#: decides), and a claim left by a killed process delays its retries at most this long.
CLAIM_SECONDS = 5
#: The channel of the system's default rating, the one a callback may supersede.
DEFAULT_CHANNEL = "default"
_RELEASE_CLAIM = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


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


@dataclass(frozen=True)
class Written:
    """What :func:`write` stored: the evaluation's id, whether it superseded the case's default
    rating in place (a callback), and the ticket it opened (a 差评)."""

    evaluation_id: int
    superseded_default: bool = False
    ticket_id: int | None = None
    #: The rating's leaf in the transparency log (None while the log is switched off).
    receipt: transparency.Receipt | None = None


#: A hook run inside the transaction, after everything is written (e.g. the audit entry).
Within = Callable[[Written], None]


def write(
    first: FirstRating,
    settings: Settings | None,
    *,
    supersede_default: bool = False,
    within: Within | None = None,
) -> Written:
    """Store a first rating in ONE transaction (see the module docstring); sync, run it via
    ``ctx.db.run``. ``settings`` gives the ticket's deadlines (needed for a 差评).

    409 ``already_evaluated`` when the case has its first rating (read in the transaction) —
    unless ``supersede_default`` and that rating is the system's default one, which is then
    replaced in place (same row, so the unique index still guards the case); 410 ``token_*``
    when the scanned token was used, revoked or expired meanwhile; ``Case.DoesNotExist`` for
    an unknown case.
    """
    now = first.at
    try:
        with database.atomic():
            case, token = _case_and_token(first.case_id, first.token_id)
            superseded, superseded_level = False, None
            if supersede_default and (existing := _first_rating_of(case.id)) is not None:
                evaluation_id, superseded = _supersede(existing, first), True
                superseded_level = existing[2]
            else:
                if case.first_rated_at is not None:
                    raise errors.AlreadyEvaluated()
                if first.token_id is not None:
                    check_token_usable(token, None, now)
                evaluation_id = _insert_evaluation(case, first)
                marked = compiled_rows("ratings.mark_rated", _mark_rated, (case.id, _db_time(now)))
                if marked != 1:
                    raise errors.AlreadyEvaluated()
            _close_tokens(case.id, first.token_id, now)
            schedule.cancel_case_jobs(case.id, now)  # no reminder, no default rating any more
            insert_indicators(evaluation_id, first.indicators, first.indicator_ids)
            targets = {f"target_{key}": first.targets.get(key) for key in TARGETS}
            rollups.first_rating(case, first.channel, first.overall, targets, now, superseded_level)
            ticket_id = None
            if levels.is_bad(first.overall):
                if settings is None:
                    raise ValueError("a 差评 opens a ticket: give the settings")
                ticket_id = open_ticket(evaluation_id, case, now, settings)
            # Every channel's first rating passes here, inside its transaction: its leaf in
            # the transparency log is part of the same commit (one cannot exist without the
            # other).
            receipt = transparency.append("rating", {"evaluation_id": evaluation_id}, now)
            written = Written(evaluation_id, superseded, ticket_id, receipt)
            if within is not None:
                within(written)
    except peewee.IntegrityError:
        raise errors.AlreadyEvaluated() from None
    return written


async def record(
    ctx: Context,
    first: FirstRating,
    *,
    claim: bool = False,
    supersede_default: bool = False,
    within: Within | None = None,
) -> Written:
    """Write a first rating and publish it after commit; with ``claim``, first take the
    case's Redis claim (taken → 409 ``already_evaluated``), released on failure and kept
    (until it expires) on success."""
    key, owner = claim_key(ctx, first.case_id), secrets.token_hex(8)
    try:
        claimed = claim and await _claim(ctx, key, owner, first.case_id)
        try:
            written = await ctx.db.run(
                write, first, ctx.settings, supersede_default=supersede_default, within=within
            )
        except BaseException:
            if claimed:
                await _release_claim(ctx, key, owner)
            raise
    except errors.AlreadyEvaluated:
        raise await _already_evaluated(ctx, first) from None
    await realtime.publish_after_commit(ctx, written.evaluation_id)
    await screen.case_rated(ctx, first.case_id)  # the window's 评价器 thanks the citizen
    return written


# --------------------------------------------------------------------------- the claim


def claim_key(ctx: Context, case_id: int) -> str:
    """The Redis key of the one-time claim on a case's rating."""
    return ctx.rkeys("claim", str(case_id))


async def _claim(ctx: Context, key: str, owner: str, case_id: int) -> bool:
    """Take the claim; False when Redis is unavailable (the database constraint still
    decides). The claim only turns concurrent submissions away early: it never answers for
    a rating that is not stored. While another request holds it, this one waits up to
    :data:`CLAIM_WAIT_SECONDS` for the database to say: rated → 409 ``already_evaluated``;
    the claim gone (its holder failed, or died and it expired) → take it; still held → 409
    ``rating_in_progress`` (retry). A claim left by a killed process used to answer
    "already rated" for 30 s about a rating that was never stored."""
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        try:
            if await ctx.redis.set(key, owner, nx=True, ex=CLAIM_SECONDS):
                return True
        except RedisError as exc:
            log.warning(
                "redis claim unavailable: relying on the database constraint",
                extra={"fields": {"error": type(exc).__name__}},
            )
            return False
        if await ctx.db.run(_first_rating_of_case, case_id) is not None:
            raise errors.AlreadyEvaluated()
        if time.monotonic() >= deadline:
            raise errors.RatingInProgress(retry_after=CLAIM_RETRY_AFTER_SECONDS)
        await asyncio.sleep(CLAIM_POLL_SECONDS)


def _first_rating_of_case(case_id: int) -> tuple[int, int | None] | None:
    """``(evaluation id, user id)`` of the case's stored first rating, or None."""
    row = (
        Evaluation.select(Evaluation.id, Evaluation.user)
        .where((Evaluation.case == case_id) & (Evaluation.assess_number == 1))
        .tuples()
        .first()
    )
    return (row[0], row[1]) if row else None


async def _already_evaluated(ctx: Context, first: FirstRating) -> errors.ContractError:
    """409 ``already_evaluated``, with ``evaluation_id`` when the stored rating is the
    caller's own (a retry whose first answer was lost learns which rating it is)."""
    stored = await ctx.db.run(_first_rating_of_case, first.case_id)
    if stored is not None and first.user_id is not None and stored[1] == first.user_id:
        return errors.AlreadyEvaluated(
            "You have already rated this case.", evaluation_id=str(stored[0])
        )
    return errors.AlreadyEvaluated()


async def _release_claim(ctx: Context, key: str, owner: str) -> None:
    try:
        await ctx.redis.eval(_RELEASE_CLAIM, 1, key, owner)
    except RedisError as exc:
        log.warning("releasing a claim failed", extra={"fields": {"error": type(exc).__name__}})


# --------------------------------------------------------------------------- the statements


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


def _case_and_token_row() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    fields = _CASE_COLUMNS + _TOKEN_COLUMNS
    query = (
        Case.select(*fields)
        .join_from(
            Case,
            QrToken,
            peewee.JOIN.LEFT_OUTER,
            on=((QrToken.case == Case.id) & (QrToken.id == _p(1))),
        )
        .where(Case.id == _p(0))
    )
    return query, fields


def _case_and_token(case_id: int, token_id: int | None) -> tuple[Case, QrToken | None]:
    """The case (DoesNotExist when missing) and, when ``token_id`` is one of the case's
    tokens, that token: one compiled query."""
    rows = compiled_rows("ratings.case_token", _case_and_token_row, (case_id, token_id))
    if not rows:
        raise Case.DoesNotExist(f"Case {case_id} does not exist.")
    row = rows[0]
    case = Case(**{f.name: v for f, v in zip(_CASE_COLUMNS, row, strict=False)})
    tid, status, expires_at = row[len(_CASE_COLUMNS) :]
    token = QrToken(id=tid, status=status, expires_at=expires_at) if tid is not None else None
    return case, token


def _mark_rated() -> tuple[peewee.Query, tuple[()]]:
    query = Case.update(first_rated_at=_p(1)).where(
        (Case.id == _p(0)) & Case.first_rated_at.is_null()
    )
    return query, ()


def _close_tokens_query() -> tuple[peewee.Query, tuple[()]]:
    """Every active token of case ``param(0)``: ``param(1)`` (may be NULL) becomes used at
    ``param(2)``, the others revoked; one statement."""
    is_used = QrToken.id == _p(1)
    query = QrToken.update(
        status=peewee.Case(None, [(is_used, "used")], "revoked"),
        used_at=peewee.Case(None, [(is_used, _p(2))], QrToken.used_at),
    ).where((QrToken.case == _p(0)) & (QrToken.status == "active"))
    return query, ()


def _close_tokens(case_id: int, used_token_id: int | None, now: datetime) -> None:
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


#: Every column of an evaluation but its id, in the order of the compiled INSERT's params.
_EVALUATION_COLUMNS = tuple(f for f in Evaluation._meta.sorted_fields if f.name != "id")


def _evaluation_insert() -> peewee.Insert:
    return Evaluation.insert({f: _p(n) for n, f in enumerate(_EVALUATION_COLUMNS)})


def _insert_evaluation(case: Case, first: FirstRating) -> int:
    """INSERT the first rating (every column given, through a compiled statement)."""
    values: dict[str, Any] = {
        "case": case.id,
        "assess_number": 1,
        "like_count": 0,
        **catalogue_refs(case),
        **_rating_columns(first),
    }
    args = [
        None if values[f.name] is None else f.db_value(values[f.name]) for f in _EVALUATION_COLUMNS
    ]
    return compiled_insert("ratings.insert", _evaluation_insert, args)


def _first_rating_of(case_id: int) -> tuple[int, str, int] | None:
    """``(id, channel, overall)`` of the case's first rating, if it has one."""
    row = (
        Evaluation.select(Evaluation.id, Evaluation.channel, Evaluation.overall)
        .where((Evaluation.case == case_id) & (Evaluation.assess_number == 1))
        .tuples()
        .first()
    )
    return None if row is None else (row[0], row[1], row[2])


def _supersede(existing: tuple[int, str, int], first: FirstRating) -> int:
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
