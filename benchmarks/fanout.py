"""Live fan-out: ``--streams`` SSE streams (2,000) on one server process while ratings flow,
against a bare Tornado SSE fan-out measured in the same run.

    .venv/bin/python benchmarks/fanout.py [--streams 2000] [--rate 50] [--seconds 10]
                                          [--duration 6] [--connections 32] [--live-process]

1. Seeds verified citizens with a rateable case each (``rating.py``'s ``seed``), starts
   redis-server, the sandbox and ``wxbackend serve`` (one process, SQLite, no embedded worker,
   ``live.max_streams`` above ``--streams``, no per-address cap). With ``--live-process`` also
   ``wxbackend live`` (one process): the streams go there, the ratings to ``serve``, and the
   CPU figures below are the two processes' together.
2. **Without streams**: scan+submit pairs at full speed (``--connections`` keep-alive clients,
   ``--duration`` s): pairs/s A (nobody listens: no public shape is built). Then the
   benchmark listens on the all-centres channel itself: full speed again (pairs/s with each
   rating's shape built and published, what publishing costs ``serve``), and ``--rate``
   pairs/s paced for ``--seconds`` s: the server's CPU seconds (the cost of the ratings alone
   at that rate, their shapes built and published).
3. Opens ``--streams`` streams (``GET /api/v1/public/live``, all centres) from two client
   processes (raw asyncio sockets; a stream reads, finds the ``id:`` lines of each chunk and
   notes when they arrived); the server's RSS before/after gives the bytes per stream.
4. **With streams**, ``--rate`` pairs/s paced for ``--seconds`` s: each rating's delivery
   latency on every stream (from the submit being sent, so it includes the rating itself),
   p50/p99, and the server's CPU seconds → µs per delivery (extra CPU / events × streams).
   Then pairs at full speed again (the clients only count bytes now): pairs/s B, ratio B/A
   (target ≥ 0.8; A is the mean of a run before the streams and one after them, so the
   drift of a shared machine counts half). Ratings at full speed put ~5× the peak's events
   on every stream: harsher than the 50/s the target names. Streams ended by the server:
   target 0. The stream clients' own CPU over that run is printed too: they share the
   machine's cores.
5. **Bare**: a Tornado app (own process) holding the same number of streams writes one event
   of the same size to every stream, 20 times, then 20 batches of a window's events
   (``--rate`` × ``live.coalesce_ms``); µs per delivery (its process CPU) and bytes per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    Processes,
    TimeLimitExceeded,
    cpu_seconds,
    time_limit,
    venv_bin,
)
from fanout_streams import collect, measure_bare_fanout, open_streams, rss_bytes  # noqa: E402
from rating import (  # noqa: E402
    WARMUP,
    pair_units,
    pairs_env,
    register_openids,
    run_units,
    seed,
    store_sessions,
)

# ---- ratings at a fixed rate -----------------------------------------------------------------


def paced_pairs(port: int, citizens: list, rate: float, seconds: float) -> dict[str, float]:
    """``rate`` scan+submit pairs per second for ``seconds``; ``{evaluation id: epoch the
    submit was sent}``."""
    sent: dict[str, float] = {}
    units = pair_units(port, citizens[: int(rate * seconds)])
    failures: list[str] = []

    async def pair(conn: asyncio.Queue, steps: list) -> None:
        reader, writer = await conn.get()
        try:
            for step, raw, expected in steps:
                at = time.time()
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
                body = await reader.readexactly(length)
                if int(head[9:12]) != expected:
                    failures.append(f"{step} {head[9:12]!r} {body[:120]!r}")
                    return
                if step == "submit":
                    sent[str(json.loads(body)["evaluation"]["id"])] = at
        finally:
            conn.put_nowait((reader, writer))

    async def main() -> None:
        conn: asyncio.Queue = asyncio.Queue()
        for _ in range(16):
            conn.put_nowait(await asyncio.open_connection(HOST, port))
        start, tasks = time.perf_counter(), []
        for i, (_, steps) in enumerate(units):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.ensure_future(pair(conn, steps)))
        await asyncio.gather(*tasks)
        while not conn.empty():
            conn.get_nowait()[1].close()

    asyncio.run(main())
    if failures:
        raise RuntimeError(f"paced pairs failed: {failures[:3]}")
    return sent


def latencies(sent: dict[str, float], arrivals: dict[str, list[float]], streams: int):
    """Delivery latencies (ms, sorted), the deliveries missing, and each rating's latency to
    its first stream (ms, sorted: the rating, its publication and the window, before the
    fan-out's spread)."""
    values, firsts, missing = [], [], 0
    for key, at in sent.items():
        got = arrivals.get(key, [])
        missing += streams - len(got)
        values += [(t - at) * 1000 for t in got]
        firsts += [(min(got) - at) * 1000] if got else []
    return sorted(values), missing, sorted(firsts)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


# ---- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=50, help="paced ratings per second")
    ap.add_argument("--seconds", type=float, default=10, help="of paced ratings")
    ap.add_argument("--duration", type=float, default=6, help="of full-speed ratings")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--coalesce-ms", type=int, help="live.coalesce_ms (default: the setting's)")
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy the server (full speed); FILE.live: wxbackend live",
    )
    ap.add_argument(
        "--live-process",
        action="store_true",
        help="the streams on a `wxbackend live` process beside serve (ratings on serve)",
    )
    args = ap.parse_args()
    try:
        with time_limit(400), Processes() as procs:
            return run(procs, args)
    except TimeLimitExceeded as exc:
        print(f"FAIL: {exc}")
        return 2


def run(procs: Processes, args: argparse.Namespace) -> int:
    paced = int(args.rate * args.seconds)
    full = int(450 * args.duration)
    env = {
        **pairs_env(procs, f"sqlite:///{procs.tmp}/b.db"),
        "WXB_LIVE_MAX_STREAMS": str(args.streams + 100),
        "WXB_LIVE_MAX_STREAMS_PER_ADDRESS": "0",
    }
    if args.coalesce_ms is not None:
        env["WXB_LIVE_COALESCE_MS"] = str(args.coalesce_ms)
    citizens = seed(env, WARMUP + 2 * paced + 4 * full)
    redis_url = procs.start_redis()
    sandbox_port = procs.start_sandbox()
    store_sessions(redis_url, citizens)
    register_openids(sandbox_port, [c.openid for c in citizens])
    batch = max(1, round(args.rate * (args.coalesce_ms or 250) / 1000))
    bare_us, bare_batch_us, bare_bytes = measure_bare_fanout(procs, args.streams, batch)
    where = "a `wxbackend live` process" if args.live_process else "the serve process"
    print(
        f"{os.cpu_count()} CPU(s); {args.streams} streams on {where}; ratings paced at "
        f"{args.rate:g}/s"
    )
    print(
        f"bare Tornado SSE fan-out : {bare_us:.1f} µs per delivery one event per write, "
        f"{bare_batch_us:.1f} µs with {batch} per write; {bare_bytes / 1024:.1f} KB/stream"
    )

    port = procs.start_server(redis_url, sandbox_port, env)
    pid = next(p.pid for name, p in procs.procs if name == "server")
    stream_port, fan_pids = port, [pid]  # where the streams are; the processes fanning out
    if args.live_process:
        stream_port = procs.start_server(redis_url, sandbox_port, env, command="live")
        fan_pids.append(next(p.pid for name, p in procs.procs if name == "live"))

    def fan_cpu() -> float:
        return sum(cpu_seconds(p) for p in fan_pids)

    batches = [citizens[WARMUP:]]
    warm = run_units(port, pair_units(port, citizens[:WARMUP]), 8, 30)
    if warm.bad:
        raise RuntimeError(f"warm-up pairs failed: {warm.bad}")

    def take(n: int) -> list:
        chosen, batches[0] = batches[0][:n], batches[0][n:]
        return chosen

    alone = run_units(port, pair_units(port, take(full)), args.connections, args.duration, pid)
    # one listener on the all-centres channel: the paced run without streams builds and
    # publishes every rating's shape too, so the difference is the fan-out alone
    host, redis_port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    listener = socket.create_connection((host, int(redis_port)))
    listener.sendall(b"SUBSCRIBE wxb:live:all\r\n")
    time.sleep(0.2)
    # full speed again, a listener only: the ratings' public shapes built and published
    heard = run_units(port, pair_units(port, take(full)), args.connections, args.duration, pid)
    cpu0 = fan_cpu()
    paced_pairs(port, take(paced), args.rate, args.seconds)
    cpu_alone = fan_cpu() - cpu0

    before = rss_bytes(fan_pids[-1])
    outs = open_streams(procs, stream_port, "/api/v1/public/live", args.streams, True)
    time.sleep(1.0)
    per_stream = (rss_bytes(fan_pids[-1]) - before) / args.streams
    cpu0, serve0 = fan_cpu(), cpu_seconds(pid)
    sent = paced_pairs(port, take(paced), args.rate, args.seconds)
    time.sleep(1.5)  # the last window reaches every stream
    cpu_streams, cpu_serve = fan_cpu() - cpu0, cpu_seconds(pid) - serve0
    listener.close()
    for out in outs:  # the clients stop parsing: full speed costs them bytes only
        Path(out + ".parse").write_text("")
    if args.profile:
        for n, spied in enumerate(fan_pids):  # serve, then the live process
            argv = [venv_bin("py-spy"), "record", "-p", str(spied), "-r", "100", "-f", "raw"]
            out = str(Path(args.profile).resolve()) + (".live" if n else "")
            argv += ["-d", str(int(args.duration)), "-o", out, "--nonblocking"]
            procs.start(f"py-spy{n}", argv)
        time.sleep(1.0)
    clients = [next(p.pid for name, p in procs.procs if name == Path(o).stem) for o in outs]
    clients0, fan0 = sum(cpu_seconds(p) for p in clients), [cpu_seconds(p) for p in fan_pids]
    loaded = run_units(port, pair_units(port, take(full)), args.connections, args.duration, pid)
    clients_cpu = sum(cpu_seconds(p) for p in clients) - clients0
    fan_full = [cpu_seconds(p) - c for p, c in zip(fan_pids, fan0, strict=True)]
    result = collect(procs, outs)
    time.sleep(1.0)  # the streams' hang-ups noticed: no streams, nobody listening, as at first
    after = run_units(port, pair_units(port, take(full)), args.connections, args.duration, pid)
    alone_rate = (alone.rate + after.rate) / 2  # before and after: the machine's drift halved
    lat, missing, firsts = latencies(sent, result["arrivals"], args.streams)
    deliveries = len(sent) * args.streams
    extra_us = (cpu_streams - cpu_alone) / max(deliveries, 1) * 1e6
    ratio = loaded.rate / alone_rate if alone_rate else 0.0
    ok = result["ended"] == 0 and pct(lat, 99) < 1000 and ratio >= 0.8 and missing == 0
    print(
        f"server, paced {args.rate:g}/s     : delivery p50 {pct(lat, 50):.0f} ms, p99 "
        f"{pct(lat, 99):.0f} ms ({len(lat)} deliveries, {missing} missing; from the submit sent); "
        f"to the first stream p50 {pct(firsts, 50):.0f} ms, p99 {pct(firsts, 99):.0f} ms"
    )
    print(
        f"server fan-out cost      : {extra_us:.2f} µs per delivery (CPU {cpu_streams:.2f} s with "
        f"streams vs {cpu_alone:.2f} s with one Redis listener, same paced ratings); "
        f"{per_stream / 1024:.1f} KB/stream"
    )
    if args.live_process:
        print(
            f"  of which               : serve {cpu_serve:.2f} s, wxbackend live "
            f"{cpu_streams - cpu_serve:.2f} s (the streams are on the live process)"
        )
    print(
        f"CPU at full speed        : serve {fan_full[0] / args.duration:.0%} of a core"
        + (f", wxbackend live {fan_full[1] / args.duration:.0%}" if args.live_process else "")
        + f", the stream clients (benchmark) {clients_cpu / args.duration:.0%}"
    )
    print(
        f"ratings at full speed    : {alone.rate:.1f} / {after.rate:.1f} pairs/s without streams "
        f"(before / after), {loaded.rate:.1f} with {args.streams} streams: ratio to their mean "
        f"{ratio:.2f} (target ≥ 0.80)"
    )
    print(
        f"  (one Redis listener    : {heard.rate:.1f} pairs/s, {heard.rate / alone_rate:.2f} of "
        "no streams: what publishing costs serve, each rating's public shape built)"
    )
    alone_ms = (alone.server_cpu + after.server_cpu) / max(alone.units + after.units, 1) * 1000
    heard_ms = heard.server_cpu / max(heard.units, 1) * 1000
    loaded_ms = fan_full[0] / max(loaded.units, 1) * 1000
    live_ms = sum(fan_full[1:]) / max(loaded.units, 1) * 1000
    print(
        f"serve CPU per pair       : {alone_ms:.2f} ms without streams, {loaded_ms:.2f} ms with: "
        f"ratio {alone_ms / loaded_ms:.2f} (CPU, not the wall clock: the cores are shared); one "
        f"listener {heard_ms:.2f} ms ({heard_ms / loaded_ms:.2f})"
        + (
            f"; with wxbackend live's {live_ms:.2f} ms too: {alone_ms / (loaded_ms + live_ms):.2f}"
            if args.live_process
            else ""
        )
    )
    print(f"streams ended            : {result['ended']} (target 0)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
