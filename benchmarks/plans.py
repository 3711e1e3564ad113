"""The plans and times of the hot statements on a province-shaped database, SQLite and
PostgreSQL side by side (issue 14: every hot statement under 5 ms at full size).

    .venv/bin/python benchmarks/plans.py [--scale 0.1] [--only sqlite|postgresql] [--plans]

1. Builds the dataset (``dataset.build``) at ``--scale`` in a temp SQLite file (as the app
   leaves it: not ANALYZEd) and in a throw-away PostgreSQL cluster (VACUUM ANALYZE, as
   autovacuum would leave it).
2. Runs the hot set in-process through the app's own functions, capturing every statement
   they send: a 差评 rating through the rating writer (its job cancellation, token close,
   ticket), a default rating, the worker's claim and due count, ``purge_jobs`` (one batch),
   the default-rating sweep, the public list (all, per center, per level), ``/me``'s pending
   cases, and the public stats (all time, from the rollups).
3. Times each statement again (median of 5, inside a rolled-back savepoint for writes) and
   prints ms per statement with its plan (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN
   ANALYZE`` on PostgreSQL with ``--plans``). A statement over 5 ms is marked SLOW. On
   PostgreSQL the ms is EXPLAIN ANALYZE's execution time (the client's round trip through
   psycopg on a loaded machine is noise, not plan); an INSERT's is its first run's wall time.

Measured at ``--scale 1 --only sqlite``: 50 statements, max 1.83 ms, none over 5 ms (the
all-time public stats: 1.83 ms over ``rollup_month``'s 2,100 rows + 0.44 ms over this month's
days in ``rollup_center``; before the month rollup one SUM over all 56,030 day × center rows
took 27.6 ms). The rating's extra upsert into ``rollup_month``: 0.07 ms. At ``--scale 0.3``:
SQLite max 0.61 ms (stats 0.36 + 0.07 ms); PostgreSQL stats 0.14 + 0.05 ms, the one SLOW the
worker's ``due_count`` (10.5 ms: a parallel bitmap scan's Gather start-up for 0 rows). At
``--scale 1 --only postgresql``: stats 0.41 + 0.11 ms, the ``rollup_month`` upsert 0.63 ms (a
first run's wall time), again only ``due_count`` over 5 ms (6.71 ms).

``due_count`` at ``--scale 1 --only postgresql``, replayed with the app's ``SET LOCAL`` (a
replay without it, as this script did before, took 131 ms: a parallel bitmap heap scan over
``job_kind_status``'s 1,000,003 pending entries, 102 rows per worker kept): **0.08 ms** after
migration 17 (``job_pending_due`` carries ``kind``: an index-only scan of the 206 due rows, no
heap fetch); the claim's pending range 0.22 → 0.08 ms (index-only). The other statements
over 5 ms in that run were single INSERTs (evaluation 5.9 ms, log_leaf 5.4 ms; the run before:
ticket 5.4 ms): an INSERT's figure is its first run's wall time through psycopg on a loaded
2-core machine, which moves from one INSERT to another between runs; no plan is involved.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dataset  # noqa: E402
from stores import Store  # noqa: E402

TARGET_MS = 5.0
REPEAT = 5


Captured = tuple[str, str, tuple, float, tuple[str, ...]]


def hot_set(info: Any, settings: Any) -> list[Captured]:
    """Run the hot paths once; ``[(path, sql, args, ms, set_locals)]`` of every statement they
    sent (ms: that first run, rows fetched; ``set_locals``: the ``SET LOCAL`` statements its
    transaction ran before it, replayed with it)."""
    from models.case import Case
    from models.evaluation import Indicator
    from wxbackend.db import database
    from wxbackend.services.cases.scan import pending_cases
    from wxbackend.services.jobs import housekeeping
    from wxbackend.services.jobs import queue as jobs
    from wxbackend.services.jobs.registry import handlers
    from wxbackend.services.public import figures, listing
    from wxbackend.services.ratings import defaults, writer
    from wxbackend.services.ratings.writer import FirstRating

    captured: list[Captured] = []
    seen: set[str] = set()
    path = [""]
    set_locals: list[str] = []
    db = database.obj
    original = db.execute_sql

    def spy(sql: str, params: Any = None, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        cursor = original(sql, params, *a, **k)
        ms = (time.perf_counter() - t0) * 1000
        if re.match(r"\s*SET LOCAL\b", sql, re.I):
            set_locals.append(sql)
        hot = path[0] and re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", sql, re.I)
        if hot and sql not in seen:
            seen.add(sql)
            captured.append((path[0], sql, tuple(params or ()), ms, tuple(set_locals)))
        return cursor

    db.execute_sql = spy
    try:
        unrated = [r.id for r in Case.select(Case.id).where(Case.first_rated_at.is_null()).limit(2)]
        indicator = Indicator.get(Indicator.code == "repeat_visits")
        now = info.now
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("rating 差评", lambda: writer.write(FirstRating(
                case_id=unrated[0], channel="miniprogram", overall=1,
                indicators=("repeat_visits",), indicator_ids={"repeat_visits": indicator.id},
                comment="跑了两次", at=now), settings)),
            ("default rating", lambda: defaults.apply_default_rating(
                unrated[1], 0, now + timedelta(days=8), settings)),
            ("worker claim", lambda: jobs.claim("plans", 60, 200, list(handlers()))),
            ("worker due_count", lambda: jobs.due_count(list(handlers()))),
            ("purge_jobs batch", lambda: housekeeping.purge_jobs_batch(
                now - timedelta(days=housekeeping.JOB_RETENTION_DAYS))),
            ("default sweep", lambda: defaults.due_cases(7, now)),
            ("public list", lambda: listing.list_public(listing.parse_list_query({}))),
            ("public list center", lambda: listing.list_public(
                listing.parse_list_query({"center": "DS-0001"}))),
            ("public list level", lambda: listing.list_public(
                listing.parse_list_query({"level": "1"}))),
            ("/me pending", lambda: pending_cases(info.citizens_with_pending[0], 7)),
            ("public stats", lambda: figures.stats_public(figures.parse_stats_query({}))),
        ]  # fmt: skip
        for name, step in steps:
            path[0] = name
            set_locals.clear()
            with database.atomic():
                step()
    finally:
        db.execute_sql = original
    return captured


def measure(
    sql: str, args: tuple, first_ms: float, postgres: bool, set_locals: tuple[str, ...] = ()
) -> tuple[float, list[str]]:
    """Median ms of :data:`REPEAT` runs (each rolled back, after the ``SET LOCAL`` statements
    the app ran before it), an INSERT's first run (a second would hit its unique keys), and
    the plan lines."""
    from wxbackend.db import database

    insert = sql.lstrip().upper().startswith("INSERT")
    times = [first_ms] if insert else []
    plan: list[str] = []
    for n in range(1 if insert else REPEAT):
        with database.atomic() as tx:
            for statement in set_locals:
                database.execute_sql(statement)
            if not insert:
                t0 = time.perf_counter()
                cursor = database.execute_sql(sql, args)
                if cursor.description:
                    cursor.fetchall()
                times.append((time.perf_counter() - t0) * 1000)
            if n == 0 and not insert:
                explain = "EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN "
                rows = database.execute_sql(explain + sql, args).fetchall()
                plan = [r[0] if postgres else r[3] for r in rows]
            tx.rollback()
    executed = [float(m[1]) for line in plan if (m := re.match(r"Execution Time: ([\d.]+)", line))]
    if postgres and executed:  # the server's own time: the client's round trip is not the plan's
        return executed[0], plan
    return statistics.median(times), plan


def report(backend: str, url: str, scale: float, show_plans: bool) -> list[float]:
    """Build, run the hot set, print each statement's ms (and plan); the ms list."""
    from wxbackend.db import Database

    settings = dataset._settings_for(url)
    info = dataset.build(url, scale, settings=settings)
    print(f"{backend}: {info.line()}")
    holder = Database(settings)
    postgres = backend == "postgresql"
    results = []
    try:
        for path, sql, args, first_ms, set_locals in hot_set(info, settings):
            ms, plan = measure(sql, args, first_ms, postgres, set_locals)
            results.append(ms)
            mark = "SLOW" if ms > TARGET_MS else "ok"
            print(f"  {ms:8.2f} ms {mark:4} [{path}] {sql[:150]}")
            if show_plans or ms > TARGET_MS:
                for line in plan:
                    print(f"      {line}")
    finally:
        holder.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    ap.add_argument("--plans", action="store_true", help="print every plan, not only slow ones")
    args = ap.parse_args()
    import base64

    for name in ("WXB_SECURITY_MASTER_KEY", "WXB_SECURITY_HASH_KEY"):
        os.environ.setdefault(name, base64.b64encode(os.urandom(32)).decode())
    tmp = Path(tempfile.mkdtemp(prefix="wxb-plans-"))
    os.environ["WXB_SERVER_DATA_DIR"] = str(tmp)
    summary = {}
    store = None
    try:
        if args.only in (None, "sqlite"):
            summary["sqlite"] = report(
                "sqlite", f"sqlite:///{tmp}/plans.db", args.scale, args.plans
            )
        if args.only in (None, "postgresql"):
            store = Store("postgresql", tmp)
            url = store.create("plans")
            summary["postgresql"] = report("postgresql", url, args.scale, args.plans)
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ok = True
    for backend, times in summary.items():
        slow = sum(1 for t in times if t > TARGET_MS)
        ok &= slow == 0
        print(f"{backend}: {len(times)} statements, max {max(times):.2f} ms, {slow} over "
              f"{TARGET_MS} ms (scale {args.scale})")  # fmt: skip
    print("PASS" if ok else f"FAIL (statements over {TARGET_MS} ms: marked SLOW above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
