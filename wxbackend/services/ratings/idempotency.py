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

import peewee

from models.base import utcnow
from models.idempotency import IdempotentRequest
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import compiled_rows, param
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


# Both statements run per keyed rating (the lookup before it, the record inside its
# transaction): compiled once per database (``db.compiled_rows``).


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


_FOUND = (IdempotentRequest.body_hash, IdempotentRequest.evaluation_id)


def _lookup_query() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    query = IdempotentRequest.select(*_FOUND).where(
        (IdempotentRequest.user == _p(0))
        & (IdempotentRequest.key_hash == _p(1))
        & (IdempotentRequest.created_at > _p(2))
    )
    return query, _FOUND


_RECORD_COLUMNS = (
    IdempotentRequest.user,
    IdempotentRequest.key_hash,
    IdempotentRequest.body_hash,
    IdempotentRequest.evaluation_id,
    IdempotentRequest.created_at,
)


def _record_query() -> tuple[peewee.Query, tuple[()]]:
    """One statement: insert the key, or replace the (expired) record of the same key."""
    query = (
        IdempotentRequest.insert({f: _p(n) for n, f in enumerate(_RECORD_COLUMNS)})
        .on_conflict(
            conflict_target=[IdempotentRequest.user, IdempotentRequest.key_hash],
            update={f: getattr(peewee.EXCLUDED, f.column_name) for f in _RECORD_COLUMNS[2:]},
        )
        .as_rowcount()
    )
    return query, ()


def stored(key: Key) -> int | None:
    """The evaluation id a request with this key stored within :data:`KEEP_HOURS`, or None;
    422 ``idempotency_mismatch`` when the key came with another body. Sync."""
    since = IdempotentRequest.created_at.db_value(utcnow() - timedelta(hours=KEEP_HOURS))
    rows = compiled_rows("idempotency.lookup", _lookup_query, (key.user_id, key.key_hash, since))
    if not rows:
        return None
    body_hash, evaluation_id = rows[0]
    if body_hash != key.body_hash:
        raise errors.IdempotencyMismatch()
    return evaluation_id


def stored_answer(key: Key | None) -> dict[str, Any] | None:
    """The owner view of what a request with ``key`` stored (its original answer), or None
    (no key, or nothing stored with it yet); 422 ``idempotency_mismatch`` as :func:`stored`.
    Sync (a caller's trip to the database pool may start with it)."""
    if key is None:
        return None
    done = stored(key)
    return None if done is None else owner_view_of(done)


async def replay(ctx: Context, key: Key | None) -> dict[str, Any] | None:
    """:func:`stored_answer` through the database pool (none needed without a key)."""
    return None if key is None else await ctx.db.run(stored_answer, key)


def remember(key: Key, evaluation_id: int) -> None:
    """Record the key with the rating it stored (call it inside that transaction). An old
    record of the same key (past :data:`KEEP_HOURS`) is replaced. One statement."""
    values = (key.user_id, key.key_hash, key.body_hash, evaluation_id, utcnow())
    args = [f.db_value(v) for f, v in zip(_RECORD_COLUMNS, values, strict=True)]
    compiled_rows("idempotency.record", _record_query, args)


def purge(before_hours: int = KEEP_HOURS) -> int:
    """Forget keys older than :data:`KEEP_HOURS` (the hourly housekeeping). Sync."""
    cutoff = utcnow() - timedelta(hours=before_hours)
    return IdempotentRequest.delete().where(IdempotentRequest.created_at < cutoff).execute()
