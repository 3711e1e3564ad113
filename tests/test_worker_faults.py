"""The worker under Redis and PostgreSQL faults: each reminder sent exactly once, none lost.

A ``wxbackend worker`` process drains a backlog of due reminders against the sandbox (its
own process), which records every message it accepts. Each citizen holds TWO one-time
quotas in the sandbox, so a duplicate send would be accepted and show (with one quota WeChat
answers 43101 and hides it). A third of the way through, the sandbox holds the next sends
for a second and, while they are in flight, Redis is killed (SIGKILL) and started again
empty on the same port (the WeChat token is invalidated meanwhile: the next sends must
fetch one through a Redis that is gone, then empty), or PostgreSQL (a private cluster) is
stopped with ``-m fast``, cutting every connection, and started again 2 s later: the held
sends end while it is down, and their outcomes must still be recorded (once it is back).
The same worker must go on (it exits 0 on SIGTERM at the end), the sandbox must hold
exactly one message per case, every message row must say ``sent`` and every job ``done``.

(SIGKILL and SIGTERM of a worker: tests/test_worker_processes.py.)
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from models.messaging import Message
from tests.support.backlog import (
    SEND,
    hold_sends,
    kill_all,
    rows,
    sandbox_post,
    start,
    start_sandbox,
    wait_done,
    wait_held,
    wait_sent,
)
from tests.support.pgcluster import PgCluster, pg_bindir
from tests.support.servers import free_port, start_redis_server
from tests.tools.reminder_backlog import (
    sandbox_sent,
    sandbox_stats,
    seed_backlog,
    settings_for,
    worker_env,
)

N = 200
#: Three batches' worth of backlog is left when the fault strikes.
BATCH = 40


def _drain_through(
    tmp_path: Path, env: dict[str, str], fault: Callable[[str], None]
) -> dict[str, Any]:
    """Seed the backlog, run one worker, strike with ``fault(sandbox_url)`` a third of the
    way through, sends in flight, and check that every reminder went exactly once; the
    sandbox's counters."""
    sandbox_port = free_port()
    url = f"http://127.0.0.1:{sandbox_port}/"
    env = {
        **env,
        "WXB_WECHAT_API_BASE": url,
        "WXB_WORKER_LEASE_SECONDS": "4",
        "WXB_WORKER_POLL_SECONDS": "0.2",
        "WXB_WORKER_BATCH_SIZE": str(BATCH),
    }
    procs: list[subprocess.Popen] = []
    try:
        started = time.monotonic()
        procs.append(start_sandbox(sandbox_port, env, tmp_path / "sandbox.log"))
        case_ids = seed_backlog(settings_for(env), url, N, wechat_quota=2)
        seeded = time.monotonic()
        hold_sends(url, 1.0, 2 * BATCH, after=N // 3)
        worker = start(["worker", "--owner", "W"], env, tmp_path / "worker.log")
        procs.append(worker)
        wait_held(url, 30, [worker])
        assert sandbox_stats(url)["messages_sent"] >= N // 3
        struck = time.monotonic()
        fault(url)
        wait_sent(url, N, 30, [worker])
        assert wait_done(env, 15) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        drained = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        stats = sandbox_stats(url)
        calls = stats["calls"].get(SEND, 0)
        print(
            f"\nset up in {seeded - started:.1f}s; fault after {struck - seeded:.1f}s; "
            f"drained {drained - struck:.1f}s after it; subscribe/send calls {calls} for {N}"
        )

        counts = Counter(sandbox_sent(url))
        assert set(counts) == set(case_ids), f"{len(counts)} of {N} cases got a message"
        doubled = {case: n for case, n in counts.items() if n > 1}
        assert not doubled, f"{len(doubled)} cases got their reminder twice"
        statuses = rows(env, lambda: Counter(m.status for m in Message.select(Message.status)))
        assert statuses == {"sent": N}
        return stats
    finally:
        kill_all(procs)


@pytest.mark.slow
def test_redis_killed_and_restarted_empty_mid_backlog(tmp_path):
    port = free_port()
    redis_proc = [start_redis_server(port)]

    def kill_and_restart_empty(sandbox_url: str) -> None:
        redis_proc[0].kill()
        redis_proc[0].wait(5)
        sandbox_post(sandbox_url, "_sandbox/tokens/invalidate")
        time.sleep(1.2)  # the held sends end: the next ones meet a Redis that is gone
        redis_proc[0] = start_redis_server(port)

    env = worker_env(
        tmp_path / "backlog.db", tmp_path, f"redis://127.0.0.1:{port}/0", "http://unused/"
    )
    try:
        stats = _drain_through(tmp_path, env, kill_and_restart_empty)
    finally:
        redis_proc[0].kill()
        redis_proc[0].wait(5)
    # The token was fetched again once Redis was back (empty): sends went on after it.
    assert sum(stats["token_fetches"].values()) >= 2
    # At start the worker said what a Redis restart loses (this one has no persistence).
    assert "Redis has no persistence" in (tmp_path / "worker.log").read_text()


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restarted_mid_backlog(tmp_path, redis_flushed):
    bindir = pg_bindir()
    if bindir is None:
        pytest.exit("PostgreSQL is not installed: run scripts/test.sh", returncode=3)
    cluster = PgCluster(bindir)  # its own: restarting it disturbs no other test

    def key() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    env = worker_env(
        tmp_path / "unused.db",
        tmp_path,
        redis_flushed,
        "http://unused/",
        WXB_DATABASE_URL=cluster.url,
        WXB_SECURITY_MASTER_KEY=key(),
        WXB_SECURITY_HASH_KEY=key(),
        WXB_TRANSPARENCY_SIGNING_KEY=key(),
    )
    try:
        # Down for longer than the held sends: their outcomes meet a refused connection.
        _drain_through(tmp_path, env, lambda _url: cluster.restart(down_seconds=2.0))
    finally:
        cluster.stop()
    log = (tmp_path / "worker.log").read_text()
    # the outage is one line when it starts and one when it ends, not one per beat or poll
    assert 1 <= log.count("database is down") <= 2 and "database is back" in log, log[-3000:]
    assert "renewal failed" not in log and "claim failed" not in log, log[-3000:]
