"""Public list p50 with 1,000,000 stored ratings as a ratio of the p50 with 10,000 (target ≤ 1.5).

    .venv/bin/python benchmarks/public_list.py [--small 10000] [--large 1000000] [--samples 400]

1. Creates a SQLite database in a temp folder with the real schema (``models.migrations``)
   and the example catalogue plus a second center.
2. Fills it to ``--small`` first ratings (with their cases, and around them: follow-ups,
   indicator rows, likes, replies, tickets) by ``executemany`` in large transactions with
   ``PRAGMA synchronous=OFF`` — bulk data, not the rating flow; the ciphertexts are dummies.
3. Measures the p50 of :func:`wxbackend.services.public.listing.list_public` run in-process (the
   same function the handler calls, 20 items, every related row batch-loaded) for: the first
   page; a deep page (cursor at 5% of the id range, i.e. among the oldest ratings); a deep
   page filtered by center; a deep page filtered by level.
4. Grows the same database to ``--large`` and measures again; prints both p50s per case and
   their ratios, PASS/FAIL against 1.5 (the worst ratio).
5. Serves that database with ``wxbackend serve`` (one process, real Redis) and loads page 1
   (``GET /api/v1/public/evaluations``, and ``?center=``) at ``--connections`` (32) with wrk,
   with the per-process page-1 cache (``public.list_cache_seconds``, the default) and without
   it (0), against the bare Tornado handler of ``baseline.py`` in the same run: req/s and the
   ratios (for information; no target). Bounded to 260 s.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import measure_bare  # noqa: E402
from common import Processes, TimeLimitExceeded, run_load, time_limit  # noqa: E402

from models.catalog import Center, Department, ServiceItem, Staff  # noqa: E402
from models.evaluation import Indicator  # noqa: E402
from models.migrations import migrate  # noqa: E402
from wxbackend.db import Database  # noqa: E402
from wxbackend.security import LookupHasher, load_keys  # noqa: E402
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file  # noqa: E402
from wxbackend.services.public.figures import StatsQuery, stats_public  # noqa: E402
from wxbackend.services.public.listing import ListQuery, list_public  # noqa: E402
from wxbackend.services.public.rollup_rebuild import rebuild  # noqa: E402
from wxbackend.services.ratings.levels import is_bad  # noqa: E402
from wxbackend.settings import load_settings  # noqa: E402

TARGET = 1.5
BATCH = 50_000
MASKS = [c + "**" for c in "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"]
COMMENTS = ["办事很快", "窗口人员很耐心", "排队时间有点长", None, None, "材料一次性告知，点赞"]
CASE_COLUMNS = (
    "id, case_no, item_id, center_id, department_id, window_id, window_staff_id, approver_id, "
    "applicant_name_enc, applicant_id_enc, applicant_id_hash, applicant_phone_enc, "
    "accepted_at, completed_at, reported_at, first_rated_at"
)
EVALUATION_COLUMNS = (
    "id, case_id, assess_number, channel, user_id, rater_id_hash, name_masked, overall, "
    "stage_appointment, stage_handling, stage_delivery, target_window_staff, target_approver, "
    "target_department, comment, comment_status, like_count, created_at, center_id, item_id, "
    "department_id, window_staff_id, approver_id"
)


def placeholders(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


class Filler:
    """Appends cases and their ratings to the database in bulk (explicit, increasing ids;
    a follow-up takes the next id after its first rating, as it would in production)."""

    def __init__(self, db, seed: int = 7):
        self.db = db
        self.rng = random.Random(seed)
        self.count = 0
        self.last_id = 0  # the highest evaluation id so far
        self.catalogue = self._catalogue()
        self.indicators = [i.id for i in Indicator.select(Indicator.id)]
        self.start = datetime(2024, 1, 1)

    def _catalogue(self) -> list[tuple[int, int, int, int]]:
        """(item, center, department, clerk) combinations of the catalogue."""
        combos = []
        for item in ServiceItem.select():
            department = Department.get_by_id(item.department_id)
            clerk = Staff.get_or_none(
                (Staff.department == department.id) & (Staff.role == "window")
            )
            combos.append((item.id, department.center_id, department.id, clerk and clerk.id))
        return combos

    def grow_to(self, total: int) -> float:
        started = time.perf_counter()
        conn = self.db.connection()
        conn.execute("PRAGMA synchronous=OFF")
        while self.count < total:
            n = min(BATCH, total - self.count)
            self._batch(conn, self.count + 1, n)
            self.count += n
        conn.execute("PRAGMA synchronous=NORMAL")
        return time.perf_counter() - started

    def _batch(self, conn, first: int, n: int) -> None:
        rng = self.rng
        cases, ratings, follow_ups, chosen, likes, replies, tickets = [], [], [], [], [], [], []
        for i in range(first, first + n):  # i: the case id
            item, center, department, clerk = rng.choice(self.catalogue)
            done = self.start + timedelta(seconds=i * 30)
            rated = str(done + timedelta(minutes=rng.randrange(5, 600)))
            self.last_id += 1
            e = self.last_id
            overall = rng.choices((1, 2, 3, 4, 5), (3, 4, 10, 30, 53))[0]
            channel = "default" if rng.random() < 0.1 else "qr"
            cases.append(
                (i, f"B{i:09d}", item, center, department, None, clerk, None, "x", "x")
                + (f"{i:064d}", None, str(done - timedelta(hours=1)), str(done), str(done), rated)
            )
            like_count = rng.choice((0, 0, 0, 1, 2, 14))
            ratings.append(
                (e, i, 1, channel, None, None, None if channel == "default" else rng.choice(MASKS))
                + (overall, rng.randint(1, 5), overall, None, overall, None, None)
                + (rng.choice(COMMENTS), "visible", like_count, rated)
                + (center, item, department, clerk, None)
            )
            if is_bad(overall):
                chosen += [(e, code) for code in rng.sample(self.indicators, 2)]
                tickets.append((e, i, center, department, "open", rated, rated, rated))
                if rng.random() < 0.3:
                    self.last_id += 1
                    follow_ups.append(
                        (self.last_id, i, 2, "qr", None, None, "赵**", 4)
                        + (None,) * 6
                        + ("问题已解决", "visible", 0, rated)
                        + (center, item, department, clerk, None)
                    )
                    replies.append((e, "已整改，感谢监督", rated))
            likes += [(e, f"{e:056d}{k:08d}", MASKS[k % 30], rated) for k in range(like_count)]
        with self.db.atomic():
            conn.executemany(
                f'INSERT INTO "case" ({CASE_COLUMNS}) VALUES ({placeholders(CASE_COLUMNS)})', cases
            )
            insert = f"INSERT INTO evaluation ({EVALUATION_COLUMNS}) "
            insert += f"VALUES ({placeholders(EVALUATION_COLUMNS)})"
            conn.executemany(insert, ratings)
            conn.executemany(insert, follow_ups)
            conn.executemany(
                "INSERT INTO evaluation_indicator (evaluation_id, indicator_id) VALUES (?, ?)",
                chosen,
            )
            conn.executemany(
                'INSERT INTO "like" (evaluation_id, liker_id_hash, name_masked, created_at) '
                "VALUES (?, ?, ?, ?)",
                likes,
            )
            conn.executemany(
                "INSERT INTO reply (evaluation_id, text, created_at) VALUES (?, ?, ?)", replies
            )
            conn.executemany(
                "INSERT INTO ticket (evaluation_id, case_id, center_id, department_id, status, "
                "opened_at, verify_due, rectify_due, overdue) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                tickets,
            )


def p50_ms(query_of, samples: int) -> float:
    """p50 of ``list_public`` over ``samples`` calls (after a warm-up); each call's query
    comes from ``query_of(k)`` so deep pages vary a little."""
    for k in range(20):
        list_public(query_of(k))
    times = []
    for k in range(samples):
        started = time.perf_counter()
        page = list_public(query_of(k))
        times.append((time.perf_counter() - started) * 1000)
        assert len(page["items"]) == 20, len(page["items"])
    return statistics.median(times)


def measure(last_id: int, samples: int, center_code: str) -> dict[str, float]:
    deep = max(1000, last_id // 20)  # among the oldest 5 %
    return {
        "first page": p50_ms(lambda k: ListQuery(), samples),
        "deep page (cursor)": p50_ms(lambda k: ListQuery(before_id=deep + 37 * k), samples),
        "deep page, center filter": p50_ms(
            lambda k: ListQuery(center=center_code, before_id=deep + 37 * k), samples
        ),
        "deep page, level=2": p50_ms(
            lambda k: ListQuery(level=2, before_id=deep + 37 * k), samples
        ),
    }


def catalogued(db: Database, settings) -> str:
    """Migrate ``db`` and load the example catalogue plus a second center (its code)."""
    migrate(db.db)
    import_catalog(
        load_catalog_file(str(ROOT / "conf" / "catalog.example.json")),
        LookupHasher(load_keys(settings)),
    )
    return add_second_center()


def add_second_center() -> str:
    center = Center.create(code="440104-XX", name="荔湾区西村街政务服务中心", area_code="440104")
    department = Department.create(code="XX-GENERAL", name="综合受理", center=center)
    ServiceItem.create(code="440104-XX-001", name="居住证办理", department=department)
    Staff.create(
        staff_no="XX001", name="周丽娟", role="window", department=department, center=center
    )
    return center.code


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--connections", type=int, default=32, help="of the HTTP load")
    parser.add_argument("--duration", type=int, default=5, help="seconds per HTTP load")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wxb-bench-public-") as folder:
        settings = load_settings(
            env={},
            overrides={
                "database": {"url": f"sqlite:///{folder}/bench.db"},
                "server": {"data_dir": folder},
                "redis": {"url": "embedded"},
                "security": {"master_key": random_key(), "hash_key": random_key()},
            },
        )
        db = Database(settings)
        try:
            with time_limit(260):
                code = run(db, settings, args)
                db.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                measure_http(settings, folder, args)
                return code
        except TimeLimitExceeded as exc:
            print(f"FAIL: {exc}")
            return 2
        finally:
            db.close()


def measure_http(settings, folder: str, args) -> None:
    """Page 1 over HTTP at ``args.connections``: the server with and without its page-1
    cache, and the bare handler, in this run."""
    with Processes() as procs:
        bare = measure_bare(args.duration, args.connections, procs)
        redis_url = procs.start_redis()
        sandbox_port = procs.start_sandbox()
        env = {
            "WXB_DATABASE_URL": settings.database.url,
            "WXB_SERVER_DATA_DIR": folder,
            "WXB_SECURITY_MASTER_KEY": settings.security.master_key,
            "WXB_SECURITY_HASH_KEY": settings.security.hash_key,
            "WXB_WORKER_EMBEDDED": "false",
        }
        loads = {}
        for label, seconds in (("cached", None), ("uncached", "0")):
            extra = {"WXB_PUBLIC_LIST_CACHE_SECONDS": seconds} if seconds else {}
            port = procs.start_server(redis_url, sandbox_port, {**env, **extra})
            for path in (
                "/api/v1/public/evaluations",
                "/api/v1/public/evaluations?center=440104-XX",
            ):
                run_load(port, path, 1, args.connections)  # warm-up
                loads[label, path] = run_load(port, path, args.duration, args.connections)
            procs.stop(next(p for name, p in procs.procs if name == "server"))
    print(f"page 1 over HTTP, {args.connections} connections (wrk):")
    print(f"  {'bare Tornado handler':44} {bare.rps:>9,.0f} req/s")
    for (label, path), load in loads.items():
        name = f"server, {label}, {path.removeprefix('/api/v1/public/evaluations') or 'all'}"
        print(
            f"  {name:44} {load.rps:>9,.0f} req/s  {load.rps / bare.rps:.3f}x bare  "
            f"p99 {load.p99_ms:.1f} ms  errors {load.errors}"
        )


def run(db: Database, settings, args) -> int:
    other = catalogued(db, settings)
    filler = Filler(db.db)
    took = filler.grow_to(args.small)
    print(f"filled {args.small:,} ratings in {took:.1f} s")
    small = measure(filler.last_id, args.samples, other)
    took = filler.grow_to(args.large)
    print(f"grew to {args.large:,} ratings in {took:.1f} s")
    db.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    large = measure(filler.last_id, args.samples, other)
    worst = 0.0
    print(f"{'p50 of list_public (20 items)':32} {args.small:>12,} {args.large:>12,}   ratio")
    for name in small:
        ratio = large[name] / small[name]
        worst = max(worst, ratio)
        print(f"{name:32} {small[name]:>9.3f} ms {large[name]:>9.3f} ms   {ratio:.2f}")
    rebuild(db.db)  # the bulk rows bypassed the writers that keep the figures' rollups
    started = time.perf_counter()
    for _ in range(3):
        stats_public(StatsQuery())
    took = (time.perf_counter() - started) / 3 * 1000
    print(f"(for information) public stats over all {args.large:,} ratings: {took:.0f} ms each")
    verdict = "PASS" if worst <= TARGET else "FAIL"
    print(f"worst ratio: {worst:.2f} (target <= {TARGET})  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
