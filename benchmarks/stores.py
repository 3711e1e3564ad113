"""Named databases for the benchmarks, on SQLite or PostgreSQL alike (issue 14).

A :class:`Store` hands out database URLs by name: files in a temp folder (SQLite), or
databases of one private PostgreSQL cluster (``tests/support/pgcluster.PgCluster``: a copy of
one ``initdb``, on a free port, ``fsync=off``). :meth:`Store.copy` is a file copy on SQLite and
``CREATE DATABASE … TEMPLATE`` on PostgreSQL (the statistics come along), so each run of a
benchmark starts from the same loaded database. :meth:`Store.settle` is what an operator does
after a bulk load: ``VACUUM ANALYZE`` on PostgreSQL; nothing on SQLite (the app leaves it
un-ANALYZEd).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Store:
    """Databases named ``[a-z_]+`` on ``kind`` (``sqlite`` or ``postgresql``)."""

    def __init__(self, kind: str, folder: Path):
        if kind not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown database kind {kind!r}")
        self.kind = kind
        self.folder = folder
        self.cluster: Any = None
        if kind == "postgresql":
            from tests.support.pgcluster import PgCluster, pg_bindir

            bindir = pg_bindir()
            if bindir is None:
                raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
            self.cluster = PgCluster(bindir)

    @property
    def postgres(self) -> bool:
        return self.kind == "postgresql"

    @property
    def param(self) -> str:
        """The DB-API placeholder of :meth:`connect`'s connections."""
        return "%s" if self.postgres else "?"

    def url(self, name: str) -> str:
        if self.postgres:
            return f"postgresql://wxb@127.0.0.1:{self.cluster.port}/{name}"
        return f"sqlite:///{self.folder}/{name}.db"

    def path(self, name: str) -> Path:
        """The SQLite file of ``name``."""
        return self.folder / f"{name}.db"

    def _admin(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.url("wxb"), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def _disconnect(self, name: str) -> str:
        return (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    def create(self, name: str) -> str:
        """A new empty database ``name`` (dropped first if it exists); its URL."""
        if self.postgres:
            self._admin(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
            )
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path(name)}{suffix}").unlink(missing_ok=True)
        return self.url(name)

    def copy(self, source: str, target: str) -> str:
        """``target`` as a copy of ``source`` (replacing it); its URL."""
        if self.postgres:
            self._admin(
                self._disconnect(source),
                f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)',
                # FILE_COPY: a checkpoint and a copy of the files, not all of it through the WAL
                f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY FILE_COPY',
            )
        else:
            target_path = self.path(target)
            for suffix in ("-wal", "-shm"):  # a server killed mid-run leaves its WAL behind:
                Path(f"{target_path}{suffix}").unlink(missing_ok=True)  # never replay it here
            shutil.copyfile(self.path(source), target_path)
        return self.url(target)

    def settle(self, name: str) -> None:
        """After a bulk load: ``VACUUM ANALYZE`` on PostgreSQL (as an operator would, or
        autovacuum later); SQLite is left as the app leaves it."""
        if self.postgres:
            import psycopg

            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

    def connect(self, name: str) -> Any:
        """A DB-API connection to ``name`` (close it); placeholders are :attr:`param`."""
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url(name))
        import sqlite3

        return sqlite3.connect(self.path(name))

    def watch(self, slow_ms: int = 20) -> None:
        """PostgreSQL: log every statement over ``slow_ms`` and every lock wait over 100 ms
        (read back by :meth:`slow_statements`); nothing on SQLite."""
        if self.postgres:
            self._admin(
                f"ALTER SYSTEM SET log_min_duration_statement = {int(slow_ms)}",
                "ALTER SYSTEM SET log_lock_waits = on",
                "ALTER SYSTEM SET deadlock_timeout = '100ms'",
                "SELECT pg_reload_conf()",
            )
            self._log_start = self._log().stat().st_size

    def _log(self) -> Path:
        return Path(self.cluster.folder) / "log"

    def slow_statements(self, top: int = 6) -> list[str]:
        """Since :meth:`watch`: the slowest statement shapes (count, max ms, the start of the
        statement) and the lock waits, most frequent first."""
        if not self.postgres:
            return []
        with self._log().open(errors="replace") as log:
            log.seek(getattr(self, "_log_start", 0))
            text = log.read()
        shapes: dict[str, list[float]] = {}
        waits: dict[str, int] = {}
        for m in re.finditer(
            r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*): (.{0,90})", text
        ):
            shapes.setdefault(re.sub(r"\$\d+|\d+", "?", m[2]), []).append(float(m[1]))
        for m in re.finditer(r"still waiting for (\w+ on \w+)", text):
            waits[m[1]] = waits.get(m[1], 0) + 1
        lines = [
            f"{len(ms)} x, max {max(ms):.0f} ms: {shape}"
            for shape, ms in sorted(shapes.items(), key=lambda kv: -len(kv[1]))[:top]
        ]
        lines += [
            f"lock wait {what}: {n} x" for what, n in sorted(waits.items(), key=lambda kv: -kv[1])
        ]
        return lines

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
