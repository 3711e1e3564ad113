"""Export memory and speed: the streamed export of 100,000 and of 1,000,000 ratings through the
real server; peak memory must not grow with the row count (ratio of peaks near 1).

    .venv/bin/python benchmarks/export.py [--small 100000] [--large 1000000] [--format csv]

1. Creates a SQLite database in a temp folder with the real schema and the example catalogue
   plus a second center, and fills it to ``--small`` first ratings with their cases, follow-ups,
   indicator rows, likes, replies and tickets (``Filler`` of ``public_list.py``: ``executemany``
   in 50,000-row transactions, ``PRAGMA synchronous=OFF``; bulk data, dummy ciphertexts).
2. Starts redis-server, ``wxbackend sandbox`` and ``wxbackend serve`` on that database (embedded
   worker off, so only the export runs), logs in a superadmin, does a tiny export to warm the
   code paths, resets the server's peak-RSS mark (``echo 5 > /proc/PID/clear_refs``) and reads
   its RSS.
3. Downloads ``GET /admin/api/export?format=...`` over one connection, 1 MiB reads, counting
   rows; rows/s is rows over the download time. Afterwards reads the server's ``VmHWM`` (peak
   RSS since the reset): the peak and its rise over the RSS before the export.
4. Stops the server, grows the database to ``--large``, starts a fresh server, measures again,
   and prints both runs and the ratios of the peaks (whole RSS and the rise). PASS when the
   peak RSS ratio is at most 1.25. Bounded to 235 s; about 75 s on 2 cores.

The rise over the RSS before the export is smaller for the short run: 100,000 rows are
sent before every thread of the database pool has served a chunk, and each thread keeps its
own SQLite page cache and malloc arena. The RSS trace of the long run shows the plateau:
after the first ~50 MB sent it stays flat whatever the row count.

Measured here (2 cores, shared; ``CHUNK_ROWS`` 2,000):

    csv    100,000:   102,101 rows in  1.2 s =  87,673 rows/s, peak  96.7 MB (+ 6.9 MB)
    csv  1,000,000: 1,021,203 rows in 16.2 s =  63,151 rows/s, peak 102.4 MB (+12.7 MB)
           peak RSS ratio 1.059
    jsonl  100,000:   102,101 rows in  1.5 s =  65,878 rows/s, peak 100.7 MB (+11.0 MB)
    jsonl 1,000,000: 1,021,203 rows in 18.3 s =  55,737 rows/s, peak 114.2 MB (+24.0 MB)
           peak RSS ratio 1.134
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    Processes,
    TimeLimitExceeded,
    run_clients,
    time_limit,
)
from public_list import Filler, catalogued  # noqa: E402

from wxbackend.clients.admin import AdminClient  # noqa: E402
from wxbackend.db import Database  # noqa: E402
from wxbackend.services.admin.accounts import create_admin  # noqa: E402
from wxbackend.settings import load_settings  # noqa: E402

TARGET = 1.25
PASSWORD = "bench-password-123"
READ = 1 << 20
SAMPLE_EVERY = 10_000_000


@dataclass
class Run:
    rows: int
    seconds: float
    megabytes: float
    rss_before_mb: float
    peak_mb: float
    samples: list[float]

    @property
    def rise_mb(self) -> float:
        return self.peak_mb - self.rss_before_mb

    def line(self, label: str) -> str:
        return (
            f"{label:>10} ratings: {self.rows:>9,} rows, {self.megabytes:7.1f} MB in "
            f"{self.seconds:6.1f} s = {self.rows / self.seconds:>8,.0f} rows/s; server RSS "
            f"{self.rss_before_mb:6.1f} MB before, peak {self.peak_mb:6.1f} MB "
            f"(+{self.rise_mb:5.1f} MB)\n{'':>12}RSS every 10 MB sent: "
            + " ".join(f"{mb:.0f}" for mb in self.samples[:: max(1, len(self.samples) // 18)])
        )


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def login(port: int) -> str:
    """The bench admin's bearer token (`AdminClient`)."""
    return run_clients(lambda api, _: AdminClient.login(api, "bench", PASSWORD), port).token


def download(
    port: int, token: str, path: str, pid: int | None = None
) -> tuple[int, int, float, list[float]]:
    """(newlines, bytes, seconds, the server's RSS in MB after every 10 MB) of one GET read
    to the end in 1 MiB blocks."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    started = time.perf_counter()
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status} {resp.read()[:300]!r}")
        lines = size = 0
        samples: list[float] = []
        while block := resp.read(READ):
            lines += block.count(b"\n")
            size += len(block)
            if pid is not None and size // SAMPLE_EVERY > len(samples):
                samples.append(status_mb(pid, "VmRSS"))
    finally:
        conn.close()
    return lines, size, time.perf_counter() - started, samples


def measure(procs: Processes, env: dict[str, str], fmt: str) -> Run:
    redis_url = env["WXB_REDIS_URL"]
    sandbox_port = int(env["SANDBOX_PORT"])
    extra = {k: v for k, v in env.items() if k.startswith("WXB_") and k != "WXB_REDIS_URL"}
    port = procs.start_server(redis_url, sandbox_port, extra)
    server = next(p for name, p in procs.procs if name == "server")
    try:
        token = login(port)
        download(port, token, f"/admin/api/export?format={fmt}&from=2030-01-01")  # warm-up
        reset_peak(server.pid)
        before = status_mb(server.pid, "VmRSS")
        path = f"/admin/api/export?format={fmt}"
        lines, size, seconds, samples = download(port, token, path, server.pid)
        peak = status_mb(server.pid, "VmHWM")
    finally:
        procs.stop(server)
    rows = lines - 1 if fmt == "csv" else lines
    return Run(rows, seconds, size / 1e6, before, peak, samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args()
    try:
        with time_limit(235), Processes() as procs:
            return run(procs, args)
    except TimeLimitExceeded as exc:
        print(f"FAIL: {exc}")
        return 2


def run(procs: Processes, args: argparse.Namespace) -> int:
    keys = {"WXB_SECURITY_MASTER_KEY": random_key(), "WXB_SECURITY_HASH_KEY": random_key()}
    settings = load_settings(
        env={},
        overrides={
            "database": {"url": f"sqlite:///{procs.tmp}/b.db"},
            "server": {"data_dir": str(procs.tmp)},
            "redis": {"url": "embedded"},
            "security": {
                "master_key": keys["WXB_SECURITY_MASTER_KEY"],
                "hash_key": keys["WXB_SECURITY_HASH_KEY"],
            },
        },
    )
    db = Database(settings)
    catalogued(db, settings)
    with db.atomic():
        create_admin("bench", PASSWORD, "superadmin")
    filler = Filler(db.db)
    env = {
        **keys,
        "WXB_REDIS_URL": procs.start_redis(),
        "SANDBOX_PORT": str(procs.start_sandbox()),
        "WXB_WORKER_EMBEDDED": "false",
        "WXB_LOG_LEVEL": "WARNING",
    }
    runs = {}
    for size in (args.small, args.large):
        took = filler.grow_to(size)
        db.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db.db.close()
        print(f"filled to {size:,} ratings ({filler.last_id:,} evaluations) in {took:.1f} s")
        runs[size] = measure(procs, env, args.format)
        print(runs[size].line(f"{size:,}"), flush=True)
    db.close()
    small, large = runs[args.small], runs[args.large]
    peak_ratio = large.peak_mb / small.peak_mb
    rise_ratio = large.rise_mb / small.rise_mb if small.rise_mb > 0 else float("nan")
    speed_ratio = (large.rows / large.seconds) / (small.rows / small.seconds)
    print(f"format: {args.format}; rows ratio {large.rows / small.rows:.1f}x")
    print(f"peak RSS ratio {args.large:,} / {args.small:,}: {peak_ratio:.3f}")
    print(f"peak rise ratio (peak - RSS before export): {rise_ratio:.3f}")
    print(f"rows/s ratio: {speed_ratio:.2f}")
    verdict = "PASS" if peak_ratio <= TARGET else "FAIL"
    print(f"peak memory ratio {peak_ratio:.3f} (target <= {TARGET})  {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
