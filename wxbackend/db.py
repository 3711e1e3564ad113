"""The database: peewee on SQLite (embedded default) or PostgreSQL (pooled).

Models bind to :data:`database` (a proxy). peewee is synchronous, so every call from the
server goes through :meth:`Database.run`, which runs it on a bounded thread pool kept off
the IOLoop. SQLite runs in WAL mode with foreign keys and a busy timeout, and begins every
write transaction ``IMMEDIATE`` (a deferred transaction that reads, then writes fails with
``database is locked`` under concurrency; see stack-notes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib.util
import logging
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


def sqlite_path(url: str) -> str:
    """``sqlite:///data/x.db`` → ``data/x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    return url[len("sqlite:///") :]


def make_peewee_database(settings: Settings) -> peewee.Database:
    url = settings.database.url
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": settings.database.sqlite_busy_timeout_ms,
                "synchronous": "normal",
            },
            lock_type="IMMEDIATE",
            check_same_thread=False,
        )
    parts = urlparse(url)
    return PooledPostgresqlDatabase(
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
    """The bound database plus the thread pool that runs its calls."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = make_peewee_database(settings)
        database.initialize(self.db)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.database.threads, thread_name_prefix="db"
        )

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
        try:
            return fn(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            # A broken connection must not stay bound to this thread.
            if not self.db.is_closed() and not self.db.in_transaction():
                self.db.close()
            raise

    def atomic(self):
        return self.db.atomic()

    def ping(self) -> None:
        self.db.execute_sql("SELECT 1").fetchone()

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


def compiled_insert(name: str, build: Callable[[], peewee.Insert], args: Sequence[Any] = ()) -> int:
    """Run the single-row INSERT ``build()`` makes (compiled as :func:`compiled_rows`; every
    column given as a :func:`param`, so no default is frozen into the SQL) and answer the new
    row's id (``RETURNING`` on PostgreSQL, the cursor's ``lastrowid`` on SQLite)."""
    cursor, _ = _execute_compiled(name, lambda: (build(), ()), args)
    if database.obj.returning_clause:
        return cursor.fetchone()[0]
    return cursor.lastrowid
