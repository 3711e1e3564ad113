"""The database: peewee on SQLite (embedded default) or PostgreSQL (pooled).

Models bind to :data:`database` (a proxy). peewee is synchronous, so every call from the
server goes through :meth:`Database.run`, which runs it on a bounded thread pool kept off
the IOLoop. SQLite runs in WAL mode with foreign keys and a busy timeout, and begins every
write transaction ``IMMEDIATE`` (a deferred transaction that reads, then writes fails with
``database is locked`` under concurrency; see stack-notes.md).

After a PostgreSQL restart the connections the threads hold are dead: each call first drops
one the server has closed (checked without a round trip), and a call whose very first
statement finds the session ended by the server runs once more on a new connection. A failed
COMMIT is marked (``wxb_at_commit``) so the answer can say its outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.util
import logging
import os
import select
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import peewee
from playhouse.pool import PooledPostgresqlDatabase

from wxbackend.security import StartupError
from wxbackend.settings import Settings, shown_url

log = logging.getLogger("wxbackend.db")
# peewee's DEBUG lines carry every query's parameters (openids, hashes, ciphertexts): never
# let them reach a log, whatever the configured level.
logging.getLogger("peewee").setLevel(logging.WARNING)
T = TypeVar("T")

database = peewee.DatabaseProxy()

#: SQLSTATEs of a session the server ended before the statement ran (admin_shutdown,
#: crash_shutdown, cannot_connect_now): running the call again cannot do anything twice.
_ENDED_BEFORE = frozenset({"57P01", "57P02", "57P03"})
#: Less free space than this in the SQLite database's folder: the disk counts as full.
MIN_FREE_BYTES = 1 << 20


class _Marked:
    """Counts the statements of the thread's current call and marks a failed COMMIT."""

    _calls = threading.local()

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        self._calls.statements = getattr(self._calls, "statements", 0) + 1
        return super().cursor(*args, **kwargs)  # type: ignore[misc]

    def commit(self) -> Any:
        try:
            return super().commit()  # type: ignore[misc]
        except Exception as exc:
            exc.wxb_at_commit = True  # type: ignore[attr-defined]
            raise


class _Sqlite(_Marked, peewee.SqliteDatabase):
    """SQLite whose write transactions queue on a lock of the process before ``BEGIN
    IMMEDIATE``. Without it the pool's threads meet on SQLite's own lock, whose busy handler
    sleeps 1, 2, 5 … 100 ms between tries: under load a freed lock stays idle for
    milliseconds while its waiters sleep. Other processes still meet on SQLite's lock (the
    busy timeout).

    ``after_commits``: called (outside the lock) every :data:`CHECKPOINT_EVERY_COMMITS`
    commits when :class:`Database` checkpoints the WAL itself (see there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._writer_wait = dict(self._pragmas).get("busy_timeout", 5000) / 1000
        self._holds = threading.local()
        self.commits = 0
        self.after_commits: Callable[[], None] | None = None

    def begin(self, lock_type: str | None = None) -> None:
        # As long as SQLite's busy timeout: a writer stuck that long is "database is locked"
        # (a 503), as it was when the threads met on SQLite's lock.
        if not self._writer.acquire(timeout=self._writer_wait):
            raise peewee.OperationalError("database is locked")
        self._holds.writer = True
        try:
            super().begin(lock_type)
        except BaseException:
            self._release_writer()
            raise

    def commit(self) -> Any:
        try:
            done = super().commit()
        finally:
            if not self._holds_writer_open():  # a failed COMMIT keeps it for the ROLLBACK
                self._release_writer()
        self.commits += 1
        if self.after_commits is not None and self.commits >= CHECKPOINT_EVERY_COMMITS:
            self.commits = 0
            self.after_commits()
        return done

    def rollback(self) -> Any:
        try:
            return super().rollback()
        finally:
            self._release_writer()

    def _holds_writer_open(self) -> bool:
        """Whether SQLite still has this thread's transaction open (a failed COMMIT)."""
        conn = self._state.conn
        return conn is not None and conn.in_transaction

    def _release_writer(self) -> None:
        if getattr(self._holds, "writer", False):
            self._holds.writer = False
            self._writer.release()


#: Commits between two WAL checkpoints of a :class:`Database` (each rating writes ~30 pages,
#: so ~6,000 WAL frames; SQLite's own default checkpoints every 1,000 frames).
CHECKPOINT_EVERY_COMMITS = 200


class _Postgres(_Marked, PooledPostgresqlDatabase):
    pass


def sqlite_path(url: str) -> str:
    """``sqlite:///data/x.db`` → ``data/x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    return url[len("sqlite:///") :]


def make_peewee_database(settings: Settings, *, own_checkpoints: bool = False) -> peewee.Database:
    """The peewee database of ``settings``; ``own_checkpoints`` (SQLite): no automatic WAL
    checkpoint in the committing connection (:class:`Database` runs them on its pool)."""
    url = settings.database.url
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return _Sqlite(
            path,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": settings.database.sqlite_busy_timeout_ms,
                "synchronous": "normal",
                **({"wal_autocheckpoint": 0} if own_checkpoints else {}),
            },
            lock_type="IMMEDIATE",
            check_same_thread=False,
        )
    parts = urlparse(url)
    return _Postgres(
        parts.path.lstrip("/"),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname,
        port=parts.port,
        max_connections=settings.database.threads + 2,
        stale_timeout=300,
        timeout=10,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )


#: How long a PostgreSQL connection attempt may take (libpq otherwise waits for the OS).
CONNECT_TIMEOUT_SECONDS = 5


def check_database(settings: Settings) -> None:
    """Refuse to start (StartupError, one line naming the URL) when PostgreSQL's driver is not
    installed or the database cannot be reached; SQLite needs nothing."""
    url = settings.database.url
    if url.startswith("sqlite:"):
        return
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        raise StartupError(
            f"database.url {shown_url(url)} is PostgreSQL but its driver (psycopg) is not "
            "installed: pip install 'wxbackend[postgres]'"
        )
    db = make_peewee_database(settings)
    try:
        db.connect()
        db.execute_sql("SELECT 1").fetchone()
    except peewee.PeeweeException as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StartupError(f"cannot connect to PostgreSQL at {shown_url(url)}: {reason}") from None
    finally:
        if not db.is_closed():
            db.close()
        db.close_all()


class Database:
    """The bound database plus the thread pool that runs its calls.

    On SQLite the WAL is checkpointed by a pool thread every :data:`CHECKPOINT_EVERY_COMMITS`
    commits (``PRAGMA wal_checkpoint(PASSIVE)``: it never blocks a writer), not by SQLite's
    automatic checkpoint, which runs inside a COMMIT every 1,000 WAL frames — with its fsyncs
    — and so inside the writer's lock: it cost a rating about 1 ms on average. Fewer, larger
    checkpoints also copy a page written by many commits (a rollup row, the log's head, an
    index's last leaf) once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = make_peewee_database(settings, own_checkpoints=True)
        database.initialize(self.db)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.database.threads, thread_name_prefix="db"
        )
        self._checkpointing = threading.Lock()
        if isinstance(self.db, _Sqlite):
            self.db.after_commits = self._start_checkpoint

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self.db, peewee.SqliteDatabase)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the database pool and await its result."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, self._call, fn, args, kwargs)
        return await loop.run_in_executor(self.executor, call)

    def _call(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        if not self.is_sqlite:
            self._drop_if_dead()
        _Marked._calls.statements = 0
        try:
            return fn(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            first = getattr(_Marked._calls, "statements", 0) <= 1
            # A broken connection must not stay bound to this thread.
            if not self.db.is_closed() and not self.db.in_transaction():
                self.db.close()
            if not (first and _ended_before(exc)) or self.db.in_transaction():
                raise
        log.info("database session ended by the server: running the call again")
        return fn(*args, **kwargs)

    def _drop_if_dead(self) -> None:
        """Close this thread's PostgreSQL connection if the server has ended it (it closed
        the socket or sent its farewell while the connection was idle): no round trip."""
        if self.db.is_closed() or self.db.in_transaction():
            return
        conn = self.db.connection()
        try:
            idle = self.db._adapter.txn_status(conn) == self.db._adapter.txn_idle
            dead = bool(conn.closed) or not idle or _readable(conn.fileno())
        except (OSError, ValueError, AttributeError):
            dead = True
        if dead:
            self.db.manual_close()

    def atomic(self):
        return self.db.atomic()

    def _start_checkpoint(self) -> None:
        """Have a pool thread checkpoint the WAL (one at a time; none once closing)."""
        if not self._checkpointing.acquire(blocking=False):
            return
        try:
            self.executor.submit(self._checkpoint)
        except RuntimeError:  # the pool is shutting down: the last close checkpoints
            self._checkpointing.release()

    def _checkpoint(self) -> None:
        try:
            self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except peewee.PeeweeException as exc:  # the next one catches up
            log.warning("WAL checkpoint failed", extra={"fields": {"error": str(exc)[:200]}})
        finally:
            self._checkpointing.release()

    def ping(self) -> None:
        self.db.execute_sql("SELECT 1").fetchone()

    def write_probe(self) -> None:
        """Raise ``peewee.OperationalError`` naming why the database cannot write now.

        SQLite: its folder's free space (under :data:`MIN_FREE_BYTES` is full), its
        ``max_page_count`` reached with no free page, and the write lock (``BEGIN
        IMMEDIATE``, rolled back). PostgreSQL: a read-only server (a standby). Cheap: no row
        is written."""
        if not self.is_sqlite:
            if self.db.execute_sql("SELECT pg_is_in_recovery()").fetchone()[0]:
                raise peewee.OperationalError("the database is read-only (a standby)")
            return
        path = sqlite_path(self.settings.database.url)
        if path != ":memory:":
            stat = os.statvfs(Path(path).resolve().parent)
            if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
                raise peewee.OperationalError("database or disk is full (no free space)")
        pages, most, free = (
            self.db.execute_sql(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "max_page_count", "freelist_count")
        )
        if pages >= most and not free:
            raise peewee.OperationalError("database or disk is full (max_page_count)")
        if not self.db.in_transaction():
            self.db.execute_sql("BEGIN IMMEDIATE")
            self.db.execute_sql("ROLLBACK")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        if not self.db.is_closed():
            if self.is_sqlite:  # SQLite's advice for a connection about to close
                with contextlib.suppress(peewee.PeeweeException):
                    self.db.execute_sql("PRAGMA analysis_limit=400")
                    self.db.execute_sql("PRAGMA optimize")
            self.db.close()
        if isinstance(self.db, PooledPostgresqlDatabase):
            self.db.close_all()


def _readable(fd: int) -> bool:
    """Whether the server sent something on an idle connection (its farewell, or EOF).
    ``poll``, not ``select``: a process with many open sockets has descriptors above 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))


def _ended_before(exc: BaseException) -> bool:
    """``exc`` says the connection was gone before the statement ran: peewee's or the
    driver's "connection closed" (nothing was sent), or the server's farewell SQLSTATE."""
    for current in (exc, exc.__cause__, exc.__context__, *exc.args[:1]):
        if isinstance(current, BaseException):
            if getattr(current, "sqlstate", None) in _ENDED_BEFORE:
                return True
            if type(current).__name__ == "InterfaceError":
                return True
    return False


# --------------------------------------------------------------------------- hot queries

#: Hot queries compiled once per database: ``{database: {name: (sql, params, fields)}}``.
#: Peewee rebuilds the SQL of a query object on every call, which costs far more than
#: SQLite's execution; these run the same SQL text again with new parameters.
_COMPILED: weakref.WeakKeyDictionary[
    Any, dict[str, tuple[str, list[Any], tuple[peewee.Field, ...]]]
] = weakref.WeakKeyDictionary()


def param(n: int) -> str:
    """Stands for argument ``n`` of :func:`compiled_rows` in the query its ``build`` makes."""
    return f"\x00compiled-param-{n}\x00"


def _execute_compiled(
    name: str,
    build: Callable[[], tuple[peewee.Query, Sequence[peewee.Field]]],
    args: Sequence[Any],
) -> tuple[Any, tuple[peewee.Field, ...]]:
    db = database.obj
    per_db = _COMPILED.get(db)
    if per_db is None:
        per_db = _COMPILED[db] = {}
    entry = per_db.get(name)
    if entry is None:
        query, fields = build()
        sql, params = query.sql()
        entry = per_db[name] = (sql, list(params), tuple(fields))
    sql, params, fields = entry
    placeholders = {param(n): value for n, value in enumerate(args)}
    bound = [placeholders.get(p, p) if isinstance(p, str) else p for p in params]
    return database.execute_sql(sql, bound), fields


def compiled_rows(
    name: str,
    build: Callable[[], tuple[peewee.Query, Sequence[peewee.Field]]],
    args: Sequence[Any] = (),
) -> Any:
    """Run the query ``build()`` makes (compiled once per database, under ``name``), its
    :func:`param` placeholders replaced by ``args``; each row as a tuple of the python values
    of ``fields`` (the query's selected columns, in order). A write (no ``fields``) answers
    its row count. ``args`` are database values (``field.db_value``)."""
    cursor, fields = _execute_compiled(name, build, args)
    if not fields:  # a write: how many rows it changed
        return cursor.rowcount
    return [
        tuple(None if v is None else f.python_value(v) for f, v in zip(fields, row, strict=True))
        for row in cursor.fetchall()
    ]


def insert_values(
    model: type[peewee.Model], values: dict[str, Any], ignore_conflict: bool = False
) -> int:
    """INSERT one row of ``model`` from ``values`` (field names to python values; give every
    column that has no NULL to fall back on: defaults are the model's, not the table's)
    through a statement compiled once per model and column set. Answers the new row's id,
    or with ``ignore_conflict`` how many rows it inserted (0: a unique key held it off)."""
    names = tuple(values)
    fields = [model._meta.fields[n] for n in names]
    args = [None if values[f.name] is None else f.db_value(values[f.name]) for f in fields]
    name = f"insert.{model._meta.table_name}.{','.join(names)}.{ignore_conflict}"

    def build() -> peewee.Insert:
        return model.insert(
            {f: peewee.Value(param(n), converter=False) for n, f in enumerate(fields)}
        )

    if ignore_conflict:
        return compiled_rows(name, lambda: (build().on_conflict_ignore().as_rowcount(), ()), args)
    return compiled_insert(name, build, args)


def compiled_insert(name: str, build: Callable[[], peewee.Insert], args: Sequence[Any] = ()) -> int:
    """Run the single-row INSERT ``build()`` makes (compiled as :func:`compiled_rows`; every
    column given as a :func:`param`, so no default is frozen into the SQL) and answer the new
    row's id (``RETURNING`` on PostgreSQL, the cursor's ``lastrowid`` on SQLite)."""
    cursor, _ = _execute_compiled(name, lambda: (build(), ()), args)
    if database.obj.returning_clause:
        return cursor.fetchone()[0]
    return cursor.lastrowid
