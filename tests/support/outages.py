"""Outages for tests: a redis-server of one test (killed and restarted on the same port,
empty), a PostgreSQL cluster of one test (stopped, started, restarted ``-m fast``), and a
tiny tmpfs for a full disk. Real servers, never mocks.

    redis = OwnRedis.start()            # redis.url = redis.url
    redis.kill(); ...; redis.restart()  # the same port, nothing in it
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from models.case import QrToken
from models.evaluation import Evaluation
from tests.support.servers import free_port, start_redis_server

#: The rating endpoint.
RATE = "/api/v1/evaluations"


class OwnRedis:
    """A redis-server this test may kill: ``url``, :meth:`kill`, :meth:`restart`."""

    def __init__(self, port: int):
        self.port = port
        self.proc: subprocess.Popen | None = None

    @classmethod
    def start(cls) -> OwnRedis:
        own = cls(free_port())
        own.restart()
        return own

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restart(self) -> None:
        """Start it (again) on its port, empty (no persistence)."""
        self.proc = start_redis_server(self.port, shutil.which("redis-server") or "redis-server")

    def kill(self) -> None:
        """SIGKILL: gone at once, its connections reset."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class Tmpfs:
    """A tmpfs of ``size`` mounted on ``where`` (needs root and a kernel that permits it):
    :meth:`fill` takes all its space, :meth:`free` gives it back."""

    def __init__(self, where: Path, size: str = "4m"):
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=10,
        )
        self.filler = where / "filler"

    @staticmethod
    def permitted() -> bool:
        """Whether this process may mount a tmpfs (root, and a sandbox that allows it)."""
        if os.geteuid() != 0 or shutil.which("mount") is None:
            return False
        probe = Path(tempfile.mkdtemp(prefix="wxb-tmpfs-probe-"))
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                capture_output=True,
                timeout=10,
            )
            if done.returncode != 0:
                return False
            subprocess.run(["umount", str(probe)], capture_output=True, timeout=10)
            return True
        finally:
            probe.rmdir()

    def fill(self) -> None:
        """Write until the disk is full (ENOSPC)."""
        chunk = b"\0" * 65536
        with open(self.filler, "ab") as out:
            try:
                while True:
                    out.write(chunk)
                    out.flush()
            except OSError:
                pass
        try:  # the last partial chunk too
            with open(self.filler, "ab") as out:
                while True:
                    out.write(b"\0" * 512)
                    out.flush()
        except OSError:
            pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True, timeout=10)


# ---- what the tests check --------------------------------------------------------------------


def unavailable(status: int, answer: dict, dependency: str) -> None:
    """The answer is 503 ``unavailable`` naming ``dependency`` (in the field and the
    message), with ``retry: true``."""
    assert status == 503, answer
    error = answer["error"]
    assert (error["code"], error["dependency"], error["retry"]) == (
        "unavailable",
        dependency,
        True,
    ), answer
    assert dependency in error["message"].lower(), answer


def transitions(caplog: pytest.LogCaptureFixture, dependency: str) -> list[str]:
    """The outage log lines about ``dependency``: "<dep> is down", "<dep> is back"."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wxbackend.outages" and r.getMessage().startswith(dependency)
    ]


async def until(check: Callable[[], Awaitable[Any]], seconds: float = 10.0) -> Any:
    """Await ``check()`` until it answers something true (or fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.1)


async def answers(api: Any, method: str, path: str, status: int) -> bool:
    """Whether ``method path`` answers ``status`` now."""
    return (await api(method, path))[0] == status


def rated(case_id: str) -> tuple[int, str]:
    """How many ratings the case has and its QR token's status (sync: ``ctx.db.run``)."""
    token = QrToken.get(QrToken.case == int(case_id))
    return Evaluation.select().where(Evaluation.case == int(case_id)).count(), token.status
