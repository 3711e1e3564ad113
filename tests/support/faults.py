"""Fault injection against a real ``wxbackend serve`` under load (issue 13).

    server = FaultServer(tmp_path, redis_url, processes=1)    # SQLite; WXB_* extra via env=
    server.start()
    load = Load(server, server.seed(clients=24, cases=30))   # citizens logged in, cases + codes
    load.run(duration=4.0, fault_at=1.5, fault=server.kill, recover=server.start)
    server.stop()
    figures = load.check()          # against the database; Figures.header(), figures.row()

:class:`FaultServer`: ``wxbackend serve`` (the sandbox as WeChat, a real Redis) as an OS
process, its log ``server.log`` in the folder; :meth:`~FaultServer.seed` logs citizens in
over HTTP and writes their identities, cases and QR codes (``fault_data.py``). :class:`Load`:
one asyncio client per citizen, ``POST /api/v1/scan`` then ``POST /api/v1/evaluations``
(every third a 差评) with an ``Idempotency-Key`` per submission, on a keep-alive connection;
no answer, a 409 ``rating_in_progress`` or a 5xx is retried with the same key until answered
for good (for up to ``settle`` s after the load and the recovery). ``fault`` runs (in a
thread) ``fault_at`` s in, then ``recover``. :meth:`Load.check` compares with the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from tests.support.cli import WXBACKEND, clean_env, http, wait_healthy
from tests.support.fault_data import on_database, seed_cases, settings_of
from tests.support.servers import free_port

RATE, SCAN = "/api/v1/evaluations", "/api/v1/scan"
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


class FaultServer:
    """``wxbackend serve`` on a free port, SQLite in ``folder`` (or ``env``'s database)."""

    def __init__(self, folder: Path, redis_url: str, processes: int = 1, **env: str):
        self.folder, self.port, self.processes = folder, free_port(), processes
        self.base = f"http://127.0.0.1:{self.port}"
        self.sandbox = f"http://127.0.0.1:{free_port()}"
        self.env = clean_env(
            **{
                "WXB_DATABASE_URL": f"sqlite:///{folder / 'faults.db'}",
                "WXB_SERVER_DATA_DIR": str(folder / "data"),
                "WXB_REDIS_URL": redis_url,
                "WXB_SANDBOX_PORT": self.sandbox.rsplit(":", 1)[1],
                "WXB_LOG_FORMAT": "text",
                "WXB_LOG_LEVEL": "WARNING",
                **env,
            }
        )
        self.log = folder / "server.log"
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []

    def start(self) -> None:
        """Start (or restart) the server; returns once ``/healthz`` answers 200."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [WXBACKEND, "serve", "--port", str(self.port), "--processes", str(self.processes)],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self.base, self.proc, seconds=30)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (kill -9: to the whole process group's servers too) and wait for the
        exit (recorded in ``exit_codes``)."""
        assert self.proc is not None
        pgrep = ["pgrep", "-P", str(self.proc.pid)]  # kill -9: the forked servers die too
        for pid in subprocess.run(pgrep, capture_output=True).stdout.split() * (sig == 9):
            os.kill(int(pid), sig)
        self.proc.send_signal(sig)
        self.exit_codes.append(self.proc.wait(30))

    def stop(self) -> None:
        """Teardown: SIGTERM if still running, SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def settings(self) -> Any:
        return settings_of(self.env)

    def rows(self, query: Any) -> Any:
        """``query()`` on the server's database (a connection of its own)."""
        return on_database(self.settings(), query)

    def expire_claims(self) -> int:
        """Expire the rating claims in Redis: those a killed process left answer
        ``rating_in_progress`` until they expire (writer.CLAIM_SECONDS); expiring them skips
        that wait."""
        client = redis.Redis.from_url(self.env["WXB_REDIS_URL"])
        try:
            return sum(client.pexpire(key, 1) for key in client.scan_iter("wxb:claim:*"))
        finally:
            client.close()

    def seed(self, clients: int, cases: int) -> list[tuple[str, list[str]]]:
        """``clients`` logged-in, verified citizens with ``cases`` rateable cases each:
        ``[(session token, [QR scene, …])]``."""
        logins = []
        for _ in range(clients):
            code = http("POST", self.sandbox + "/_sandbox/login-code", {})[1]
            status, answer = http("POST", self.base + "/api/v1/auth/login", {"code": code["code"]})
            assert status == 200, answer
            logins.append((code["openid"], answer["token"]))
        return self.rows(lambda: seed_cases(self.settings(), logins, cases))


@dataclass
class Submit:
    """One rating the client wants stored, and what each of its attempts got."""

    scene: str
    key: str
    body: dict[str, Any]
    attempts: list[tuple[float, int | None, dict]] = field(default_factory=list)  # sent, status
    walls: list[datetime] = field(default_factory=list)  # each attempt's send, the DB's clock


@dataclass
class Figures:
    """A scenario's figures (see :meth:`Load.check`)."""

    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    doubled: int = 0
    unanswered: int = 0
    errors_5xx: int = 0
    errors_not_503: int = 0  # 5xx other than 503 (a 500: never allowed)
    untruthful: int = 0
    stored_unanswered: int = 0  # stored by the faulted server, never answered by it
    in_progress: int = 0  # 409 rating_in_progress answers (retried)
    fault_seconds: float | None = None  # how long the fault took (a stop: its drain)
    recovery_seconds: float | None = None
    examples: list[str] = field(default_factory=list)  # the first few untruthful ones

    @staticmethod
    def header() -> str:
        """The column names of :meth:`row` (ack = acknowledged 201s)."""
        names = [f.name.replace("acknowledged", "ack").replace("_seconds", "_s") for f in _COLS]
        return f"{'scenario':<16}" + "".join(f"{n[:12]:>13}" for n in names)

    def row(self, name: str) -> str:
        """One line of the figures table."""
        values = [getattr(self, f.name) for f in _COLS]
        shown = ["-" if v is None else f"{v:.2f}" if isinstance(v, float) else v for v in values]
        return f"{name:<16}" + "".join(f"{v:>13}" for v in shown)


_COLS = [f for f in fields(Figures) if f.name != "examples"]


class Load:
    """K asyncio clients doing scan + submit against ``server`` (see the module)."""

    def __init__(self, server: FaultServer, citizens: list[tuple[str, list[str]]]):
        self.server, self.citizens = server, citizens
        self.submits: list[Submit] = []
        self.fault_at = self.recovered_wall = None
        self.recover_started: float | None = None

    def run(
        self, duration: float, fault_at: float, fault: Any, recover: Any, settle: float = 8.0
    ) -> None:
        """Load for ``duration`` s; ``fault()`` then ``recover()`` (blocking, in a thread)
        ``fault_at`` s in; retries go on for up to ``settle`` s after both the load and
        ``recover``."""
        asyncio.run(self._run(duration, fault_at, fault, recover, settle))

    async def _run(self, duration, fault_at, fault, recover, settle) -> None:
        stop_at = time.monotonic() + duration
        self.give_up = float("inf")  # until ``recover`` returns
        clients = [asyncio.create_task(self._client(c, stop_at)) for c in self.citizens]
        await asyncio.sleep(fault_at)
        self.fault_at = time.monotonic()
        await asyncio.to_thread(fault)
        self.recover_started = time.monotonic()
        self.recovered_wall = datetime.now(UTC).replace(tzinfo=None)  # the database's clock
        await asyncio.to_thread(recover)
        self.give_up = max(stop_at, time.monotonic()) + settle
        await asyncio.gather(*clients)

    async def _client(self, citizen: tuple[str, list[str]], stop_at: float) -> None:
        token, conn = citizen[0], [None]
        for n, scene in enumerate(citizen[1]):
            if time.monotonic() >= stop_at:
                break
            bad = n % 3 == 2
            body = {"scene": scene, "overall": 2 if bad else 5}
            if bad:
                body["indicators"] = ["long_queue"]
            submit = Submit(scene, f"ft-{scene[:20]}-{n}", body)
            self.submits.append(submit)
            for path, payload, record in ((SCAN, {"scene": scene}, None), (RATE, body, submit)):
                while time.monotonic() < self.give_up:  # until answered for good
                    sent, wall = time.monotonic(), datetime.now(UTC).replace(tzinfo=None)
                    status, answer = await self._send(conn, token, path, payload, record)
                    if record is not None:
                        record.attempts.append((sent, status, answer))
                        record.walls.append(wall)
                    code = (answer.get("error") or {}).get("code")
                    if status is not None and status < 500 and code != "rating_in_progress":
                        break
                    await asyncio.sleep(0.1)
        if conn[0] is not None:
            conn[0][1].close()

    async def _send(self, conn: list, token: str, path: str, body: dict, submit: Any):
        """One request on the client's connection (opened as needed): ``(status, answer)``;
        ``(None, {})`` when it got no answer, ``(None, {"refused": True})`` when not sent."""
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        if submit is not None:
            head += f"Idempotency-Key: {submit.key}\r\n"
        if conn[0] is None:
            try:
                conn[0] = await asyncio.open_connection("127.0.0.1", self.server.port)
            except OSError:
                return None, {"refused": True}
        reader, writer = conn[0]
        try:
            writer.write(head.encode() + b"\r\n" + data)
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            length = _LENGTH.search(raw)
            answer = await reader.readexactly(int(length[1])) if length else b""
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            writer.close()
            conn[0] = None
            return None, {}
        if b"connection: close" in raw.lower():
            writer.close()
            conn[0] = None
        return int(raw[9:12]), json.loads(answer or b"{}")

    @staticmethod
    def _stored_unanswered(submit: Submit, row: tuple) -> bool:
        """Whether the attempt that stored ``row`` got no answer: the last attempt sent before
        the row's ``created_at`` (stamped while that attempt was handled). An unanswered
        attempt the server never read, followed by a retry another process stored and
        answered, is not one (under ``--processes 2`` one process may still serve while the
        other drains)."""
        sent = [
            st
            for wall, (_, st, a) in zip(submit.walls, submit.attempts, strict=True)
            if not a.get("refused") and wall <= row[1]
        ]
        return bool(sent) and sent[-1] is None

    def check(self) -> Figures:
        """Every answer against the database: ``lost`` (a 201 not stored as answered),
        ``doubled`` (a case rated twice), ``untruthful`` (a submission whose last answer
        does not name its stored rating), ``stored_unanswered`` (no answer, yet stored
        before ``recover``), the unanswered attempts, the 5xx, the recovery time (the fault
        to the first 201 of a submission sent after ``recover`` began)."""
        from models.case import QrToken
        from models.evaluation import Evaluation
        from wxbackend.security import token_digest

        rows = self.server.rows(
            lambda: list(
                Evaluation.select(QrToken.token_hash, Evaluation.id, Evaluation.created_at)
                .join(QrToken, on=(QrToken.case == Evaluation.case))
                .where(Evaluation.assess_number == 1)
                .tuples()
            )
        )
        times = Counter(digest for digest, _, _ in rows)
        truth = {digest: (str(i), created, times[digest]) for digest, i, created in rows}
        f, after = Figures(), []
        for s in self.submits:
            row = truth.get(token_digest(s.scene))
            answered = [(st, a) for _, st, a in s.attempts if st is not None]
            status, answer = answered[-1] if answered else (None, {})
            sent = [a for a in s.attempts if not a[2].get("refused")]
            f.sent += len(sent)
            f.unanswered += sum(1 for _, st, _ in sent if st is None)
            f.errors_5xx += sum(1 for _, st, _ in sent if st is not None and st >= 500)
            f.errors_not_503 += sum(1 for _, st, _ in sent if st is not None and 503 != st >= 500)
            f.in_progress += sum(1 for _, st, a in sent if st == 409 and "retry_after" in str(a))
            acked = [str(a["evaluation"]["id"]) for _, st, a in sent if st == 201]
            f.acknowledged += bool(acked)
            f.lost += bool(acked) and (row is None or any(i != row[0] for i in acked))
            f.doubled += row is not None and row[2] > 1
            named = (answer.get("evaluation") or {}).get("id") or (answer.get("error") or {}).get(
                "evaluation_id"
            )
            wrong = row is None or status not in (201, 409) or str(named) != row[0]
            f.untruthful += wrong
            if wrong and len(f.examples) < 5:
                f.examples.append(f"stored {row}: {[(st, a) for _, st, a in s.attempts]}")
            if row is not None and row[1] < self.recovered_wall and self._stored_unanswered(s, row):
                f.stored_unanswered += 1
                if len(f.examples) < 5:
                    f.examples.append(f"stored unanswered {row}: {list(zip(s.walls, s.attempts))}")
            after += [t for t, st, _ in sent if st == 201 and t >= self.recover_started]
        f.recovery_seconds = min(after) - self.fault_at if after else None
        f.fault_seconds = self.recover_started - self.fault_at
        return f
