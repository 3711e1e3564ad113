"""The transparency log's cost: append, inclusion-proof and consistency-proof latency at 1 k,
100 k and 1 M leaves as ratios to 1 k (flat: O(log n)), and the rating path (scan+submit
pairs/s of one server) with the log on vs off in the same run (target ≥ 0.9).

    .venv/bin/python benchmarks/transparency.py [--leaves 1000000] [--samples 300]
        [--pairs 1200] [--duration 8] [--connections 16] [--skip-rating]

1. **The tree** (SQLite file in a temp folder, this process): the log's tables are filled in
   bulk up to each size — leaves of ~150 bytes of canonical JSON, their nodes computed with
   ``merkle.append_leaf`` and inserted with ``executemany`` in large transactions (never the
   per-event path, so 1 M leaves take seconds). At each size: ``--samples`` appends through
   the real ``log._append`` (each its own transaction: head read, leaf and node inserts, head
   update), inclusion proofs of random leaves and consistency proofs from random sizes
   through ``log.inclusion_proof`` / ``log.consistency_proof`` (the endpoints' code: node
   reads and hashing). Medians and p99 in microseconds, and each size's median over 1 k's.
2. **The rating path** (``rating.py``'s seeding, sessions and pair client): ``wxbackend
   serve`` on one fresh SQLite database, alternately with ``WXB_TRANSPARENCY_ENABLED=false``
   and ``true`` (off, on, off, on: ``--rounds`` pairs), each run ``--duration`` s of
   scan+submit pairs on its own citizens. Prints pairs/s and server CPU per pair of each run,
   and the ratios on/off of the totals.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Processes, TimeLimitExceeded, time_limit  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
TARGET = 0.9
BATCH = 50_000


def leaf_text(i: int) -> str:
    return (
        '{"at":"2026-12-02T12:00:00+08:00","channel":"qr","comment":null,"evaluation":"'
        f'{i + 1}","indicators":[],"item":"440103-SY-001","kind":"rating","overall":5}}'
    )


class TreeBuilder:
    """Fills the log's tables in bulk, as the per-event appends would have."""

    def __init__(self) -> None:
        self.size = 0
        self.frontier: list[bytes] = []

    def grow(self, target: int) -> None:
        from models.transparency import LogHead
        from wxbackend.db import database
        from wxbackend.services.transparency import log, merkle

        conn = database.connection()
        now = datetime(2026, 12, 2, 4, 0, 0)
        while self.size < target:
            end = min(target, self.size + BATCH)
            leaves, nodes = [], []
            for i in range(self.size, end):
                text = leaf_text(i)
                hashed = merkle.leaf_hash(text.encode())
                made, self.frontier = merkle.append_leaf(self.frontier, i, hashed)
                leaves.append((i, "rating", i + 1, text, hashed, None, now))
                nodes.extend((log.node_id(lv, index), value) for lv, index, value in made[1:])
            with database.atomic():
                conn.executemany(
                    'INSERT INTO log_leaf ("index", kind, evaluation_id, leaf, leaf_hash, salt,'
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    leaves,
                )
                conn.executemany("INSERT INTO log_node (id, hash) VALUES (?, ?)", nodes)
                LogHead.update(tree_size=end, frontier=b"".join(self.frontier)).where(
                    LogHead.id == 1
                ).execute()
            self.size = end


def timed(fn, samples: int) -> list[float]:
    """Microseconds of ``samples`` calls of ``fn(k)``."""
    out = []
    for k in range(samples):
        t = time.perf_counter()
        fn(k)
        out.append((time.perf_counter() - t) * 1e6)
    return out


def measure_at(current: int, samples: int, rng: random.Random) -> dict[str, list[float]]:
    """Proofs against a tree of ``current`` leaves, then ``samples`` appends to it."""
    from wxbackend.db import database
    from wxbackend.services.transparency import log

    now = datetime(2026, 12, 2, 5, 0, 0)

    def append(k: int) -> None:
        with database.atomic():
            log._append("rating", None, leaf_text(10**8 + k), None, now)

    return {
        "inclusion": timed(
            lambda k: log.inclusion_proof(str(rng.randrange(current)), str(current)), samples
        ),
        "consistency": timed(
            lambda k: log.consistency_proof(str(rng.randrange(1, current)), str(current)),
            samples,
        ),
        "append": timed(append, samples),
    }


def measure_tree(args: argparse.Namespace) -> dict[int, dict[str, list[float]]]:
    from models.migrations import migrate
    from models.transparency import LogHead
    from wxbackend.db import Database
    from wxbackend.services.transparency import log
    from wxbackend.settings import load_settings

    folder = tempfile.mkdtemp(prefix="wxb-tlog-")
    settings = load_settings(
        env={
            "WXB_DATABASE_URL": f"sqlite:///{folder}/t.db",
            "WXB_SERVER_DATA_DIR": folder,
        }
    )
    db = Database(settings)
    migrate(db.db)
    builder = TreeBuilder()
    rng = random.Random(7)
    results: dict[int, dict[str, list[float]]] = {}
    sizes = [s for s in SIZES if s <= args.leaves]
    for size in sizes:
        t0 = time.monotonic()
        builder.grow(size)
        built = time.monotonic() - t0
        results[size] = measure_at(log.tree_size(), args.samples, rng)
        builder.size = log.tree_size()  # the appends grew the tree: keep building after them
        builder.frontier = log._split(bytes(LogHead.get_by_id(1).frontier))
        print(f"  built {size:>9,} leaves in {built:5.1f} s; measured {args.samples} of each")
    db.close()
    shutil.rmtree(folder, ignore_errors=True)
    return results


def report_tree(results: dict[int, dict[str, list[float]]]) -> None:
    base = min(results)
    print(f"{'operation':<12} {'leaves':>10} {'median µs':>10} {'p99 µs':>9} {'× at 1 k':>9}")
    for op in ("append", "inclusion", "consistency"):
        first = statistics.median(results[base][op])
        for size, ops in results.items():
            values = sorted(ops[op])
            median = statistics.median(values)
            p99 = values[int(0.99 * (len(values) - 1))]
            print(f"{op:<12} {size:>10,} {median:>10.0f} {p99:>9.0f} {median / first:>9.2f}")


def measure_rating(procs: Processes, args: argparse.Namespace) -> float:
    from rating import (
        WARMUP,
        pair_units,
        random_key,
        register_openids,
        run_units,
        seed,
        store_sessions,
    )

    env = {
        "WXB_DATABASE_URL": f"sqlite:///{procs.tmp}/b.db",
        "WXB_SERVER_DATA_DIR": str(procs.tmp),
        "WXB_SECURITY_MASTER_KEY": random_key(),
        "WXB_SECURITY_HASH_KEY": random_key(),
        "WXB_WORKER_EMBEDDED": "false",
        "WXB_RATELIMIT_LOGIN_PER_IP_PER_MINUTE": "0",
        "WXB_RATELIMIT_LOGIN_PER_OPENID_PER_MINUTE": "0",
        "WXB_RATELIMIT_FACE_START_PER_USER_PER_HOUR": "0",
        "WXB_LOG_LEVEL": "WARNING",
    }
    runs = ["false", "true"] * args.rounds
    per_run = args.pairs
    citizens = seed(env, per_run * len(runs) + WARMUP * len(runs))
    redis_url = procs.start_redis()
    sandbox_port = procs.start_sandbox()
    store_sessions(redis_url, citizens)
    register_openids(sandbox_port, [c.openid for c in citizens])
    totals = {"false": [0, 0.0, 0.0], "true": [0, 0.0, 0.0]}
    chunk = per_run + WARMUP
    for n, enabled in enumerate(runs):
        mine = citizens[n * chunk : (n + 1) * chunk]
        port = procs.start_server(
            redis_url, sandbox_port, {**env, "WXB_TRANSPARENCY_ENABLED": enabled}
        )
        server = next(p for name, p in procs.procs if name == "server")
        warm = run_units(port, pair_units(port, mine[:WARMUP]), 8, 30)
        load = run_units(
            port, pair_units(port, mine[WARMUP:]), args.connections, args.duration, server.pid
        )
        procs.stop(server)
        if warm.bad or load.bad or load.failed:
            raise RuntimeError(f"run {n} (log {enabled}): {warm.bad[:3]} {load.bad[:3]}")
        totals[enabled][0] += load.units
        totals[enabled][1] += load.seconds
        totals[enabled][2] += load.server_cpu or 0.0
        label = "on " if enabled == "true" else "off"
        print(
            f"  log {label}: {load.rate:7.1f} pairs/s ({load.units} pairs in {load.seconds:.1f} s,"
            f" p50 {load.pct(50):.1f} ms, p99 {load.pct(99):.1f} ms; server CPU"
            f" {1000 * (load.server_cpu or 0) / max(load.units, 1):.2f} ms/pair)"
        )
    on = totals["true"][0] / totals["true"][1]
    off = totals["false"][0] / totals["false"][1]
    print(f"rating path: log on {on:.1f} pairs/s, off {off:.1f} pairs/s, ratio {on / off:.3f}")
    cpu_on = 1000 * totals["true"][2] / totals["true"][0]
    cpu_off = 1000 * totals["false"][2] / totals["false"][0]
    print(
        f"server CPU per pair: log on {cpu_on:.2f} ms, off {cpu_off:.2f} ms; ratio off/on "
        f"{cpu_off / cpu_on:.3f} (the throughput ratio a CPU-bound server would show; "
        "steadier than pairs/s on a shared machine)"
    )
    return on / off


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=1200, help="citizens per rating run")
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="off/on pairs of rating runs")
    ap.add_argument("--skip-rating", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    print(f"{os.cpu_count()} CPU(s). The tree (SQLite):")
    report_tree(measure_tree(args))
    ok = True
    if not args.skip_rating:
        try:
            with time_limit(120 + 60 * args.rounds), Processes() as procs:
                ratio = measure_rating(procs, args)
        except TimeLimitExceeded as exc:
            print(f"FAIL: {exc}")
            return 2
        ok = ratio >= TARGET
        print(f"ratio {ratio:.3f} (target >= {TARGET})  {'PASS' if ok else 'FAIL'}")
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
