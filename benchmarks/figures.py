"""All-time public stats and a month's staff ranking, uncached, from the rollups (target
< 20 ms each at 1,000,000 cases), side by side on a small and a big database.

    .venv/bin/python benchmarks/figures.py [--small 10000] [--large 100000] [--samples 30]
    .venv/bin/python benchmarks/figures.py --database URL   # e.g. benchmarks/dataset.py's

1. Without ``--database``: a SQLite database in a temp folder with the real schema, filled by
   ``benchmarks/public_list.py``'s bulk filler (cases 30 s apart, their first ratings,
   follow-ups, tickets, likes …) to ``--small`` cases, then to ``--large``; after each fill
   :func:`wxbackend.services.public.rollup_rebuild.rebuild` recounts the rollups (timed too).
   With ``--database URL``: that database (SQLite or PostgreSQL) as it is, its rollups rebuilt
   first unless ``--no-rebuild``; the small one is still seeded here, for the ratio.
2. Measures the median of :func:`~wxbackend.services.public.figures.stats_public` (all time,
   every center: the public page's default question) and of
   :func:`~wxbackend.services.admin.ranking.staff_ranking` (a superadmin, the latest month
   with ratings), and for information the same public figures counted from the cases and
   ratings themselves (the way they were computed before the rollups).
3. Prints the milliseconds, the big/small ratio and PASS/FAIL against 20 ms on the big one.

Measured (2-core machine shared with other work, SQLite): on ``dataset.py --scale 1``
(1 M cases, 151 centers, ~13 months), ``--database … --no-rebuild``: all-time public stats
49.5 ms with the day rollup alone, 2.8 ms with the month rollup (whole past months from
``rollup_month``, this month's days from ``rollup_center``); staff ranking of the latest month
1.4–2.5 ms; counted from the rows 1.05–1.32 s. Default run (100,000 narrow cases): 0.9 ms
before, 1.1–2.0 ms after (one statement more; noise of the shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TimeLimitExceeded, time_limit  # noqa: E402
from public_list import Filler, catalogued, random_key  # noqa: E402

from models.evaluation import Evaluation  # noqa: E402
from models.migrations import migrate  # noqa: E402
from wxbackend.db import Database  # noqa: E402
from wxbackend.services.admin import ranking  # noqa: E402
from wxbackend.services.admin.sessions import Principal  # noqa: E402
from wxbackend.services.public import figures  # noqa: E402
from wxbackend.services.public.rollup_rebuild import rebuild  # noqa: E402
from wxbackend.services.public.rollups import local_day  # noqa: E402
from wxbackend.settings import load_settings  # noqa: E402

TARGET_MS = 20.0
ROOT_ADMIN = Principal(0, "benchmark", "superadmin", None, None)


def median_ms(call: Callable[[], object], samples: int) -> float:
    call()  # warm-up: statement caches, pages
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def from_rows() -> dict:
    """The all-time public figures counted from the cases and ratings (no rollup)."""
    counted: dict = defaultdict(figures.Tally)
    figures._from_rows(counted, figures.Scope(), None, False)
    return counted


def measure(samples: int) -> dict[str, float]:
    latest = Evaluation.select(Evaluation.created_at).order_by(Evaluation.id.desc()).scalar()
    month = local_day(latest).strftime("%Y-%m")
    bounds = ranking.month_range(month)
    print(f"  (latest month with ratings: {month})")
    return {
        "public stats, all time": median_ms(
            lambda: figures.stats_public(figures.StatsQuery()), samples
        ),
        "staff ranking, latest month": median_ms(
            lambda: ranking.staff_ranking(ROOT_ADMIN, *bounds), samples
        ),
        "(before) stats from the rows": median_ms(from_rows, max(3, samples // 10)),
    }


def settings_for(url: str, folder: str):
    return load_settings(
        env={},
        overrides={
            "database": {"url": url},
            "server": {"data_dir": folder},
            "redis": {"url": "embedded"},
            "security": {"master_key": random_key(), "hash_key": random_key()},
        },
    )


def seeded(folder: str, cases: int, samples: int) -> tuple[dict[str, float], Database, Filler]:
    """A SQLite database of ``cases`` cases seeded here, its rollups rebuilt; the figures."""
    settings = settings_for(f"sqlite:///{folder}/bench.db", folder)
    db = Database(settings)
    catalogued(db, settings)
    filler = Filler(db.db)
    grow(db, filler, cases)
    return measure(samples), db, filler


def grow(db: Database, filler: Filler, cases: int) -> None:
    took = filler.grow_to(cases)
    started = time.perf_counter()
    rows = rebuild(db.db)
    rebuilt = time.perf_counter() - started
    db.db.execute_sql("PRAGMA optimize")
    print(f"filled {cases:,} cases in {took:.1f} s; rollups rebuilt in {rebuilt:.2f} s: {rows}")


def given(url: str, folder: str, samples: int, again: bool) -> dict[str, float]:
    """The figures on the database at ``url`` (rollups rebuilt first with ``again``)."""
    db = Database(settings_for(url, folder))
    try:
        migrate(db.db)
        if again:
            started = time.perf_counter()
            rows = rebuild(db.db)
            print(f"{url}: rollups rebuilt in {time.perf_counter() - started:.2f} s: {rows}")
        return measure(samples)
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="cases of the small database")
    parser.add_argument("--large", type=int, default=100_000, help="cases of the big one")
    parser.add_argument("--samples", type=int, default=50, help="timed calls per figure")
    parser.add_argument("--database", help="measure this database as the big one (a URL)")
    parser.add_argument("--no-rebuild", action="store_true", help="keep its rollups as they are")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wxb-bench-figures-") as folder:
        try:
            with time_limit(590):
                small, db, filler = seeded(folder, args.small, args.samples)
                if args.database:
                    db.close()
                    large = given(args.database, folder, args.samples, not args.no_rebuild)
                    label = "given"
                else:
                    grow(db, filler, args.large)
                    large = measure(args.samples)
                    db.close()
                    label = f"{args.large:,}"
        except TimeLimitExceeded as exc:
            print(f"FAIL: {exc}")
            return 2
    print(f"{'median, uncached':32} {args.small:>12,} {label:>12}   ratio")
    worst = 0.0
    for name in small:
        ratio = large[name] / small[name]
        if not name.startswith("("):
            worst = max(worst, large[name])
        print(f"{name:32} {small[name]:>9.3f} ms {large[name]:>9.3f} ms   {ratio:.2f}")
    verdict = "PASS" if worst < TARGET_MS else "FAIL"
    print(f"slowest figure on the big database: {worst:.2f} ms (target < {TARGET_MS})  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
