"""The server killed or stopped under load (issue 13): nothing lost, nothing doubled, every
client that retried with its ``Idempotency-Key`` learned the truth.

A real ``wxbackend serve`` (SQLite, the sandbox, the session's redis-server) and 24 clients
doing scan + submit (tests/support/faults.py); mid-load the server is killed with SIGKILL or
stopped with SIGTERM, then started again, while the clients retry what got no answer. The
figures of each scenario are printed (``-s``); ``benchmarks/faults.py`` prints them all.

Marked ``slow`` and ``faults`` (each about 10–15 s).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.support.faults import FaultServer, Figures, Load

pytestmark = [pytest.mark.slow, pytest.mark.faults]

CLIENTS, CASES = 24, 40


def scenario(
    tmp_path, redis_url: str, fault: Callable, recover: Callable, processes: int = 1
) -> tuple[Figures, FaultServer]:
    """Load, ``fault(server)`` 1.2 s in, ``recover(server)``; the checks every fault shares."""
    server = FaultServer(tmp_path, redis_url, processes)
    try:
        server.start()
        load = Load(server, server.seed(CLIENTS, CASES))
        load.run(3.0, 1.2, fault=lambda: fault(server), recover=lambda: recover(server))
    finally:
        server.stop()
    figures = load.check()
    print(f"\n{Figures.header()}\n{figures.row(f'{fault.__name__} x{processes}')}")
    assert figures.sent > 2 * CLIENTS and figures.acknowledged > CLIENTS  # it was under load
    assert figures.lost == 0 and figures.doubled == 0
    # every client learned the truth: its last answer names the stored rating
    assert figures.untruthful == 0, figures.examples
    assert figures.recovery_seconds is not None
    return figures, server


def kill_9(server: FaultServer) -> None:
    server.kill(signal.SIGKILL)


def sigterm(server: FaultServer) -> None:
    server.kill(signal.SIGTERM)


def restart(server: FaultServer) -> None:
    """Start again once the claims the killed process left are expired (see
    :meth:`FaultServer.expire_claims`: 30 s would not fit the test)."""
    server.expire_claims()
    server.start()


def test_kill_9_mid_load_and_restart(tmp_path, redis_flushed):
    figures, server = scenario(tmp_path, redis_flushed, kill_9, restart)
    assert figures.errors_5xx == 0, server.log.read_text()[-3000:]


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_under_load_answers_every_request_it_read(tmp_path, redis_flushed, processes):
    figures, server = scenario(tmp_path, redis_flushed, sigterm, FaultServer.start, processes)
    log = server.log.read_text(errors="replace")
    assert server.exit_codes[0] == 0, log[-3000:]
    assert figures.stored_unanswered == 0  # nothing committed and left unanswered
    assert figures.errors_5xx == 0, log[-3000:]
    for bad in ("Traceback", "Task was destroyed", "closed AsyncHTTPClient", "cut after"):
        assert bad not in log, log[-3000:]
