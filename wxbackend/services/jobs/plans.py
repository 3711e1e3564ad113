"""Statements whose index is the only plan (issue 14): SQLite's planner without statistics
(the app never runs ANALYZE itself) can pick a low-cardinality index, e.g. ``status = ?``
over a million pending jobs. These helpers name the index on SQLite (``INDEXED BY``: an
error, never a silent scan, if it cannot be used); PostgreSQL, ANALYZEd by autovacuum, gets
the same statement without the hint.
"""

from __future__ import annotations

import re
from typing import Any

import peewee

from wxbackend.db import database


def is_sqlite() -> bool:
    """Whether the bound database is SQLite."""
    return isinstance(database.obj, peewee.SqliteDatabase)


class _Raw(peewee.Node):
    """A compiled statement carried where :func:`wxbackend.db.compiled_rows` wants a query."""

    def __init__(self, sql: str, params: list[Any]):
        self._sql = sql
        self._params = params

    def sql(self) -> tuple[str, list[Any]]:
        return self._sql, list(self._params)

    def execute(self) -> Any:
        """Run it on the bound database; the cursor."""
        return database.execute_sql(self._sql, self._params)


def indexed_by(query: peewee.Query, table: str, index: str) -> _Raw:
    """``query`` (a SELECT, UPDATE or DELETE reading ``table``) compiled, with ``table`` read
    through ``index`` on SQLite; run it with :func:`wxbackend.db.compiled_rows` or
    :meth:`_Raw.execute`."""
    sql, params = query.sql()
    if is_sqlite():
        match = re.search(rf'"{table}"(?: AS "\w+")?', sql.split(" WHERE ", 1)[0])
        if match is None:
            raise ValueError(f"{table} is not the target of: {sql}")
        sql = f'{sql[: match.end()]} INDEXED BY "{index}"{sql[match.end() :]}'
    return _Raw(sql, params)


def range_sql(
    template: str, index: str, kinds: list[str] | None, limit: int | None
) -> tuple[str, list[Any]]:
    """Fill a ``SELECT … FROM job{hint} WHERE … {p}{kinds} … LIMIT {limit}`` template: the
    index hint (SQLite), the driver's placeholder, an optional ``kind IN (…)`` filter and
    limit (None: no ORDER BY nor LIMIT, for a count). Returns the SQL and the arguments
    after ``{p}``'s."""
    p = database.obj.param
    hint = f' INDEXED BY "{index}"' if is_sqlite() else ""
    kinds_sql = ""
    if kinds is not None:
        kinds_sql = f" AND kind IN ({', '.join([p] * len(kinds))})" if kinds else " AND 0 = 1"
    sql = template.format(hint=hint, p=p, kinds=kinds_sql, limit=limit or 0)
    if limit is None:  # a count: neither order nor limit
        sql = sql.rsplit(" ORDER BY ", 1)[0]
    return sql, list(kinds or ())
