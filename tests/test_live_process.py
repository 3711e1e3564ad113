"""``wxbackend live`` as an OS process beside the test's server, which plays ``serve`` (same
Redis, database and keys): a rating submitted to the server reaches the live process's
streams (the all-centres one and its center's, never another center's), a screen paired on
the server gets its case there, the stream caps hold, SIGTERM ends the streams cleanly and
exits 0, and bad flags or an embedded Redis are refused in one line.

The streams are read on raw sockets (:class:`RawStream`): a hang-up is immediate, where an
HTTP client would wait for the process's next heartbeat (15 s) to notice it.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.admins import admin_token
from tests.support.cases import make_case, make_id_number
from tests.support.cli import run_cli, stop, wait_healthy
from tests.support.live_process import start_live
from tests.support.public_seed import OTHER_CENTER
from tests.support.servers import free_port
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.clients.device import pair

pytestmark = pytest.mark.slow  # starts OS processes

MAX_STREAMS = 4
PER_ADDRESS = 3


class RawStream:
    """One HTTP request on its own socket from ``source`` (a loopback address): the status,
    then the body's bytes as they come (chunk framing included)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes):
        self.reader, self.writer = reader, writer
        self.status = int(head[9:12])
        self.path = ""
        self.closed = False
        self.head = head.decode().lower()
        self.body = b""

    @classmethod
    async def open(
        cls, port: int, path: str, source: str = "127.0.0.1", token: str | None = None
    ) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: live\r\n{auth}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        stream = cls(reader, writer, head)
        stream.path = path
        return stream

    async def read_until(self, wanted: bytes, timeout: float = 5.0) -> None:
        """Read until ``wanted`` is in the body; fails after ``timeout`` seconds."""

        async def loop() -> None:
            while wanted not in self.body:
                chunk = await self.reader.read(65536)
                assert chunk, f"the stream ended before {wanted!r}: {self.body[-300:]!r}"
                self.body += chunk

        await asyncio.wait_for(loop(), timeout)

    async def read_to_end(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection."""
        while chunk := await asyncio.wait_for(self.reader.read(65536), timeout):
            self.body += chunk
        return self.body

    def close(self) -> None:
        self.closed = True
        self.writer.close()


@pytest.mark.asyncio
async def test_the_live_process_serves_caps_and_stops_cleanly(api, ctx, sandbox, partner, settings):
    """One process's life (one start: they cost seconds): the streams of a rating submitted
    to the server and a screen's case, the caps, then SIGTERM with streams open."""
    port = free_port()
    caps = {"WXB_LIVE_MAX_STREAMS": str(MAX_STREAMS)}
    proc = start_live(settings, port, WXB_LIVE_MAX_STREAMS_PER_ADDRESS=str(PER_ADDRESS), **caps)
    streams: list[RawStream] = []
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", proc)
        streams += await _delivers_ratings_and_screens(api, ctx, sandbox, partner, port)
        streams += await _honours_the_caps(port, held=streams)
        started = time.monotonic()
        code, err = await asyncio.to_thread(stop, proc)
        elapsed = time.monotonic() - started
        for stream in streams:  # every open response ended (chunked terminator), none cut
            if stream.status == 200 and not stream.closed:
                assert (await stream.read_to_end()).endswith(b"0\r\n\r\n")
    finally:
        for stream in streams:
            stream.close()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err[-2000:]
    assert elapsed < 5.0, elapsed  # not the drain period (10 s): the streams end at once


async def _delivers_ratings_and_screens(api, ctx, sandbox, partner, port: int) -> list[RawStream]:
    everything = await RawStream.open(port, "/api/v1/public/live")
    mine = await RawStream.open(port, "/api/v1/public/live?center=440103-HL")
    other = await RawStream.open(port, f"/api/v1/public/live?center={OTHER_CENTER}")
    admin = await admin_token(api, ctx)
    key = await api.expect("POST", "/admin/api/windows/HL-W01/device-key", token=admin)
    screen = await RawStream.open(
        port, "/api/v1/device/stream", token=await pair(api, "HL-W01", key["device_key"])
    )
    streams = [everything, mine, other, screen]
    for stream in streams:
        assert stream.status == 200 and "text/event-stream" in stream.head
    await screen.read_until(b"event: idle")
    await partner.new_case(window_code="HL-W01")  # reported to the server …
    await screen.read_until(b"event: case")  # … shown by the live process's screen stream

    id_number = make_id_number(41)
    _, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await rate(api, token, scene=scene, overall=5, comment="很好")
    assert status == 201, answer
    wanted = f"id: {answer['evaluation']['id']}\n".encode()
    await everything.read_until(wanted)
    await mine.read_until(wanted)
    data = mine.body.split(wanted, 1)[1].split(b"\n", 1)[0]
    assert json.loads(data.removeprefix(b"data: "))["comment"] == "很好"
    await asyncio.sleep(0.5)  # two coalescing windows: another center's stream stays quiet
    other.body += await _available(other)
    assert b"id: " not in other.body
    return streams


async def _available(stream: RawStream) -> bytes:
    try:
        return await asyncio.wait_for(stream.reader.read(65536), 0.2)
    except TimeoutError:
        return b""


async def _honours_the_caps(port: int, held: list[RawStream]) -> list[RawStream]:
    """``held``: 3 public streams from 127.0.0.1 (and a screen's, counted apart)."""
    path = "/api/v1/public/live"
    assert sum(s.status == 200 and "device" not in s.path for s in held) == PER_ADDRESS
    streams = [await RawStream.open(port, path)]  # this address holds its share
    assert streams[-1].status == 503 and "retry-after" in streams[-1].head
    streams.append(await RawStream.open(port, path, source="127.0.0.2"))
    assert streams[-1].status == 200  # another address: the last slot
    streams.append(await RawStream.open(port, path, source="127.0.0.3"))
    assert streams[-1].status == 503  # live.max_streams
    assert b"too_many_streams" in await streams[-1].reader.readuntil(b"}")
    held[2].close()  # the other center's stream hangs up
    deadline = time.monotonic() + 5
    while True:  # its slot comes back once the process notices
        streams.append(await RawStream.open(port, path, source="127.0.0.3"))
        if streams[-1].status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert streams[-1].status == 200
    return streams


#: (flags, environment, what the one line says)
REFUSALS = [
    (["--port", "70000"], {}, "70000 is not a port"),
    (["--processes", "0"], {}, "0 must be 1 or more"),
    (["--processes", "two"], {}, "'two' is not a whole number"),
    ([], {"WXB_LIVE_PORT": "0"}, "live.port: must be positive"),
    ([], {}, "wxbackend live needs a real Redis"),
]


def test_bad_flags_and_settings_are_refused_in_one_line(tmp_path):
    def refused(n: int) -> None:
        args, env, expected = REFUSALS[n]
        folder = tmp_path / str(n)
        folder.mkdir()
        result = run_cli(folder, "live", *args, **env)
        err = result.stderr.decode()
        assert result.returncode == 2 and "Traceback" not in err, err[-2000:]
        lines = [line for line in err.splitlines() if line and line[0] != "{"]
        assert len(lines) == 1 and expected in lines[0], err[-2000:]  # argparse's too
        assert ("`wxbackend live --help`" in lines[0]) == bool(args), err[-2000:]
        assert not (folder / "data").exists()  # refused before anything was set up

    with ThreadPoolExecutor(len(REFUSALS)) as pool:  # a process each: at once, not in turn
        list(pool.map(refused, range(len(REFUSALS))))
