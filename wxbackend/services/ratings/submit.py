"""A citizen's first rating (``POST /evaluations``): the checks, the text check, the store.

A first rating comes either with the ``scene`` of a scanned QR code (channel ``qr``) or with a
``case_id`` from a reminder or the pending list (channel ``miniprogram``, the case's own
applicant only). It needs a login and a verified identity.

Order of the work, so a rejected request stores nothing and an accepted one is never lost:

1. Read-only checks (:func:`prepare_first_rating`): identity, the case (through its token for
   a scene), the rating window (:mod:`~wxbackend.services.ratings.window`, by scene and by
   case id alike), ``rating.require_applicant``, staff rating their own case, already rated.
2. The rating itself (:func:`~wxbackend.services.ratings.rules.parse_rating`,
   :func:`~wxbackend.services.ratings.rules.check_indicators`).
3. The comment through WeChat's ``msg_sec_check`` v2 *before* the transaction
   (:func:`comment_status`): ``risky`` → 422 ``comment_rejected``; ``review`` — or WeChat
   unavailable — stores it ``pending_review`` (the rating is kept, its text withheld until a
   moderator decides).
4. The writer (:mod:`wxbackend.services.ratings.writer`) with the Redis claim: the one
   transaction every channel shares, then publishing after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.base import utcnow
from models.evaluation import Evaluation
from models.identity import Identity
from models.user import User
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import compiled_rows, param
from wxbackend.services.cases import scan
from wxbackend.services.cases.lookup import find_case, find_code
from wxbackend.services.cases.tokens import check_token_usable
from wxbackend.services.ratings import idempotency, window, writer
from wxbackend.services.ratings.rules import Rating, check_indicators, parse_rating
from wxbackend.services.ratings.views import owner_view
from wxbackend.services.ratings.writer import FirstRating
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.evaluations")

#: Scene of ``msg_sec_check`` for a comment (评论).
SEC_CHECK_SCENE = 2


@dataclass(frozen=True)
class Prepared:
    """What the checks before the transaction established about a first rating."""

    case_id: int
    token_id: int | None
    channel: str
    user_id: int
    openid: str
    rater_id_hash: str
    name_masked: str


# --------------------------------------------------------------------------- the checks


def prepare_first_rating(
    user_id: int,
    scene: str | None,
    case_id: Any,
    require_applicant: bool,
    window_days: int = 7,
) -> Prepared:
    """The read-only checks of a first rating (no writes; the transaction repeats the ones
    that can change meanwhile).

    403 ``identity_required`` without a valid identity; a scene must name a token (404
    ``token_not_found``); a case id must exist (404); past the case's rating window (and not
    rated within it) 410 ``rating_closed``; a scene's token must be usable (410
    ``token_*``); 409
    ``already_evaluated`` if the case has its rating; 403 ``not_applicant`` when the identity
    is not the applicant (always for ``case_id``, for a scene when ``require_applicant``);
    403 ``self_evaluation_forbidden`` when the identity is the case's window staff or approver.
    """
    now = utcnow()
    found = compiled_rows(
        "evaluations.identity",
        _identity_with_openid,
        (user_id, Identity.expires_at.db_value(now)),
    )
    if not found:
        raise errors.IdentityRequired()
    id_hash, name_masked, openid = found[0]
    if scene is not None:
        case_number, token_id, channel = _check_scene(
            scene, require_applicant, now, id_hash, window_days
        )
    else:
        case_number = _check_case_id(case_id, id_hash, now, window_days)
        token_id, channel = None, "miniprogram"
    return Prepared(
        case_id=case_number,
        token_id=token_id,
        channel=channel,
        user_id=user_id,
        openid=openid or "",
        rater_id_hash=id_hash,
        name_masked=name_masked,
    )


def _identity_with_openid() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    """A user's unexpired identity (as ``scan.active_identity``) with the user's openid."""
    fields = (Identity.id_hash, Identity.name_masked, User.openid)
    query = (
        Identity.select(*fields)
        .join_from(Identity, User, peewee.JOIN.LEFT_OUTER, on=(Identity.user == User.id))
        .where(
            (Identity.user == peewee.Value(param(0), converter=False))
            & (Identity.expires_at > peewee.Value(param(1), converter=False))
        )
        .limit(1)
    )
    return query, fields


def _check_scene(
    scene: str, require_applicant: bool, now: datetime, id_hash: str, window_days: int
) -> tuple[int, int, str]:
    """The checks of a scanned code (one query, :func:`lookup.find_code`): ``(case id, token
    id, "qr")``."""
    code = find_code(scene)
    if code is None:
        raise errors.TokenNotFound()
    window.check_open(code.case, window_days, now)
    check_token_usable(code.token, code.case, now)
    if require_applicant and id_hash != code.case.applicant_id_hash:
        raise errors.NotApplicant()
    if code.rows.is_staff(id_hash):
        raise errors.SelfEvaluationForbidden()
    if code.case.first_rated_at is not None:
        raise errors.AlreadyEvaluated()
    return code.case.id, code.token.id, "qr"


def _check_case_id(case_id: Any, id_hash: str, now: datetime, window_days: int) -> int:
    """The checks of a case id (always the applicant's own; one query,
    :func:`lookup.find_case`): the case's id."""
    number = scan.parse_id(case_id)
    rows = find_case(number) if number is not None else None
    if rows is None:
        raise errors.NotFound("No such case.")
    if id_hash != rows.case.applicant_id_hash:
        raise errors.NotApplicant()
    window.check_open(rows.case, window_days, now)
    if rows.is_staff(id_hash):
        raise errors.SelfEvaluationForbidden()
    if rows.case.first_rated_at is not None:
        raise errors.AlreadyEvaluated()
    return rows.case.id


# --------------------------------------------------------------------------- the text check


async def comment_status(ctx: Context, openid: str, comment: str | None) -> str:
    """The text check of a comment (``msg_sec_check`` v2, scene 2), before any write.

    ``pass`` (or no comment) → ``visible``; ``review`` → ``pending_review``; ``risky`` → 422
    ``comment_rejected``. WeChat failing or answering oddly → ``pending_review``: the rating
    is never lost, a moderator decides on the text. Only the errcode is logged.
    """
    if comment is None:
        return "visible"
    try:
        answer = await ctx.wechat.msg_sec_check(openid, comment, scene=SEC_CHECK_SCENE)
    except wx.WeChatError as exc:
        log.warning(
            "msg_sec_check failed: comment held for review",
            extra={"fields": {"errcode": str(exc.errcode)}},
        )
        return "pending_review"
    suggest = (answer.get("result") or {}).get("suggest")
    if suggest == "risky":
        raise errors.CommentRejected()
    if suggest == "pass":
        return "visible"
    return "pending_review"


# --------------------------------------------------------------------------- the flow


def first_rating(
    prepared: Prepared, rating: Rating, indicator_ids: dict[str, int], status: str
) -> FirstRating:
    """What the writer stores of a citizen's checked rating."""
    return FirstRating.of(
        rating,
        indicator_ids,
        case_id=prepared.case_id,
        channel=prepared.channel,
        comment_status=status,
        user_id=prepared.user_id,
        rater_id_hash=prepared.rater_id_hash,
        name_masked=prepared.name_masked,
        token_id=prepared.token_id,
    )


def new_owner_view(evaluation_id: int, first: FirstRating) -> dict[str, Any]:
    """The owner view of the first rating the writer just stored from ``first`` (no re-read:
    nothing else can have changed it but a like, counted from 0)."""
    stored = Evaluation(
        id=evaluation_id,
        case=first.case_id,
        overall=first.overall,
        comment=first.comment,
        comment_status=first.comment_status,
        channel=first.channel,
        assess_number=1,
        like_count=0,
        created_at=first.at,
        **{f"stage_{key}": level for key, level in first.stages.items()},
        **{f"target_{key}": level for key, level in first.targets.items()},
    )
    return owner_view(stored, list(first.indicator_ids))  # display order (check_indicators)


async def _store(
    ctx: Context,
    user_id: int,
    key: idempotency.Key | None,
    *,
    scene: str | None = None,
    case_id: Any = None,
    overall: Any = None,
    stages: Any = None,
    targets: Any = None,
    indicators: Any = None,
    comment: Any = None,
) -> dict[str, Any]:
    """Check, text-check, claim, store, publish; the owner view (see :func:`submit`)."""
    settings = ctx.settings.rating
    rating: Rating | None = None
    invalid: errors.ContractError | None = None
    try:
        rating = parse_rating(
            overall,
            stages=stages,
            targets=targets,
            indicators=indicators,
            comment=comment,
            comment_max_chars=settings.comment_max_chars,
        )
    except errors.ContractError as exc:
        invalid = exc  # answered after the case's own errors, as the checks are ordered
    replayed, prepared, indicator_ids = await ctx.db.run(
        _prepare_with_indicators,
        key,
        user_id,
        scene,
        case_id,
        settings.require_applicant,
        rating,
        settings.window_days,
    )
    if replayed is not None:  # a retry of a stored rating: its original answer
        return replayed
    if rating is None:
        raise invalid or errors.InvalidRating()
    status = await comment_status(ctx, prepared.openid, rating.comment)
    first = first_rating(prepared, rating, indicator_ids, status)
    within = None
    if key is not None:

        def within(written: writer.Written) -> None:  # the key, in the rating's transaction
            idempotency.remember(key, written.evaluation_id)

    written = await writer.record(ctx, first, claim=True, within=within)
    receipt = written.receipt.as_dict() if written.receipt else None
    return {**new_owner_view(written.evaluation_id, first), "receipt": receipt}


def _prepare_with_indicators(
    key: idempotency.Key | None,
    user_id: int,
    scene: str | None,
    case_id: Any,
    require_applicant: bool,
    rating: Rating | None,
    window_days: int,
) -> tuple[dict[str, Any] | None, Prepared | None, dict[str, int]]:
    """The answer stored under the request's ``Idempotency-Key`` (then nothing else), else
    :func:`prepare_first_rating` and :func:`check_indicators` of a valid rating: one trip to
    the database pool."""
    if (replayed := idempotency.stored_answer(key)) is not None:
        return replayed, None, {}
    prepared = prepare_first_rating(user_id, scene, case_id, require_applicant, window_days)
    return None, prepared, check_indicators(rating.indicators) if rating is not None else {}


async def submit(
    ctx: Context, user_id: int, *, idempotency_key: str | None = None, **body: Any
) -> dict[str, Any]:
    """``POST /evaluations``: the owner view of the stored rating. ``body``: exactly one of
    ``scene`` and ``case_id`` (else 400 ``invalid_body``), ``overall``, ``stages``,
    ``targets``, ``indicators``, ``comment``. With an ``Idempotency-Key``, a retry of a
    stored rating (its answer lost) answers that rating again, also when it races the
    original (:mod:`~wxbackend.services.ratings.idempotency`)."""
    if (body.get("scene") is None) == (body.get("case_id") is None):
        raise errors.InvalidBody("Give either scene or case_id.")
    key = idempotency.parse(user_id, idempotency_key, "rating", body)
    try:  # a stored answer under the key is looked up in the checks' trip (_store)
        return await _store(ctx, user_id, key, **body)
    except (errors.AlreadyEvaluated, errors.TokenUsed) as exc:  # the key may have won a race
        if (again := await idempotency.replay(ctx, key)) is not None:
            return again
        if isinstance(exc, errors.AlreadyEvaluated) and "evaluation_id" not in exc.extra:
            own = await ctx.db.run(_own_rating, user_id, body.get("scene"), body.get("case_id"))
            if own is not None:
                raise errors.AlreadyEvaluated(
                    "You have already rated this case.", evaluation_id=str(own)
                ) from None
        raise


def _own_rating(user_id: int, scene: str | None, case_id: Any) -> int | None:
    """The id of the first rating of the scene's or case id's case when it is the user's."""
    if scene is not None:
        code = find_code(scene)
        number = code.case.id if code is not None else None
    else:
        number = scan.parse_id(case_id)
    if number is None:
        return None
    return (
        Evaluation.select(Evaluation.id)
        .where(
            (Evaluation.case == number)
            & (Evaluation.assess_number == 1)
            & (Evaluation.user == user_id)
        )
        .scalar()
    )
