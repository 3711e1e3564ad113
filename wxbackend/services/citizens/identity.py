"""Real-name identity (实名核身) through WeChat face verification (人脸核身).

The flow (../shared/docs/wechat.md, the current getverifyid / queryverifyinfo flow):

1. :func:`start_face` checks the name and the resident ID number, asks WeChat for a
   ``verify_id`` with a server-made ``out_seq_no`` and the caller's openid, and keeps a
   :class:`~models.identity.FaceAttempt` with the certificate *encrypted*.
2. The mini-program runs ``wx.requestFacialVerify({verifyId})``.
3. :func:`finish_face` asks WeChat for the result with the server's own out_seq_no, openid and
   the ``cert_hash`` recomputed from the decrypted certificate; on success it binds a verified
   :class:`~models.identity.Identity` to the user and consumes the attempt, exactly once.

Privacy: the name and the ID number are never logged, never put in an error and never
answered; they are stored only as AES-GCM ciphertexts, plus the keyed hash of the ID number.
The unkeyed ``cert_hash`` is computed on the fly and never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee

from models.base import utcnow
from models.evaluation import Evaluation, Like
from models.identity import FaceAttempt, Identity
from models.user import User
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import mask_name, normalize_id_number
from wxbackend.services.citizens import ratelimit
from wxbackend.services.citizens.face_checks import (
    cert_hash,
    failure_reason,
    new_out_seq_no,
    normalize_name,
    normalize_resident_id,
)
from wxbackend.services.messaging import schedule
from wxbackend.settings import Settings
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.identity")

CERT_CONTEXT = "face.cert"
NAME_CONTEXT = "identity.name"
ID_NUMBER_CONTEXT = "identity.id_number"
ID_HASH_PURPOSE = "id_number"
METHOD = "wechat_face"
VERIFY_RET_OK = 10000
DEFAULT_EXPIRES_IN = 3600
MAX_VERIFY_ID_CHARS = 256

# --------------------------------------------------------------------------- database side


@dataclass(frozen=True)
class AttemptRecord:
    """What :func:`finish_face` needs of a stored attempt (server-side values only)."""

    id: int
    out_seq_no: str
    openid: str
    cert_enc: str
    expires_at: datetime
    consumed: bool


@dataclass(frozen=True)
class IdentityValues:
    """A verified identity ready to store: ciphertexts, keyed hash and mask only."""

    name_enc: str
    id_number_enc: str
    id_hash: str
    name_masked: str


def user_openid(user_id: int) -> str:
    """The openid of ``user_id`` (the user must exist: it comes from a live session)."""
    openid = User.select(User.openid).where(User.id == user_id).scalar()
    if not openid:
        raise errors.Unauthenticated("Your session has ended; log in again.")
    return openid


def save_attempt(
    user_id: int, out_seq_no: str, verify_id: str, cert_enc: str, expires_at: datetime
) -> None:
    """Keep a started attempt (the certificate already encrypted)."""
    FaceAttempt.create(
        user=user_id,
        out_seq_no=out_seq_no,
        verify_id=verify_id,
        cert_enc=cert_enc,
        expires_at=expires_at,
    )


def load_attempt(verify_id: str, user_id: int) -> AttemptRecord | None:
    """The attempt of ``verify_id`` *if it belongs to* ``user_id``, else None."""
    row = (
        FaceAttempt.select(FaceAttempt, User.openid)
        .join(User)
        .where((FaceAttempt.verify_id == verify_id) & (FaceAttempt.user == user_id))
        .first()
    )
    if row is None:
        return None
    return AttemptRecord(
        id=row.id,
        out_seq_no=row.out_seq_no,
        openid=row.user.openid,
        cert_enc=row.cert_enc,
        expires_at=row.expires_at,
        consumed=row.consumed_at is not None,
    )


def record_failure(attempt_id: int, verify_ret: int) -> None:
    """Remember the last failing ``verify_ret`` (the attempt stays usable)."""
    (
        FaceAttempt.update(last_verify_ret=verify_ret)
        .where((FaceAttempt.id == attempt_id) & FaceAttempt.consumed_at.is_null())
        .execute()
    )


def bind_identity(
    attempt_id: int,
    user_id: int,
    values: IdentityValues,
    valid_days: int,
    allow_rebind: bool,
    settings: Settings | None = None,
) -> datetime:
    """Consume the attempt and bind the identity to ``user_id``, in one transaction.

    The conditional UPDATE (``consumed_at IS NULL``) lets exactly one of any number of
    concurrent finishes through; the others get 409 ``verify_id_used``. An identity bound to
    another user is moved here (``allow_rebind``: the newest binding wins, logged without
    personal data) or refused with 409 ``identity_bound_elsewhere`` — then nothing is
    consumed. With ``settings``, the same transaction schedules the reminders of the
    identity's unrated cases. Returns the verification time.
    """
    now = utcnow()
    with database.atomic():
        claimed = (
            FaceAttempt.update(consumed_at=now, last_verify_ret=VERIFY_RET_OK, cert_enc="")
            .where((FaceAttempt.id == attempt_id) & FaceAttempt.consumed_at.is_null())
            .execute()
        )
        if claimed != 1:
            raise errors.VerifyIdUsed()
        _release_other_binding(values.id_hash, user_id, allow_rebind)
        fields = {
            Identity.name_enc: values.name_enc,
            Identity.id_number_enc: values.id_number_enc,
            Identity.id_hash: values.id_hash,
            Identity.name_masked: values.name_masked,
            Identity.method: METHOD,
            Identity.verified_at: now,
            Identity.expires_at: now + timedelta(days=valid_days),
        }
        (
            Identity.insert({Identity.user: user_id, **fields})
            .on_conflict(conflict_target=[Identity.user], update=fields)
            .execute()
        )
        if settings is not None:
            schedule.schedule_for_identity(values.id_hash, settings, now)
    return now


def _release_other_binding(id_hash: str, user_id: int, allow_rebind: bool) -> None:
    """Delete the binding of this ID number to another user, or refuse (409)."""
    other = Identity.get_or_none((Identity.id_hash == id_hash) & (Identity.user != user_id))
    if other is None:
        return
    if not allow_rebind:
        raise errors.IdentityBoundElsewhere()
    other.delete_instance()
    log.info(
        "identity rebound: the newest binding wins",
        extra={
            "fields": {
                "old_identity_id": other.id,
                "old_user_id": other.user_id,
                "new_user_id": user_id,
            }
        },
    )


def erase_identity(user_id: int) -> int:
    """Delete the user's identity (ciphertexts and hash) and their face attempts, and the
    ID hash everywhere it was copied: the user's ratings keep only their mask
    (``rater_id_hash`` cleared) and their likes stay counted under a stand-in that names
    the WeChat account, not the person (:func:`erased_liker`).

    Idempotent; returns how many identity rows were deleted.
    """
    with database.atomic():
        hashes = [
            row.id_hash for row in Identity.select(Identity.id_hash).where(Identity.user == user_id)
        ]
        deleted = Identity.delete().where(Identity.user == user_id).execute()
        FaceAttempt.delete().where(FaceAttempt.user == user_id).execute()
        mine = Evaluation.user == user_id
        if hashes:
            mine = mine | Evaluation.rater_id_hash.in_(hashes)
        Evaluation.update(rater_id_hash=None).where(mine).execute()
        liked = Like.user == user_id
        if hashes:
            liked = liked | Like.liker_id_hash.in_(hashes)
        Like.update(liker_id_hash=erased_liker(user_id)).where(liked).execute()
    return deleted


def erased_liker(user_id: int) -> str:
    """What stands for an erased identity in its likes: unique per WeChat account (so the
    like stays one like) and unrelated to the ID number."""
    return "erased-" + hashlib.sha256(f"user\x00{user_id}".encode()).hexdigest()[:57]


def purge_face_attempts(retention_days: int) -> int:
    """Delete face attempts created more than ``retention_days`` ago; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    return FaceAttempt.delete().where(FaceAttempt.created_at < cutoff).execute()


# --------------------------------------------------------------------------- the flow


@dataclass(frozen=True)
class StartResult:
    verify_id: str
    expires_in: int


async def start_face(ctx: Context, user_id: int, name: str, id_number: str) -> StartResult:
    """``POST /identity/face/start``: check the certificate, ask WeChat for a verify_id."""
    cert_name = normalize_name(name)
    cert_no = normalize_resident_id(id_number)
    limit = ctx.settings.ratelimit.face_start_per_user_per_hour
    await ratelimit.hit(ctx, "face-start", str(user_id), limit, 3600)
    openid = await ctx.db.run(user_openid, user_id)
    out_seq_no = new_out_seq_no()
    try:
        answer = await ctx.wechat.get_verify_id(out_seq_no, cert_name, cert_no, openid)
    except wx.WeChatError as exc:
        raise _unavailable("getverifyid", exc) from None
    verify_id = answer.get("verify_id")
    if not isinstance(verify_id, str) or not 0 < len(verify_id) <= MAX_VERIFY_ID_CHARS:
        raise errors.WeChatUnavailable("WeChat gave no usable verify_id; try again.")
    expires_in = _expires_in(answer.get("expires_in"))
    cert_enc = ctx.cipher.encrypt(json.dumps([cert_name, cert_no]), CERT_CONTEXT)
    expires_at = utcnow() + timedelta(seconds=expires_in)
    await ctx.db.run(save_attempt, user_id, out_seq_no, verify_id, cert_enc, expires_at)
    log.info("face verification started", extra={"fields": {"user_id": user_id}})
    return StartResult(verify_id, expires_in)


@dataclass(frozen=True)
class FinishResult:
    verified: bool
    name_masked: str


async def finish_face(ctx: Context, user_id: int, verify_id: str) -> FinishResult:
    """``POST /identity/face/finish``: ask WeChat for the result; bind on success."""
    attempt = None
    if 0 < len(verify_id) <= MAX_VERIFY_ID_CHARS:
        attempt = await ctx.db.run(load_attempt, verify_id, user_id)
    if attempt is None:
        raise errors.UnknownVerifyId()
    if attempt.consumed:
        raise errors.VerifyIdUsed()
    if attempt.expires_at <= utcnow():
        raise errors.VerifyIdExpired()
    cert_name, cert_no = json.loads(ctx.cipher.decrypt(attempt.cert_enc, CERT_CONTEXT))
    verify_ret = await _query_result(ctx, verify_id, attempt, cert_hash(cert_name, cert_no))
    if verify_ret != VERIFY_RET_OK:
        await ctx.db.run(record_failure, attempt.id, verify_ret)
        reason, message = failure_reason(verify_ret)
        log.info(
            "face verification not passed",
            extra={"fields": {"user_id": user_id, "verify_ret": verify_ret}},
        )
        raise errors.FaceVerifyFailed(message, verify_ret=verify_ret, reason=reason)
    values = identity_values(ctx, cert_name, cert_no)
    await _bind_with_retry(ctx, attempt.id, user_id, values)
    log.info("identity verified", extra={"fields": {"user_id": user_id}})
    return FinishResult(True, values.name_masked)


def identity_values(ctx: Context, cert_name: str, cert_no: str) -> IdentityValues:
    """The stored form of a verified certificate: ciphertexts, keyed ID hash, mask."""
    return IdentityValues(
        name_enc=ctx.cipher.encrypt(cert_name, NAME_CONTEXT),
        id_number_enc=ctx.cipher.encrypt(cert_no, ID_NUMBER_CONTEXT),
        id_hash=ctx.hasher.hash(normalize_id_number(cert_no), ID_HASH_PURPOSE),
        name_masked=mask_name(cert_name),
    )


async def erase(ctx: Context, user_id: int) -> None:
    """``DELETE /me/identity``: erase the identity (idempotent)."""
    deleted = await ctx.db.run(erase_identity, user_id)
    log.info("identity erased", extra={"fields": {"user_id": user_id, "deleted": deleted}})


async def _query_result(
    ctx: Context, verify_id: str, attempt: AttemptRecord, hashed_cert: str
) -> int:
    """queryverifyinfo with the server's own values → ``verify_ret``."""
    try:
        answer = await ctx.wechat.query_verify_info(
            verify_id, attempt.out_seq_no, hashed_cert, attempt.openid
        )
    except wx.VerifyIdExpiredError:  # 84002, known by its errcode (wechat/errors.py)
        raise errors.VerifyIdExpired() from None
    except wx.WeChatError as exc:
        raise _unavailable("queryverifyinfo", exc) from None
    verify_ret = answer.get("verify_ret")
    if isinstance(verify_ret, bool) or not isinstance(verify_ret, int):
        raise errors.WeChatUnavailable("WeChat gave no verification result; try again.")
    return verify_ret


async def _bind_with_retry(
    ctx: Context, attempt_id: int, user_id: int, values: IdentityValues
) -> None:
    """Bind; a unique-constraint race with another user binding the same ID is retried once."""
    settings = ctx.settings.identity
    for attempt in range(2):
        try:
            await ctx.db.run(
                bind_identity,
                attempt_id,
                user_id,
                values,
                settings.valid_days,
                settings.allow_rebind,
                ctx.settings,
            )
            return
        except peewee.IntegrityError:
            if attempt == 1:
                raise


def _expires_in(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_EXPIRES_IN


def _unavailable(endpoint: str, exc: wx.WeChatError) -> errors.ContractError:
    """WeChat failed: 503 ``wechat_unavailable``, or ``wechat_misconfigured`` when WeChat
    refused our credentials (only the errcode is logged)."""
    log.warning(
        "face verification: WeChat failed",
        extra={"fields": {"endpoint": endpoint, "errcode": str(exc.errcode)}},
    )
    if isinstance(exc, wx.InvalidCredentialError):
        return errors.WeChatMisconfigured()
    if isinstance(exc, wx.WeChatUnavailableError):
        return errors.WeChatUnavailable()
    return errors.WeChatUnavailable(
        f"WeChat refused the face verification request (errcode {exc.errcode}); try again later."
    )
