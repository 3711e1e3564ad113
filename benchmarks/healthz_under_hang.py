"""``GET /healthz`` p99 while 200 WeChat calls hang, as a ratio to its idle p99 (target ≤ 2).

    .venv/bin/python benchmarks/healthz_under_hang.py [--samples 2000] [--logins 200]

1. Starts a private redis-server, ``wxbackend sandbox`` and ``wxbackend serve`` (SQLite in a
   temp folder, ``WXB_WECHAT_TIMEOUT_SECONDS=30`` so WeChat calls keep hanging during the
   measurement, login rate limit off), all on free ports of 127.0.0.1.
2. Idle: ``--samples`` sequential ``GET /healthz`` on one keep-alive connection (after a
   warm-up), each timed with ``time.perf_counter``.
3. Sets the sandbox fault ``sns/jscode2session`` hang 600 s, then opens ``--logins`` raw
   sockets and sends one ``POST /api/v1/auth/login`` on each (a real login code each), and
   leaves them open: every login is a WeChat ``code2session`` call hanging in the sandbox.
   Waits until the sandbox's ``GET /_sandbox/stats`` counts them all.
4. Loaded: the same sampling of ``/healthz``; then checks that no login was answered meanwhile
   (the calls were in flight for the whole measurement).
5. Prints idle p99, loaded p99, their ratio, PASS/FAIL against the target; stops everything
   (also on errors; the whole run is bounded to 85 s).
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    Processes,
    TimeLimitExceeded,
    request,
    run_clients,
    sample_latency,
    time_limit,
)

from wxbackend.clients.citizen import Citizen  # noqa: E402

TARGET = 2.0
PATH = "sns/jscode2session"


def open_logins(port: int, codes: list[str]) -> list[socket.socket]:
    """One login request per code, each on its own socket, left waiting for the answer."""
    socks = []
    for code in codes:
        body = json.dumps({"code": code}).encode()
        head = (
            f"POST /api/v1/auth/login HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        s = socket.create_connection((HOST, port), timeout=10)
        s.sendall(head + body)
        socks.append(s)
    return socks


def answered(socks: list[socket.socket]) -> int:
    """How many of the sockets have an answer (or were closed) by now."""
    readable, _, _ = select.select(socks, [], [], 0)
    return len(readable)


def wait_calls(sandbox_port: int, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        _, stats = request(sandbox_port, "GET", "/_sandbox/stats")
        n = int(stats["calls"].get(PATH, 0))
        if n >= want:
            return n
        time.sleep(0.05)
    return n


def run(samples: int, logins: int) -> bool:
    with Processes() as procs:
        t0 = time.monotonic()
        redis_url = procs.start_redis()
        sandbox = procs.start_sandbox()
        server = procs.start_server(
            redis_url,
            sandbox,
            {
                "WXB_WECHAT_TIMEOUT_SECONDS": "30",
                "WXB_RATELIMIT_LOGIN_PER_IP_PER_MINUTE": "0",
                "WXB_RATELIMIT_LOGIN_PER_OPENID_PER_MINUTE": "0",
            },
        )
        print(
            f"started redis, sandbox :{sandbox}, server :{server} in {time.monotonic() - t0:.1f} s"
        )

        # One real login first: warms the login path (DB, Redis scripts) before the fault.
        run_clients(Citizen.login, server, sandbox)  # ApiError unless 200

        idle = sample_latency(server, "/healthz", samples, warmup=200)
        print(f"idle   /healthz: {idle.line()}")

        codes = [
            request(sandbox, "POST", "/_sandbox/login-code", {})[1]["code"] for _ in range(logins)
        ]
        status, _ = request(
            sandbox, "POST", "/_sandbox/faults", {"path": PATH, "hang_seconds": 600}
        )
        if status != 200:
            raise RuntimeError(f"setting the sandbox fault answered HTTP {status}")
        before = wait_calls(sandbox, 0, 1)
        fired = time.monotonic()
        socks = open_logins(server, codes)
        try:
            calls = wait_calls(sandbox, before + logins, timeout=20) - before
            print(
                f"{logins} logins sent; sandbox counts {calls} {PATH} calls hanging "
                f"({time.monotonic() - fired:.2f} s after the first)"
            )
            if calls < logins:
                raise RuntimeError(f"only {calls} of {logins} WeChat calls reached the sandbox")
            time.sleep(0.5)  # let the burst of 200 requests settle
            loaded = sample_latency(server, "/healthz", samples, warmup=50)
            print(f"loaded /healthz: {loaded.line()}")
            done = answered(socks)
            _, stats = request(sandbox, "GET", "/_sandbox/stats")
            calls_after = int(stats["calls"].get(PATH, 0)) - before
            print(
                f"after measuring: {done} of {logins} logins answered, sandbox counts "
                f"{calls_after} {PATH} calls (no retries: {calls_after == logins}), "
                f"still hanging for {time.monotonic() - fired:.1f} s of the 30 s WeChat timeout"
            )
            if done:
                raise RuntimeError(f"{done} logins were answered during the measurement")
        finally:
            for s in socks:
                s.close()
            request(sandbox, "DELETE", "/_sandbox/faults")

    ratio = loaded.p99_ms / idle.p99_ms
    ok = ratio <= TARGET and idle.errors == 0 and loaded.errors == 0
    print()
    print(f"idle p99   : {idle.p99_ms:.2f} ms (p50 {idle.p50_ms:.2f} ms)")
    print(
        f"loaded p99 : {loaded.p99_ms:.2f} ms (p50 {loaded.p50_ms:.2f} ms), "
        f"{logins} WeChat calls hanging"
    )
    print(f"ratio      : {ratio:.2f} (target <= {TARGET:g})  {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="sequential /healthz per phase")
    ap.add_argument("--logins", type=int, default=200, help="concurrent hanging logins")
    args = ap.parse_args()
    started = time.monotonic()
    try:
        with time_limit(85):
            ok = run(args.samples, args.logins)
    except TimeLimitExceeded as exc:
        print(f"FAIL: {exc}")
        return 1
    print(f"total run time {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
