"""Baseline: a bare Tornado JSON handler vs the real server's ``GET /healthz``, same run.

    .venv/bin/python benchmarks/baseline.py [--duration 5]

Both are loaded with ``wrk -t1 -c32 -d{duration}s`` (Python fallback without wrk), one after the
other, on 127.0.0.1. The bare app is ``self.write({"ok": True})`` in its own process; the real
server runs with SQLite in a temp folder and a private redis-server, so ``/healthz`` does a
database ping (thread pool) and a Redis PING per request, plus the middleware and the
one-log-line-per-request of the real stack. Prints both req/s and the ratio healthz/bare.

``measure_bare(duration)`` is importable by other benchmarks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Load, Processes, free_port, run_load, time_limit  # noqa: E402


def serve_bare(port: int) -> None:
    """The bare app (run in a subprocess by :func:`measure_bare`)."""
    import asyncio

    import tornado.web

    class Bare(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({"ok": True})

    async def main() -> None:
        app = tornado.web.Application([(r"/", Bare)])
        app.listen(port, address="127.0.0.1", xheaders=False)
        await asyncio.Event().wait()

    asyncio.run(main())


def measure_bare(
    duration: float = 5, connections: int = 32, procs: Processes | None = None
) -> Load:
    """Serve the bare app in a subprocess, load it, stop it; the load's figures."""
    own = procs is None
    p = procs or Processes()
    try:
        port = free_port()
        proc = p.start("bare", [sys.executable, __file__, "--serve-bare", str(port)])
        p.wait_http(port, "/", timeout=15)
        result = run_load(port, "/", duration, connections)
        p.stop(proc)
        return result
    finally:
        if own:
            p.stop_all()


def measure_healthz(procs: Processes, duration: float = 5, connections: int = 32) -> Load:
    redis_url = procs.start_redis()
    sandbox_port = procs.start_sandbox()
    port = procs.start_server(redis_url, sandbox_port, {})
    return run_load(port, "/healthz", duration, connections)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds of load per target")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    with time_limit(4 * args.duration + 60), Processes() as procs:
        bare = measure_bare(args.duration, args.connections, procs)
        print(f"bare Tornado handler : {bare.line()}")
        health = measure_healthz(procs, args.duration, args.connections)
        print(f"server GET /healthz  : {health.line()}")
    print(f"ratio healthz/bare req/s: {health.rps / bare.rps:.3f}")
    print(f"ratio healthz/bare p99  : {health.p99_ms / bare.p99_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
