"""Shared pieces of the benchmarks: processes, a latency sampler, a wrk runner.

Everything runs on 127.0.0.1 with free ports, in a temporary folder, and every process a
benchmark starts is stopped by :class:`Processes` (also on errors and on the time limit).

Load is generated with ``wrk`` when it is installed (Debian package ``wrk``: a C load
generator that costs far less CPU than a Python client, which matters on a 2-core machine
where the load generator and the server share the cores). Without it the benchmarks fall
back to a small asyncio keep-alive client (:func:`python_load`), which is slower: its
req/s figures only mean something as ratios against a baseline measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tornado.httpclient import AsyncHTTPClient

from wxbackend.clients.http import ApiClient
from wxbackend.clients.sandbox import SandboxClient

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def venv_bin(name: str) -> str:
    """A command installed next to this interpreter (the project's venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---- time limit ------------------------------------------------------------------------------


class TimeLimitExceeded(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the main thread after ``seconds`` (SIGALRM)."""

    def _expired(signum: int, frame: Any) -> None:
        raise TimeLimitExceeded(f"benchmark exceeded its {seconds} s limit")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- processes -------------------------------------------------------------------------------


class Processes:
    """Starts subprocesses and stops every one of them (by pid) when the ``with`` block ends."""

    def __init__(self, keep_tmp: bool = False) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="wxb-bench-")
        self.tmp = Path(self._tmp.name)
        self.keep_tmp = keep_tmp

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with its output in ``<tmp>/<name>.log`` (never a pipe that can fill)."""
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.tmp / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        self.procs = [(n, p) for n, p in self.procs if p is not proc]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        while self.procs:
            _, proc = self.procs.pop()
            with contextlib.suppress(Exception):
                self.stop(proc)
        if not self.keep_tmp:
            self._tmp.cleanup()

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    # -- the pieces of the stack --

    def start_redis(self) -> str:
        """A private ``redis-server`` (no persistence); returns its ``redis://`` URL."""
        exe = shutil.which("redis-server")
        if not exe:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        self.start(
            "redis",
            [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return f"redis://{HOST}:{port}/0"
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def start_sandbox(self) -> int:
        """``wxbackend sandbox`` on a free port; returns the port."""
        port = free_port()
        self.start("sandbox", [venv_bin("wxbackend"), "sandbox", "--port", str(port)])
        self.wait_http(port, "/_sandbox/stats", timeout=20)
        return port

    def start_server(
        self, redis_url: str, sandbox_port: int, extra_env: dict[str, str], command: str = "serve"
    ) -> int:
        """``wxbackend serve`` (SQLite in the temp folder, the given Redis and sandbox), named
        ``server``; with ``command="live"`` a ``wxbackend live`` beside it, named ``live``."""
        port = free_port()
        env = {
            "WXB_DATABASE_URL": f"sqlite:///{self.tmp}/b.db",
            "WXB_SERVER_DATA_DIR": str(self.tmp),
            "WXB_REDIS_URL": redis_url,
            "WXB_WECHAT_API_BASE": f"http://{HOST}:{sandbox_port}/",
            "WXB_WECHAT_ALLOW_SANDBOX": "true",
            **extra_env,
        }
        argv = [venv_bin("wxbackend"), command, "--port", str(port), "--address", HOST]
        self.start("server" if command == "serve" else command, argv, env)
        self.wait_http(port, "/healthz", timeout=30)
        return port

    def wait_http(self, port: int, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = request(port, "GET", path, timeout=2)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"http://{HOST}:{port}{path} not ready after {timeout} s ({last})")


def request(
    port: int, method: str, path: str, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    """One JSON request on a fresh connection → (status, decoded body or text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


T = TypeVar("T")


def run_clients(
    action: Callable[[ApiClient, SandboxClient], Awaitable[T]], port: int, sandbox_port: int = 0
) -> T:
    """Run ``action`` with the shared clients (`wxbackend.clients`) of the server on ``port``
    and of the sandbox on ``sandbox_port``, on a fresh event loop: how these synchronous
    scripts log citizens and admins in, e.g. ``run_clients(Citizen.login, port, sandbox)``."""

    async def main() -> T:
        http = AsyncHTTPClient(force_instance=True)
        try:
            api = ApiClient(http, f"http://{HOST}:{port}")
            return await action(api, SandboxClient(http, f"http://{HOST}:{sandbox_port}/"))
        finally:
            http.close()

    return asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, its live children included (a server
    with ``--processes``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return own + sum(cpu_seconds(int(kid)) for kid in kids)


# ---- latency sampler -------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Latency:
    n: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    samples_ms: list[float] = field(repr=False, default_factory=list)

    def line(self) -> str:
        return (
            f"n={self.n} errors={self.errors} p50={self.p50_ms:.2f} ms p90={self.p90_ms:.2f} ms "
            f"p99={self.p99_ms:.2f} ms max={self.max_ms:.2f} ms"
        )


def sample_latency(port: int, path: str, n: int, warmup: int = 50) -> Latency:
    """``n`` sequential GETs on one keep-alive connection, each timed with perf_counter."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    times: list[float] = []
    errors = 0
    try:
        for i in range(warmup + n):
            start = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            elapsed = (time.perf_counter() - start) * 1000
            if i >= warmup:
                times.append(elapsed)
                errors += 0 if ok else 1
    finally:
        conn.close()
    ordered = sorted(times)
    return Latency(
        n=len(times),
        errors=errors,
        p50_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1],
        mean_ms=sum(times) / len(times),
        samples_ms=times,
    )


# ---- load generation: wrk, else Python -------------------------------------------------------


@dataclass
class Load:
    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def line(self) -> str:
        return (
            f"{self.rps:,.0f} req/s ({self.requests} requests in {self.seconds:.1f} s, "
            f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, errors {self.errors}) "
            f"[{self.tool}]"
        )


def ensure_wrk(install: bool = True) -> str | None:
    """Path of ``wrk``; if missing, try ``apt-get install -y wrk`` once (as root); else None."""
    found = shutil.which("wrk")
    if found or not install:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        print("wrk is not installed; trying `apt-get install -y wrk` (Debian package)...")
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [apt, "install", "-y", "wrk"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        found = shutil.which("wrk")
    if not found:
        print(
            "wrk is unavailable: falling back to the Python load generator. It burns much more "
            "CPU than wrk on 2 cores, so absolute req/s are lower; the ratios remain comparable."
        )
    return found


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> Load:
    """The figures of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and total and p50 and p99):
        raise ValueError(f"cannot parse wrk output:\n{output}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return Load(
        tool="wrk",
        requests=int(total.group(1)),
        seconds=_wrk_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_wrk_ms(p50.group(1)),
        p99_ms=_wrk_ms(p99.group(1)),
        errors=errors,
    )


def run_load(
    port: int, path: str, duration: float, connections: int = 32, threads: int = 1
) -> Load:
    """``wrk -t{threads} -c{connections} -d{duration}s --latency``, or the Python fallback."""
    wrk = ensure_wrk()
    if wrk is None:
        return python_load(port, path, duration, connections)
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--latency",
        f"http://{HOST}:{port}{path}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}")
    return parse_wrk(done.stdout)


def python_load(port: int, path: str, duration: float, connections: int = 32) -> Load:
    """Fallback load: ``connections`` asyncio keep-alive clients GETting ``path`` for a while."""
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()

    async def one(stop_at: float, times: list[float], errs: list[int]) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                if m:
                    await reader.readexactly(int(m.group(1)))
                if not head.startswith(b"HTTP/1.1 200"):
                    errs.append(1)
                times.append((time.perf_counter() - start) * 1000)
        finally:
            writer.close()

    async def main() -> tuple[list[float], int, float]:
        times: list[float] = []
        errs: list[int] = []
        start = time.perf_counter()
        await asyncio.gather(
            *(one(start + duration, times, errs) for _ in range(connections)),
            return_exceptions=True,
        )
        return times, len(errs), time.perf_counter() - start

    times, errors, seconds = asyncio.run(main())
    ordered = sorted(times)
    return Load(
        tool="python",
        requests=len(times),
        seconds=seconds,
        rps=len(times) / seconds,
        p50_ms=percentile(ordered, 50),
        p99_ms=percentile(ordered, 99),
        errors=errors,
    )
