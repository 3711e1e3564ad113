"""Outages of what the server depends on (Redis, the database, the disk): what an exception
means, the contract's answer to it, and one log line per transition per process.

An exception that means a dependency is down (Redis not answering, PostgreSQL restarting,
SQLite's ``database or disk is full`` — often hidden behind the ``cannot rollback`` that
followed it) is answered 503 ``unavailable`` with ``retry: true`` and the dependency named,
never 500. The first such failure logs one line and starts a probe that logs one more when the
dependency answers again; the gauge ``wxb_dependency_down`` says which are down meanwhile.

A transaction PostgreSQL rolled back to break a deadlock or a serialization conflict (SQLSTATE
40P01, 40001, 40003) is a conflict, not an outage: the database answered. It gets the same 503
(naming the database, ``retry: true``, nothing was stored) but opens no outage, logs no
transition and leaves the gauge alone; ``wxb_database_conflicts_total`` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import peewee
import redis.asyncio as aioredis
import redis.exceptions
from playhouse.pool import MaxConnectionsExceeded
from prometheus_client import CollectorRegistry, Counter, Gauge

from wxbackend import errors
from wxbackend.db import Database

log = logging.getLogger("wxbackend.outages")

REDIS = "redis"
DATABASE = "database"
DISK = "disk"
DEPENDENCIES = (REDIS, DATABASE, DISK)

#: Seconds between probes of a dependency that is down.
PROBE_SECONDS = 1.0
#: What a client is told to wait before retrying (``Retry-After``).
RETRY_AFTER_SECONDS = 2

#: Redis errors that mean it cannot answer now (BusyLoadingError: still loading its data;
#: ReadOnlyError: a replica after a failover), not that the command was wrong.
_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)
#: PostgreSQL SQLSTATE classes that mean the server cannot serve now: 08 connection,
#: 53 insufficient resources (53100 disk full), 57 operator intervention (shutdown,
#: cancelled), 58 system error.
_PG_DOWN_CLASSES = ("08", "53", "57", "58")
_PG_DISK_FULL = "53100"
#: The transaction was rolled back by PostgreSQL to break a deadlock or a serialization
#: conflict (or cannot say how its statement ended): nothing of it was stored, and the same
#: request again may well pass: 503 with ``retry``, but the database is up (a conflict).
_PG_ROLLED_BACK = frozenset({"40001", "40P01", "40003"})
_SQLITE_DISK = ("database or disk is full", "disk i/o error")
_SQLITE_BUSY = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "attempt to write a readonly database",
)
#: Driver messages of a connection that is gone (no SQLSTATE: the server never answered).
_LOST = (
    "server closed the connection",
    "connection is closed",
    "connection already closed",
    "connection failed",
    "consuming input failed",
    "terminating connection",
    "could not receive data",
    "could not send data",
    "ssl syscall error",
    "no connection to the server",
    "connection not open",
)
#: The driver's classes (psycopg 3 or 2) of a failure without a SQLSTATE.
_PG_GONE = ("OperationalError", "InterfaceError")
_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]*@")


@dataclass(frozen=True)
class Down:
    """A dependency is down: what (:data:`REDIS`, :data:`DATABASE`, :data:`DISK`), why, and
    whether it was found failing a COMMIT (whose outcome PostgreSQL then leaves unknown)."""

    dependency: str
    reason: str
    at_commit: bool = False
    #: PostgreSQL rolled the transaction back (a deadlock, a serialization conflict): it
    #: answered, so this is no outage (no transition, no gauge)
    conflict: bool = False


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it hides: its causes and the exceptions it was raised while handling
    (a ``cannot rollback`` hides the ``database or disk is full`` of the COMMIT before it)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, *_wrapped(current)]
    return seen


def _wrapped(exc: BaseException) -> list[BaseException]:
    # peewee wraps the driver's exception as its first argument
    return [a for a in getattr(exc, "args", ())[:1] if isinstance(a, BaseException)]


def reason_of(exc: BaseException) -> str:
    """A one-line reason for logs and answers, with any credentials of a URL removed."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return _CREDENTIALS.sub(r"\1***@", text)


def _is_conflict(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return sqlstate in _PG_ROLLED_BACK


def _classify_one(exc: BaseException) -> str | None:
    if isinstance(exc, _REDIS_DOWN):
        return REDIS
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DISK
    if isinstance(exc, MaxConnectionsExceeded):
        return DATABASE
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        if sqlstate == _PG_DISK_FULL:
            return DISK
        if sqlstate[:2] in _PG_DOWN_CLASSES or sqlstate in _PG_ROLLED_BACK:
            return DATABASE
        return None
    module = type(exc).__module__
    if module.startswith("peewee") and _wrapped(exc):
        return None  # the driver's exception it wraps decides
    if not module.startswith(("psycopg", "sqlite3", "peewee")):
        return None
    message = str(exc).lower()
    if any(m in message for m in _SQLITE_DISK):
        return DISK
    if any(m in message for m in _SQLITE_BUSY + _LOST):
        return DATABASE
    if module.startswith("psycopg") and any(c.__name__ in _PG_GONE for c in type(exc).__mro__):
        return DATABASE  # no SQLSTATE: the server never answered
    return DATABASE if isinstance(exc, peewee.InterfaceError) else None


def classify(exc: BaseException) -> Down | None:
    """The outage ``exc`` means (looking through what it hides), or None: a plain error."""
    if isinstance(exc, errors.ContractError):
        return None
    chain = _chain(exc)
    at_commit = any(getattr(e, "wxb_at_commit", False) for e in chain)
    found: Down | None = None
    for current in chain:
        dependency = _classify_one(current)
        if dependency == DISK:
            return Down(DISK, reason_of(current), at_commit)
        if dependency is not None and found is None:
            found = Down(dependency, reason_of(current), at_commit, _is_conflict(current))
    return found


_MESSAGES = {
    REDIS: "Redis (the server's shared cache) is not answering; try again shortly.",
    DATABASE: "The database is not answering; try again shortly.",
    DISK: "The database's disk is full (or failing); nothing was stored. Try again later.",
}
_CONFLICT = (
    "The database rolled this request back (it conflicted with another one); nothing was "
    "stored. Try again."
)
_COMMIT_CUT = (
    "The database connection was lost while committing: the outcome is unknown. Retry with "
    "the same Idempotency-Key to learn it."
)


def answer(down: Down, on_postgres: bool) -> errors.ContractError:
    """503 ``unavailable`` (``retry: true``, ``dependency``) for ``down``. A commit cut off
    by PostgreSQL may have been stored: the message says so (SQLite's failed COMMIT rolls
    back, so nothing was)."""
    message = _CONFLICT if down.conflict else _MESSAGES[down.dependency]
    if down.at_commit and on_postgres and down.dependency == DATABASE and not down.conflict:
        message = _COMMIT_CUT
    return errors.Unavailable(
        message, retry=True, dependency=down.dependency, retry_after=RETRY_AFTER_SECONDS
    )


class Outages:
    """The dependencies down in this process, their gauge, and the probes that end them."""

    def __init__(self, redis: aioredis.Redis, db: Database, registry: CollectorRegistry):
        self.redis = redis
        self.db = db
        self.since: dict[str, float] = {}
        self._checked: dict[str, tuple[float, Down | None]] = {}
        self._probes: dict[str, asyncio.Task] = {}
        self.gauge = Gauge(
            "wxb_dependency_down",
            "1 while a dependency (redis, database, disk) is down for this process",
            ["dependency"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        for dependency in DEPENDENCIES:
            self.gauge.labels(dependency).set(0)
        self.conflicts = Counter(
            "wxb_database_conflicts",
            "Transactions the database rolled back to break a deadlock or serialization "
            "conflict (answered 503, retry; not an outage)",
            registry=registry,
        )

    def is_down(self, dependency: str) -> bool:
        return dependency in self.since

    def down(self, found: Down) -> None:
        """Note ``found``: the first time, one log line and a probe until it answers."""
        if found.dependency in self.since:
            return
        self.since[found.dependency] = time.monotonic()
        self.gauge.labels(found.dependency).set(1)
        log.error(
            "%s is down",
            found.dependency,
            extra={"fields": {"dependency": found.dependency, "reason": found.reason}},
        )
        with contextlib.suppress(RuntimeError):  # no running loop: the next check ends it
            self._probes[found.dependency] = asyncio.ensure_future(self._probe(found.dependency))

    def up(self, dependency: str) -> None:
        """``dependency`` answered: one log line if it was down."""
        started = self.since.pop(dependency, None)
        if started is None:
            return
        self.gauge.labels(dependency).set(0)
        log.warning(
            "%s is back",
            dependency,
            extra={
                "fields": {
                    "dependency": dependency,
                    "down_seconds": round(time.monotonic() - started, 1),
                }
            },
        )

    async def check(self, dependency: str, reuse_seconds: float = 0.0) -> Down | None:
        """Probe ``dependency`` and note the outcome: None when it answers. An outcome less
        than ``reuse_seconds`` old is answered again without probing."""
        last = self._checked.get(dependency)
        if last is not None and time.monotonic() - last[0] < reuse_seconds:
            return last[1]
        found = await self._check(dependency)
        self._checked[dependency] = (time.monotonic(), found)
        return found

    async def _check(self, dependency: str) -> Down | None:
        try:
            await asyncio.wait_for(_PROBES[dependency](self), PROBE_SECONDS * 2)
        except Exception as exc:  # noqa: BLE001 - whatever fails, it is not answering
            found = classify(exc) or Down(dependency, reason_of(exc))
            if found.dependency != dependency:  # e.g. the disk probe finds the database down
                found = Down(dependency, found.reason)
            self.down(found)
            return found
        self.up(dependency)
        return None

    async def _probe(self, dependency: str) -> None:
        try:
            while dependency in self.since:
                await asyncio.sleep(PROBE_SECONDS)
                if dependency in self.since:
                    await self.check(dependency)
        finally:
            self._probes.pop(dependency, None)

    async def stop(self) -> None:
        """Cancel the probes (the process is closing)."""
        for task in list(self._probes.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _redis(state: Outages) -> None:
    await state.redis.ping()


async def _database(state: Outages) -> None:
    await state.db.run(state.db.ping)


async def _disk(state: Outages) -> None:
    await state.db.run(state.db.write_probe)


_PROBES: dict[str, Callable[[Outages], Awaitable[None]]] = {
    REDIS: _redis,
    DATABASE: _database,
    DISK: _disk,
}


def outages(ctx: Any) -> Outages:
    """This process's :class:`Outages` (``ctx.outages`` of the Context, made on first use;
    the Context imports this module, so it is not named here)."""
    if ctx.outages is None:
        ctx.outages = Outages(ctx.redis, ctx.db, ctx.metrics.registry)
    return ctx.outages


def note(ctx: Any, exc: BaseException) -> Down | None:
    """What ``exc`` means (None: not an outage nor a conflict), noted: an outage opens once
    (one log line, the gauge, a probe), a conflict is counted."""
    found = classify(exc)
    if found is None:
        return None
    if found.conflict:
        outages(ctx).conflicts.inc()
    else:
        outages(ctx).down(found)
    return found


def handle(ctx: Any, exc: BaseException) -> errors.ContractError | None:
    """The 503 answer for ``exc`` when it means an outage or a conflict (noted), else None."""
    found = note(ctx, exc)
    return None if found is None else answer(found, not ctx.db.is_sqlite)
