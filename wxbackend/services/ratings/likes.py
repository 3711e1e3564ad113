"""Likes (点赞) of public ratings by verified citizens.

One like per identity and evaluation: ``liker_id_hash`` is the identity's keyed ID hash, so
two WeChat accounts of one person cannot like twice. ``Evaluation.like_count`` is recounted
from the ``like`` rows in the transaction that changes them, so it is exact under any
concurrency: the database is the truth.

Only first ratings (``assess_number`` 1) are likeable; a follow-up (追评) is shown inside its
first rating, so its id answers 404 like an unknown one. Nobody likes their own rating (403
``own_rating``, product.md rule 16): the author is known by the rating's user and by its
identity hash (which an identity erasure clears, so both are compared).
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from models.base import utcnow
from models.evaluation import Evaluation, Like
from models.identity import Identity
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database


@dataclass(frozen=True)
class LikeState:
    liked: bool
    like_count: int

    def as_dict(self) -> dict[str, object]:
        return {"liked": self.liked, "like_count": self.like_count}


def parse_evaluation_id(text: str) -> int:
    """A path id → int; anything that is not a positive integer is 404 (no such rating)."""
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) <= 0:
        raise errors.NotFound("No such evaluation.")
    return int(text)


def verified_identity(user_id: int) -> Identity | None:
    """The user's identity if it is verified and not expired, else None."""
    return Identity.get_or_none((Identity.user == user_id) & (Identity.expires_at > utcnow()))


def _lock_public_evaluation(evaluation_id: int) -> None:
    """Lock the rating's row for this transaction (404 unless it is a public first rating).

    The no-op UPDATE takes the row lock on PostgreSQL (SQLite's IMMEDIATE transaction
    already holds the write lock), so concurrent likes of one rating serialize and each
    recount sees every committed like.
    """
    locked = (
        Evaluation.update(like_count=Evaluation.like_count)
        .where((Evaluation.id == evaluation_id) & (Evaluation.assess_number == 1))
        .execute()
    )
    if locked != 1:
        raise errors.NotFound("No such evaluation.")


def _recount(evaluation_id: int) -> int:
    count = Like.select(peewee.fn.COUNT(Like.id)).where(Like.evaluation == evaluation_id)
    Evaluation.update(like_count=count).where(Evaluation.id == evaluation_id).execute()
    stored = Evaluation.select(Evaluation.like_count).where(Evaluation.id == evaluation_id)
    return stored.scalar()


def add_like(evaluation_id: int, user_id: int) -> LikeState:
    """Like the rating as the user's verified identity (idempotent).

    403 ``identity_required`` without a verified identity; 404 for an unknown id or a
    follow-up; 403 ``own_rating`` for the liker's own rating (:func:`is_own_rating`).
    """
    identity = verified_identity(user_id)
    if identity is None:
        raise errors.IdentityRequired("Verify your real name before liking ratings.")
    with database.atomic():
        _lock_public_evaluation(evaluation_id)
        if is_own_rating(evaluation_id, user_id, identity.id_hash):
            raise errors.OwnRating()
        if _liked_by_account(evaluation_id, user_id):  # e.g. before an identity erasure
            return LikeState(True, _recount(evaluation_id))
        Like.insert(
            evaluation=evaluation_id,
            user=user_id,
            liker_id_hash=identity.id_hash,
            name_masked=identity.name_masked,
        ).on_conflict_ignore().execute()
        count = _recount(evaluation_id)
    return LikeState(True, count)


def is_own_rating(evaluation_id: int, user_id: int, id_hash: str) -> bool:
    """True when the rating was given by this account or by this identity (from any
    account)."""
    author = (Evaluation.user == user_id) | (Evaluation.rater_id_hash == id_hash)
    return Evaluation.select().where((Evaluation.id == evaluation_id) & author).exists()


def _liked_by_account(evaluation_id: int, user_id: int) -> bool:
    return Like.select().where((Like.evaluation == evaluation_id) & (Like.user == user_id)).exists()


def remove_like(evaluation_id: int, user_id: int) -> LikeState:
    """Withdraw the user's like (idempotent): the one made by this account, and the one of
    the user's current identity made from another account. No identity needed: a like that
    was never made just answers ``liked: false``. 404 as :func:`add_like`.
    """
    identity = Identity.get_or_none(Identity.user == user_id)
    mine = Like.user == user_id
    if identity is not None:
        mine = mine | (Like.liker_id_hash == identity.id_hash)
    with database.atomic():
        _lock_public_evaluation(evaluation_id)
        Like.delete().where((Like.evaluation == evaluation_id) & mine).execute()
        count = _recount(evaluation_id)
    return LikeState(False, count)


async def like(ctx: Context, evaluation_id: str, user_id: int) -> LikeState:
    """``PUT /evaluations/{id}/like``."""
    return await ctx.db.run(add_like, parse_evaluation_id(evaluation_id), user_id)


async def unlike(ctx: Context, evaluation_id: str, user_id: int) -> LikeState:
    """``DELETE /evaluations/{id}/like``."""
    return await ctx.db.run(remove_like, parse_evaluation_id(evaluation_id), user_id)
