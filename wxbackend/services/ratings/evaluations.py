"""Citizens' ratings (好差评): the first rating of a case (一事一评) and its follow-up (追评).

A first rating (``POST /evaluations``) comes either with the ``scene`` of a scanned QR code
(channel ``qr``) or with a ``case_id`` from a reminder or the pending list (channel
``miniprogram``, the case's own applicant only). It needs a login and a verified identity.

Order of the work, so a rejected request stores nothing and an accepted one is never lost:

1. Read-only checks (:func:`prepare_first_rating`): identity, the case (through its token for
   a scene), ``rating.require_applicant``, staff rating their own case, already rated.
2. The rating itself (:func:`parse_rating`, :func:`check_indicators`): levels are integers
   1–5, indicator codes are known, a 差评 (overall ≤2) says why, the comment is not too long.
3. The comment through WeChat's ``msg_sec_check`` v2 *before* the transaction: ``risky`` →
   422 ``comment_rejected``; ``review`` — or WeChat unavailable — stores it
   ``pending_review`` (the rating is kept, its text withheld until a moderator decides).
4. Single use, twice: an atomic Redis claim per case (``SET NX EX``) turns concurrent
   submissions away fast; the transaction (:func:`store_first_rating`) re-reads the case and
   the token, and the unique (case, assess_number) index is the final word — it holds when
   Redis is flushed or down. The same transaction marks the token used, revokes every other
   token of the case, stores the indicators and opens the 差评 ticket.
5. After commit: the answer, and the optional publisher hook
   ``ctx.extras["publish_evaluation"](evaluation_id)`` (failures are logged, never raised).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee
from redis.exceptions import RedisError

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Staff
from models.evaluation import (
    BAD_LEVELS,
    LEVELS,
    STAGES,
    TARGETS,
    Evaluation,
    EvaluationIndicator,
    Indicator,
    catalogue_refs,
)
from models.identity import Identity
from models.ticket import Ticket, TicketEvent
from models.user import User
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import compiled_insert, compiled_rows, database, param
from wxbackend.security import token_digest
from wxbackend.services.cases import reports as cases
from wxbackend.services.cases import scan
from wxbackend.services.messaging import reminders
from wxbackend.services.public import live as realtime
from wxbackend.services.tickets.workdays import WorkCalendar
from wxbackend.services.transparency import log as transparency
from wxbackend.settings import Settings
from wxbackend.timefmt import iso
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.evaluations")

#: Seconds a Redis claim on a case lasts (covers the text check and the transaction).
CLAIM_SECONDS = 30
#: Scene of ``msg_sec_check`` for a comment (评论).
SEC_CHECK_SCENE = 2
_RELEASE_CLAIM = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


# --------------------------------------------------------------------------- the rating


@dataclass(frozen=True)
class Rating:
    """A validated rating: levels 1–5, indicator codes (unique, in order), a trimmed comment."""

    overall: int
    stages: Mapping[str, int]
    targets: Mapping[str, int]
    indicators: tuple[str, ...]
    comment: str | None

    @property
    def is_bad(self) -> bool:
        """A 差评: overall 1 or 2."""
        return self.overall in BAD_LEVELS


def check_level(value: Any, name: str = "overall") -> int:
    """``value`` if it is an integer 1–5 (not a bool, not ``"5"``, not 4.5), else 422
    ``invalid_rating`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
        raise errors.InvalidRating(f"{name} must be an integer from 1 to 5.", field=name)
    return value


def _levels(value: Any, allowed: tuple[str, ...], group: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidRating(f"{group} must be an object of levels.", field=group)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise errors.InvalidRating(f"Unknown {group} key: {unknown[0]}.", field=group)
    return {key: check_level(value[key], f"{group}.{key}") for key in allowed if key in value}


def parse_rating(
    overall: Any,
    *,
    stages: Any = None,
    targets: Any = None,
    indicators: Any = None,
    comment: Any = None,
    comment_max_chars: int = 500,
) -> Rating:
    """Check a rating as the citizen sent it (pure: indicator codes are checked against the
    database by :func:`check_indicators`).

    Levels (overall, each given stage and target) must be integers 1–5 and stage/target keys
    known (422 ``invalid_rating``); ``indicators`` is a list of code strings (anything else is
    422 ``unknown_indicator``; repeats are dropped); the comment is trimmed (blank → None) and
    at most ``comment_max_chars`` characters (422 ``comment_too_long``); a 差评 needs an
    indicator or a comment (422 ``reason_required``).
    """
    level = check_level(overall)
    stage_levels = _levels(stages, STAGES, "stages")
    target_levels = _levels(targets, TARGETS, "targets")
    codes = _indicator_codes(indicators)
    text = _comment(comment, comment_max_chars)
    if level in BAD_LEVELS and not codes and text is None:
        raise errors.ReasonRequired()
    return Rating(level, stage_levels, target_levels, codes, text)


def _indicator_codes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise errors.UnknownIndicator("indicators must be a list of indicator codes.")
    return tuple(dict.fromkeys(value))


def _comment(value: Any, max_chars: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidBody("comment must be a string.", field="comment")
    text = value.strip()
    if not text:
        return None
    if len(text) > max_chars:
        raise errors.CommentTooLong(
            f"The comment has {len(text)} characters; at most {max_chars} are allowed.",
            max_chars=max_chars,
        )
    return text


def check_indicators(codes: Iterable[str]) -> dict[str, int]:
    """``{code: indicator id}`` for ``codes``, in the indicators' display order; any code not
    active → 422 ``unknown_indicator``."""
    wanted = list(codes)
    if not wanted:
        return {}
    found = {
        row.code: row.id
        for row in Indicator.select(Indicator.id, Indicator.code)
        .where(Indicator.code.in_(wanted) & (Indicator.active == True))  # noqa: E712
        .order_by(Indicator.sort_order, Indicator.id)
    }
    for code in wanted:
        if code not in found:
            raise errors.UnknownIndicator(
                f"Unknown indicator code: {code[:32]}.", indicator=code[:32]
            )
    return found


# --------------------------------------------------------------------------- shapes


def stages_of(evaluation: Evaluation) -> dict[str, int]:
    """The stage levels the citizen gave (``{"appointment": 5, ...}``, given ones only)."""
    values = {key: getattr(evaluation, f"stage_{key}") for key in STAGES}
    return {key: value for key, value in values.items() if value is not None}


def targets_of(evaluation: Evaluation) -> dict[str, int]:
    """The target levels the citizen gave (``{"window_staff": 4, ...}``, given ones only)."""
    values = {key: getattr(evaluation, f"target_{key}") for key in TARGETS}
    return {key: value for key, value in values.items() if value is not None}


def indicator_codes_of(evaluation_ids: Iterable[int]) -> dict[int, list[str]]:
    """``{evaluation id: [indicator codes]}`` in the indicators' display order (one query)."""
    ids = list(evaluation_ids)
    codes: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return codes
    rows = (
        EvaluationIndicator.select(EvaluationIndicator.evaluation, Indicator.code)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation.in_(ids))
        .order_by(Indicator.sort_order, Indicator.id)
    )
    for row in rows:
        codes[row.evaluation_id].append(row.indicator.code)
    return codes


def owner_view(evaluation: Evaluation, indicators: list[str]) -> dict[str, Any]:
    """An evaluation as returned to its owner (api.md): ``{id, case_id, overall, stages,
    targets, indicators, comment, comment_status, channel, assess_number, like_count,
    created_at}``. The owner sees their own comment whatever its moderation status."""
    return {
        "id": str(evaluation.id),
        "case_id": str(evaluation.case_id),
        "overall": evaluation.overall,
        "stages": stages_of(evaluation),
        "targets": targets_of(evaluation),
        "indicators": indicators,
        "comment": evaluation.comment,
        "comment_status": evaluation.comment_status,
        "channel": evaluation.channel,
        "assess_number": evaluation.assess_number,
        "like_count": evaluation.like_count,
        "created_at": iso(evaluation.created_at),
    }


def owner_view_of(evaluation_id: int) -> dict[str, Any]:
    """:func:`owner_view` of one stored evaluation (by id)."""
    evaluation = Evaluation.get_by_id(evaluation_id)
    view = owner_view(evaluation, indicator_codes_of([evaluation_id])[evaluation_id])
    return {**view, "receipt": transparency.receipt_of(evaluation_id)}


def new_owner_view(evaluation_id: int, new: NewRating) -> dict[str, Any]:
    """:func:`owner_view` of the first rating :func:`store_first_rating` just stored from
    ``new`` (no re-read: nothing else can have changed it but a like, counted from 0)."""
    prepared, rating = new.prepared, new.rating
    stored = Evaluation(
        id=evaluation_id,
        case=prepared.case_id,
        overall=rating.overall,
        comment=rating.comment,
        comment_status=new.comment_status,
        channel=prepared.channel,
        assess_number=1,
        like_count=0,
        created_at=new.at,
        **{f"stage_{key}": level for key, level in rating.stages.items()},
        **{f"target_{key}": level for key, level in rating.targets.items()},
    )
    return owner_view(stored, list(new.indicator_ids))  # display order (check_indicators)


def my_evaluations(user_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """``GET /me/evaluations``: the user's ratings and follow-ups, newest first."""
    rows = list(
        Evaluation.select()
        .where(Evaluation.user == user_id)
        .order_by(Evaluation.id.desc())
        .limit(limit)
    )
    codes = indicator_codes_of(row.id for row in rows)
    receipts = transparency.receipts_for(codes)
    return [{**owner_view(row, codes[row.id]), "receipt": receipts.get(row.id)} for row in rows]


# --------------------------------------------------------------------------- first rating: DB


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


def prepare_first_rating(
    user_id: int, scene: str | None, case_id: Any, require_applicant: bool
) -> Prepared:
    """The read-only checks of a first rating (no writes; the transaction repeats the ones
    that can change meanwhile).

    403 ``identity_required`` without a valid identity; a scene must be a usable token (404
    ``token_not_found`` / 410 ``token_*``); a case id must exist (404); 409
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
        return _prepare_scene_rating(
            user_id, scene, require_applicant, now, id_hash, name_masked, openid
        )
    number = scan.parse_id(case_id)
    case = Case.get_or_none(Case.id == number) if number is not None else None
    if case is None:
        raise errors.NotFound("No such case.")
    if id_hash != case.applicant_id_hash:  # a case id: always the applicant's own
        raise errors.NotApplicant()
    if is_case_staff(case, id_hash):
        raise errors.SelfEvaluationForbidden()
    if case.first_rated_at is not None:
        raise errors.AlreadyEvaluated()
    return Prepared(
        case_id=case.id,
        token_id=None,
        channel="miniprogram",
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


def _token_case_staff() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    """A scene's token (by digest), its case and the ID hashes of the case's staff."""
    window_staff = Staff.alias("window_staff_row")
    approver = Staff.alias("approver_row")
    fields = (
        QrToken.id,
        QrToken.status,
        QrToken.expires_at,
        Case.id,
        Case.first_rated_at,
        Case.applicant_id_hash,
        window_staff.id_hash,
        approver.id_hash,
    )
    query = (
        QrToken.select(*fields)
        .join_from(QrToken, Case, on=(QrToken.case == Case.id))
        .join_from(
            Case, window_staff, peewee.JOIN.LEFT_OUTER, on=(Case.window_staff == window_staff.id)
        )
        .join_from(Case, approver, peewee.JOIN.LEFT_OUTER, on=(Case.approver == approver.id))
        .where(QrToken.token_hash == peewee.Value(param(0), converter=False))
        .limit(1)
    )
    return query, fields


def _prepare_scene_rating(
    user_id: int,
    scene: str,
    require_applicant: bool,
    now: datetime,
    id_hash: str,
    name_masked: str,
    openid: str | None,
) -> Prepared:
    """:func:`prepare_first_rating` of a scene: one query for the token, its case and the
    staff's ID hashes, the same checks in the same order."""
    rows = (
        compiled_rows("evaluations.token", _token_case_staff, (token_digest(scene),))
        if cases.valid_scene(scene)
        else []
    )
    if not rows:
        raise errors.TokenNotFound()
    token_id, status, expires_at, case_id, first_rated_at, applicant, staff_hash, approver_hash = (
        rows[0]
    )
    cases.check_token_usable(
        QrToken(id=token_id, status=status, expires_at=expires_at),
        Case(id=case_id, first_rated_at=first_rated_at),
        now,
    )
    if require_applicant and id_hash != applicant:
        raise errors.NotApplicant()
    if id_hash is not None and id_hash in (staff_hash, approver_hash):
        raise errors.SelfEvaluationForbidden()
    if first_rated_at is not None:
        raise errors.AlreadyEvaluated()
    return Prepared(
        case_id=case_id,
        token_id=token_id,
        channel="qr",
        user_id=user_id,
        openid=openid or "",
        rater_id_hash=id_hash,
        name_masked=name_masked,
    )


def is_case_staff(case: Case, id_hash: str) -> bool:
    """True when ``id_hash`` is the keyed ID hash of the case's window staff or approver."""
    staff_ids = [i for i in (case.window_staff_id, case.approver_id) if i is not None]
    if not staff_ids:
        return False
    return (
        Staff.select()
        .where(Staff.id.in_(staff_ids) & (Staff.id_hash == id_hash) & Staff.id_hash.is_null(False))
        .exists()
    )


@dataclass(frozen=True)
class NewRating:
    """Everything :func:`store_first_rating` writes (``at``: its time, default now)."""

    prepared: Prepared
    rating: Rating
    indicator_ids: Mapping[str, int]
    comment_status: str
    at: datetime = field(default_factory=utcnow)
    #: The transparency log's receipt, filled in by :func:`store_first_rating`.
    receipts: list = field(default_factory=list, compare=False)


def store_first_rating(new: NewRating, settings: Settings) -> int:
    """Store a first rating in ONE transaction; returns the evaluation id.

    Re-reads the case (409 ``already_evaluated`` when rated meanwhile) and, for a scene, the
    token (410 when used, revoked or expired meanwhile); inserts the evaluation (the unique
    (case, assess_number) index turns a concurrent second rating into 409
    ``already_evaluated`` — the guard that holds without Redis); sets ``case.first_rated_at``;
    marks the token used and revokes every other active token of the case; stores the
    indicators; opens the ticket of a 差评.
    """
    prepared, rating = new.prepared, new.rating
    now = new.at
    try:
        with database.atomic():
            case, token = _case_and_token(prepared.case_id, prepared.token_id)
            if case.first_rated_at is not None:
                raise errors.AlreadyEvaluated()
            if prepared.token_id is not None:
                cases.check_token_usable(token, None, now)
            evaluation_id = _insert_evaluation(case, new, now)
            updated = compiled_rows("evaluations.mark_rated", _mark_rated, (case.id, _db_time(now)))
            if updated != 1:
                raise errors.AlreadyEvaluated()
            _close_tokens(case.id, prepared.token_id, now)
            reminders.cancel_case_jobs(case.id, now)  # no reminder, no default rating any more
            _insert_indicators(evaluation_id, rating.indicators, new.indicator_ids)
            if rating.is_bad:
                open_ticket(evaluation_id, case, now, settings)
            new.receipts.append(
                transparency.append("rating", {"evaluation_id": evaluation_id}, now)
            )
    except peewee.IntegrityError:
        raise errors.AlreadyEvaluated() from None
    return evaluation_id


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


def _db_time(value: datetime) -> Any:
    return Case.first_rated_at.db_value(value)


#: The case columns the rating transaction needs (its state and what the rating copies).
_CASE_COLUMNS = (
    Case.id,
    Case.first_rated_at,
    Case.center,
    Case.item,
    Case.department,
    Case.window_staff,
    Case.approver,
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
    tokens, that token: one compiled query, read inside the rating's transaction."""
    rows = compiled_rows("evaluations.case_token", _case_and_token_row, (case_id, token_id))
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


#: Every column of an evaluation but its id, in the order of the compiled INSERT's params.
_EVALUATION_COLUMNS = tuple(f for f in Evaluation._meta.sorted_fields if f.name != "id")


def _evaluation_insert() -> peewee.Insert:
    return Evaluation.insert({f: _p(n) for n, f in enumerate(_EVALUATION_COLUMNS)})


def _insert_evaluation(case: Case, new: NewRating, now: datetime) -> int:
    """INSERT the first rating (every column given, through a compiled statement)."""
    prepared, rating = new.prepared, new.rating
    values: dict[str, Any] = {
        "case": case.id,
        "assess_number": 1,
        "channel": prepared.channel,
        "user": prepared.user_id,
        "rater_id_hash": prepared.rater_id_hash,
        "name_masked": prepared.name_masked,
        "overall": rating.overall,
        "comment": rating.comment,
        "comment_status": new.comment_status,
        "moderation_reason": None,
        "like_count": 0,
        "created_at": now,
        **catalogue_refs(case),
        **{f"stage_{key}": rating.stages.get(key) for key in STAGES},
        **{f"target_{key}": rating.targets.get(key) for key in TARGETS},
    }
    args = [
        None if values[f.name] is None else f.db_value(values[f.name]) for f in _EVALUATION_COLUMNS
    ]
    return compiled_insert("evaluations.insert", _evaluation_insert, args)


def _close_tokens(case_id: int, used_token_id: int | None, now: datetime) -> None:
    """Rating a case closes it to every token: the scanned one used, the others revoked."""
    compiled_rows(
        "evaluations.close_tokens", _close_tokens_query, (case_id, used_token_id, _db_time(now))
    )


#: Public name for the default ratings (same rule: rating a case closes every token).
close_case_tokens = _close_tokens


def _insert_indicators(
    evaluation_id: int, codes: Iterable[str], indicator_ids: Mapping[str, int]
) -> None:
    rows = [{"evaluation": evaluation_id, "indicator": indicator_ids[code]} for code in codes]
    if rows:
        EvaluationIndicator.insert_many(rows).execute()


@functools.lru_cache(maxsize=8)
def _calendar(extra_holidays: tuple[str, ...], extra_workdays: tuple[str, ...]) -> WorkCalendar:
    return WorkCalendar(list(extra_holidays), list(extra_workdays))


def open_ticket(evaluation_id: int, case: Case, opened_at: datetime, settings: Settings) -> int:
    """Open the 差评 ticket of evaluation ``evaluation_id`` (status ``open``, deadlines in
    working days from ``tickets.*``) with its first event. Call it inside the transaction
    that stores the rating. Returns the ticket id."""
    policy = settings.tickets
    calendar = _calendar(tuple(policy.extra_holidays), tuple(policy.extra_workdays))
    ticket = Ticket.create(
        evaluation=evaluation_id,
        case=case.id,
        center=case.center_id,
        department=case.department_id,
        status="open",
        opened_at=opened_at,
        verify_due=calendar.due(opened_at, policy.verify_working_days),
        rectify_due=calendar.due(opened_at, policy.rectify_working_days),
    )
    TicketEvent.create(ticket=ticket.id, status="open", action="open", by="system", at=opened_at)
    return ticket.id


# --------------------------------------------------------------------------- follow-up: DB


@dataclass(frozen=True)
class FollowUpBase:
    """The first rating a follow-up (追评) is added to, as the checks found it."""

    evaluation_id: int
    openid: str


def prepare_follow_up(user_id: int, evaluation_id: str) -> FollowUpBase:
    """Checks of a follow-up: the evaluation exists (404), is the caller's (403
    ``not_owner``), is a first rating and has no follow-up yet (409 ``follow_up_exists``)."""
    number = scan.parse_id(evaluation_id)
    original = Evaluation.get_or_none(Evaluation.id == number) if number is not None else None
    if original is None:
        raise errors.NotFound("No such evaluation.")
    if original.user_id is None or original.user_id != user_id:
        raise errors.NotOwner()
    if original.assess_number != 1:
        raise errors.FollowUpExists("A follow-up cannot itself be followed up.")
    if _has_follow_up(original.case_id):
        raise errors.FollowUpExists()
    openid = User.select(User.openid).where(User.id == user_id).scalar()
    return FollowUpBase(original.id, openid or "")


def _has_follow_up(case_id: int) -> bool:
    return (
        Evaluation.select()
        .where((Evaluation.case == case_id) & (Evaluation.assess_number == 2))
        .exists()
    )


def store_follow_up(
    base: FollowUpBase, rating: Rating, indicator_ids: Mapping[str, int], comment_status: str
) -> int:
    """Store the follow-up (``assess_number`` 2, the original's channel, no ticket) in one
    transaction; the unique (case, assess_number) index makes a concurrent second one 409
    ``follow_up_exists``. Returns its id."""
    now = utcnow()
    try:
        with database.atomic():
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
            _insert_indicators(follow_up.id, rating.indicators, indicator_ids)
            transparency.append("follow_up", {"evaluation_id": follow_up.id}, now)
    except peewee.IntegrityError:
        raise errors.FollowUpExists() from None
    return follow_up.id


# --------------------------------------------------------------------------- the flow


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


async def submit(
    ctx: Context,
    user_id: int,
    *,
    scene: str | None = None,
    case_id: Any = None,
    overall: Any = None,
    stages: Any = None,
    targets: Any = None,
    indicators: Any = None,
    comment: Any = None,
) -> dict[str, Any]:
    """``POST /evaluations``: check, text-check, claim, store; answers the owner view.

    Exactly one of ``scene`` and ``case_id`` (else 400 ``invalid_body``).
    """
    if (scene is None) == (case_id is None):
        raise errors.InvalidBody("Give either scene or case_id.")
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
    prepared, indicator_ids = await ctx.db.run(
        _prepare_with_indicators, user_id, scene, case_id, settings.require_applicant, rating
    )
    if rating is None:
        assert invalid is not None
        raise invalid
    status = await comment_status(ctx, prepared.openid, rating.comment)
    new = NewRating(prepared, rating, indicator_ids, status)
    evaluation_id = await _store_with_claim(ctx, new)
    await realtime.publish_after_commit(ctx, evaluation_id)
    receipt = new.receipts[-1] if new.receipts and new.receipts[-1] else None
    return {**new_owner_view(evaluation_id, new), "receipt": receipt and receipt.as_dict()}


def _prepare_with_indicators(
    user_id: int, scene: str | None, case_id: Any, require_applicant: bool, rating: Rating | None
) -> tuple[Prepared, dict[str, int]]:
    """:func:`prepare_first_rating`, then :func:`check_indicators` of a valid rating: one
    trip to the database pool."""
    prepared = prepare_first_rating(user_id, scene, case_id, require_applicant)
    return prepared, check_indicators(rating.indicators) if rating is not None else {}


def claim_key(ctx: Context, case_id: int) -> str:
    """The Redis key of the one-time claim on a case's rating."""
    return ctx.rkeys("claim", str(case_id))


async def _store_with_claim(ctx: Context, new: NewRating) -> int:
    """Claim the case in Redis (taken → 409 ``already_evaluated``), then store; the claim is
    released on failure and kept (until it expires) on success. Redis being down skips the
    claim: the database constraint still decides."""
    key = claim_key(ctx, new.prepared.case_id)
    owner = secrets.token_hex(8)
    claimed = True
    try:
        if not await ctx.redis.set(key, owner, nx=True, ex=CLAIM_SECONDS):
            raise errors.AlreadyEvaluated("A rating of this case is being submitted.")
    except RedisError as exc:
        claimed = False
        log.warning(
            "redis claim unavailable: relying on the database constraint",
            extra={"fields": {"error": type(exc).__name__}},
        )
    try:
        return await ctx.db.run(store_first_rating, new, ctx.settings)
    except BaseException:
        if claimed:
            await _release_claim(ctx, key, owner)
        raise


async def _release_claim(ctx: Context, key: str, owner: str) -> None:
    try:
        await ctx.redis.eval(_RELEASE_CLAIM, 1, key, owner)
    except RedisError as exc:
        log.warning("releasing a claim failed", extra={"fields": {"error": type(exc).__name__}})


async def follow_up(
    ctx: Context,
    user_id: int,
    evaluation_id: str,
    *,
    overall: Any = None,
    indicators: Any = None,
    comment: Any = None,
) -> dict[str, Any]:
    """``POST /evaluations/{id}/follow-up`` (追评): the owner's one follow-up of a first
    rating; same checks as a rating (levels, indicators, reason, text check), no ticket."""
    base = await ctx.db.run(prepare_follow_up, user_id, evaluation_id)
    rating = parse_rating(
        overall,
        indicators=indicators,
        comment=comment,
        comment_max_chars=ctx.settings.rating.comment_max_chars,
    )
    indicator_ids = await ctx.db.run(check_indicators, rating.indicators)
    status = await comment_status(ctx, base.openid, rating.comment)
    new_id = await ctx.db.run(store_follow_up, base, rating, indicator_ids, status)
    # republishes the first rating with its follow-up
    await realtime.publish_after_commit(ctx, new_id)
    return await ctx.db.run(owner_view_of, new_id)


async def list_mine(ctx: Context, user_id: int) -> list[dict[str, Any]]:
    """``GET /me/evaluations``: see :func:`my_evaluations`."""
    return await ctx.db.run(my_evaluations, user_id)
