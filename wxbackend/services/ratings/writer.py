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
from collections.abc import Callable
from dataclasses import dataclass

import peewee
from redis.exceptions import RedisError

from models.evaluation import TARGETS, Evaluation
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.cases.tokens import check_token_usable
from wxbackend.services.devices import screen
from wxbackend.services.messaging import schedule
from wxbackend.services.public import live as realtime
from wxbackend.services.public import rollups
from wxbackend.services.ratings import levels, rows
from wxbackend.services.ratings.rows import FirstRating
from wxbackend.services.ratings.rules import insert_indicators
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
DEFAULT_CHANNEL = rows.DEFAULT_CHANNEL
_RELEASE_CLAIM = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
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
        with database.atomic(), rollups.batched():  # one upsert per rollup table
            read = rows.case_and_token(first.case_id, first.token_id)
            case, token = read.case, read.token
            superseded, superseded_level = False, None
            if supersede_default and (existing := rows.first_rating_of(case.id)) is not None:
                evaluation_id, superseded = rows.supersede(existing, first), True
                superseded_level = existing[2]
            else:
                if case.first_rated_at is not None:
                    raise errors.AlreadyEvaluated()
                if first.token_id is not None:
                    check_token_usable(token, None, now)
                evaluation_id = rows.insert_evaluation(case, first)
                if not rows.mark_rated(case.id, now):
                    raise errors.AlreadyEvaluated()
            rows.close_tokens(case.id, first.token_id, now)
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
            receipt = transparency.append(
                "rating",
                {"evaluation_id": evaluation_id},
                now,
                written=rows.leaf_values(read, first, evaluation_id),
            )
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
