"""Idempotent rating writes (``Idempotency-Key``, as payment APIs do; issue 13).

A client whose answer was lost (a timeout, a dropped connection, a server killed after the
commit) retries with the same key and body: within :data:`KEEP_HOURS` it gets the original
201 again — the stored rating — instead of 410 ``token_used`` or 409. The same key with
another body is 422 ``idempotency_mismatch``. The key is remembered in the rating's own
transaction (:func:`remember`), so a stored rating always has its key and the reverse.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models.base import utcnow
from models.idempotency import IdempotentRequest
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.ratings.views import owner_view_of

KEEP_HOURS = 24
_KEY = re.compile(r"[\x21-\x7e]{8,64}")


@dataclass(frozen=True)
class Key:
    """A request's key (hashed) and its body's hash."""

    user_id: int
    key_hash: str
    body_hash: str


def parse(user_id: int, header: str | None, kind: str, body: Mapping[str, Any]) -> Key | None:
    """The ``Idempotency-Key`` header (8–64 visible ASCII characters, else 400
    ``invalid_body``) with the hash of what is written (``kind`` and the body), or None."""
    if header is None:
        return None
    if not _KEY.fullmatch(header):
        raise errors.InvalidBody("Idempotency-Key: 8–64 visible ASCII characters.")
    canonical = json.dumps({"kind": kind, **body}, sort_keys=True, ensure_ascii=False)
    return Key(
        user_id,
        hashlib.sha256(f"{kind}\x00{header}".encode()).hexdigest(),
        hashlib.sha256(canonical.encode()).hexdigest(),
    )


def stored(key: Key) -> int | None:
    """The evaluation id a request with this key stored within :data:`KEEP_HOURS`, or None;
    422 ``idempotency_mismatch`` when the key came with another body. Sync."""
    since = utcnow() - timedelta(hours=KEEP_HOURS)
    row = IdempotentRequest.get_or_none(
        (IdempotentRequest.user == key.user_id)
        & (IdempotentRequest.key_hash == key.key_hash)
        & (IdempotentRequest.created_at > since)
    )
    if row is None:
        return None
    if row.body_hash != key.body_hash:
        raise errors.IdempotencyMismatch()
    return row.evaluation_id


def _replay_of(key: Key) -> dict[str, Any] | None:
    done = stored(key)
    return None if done is None else owner_view_of(done)


async def replay(ctx: Context, key: Key | None) -> dict[str, Any] | None:
    """The owner view of what a request with ``key`` stored (its original answer), or None
    (no key, or nothing stored with it yet); 422 ``idempotency_mismatch`` as :func:`stored`."""
    return None if key is None else await ctx.db.run(_replay_of, key)


def remember(key: Key, evaluation_id: int) -> None:
    """Record the key with the rating it stored (call it inside that transaction). An old
    record of the same key (past :data:`KEEP_HOURS`) is replaced."""
    IdempotentRequest.delete().where(
        (IdempotentRequest.user == key.user_id) & (IdempotentRequest.key_hash == key.key_hash)
    ).execute()
    IdempotentRequest.create(
        user=key.user_id,
        key_hash=key.key_hash,
        body_hash=key.body_hash,
        evaluation_id=evaluation_id,
    )


def purge(before_hours: int = KEEP_HOURS) -> int:
    """Forget keys older than :data:`KEEP_HOURS` (the hourly housekeeping). Sync."""
    cutoff = utcnow() - timedelta(hours=before_hours)
    return IdempotentRequest.delete().where(IdempotentRequest.created_at < cutoff).execute()
