"""The follow-up of a first rating (追评, ``POST /evaluations/{id}/follow-up``): the owner's one
follow-up, checked as a rating (levels, indicators, reason, text check), stored with
``assess_number`` 2 and the original's channel; it opens no ticket.

When (product.md rule 15): by the rating's author with a verified identity; for a 差评 only
once its ticket is ``closed`` or ``invalid`` (the citizen judges the rectification); for any
other rating within ``rating.follow_up_days`` of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.evaluation import Evaluation, catalogue_refs
from models.ticket import Ticket
from models.user import User
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.cases.scan import active_identity, parse_id
from wxbackend.services.public import live as realtime
from wxbackend.services.public import rollups
from wxbackend.services.ratings import idempotency, levels
from wxbackend.services.ratings.rules import (
    Rating,
    check_indicators,
    insert_indicators,
    parse_rating,
)
from wxbackend.services.ratings.submit import comment_status
from wxbackend.services.ratings.views import owner_view_of
from wxbackend.services.transparency import log as transparency

#: A 差评's ticket statuses after which its follow-up may come (the rectification is judged).
FOLLOW_UP_TICKET_STATUSES = frozenset({"closed", "invalid"})


@dataclass(frozen=True)
class FollowUpBase:
    """The first rating a follow-up (追评) is added to, as the checks found it."""

    evaluation_id: int
    openid: str


def prepare_follow_up(
    user_id: int, evaluation_id: str, follow_up_days: int = 180, now: datetime | None = None
) -> FollowUpBase:
    """Checks of a follow-up: the evaluation exists (404), is the caller's (403
    ``not_owner``), the caller has a verified identity (403 ``identity_required``) — the
    rating's own, when the rating still records it (else 403 ``not_owner``) —, it is a first
    rating with no follow-up yet (409 ``follow_up_exists``), and its time has come and not
    gone (:func:`check_follow_up_time`)."""
    now = now or utcnow()
    number = parse_id(evaluation_id)
    original = Evaluation.get_or_none(Evaluation.id == number) if number is not None else None
    if original is None:
        raise errors.NotFound("No such evaluation.")
    if original.user_id is None or original.user_id != user_id:
        raise errors.NotOwner()
    identity = active_identity(user_id, now)
    if identity is None:
        raise errors.IdentityRequired("Verify your real name before adding a follow-up.")
    if original.rater_id_hash is not None and original.rater_id_hash != identity.id_hash:
        raise errors.NotOwner("This rating was given under another identity.")
    if original.assess_number != 1:
        raise errors.FollowUpExists("A follow-up cannot itself be followed up.")
    if _has_follow_up(original.case_id):
        raise errors.FollowUpExists()
    check_follow_up_time(original, follow_up_days, now)
    openid = User.select(User.openid).where(User.id == user_id).scalar()
    return FollowUpBase(original.id, openid or "")


def check_follow_up_time(original: Evaluation, follow_up_days: int, now: datetime) -> None:
    """A 差评's follow-up waits for its ticket to be ``closed`` or ``invalid`` (409
    ``ticket_open``; a 差评 without a ticket waits too — every 差评 opens one); any other
    rating's follow-up comes within ``follow_up_days`` of it (410 ``follow_up_closed``)."""
    if levels.is_bad(original.overall):
        status = Ticket.select(Ticket.status).where(Ticket.evaluation == original.id).scalar()
        if status not in FOLLOW_UP_TICKET_STATUSES:
            raise errors.TicketOpen()
    elif now >= original.created_at + timedelta(days=follow_up_days):
        raise errors.FollowUpClosed()


def _has_follow_up(case_id: int) -> bool:
    return (
        Evaluation.select()
        .where((Evaluation.case == case_id) & (Evaluation.assess_number == 2))
        .exists()
    )


def store_follow_up(
    base: FollowUpBase,
    rating: Rating,
    indicator_ids: Mapping[str, int],
    comment_status: str,
    key: idempotency.Key | None = None,
) -> int:
    """Store the follow-up (``assess_number`` 2, the original's channel, no ticket) in one
    transaction; the unique (case, assess_number) index makes a concurrent second one 409
    ``follow_up_exists``. Returns its id."""
    now = utcnow()
    try:
        with database.atomic(), rollups.batched():  # rollups last: see rollups.batched
            original = Evaluation.get_by_id(base.evaluation_id)
            follow_up = Evaluation.create(
                case=original.case_id,
                assess_number=2,
                channel=original.channel,
                user=original.user_id,
                rater_id_hash=original.rater_id_hash,
                name_masked=original.name_masked,
                overall=rating.overall,
                comment=rating.comment,
                comment_status=comment_status,
                created_at=now,
                **catalogue_refs(original),
            )
            insert_indicators(follow_up.id, rating.indicators, indicator_ids)
            rollups.follow_up(original.case_id)
            transparency.append("follow_up", {"evaluation_id": follow_up.id}, now)
            if key is not None:
                idempotency.remember(key, follow_up.id)
    except peewee.IntegrityError:
        raise errors.FollowUpExists() from None
    return follow_up.id


async def _store(
    ctx: Context,
    user_id: int,
    evaluation_id: str,
    key: idempotency.Key | None,
    *,
    overall: Any = None,
    indicators: Any = None,
    comment: Any = None,
) -> dict[str, Any]:
    """Check, text-check, store, publish; the owner view (see :func:`follow_up`)."""
    days = ctx.settings.rating.follow_up_days
    base = await ctx.db.run(prepare_follow_up, user_id, evaluation_id, days)
    rating = parse_rating(
        overall,
        indicators=indicators,
        comment=comment,
        comment_max_chars=ctx.settings.rating.comment_max_chars,
    )
    indicator_ids = await ctx.db.run(check_indicators, rating.indicators)
    status = await comment_status(ctx, base.openid, rating.comment)
    new_id = await ctx.db.run(store_follow_up, base, rating, indicator_ids, status, key)
    # republishes the first rating with its follow-up
    await realtime.publish_after_commit(ctx, new_id)
    return await ctx.db.run(owner_view_of, new_id)


async def follow_up(
    ctx: Context,
    user_id: int,
    evaluation_id: str,
    *,
    idempotency_key: str | None = None,
    **body: Any,
) -> dict[str, Any]:
    """``POST /evaluations/{id}/follow-up`` (追评): the owner view of the stored follow-up
    (``body``: ``overall``, ``indicators``, ``comment``). With an ``Idempotency-Key``, a retry
    of a stored follow-up answers it again, also when it races the original."""
    sent = {"evaluation_id": evaluation_id, **body}
    key = idempotency.parse(user_id, idempotency_key, "follow_up", sent)
    if (again := await idempotency.replay(ctx, key)) is not None:
        return again
    try:
        return await _store(ctx, user_id, evaluation_id, key, **body)
    except errors.FollowUpExists:  # the same key may have won a race
        if (again := await idempotency.replay(ctx, key)) is not None:
            return again
        raise
