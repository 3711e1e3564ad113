"""Worker processes on a reminder backlog (``tests.tools.reminder_backlog``): start the CLI's
sandbox and workers as OS processes, wait for the sandbox to receive sends, read the rows."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.job import Job
from tests.support.cli import WXBACKEND
from tests.tools.reminder_backlog import sandbox_stats, settings_for
from wxbackend.db import database, make_peewee_database


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``wxbackend <argv>`` in the background, its output in ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [WXBACKEND, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent
        )


def start_sandbox(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``wxbackend sandbox`` on ``port``, once it answers."""
    proc = start(["sandbox", "--port", str(port)], env, log)
    deadline = time.monotonic() + 15
    while True:
        try:
            sandbox_stats(f"http://127.0.0.1:{port}/")
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.05)


def wait_sent(url: str, at_least: int, seconds: float, procs: list) -> int:
    """Wait until the sandbox received ``at_least`` messages (every process in ``procs`` must
    stay alive meanwhile); how many it received."""
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        sent = sandbox_stats(url)["messages_sent"]
        if sent >= at_least:
            return sent
        for proc in procs:
            assert proc.poll() is None, f"a worker exited early ({proc.returncode})"
        time.sleep(0.1)
    return sent


SEND = "cgi-bin/message/subscribe/send"


def sandbox_post(url: str, path: str, body: Any = None) -> None:
    """``POST`` to the sandbox's control API (``path`` under ``url``)."""
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def hold_sends(url: str, seconds: float, times: int, after: int) -> None:
    """Arm the sandbox to hold ``times`` sends for ``seconds`` each (then accept them), once
    ``after`` sends went through: armed before the load starts, so a fast worker cannot finish
    its backlog before the hold is in force (a race an armed-when-seen fault loses)."""
    fault = {"path": SEND, "hang_seconds": seconds, "times": times, "after": after}
    sandbox_post(url, "_sandbox/faults", fault)


def wait_held(url: str, seconds: float, procs: list) -> None:
    """Return once a send is held (sends in flight, their outcomes not yet recorded); every
    process in ``procs`` must stay alive meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = sandbox_stats(url)
        if stats["calls"].get(SEND, 0) > stats["messages_sent"]:
            return
        for proc in procs:
            assert proc.poll() is None, f"a worker exited early ({proc.returncode})"
        time.sleep(0.02)
    raise AssertionError(f"no send was held: {sandbox_stats(url)}")


def rows(env: dict[str, str], query: Callable[[], Any]) -> Any:
    """``query()`` against the workers' database."""
    db = make_peewee_database(settings_for(env))
    database.initialize(db)
    try:
        return query()
    finally:
        db.close()


def reminders_left(env: dict[str, str]) -> int:
    """Reminder jobs not done yet."""
    return rows(
        env, lambda: Job.select().where(Job.kind == "reminder", Job.status != "done").count()
    )


def wait_done(env: dict[str, str], seconds: float) -> int:
    """Wait until every reminder job is done; how many are left."""
    deadline = time.monotonic() + seconds
    while True:
        left = reminders_left(env)
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def kill_all(procs: list[subprocess.Popen]) -> None:
    """SIGKILL what still runs (a test's cleanup)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
