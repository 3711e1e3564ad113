"""The server killed or stopped under load: the figures per scenario (issue 13).

    .venv/bin/python benchmarks/faults.py [--clients 32] [--duration 5] [--fault-at 2]
                                          [--runs 1] [--wait-claims]

Each scenario: a fresh SQLite file, ``wxbackend serve`` (the sandbox as WeChat, a
redis-server of this script's own), ``--clients`` citizens doing scan + submit (every third a
差评) with an ``Idempotency-Key`` per submission and retrying what got no answer
(tests/support/faults.py); ``--fault-at`` s in, the fault, then a restart. Printed per
scenario: attempts sent, submissions acknowledged (201), lost (a 201 not stored), doubled (a
case rated twice), attempts unanswered, 5xx, untruthful (a submission whose last answer does
not name its stored rating), stored but never answered by the faulted server, 409
``rating_in_progress`` answers, the seconds the fault took and the recovery seconds.

The baseline, measured in the same run: SIGTERM with ``server.drain_seconds = 0`` (the server
closes its connections at once, as it did before the drain). ``kill -9`` restarts once the
claims the killed process left are expired; ``--wait-claims`` adds a run that waits for them
(`writer.CLAIM_SECONDS`, 5 s) instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.faults import FaultServer, Figures, Load  # noqa: E402
from tests.support.servers import free_port, start_redis_server  # noqa: E402


def restart_after_claims(server: FaultServer) -> None:
    server.expire_claims()
    server.start()


SCENARIOS = {
    # name: (processes, extra settings, fault, recover, settle seconds)
    "SIGTERM no drain": (1, {"WXB_SERVER_DRAIN_SECONDS": "0"}, signal.SIGTERM, None, 8.0),
    "SIGTERM": (1, {}, signal.SIGTERM, None, 8.0),
    "SIGTERM x2": (2, {}, signal.SIGTERM, None, 8.0),
    "kill -9": (1, {}, signal.SIGKILL, restart_after_claims, 8.0),
}
WAITING = ("kill -9 claims left", (1, {}, signal.SIGKILL, None, 15.0))


def run(name: str, spec: tuple, redis_url: str, args: argparse.Namespace) -> Figures:
    processes, env, sig, recover, settle = spec
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    with tempfile.TemporaryDirectory(prefix="wxb-faults-") as folder:
        server = FaultServer(Path(folder), redis_url, processes, **env)
        try:
            server.start()
            load = Load(server, server.seed(args.clients, args.cases))
            load.run(
                args.duration,
                args.fault_at,
                fault=lambda: server.kill(sig),
                recover=lambda: (recover or FaultServer.start)(server),
                settle=settle,
            )
        finally:
            server.stop()
        figures = load.check()
        if sig == signal.SIGTERM and server.exit_codes[0] != 0:
            print(f"  {name}: the server exited {server.exit_codes[0]}")
        for example in figures.examples[:2]:
            print(f"  {name}: untruthful: {example[:300]}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cases", type=int, default=80, help="cases per client")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    parser.add_argument("--fault-at", type=float, default=2.0, help="seconds into the load")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--wait-claims", action="store_true", help="also kill -9 leaving the claims to expire"
    )
    args = parser.parse_args()
    scenarios = list(SCENARIOS.items()) + ([WAITING] if args.wait_claims else [])
    redis_server = start_redis_server(port := free_port())
    rows, bad = [], 0
    try:
        for _ in range(args.runs):
            for name, spec in scenarios:
                figures = run(name, spec, f"redis://127.0.0.1:{port}/0", args)
                rows.append(figures.row(name))
                if name != "SIGTERM no drain":
                    bad += figures.lost + figures.doubled + figures.untruthful
                    bad += figures.stored_unanswered * (spec[2] == signal.SIGTERM)
                print(rows[-1], flush=True)
    finally:
        redis_server.terminate()
        redis_server.wait(10)
    print(f"\n{Figures.header()}")
    print("\n".join(rows))
    print("\nPASS" if bad == 0 else f"\nFAIL: {bad} lost/doubled/untruthful/stored-unanswered")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
