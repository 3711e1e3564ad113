"""The stream side of ``fanout.py``: the SSE stream clients (own processes, raw sockets), the
resident memory of a process, and the bare Tornado SSE fan-out measured in the same run.

    python benchmarks/fanout_streams.py --clients PORT PATH N PARSE OUT   (started by fanout.py)
    python benchmarks/fanout_streams.py --serve-bare PORT                 (started by fanout.py)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HOST, Processes, cpu_seconds, free_port  # noqa: E402

_ID = re.compile(rb"id: (\d+)\n")
EVENT_BYTES = 700  # about one public shape


def rss_bytes(pid: int) -> int:
    """The resident memory of a process (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ---- the stream clients (own processes) ------------------------------------------------------


def run_clients(port: int, path: str, streams: int, parse: bool, out: str) -> None:
    """``streams`` SSE connections on one epoll loop (raw non-blocking sockets: a read costs
    the client a few µs, not an asyncio task switch), noting when each event id arrives
    (while ``parse`` and until the file ``out + ".parse"`` appears); when ``out + ".stop"``
    appears, writes ``{"arrivals": {id: [epoch…]}, "ended": n, "bytes": n}`` to ``out``."""
    arrivals: dict[str, list[float]] = {}
    state = {"ended": 0, "bytes": 0, "open": 0}
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    rest: dict[socket.socket, bytes] = {}
    for n in range(streams):
        sock = socket.create_connection((HOST, port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        rest[sock] = b""
        if n % 50 == 49:
            time.sleep(0.02)  # the server's accept backlog
    checked = 0.0
    while True:
        now = time.time()
        if now - checked > 0.2:
            checked = now
            Path(out + ".open").write_text(str(state["open"]))
            parse = parse and not os.path.exists(out + ".parse")
            if os.path.exists(out + ".stop"):
                break
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            try:
                data = sock.recv(1 << 18)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data or data.endswith(b"0\r\n\r\n"):
                state["ended"] += 1
                selector.unregister(sock)
                continue
            state["bytes"] += len(data)
            buf = rest[sock] + data  # type: ignore[index]
            if rest[sock] is not None and b"\r\n\r\n" in buf and buf.startswith(b"HTTP/"):
                state["open"] += 1
                buf = buf.split(b"\r\n\r\n", 1)[1]
            if not parse:
                rest[sock] = b"."  # type: ignore[index]
                continue
            cut = buf.rfind(b"\n\n") + 2
            for match in _ID.finditer(buf, 0, cut):
                arrivals.setdefault(match.group(1).decode(), []).append(now)
            rest[sock] = buf[cut:]  # type: ignore[index]
    Path(out).write_text(json.dumps({"arrivals": arrivals, **state}))


def open_streams(procs: Processes, port: int, path: str, n: int, parse: bool) -> list[str]:
    """Two client processes holding ``n`` streams between them; their result files."""
    outs = []
    for part in range(2):
        out = str(procs.tmp / f"{path.strip('/').replace('/', '-')}-clients{part}.json")
        argv = [sys.executable, __file__, "--clients", str(port), path]
        procs.start(Path(out).stem, argv + [str(n // 2 + part * (n % 2)), str(int(parse)), out])
        outs.append(out)
    deadline = time.monotonic() + 120
    while sum(_opened(out) for out in outs) < n:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sum(_opened(o) for o in outs)} of {n} streams opened")
        time.sleep(0.2)
    return outs


def _opened(out: str) -> int:
    try:
        return int(Path(out + ".open").read_text() or 0)
    except (OSError, ValueError):
        return 0


def collect(procs: Processes, outs: list[str]) -> dict:
    """Stop the clients and merge their results."""
    for out in outs:
        Path(out + ".stop").write_text("")
    merged: dict = {"arrivals": {}, "ended": 0, "bytes": 0}
    for out in outs:
        deadline = time.monotonic() + 60
        while not os.path.exists(out):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result from {out}")
            time.sleep(0.1)
        time.sleep(0.2)
        part = json.loads(Path(out).read_text())
        procs.stop(next(p for name, p in procs.procs if name == Path(out).stem))
        merged["ended"] += part["ended"]
        merged["bytes"] += part["bytes"]
        for key, times in part["arrivals"].items():
            merged["arrivals"].setdefault(key, []).extend(times)
    return merged


# ---- the bare Tornado SSE fan-out ------------------------------------------------------------


def serve_bare(port: int) -> None:
    """A bare SSE fan-out: ``/live`` holds streams, ``POST /fire`` writes one event to all."""
    import tornado.web

    streams: set = set()
    event = b"id: 1\ndata: {" + b"x" * (EVENT_BYTES - 20) + b"}\n\n"

    class Live(tornado.web.RequestHandler):
        async def get(self) -> None:
            self.set_header("Content-Type", "text/event-stream")
            self.write(b": connected\n\n")
            await self.flush()
            self.done = asyncio.Event()
            streams.add(self)
            await self.done.wait()

        def on_connection_close(self) -> None:
            streams.discard(self)
            self.done.set()

    class Fire(tornado.web.RequestHandler):
        def post(self) -> None:
            batch = event * int(self.get_query_argument("events", "1"))
            for handler in tuple(streams):
                handler.write(batch)
                handler.flush()
            self.write({"streams": len(streams)})

    async def main() -> None:
        tornado.web.Application([("/live", Live), ("/fire", Fire)]).listen(port, HOST)
        await asyncio.Event().wait()

    asyncio.run(main())


def measure_bare_fanout(procs: Processes, streams: int, batch: int) -> tuple[float, float, float]:
    """(µs per delivery one event per write, µs per delivery ``batch`` events per write, bytes
    per stream) of the bare fan-out: the process's CPU over 20 fan-outs of each."""
    from common import request

    port = free_port()
    proc = procs.start("bare-sse", [sys.executable, __file__, "--serve-bare", str(port)])
    deadline = time.monotonic() + 15
    while True:
        try:
            request(port, "POST", "/fire", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    before = rss_bytes(proc.pid)
    outs = open_streams(procs, port, "/live", streams, False)
    time.sleep(1.0)
    per_stream = (rss_bytes(proc.pid) - before) / streams
    costs = []
    for events in (1, batch):
        cpu0 = cpu_seconds(proc.pid)
        for _ in range(20):
            request(port, "POST", f"/fire?events={events}", timeout=30)
            time.sleep(0.25)
        costs.append((cpu_seconds(proc.pid) - cpu0) / (20 * streams * events) * 1e6)
    collect(procs, outs)
    procs.stop(proc)
    return costs[0], costs[1], per_stream


def main() -> int:
    if sys.argv[1] == "--clients":
        port, path, n, parse, out = sys.argv[2:7]
        run_clients(int(port), path, int(n), parse == "1", out)
    elif sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
