"""Issue 12 item 10: one client took every live-feed slot (500 idle streams from one address
→ every public page and evaluator screen got 503). Now each client address (behind a trusted
proxy, its X-Forwarded-For) holds at most ``live.max_streams_per_address`` streams."""

from __future__ import annotations

import asyncio

import pytest

LIMITS = {
    "live": {"max_streams": 50, "max_streams_per_address": 3},
    "server": {"trusted_proxies": ["127.0.0.1/32"]},
}


async def open_stream(http_server, address: str):
    """A live stream from ``address`` (as the trusted proxy says): (status, reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", http_server[1])
    writer.write(
        b"GET /api/v1/public/live HTTP/1.1\r\nHost: x\r\n"
        + f"X-Forwarded-For: {address}\r\n\r\n".encode()
    )
    status_line = await asyncio.wait_for(reader.readline(), 5)
    return int(status_line.split()[1]), reader, writer


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_one_address_cannot_take_every_stream(http_server, ctx):
    held = []
    try:
        for _ in range(3):
            status, reader, writer = await open_stream(http_server, "198.51.100.7")
            assert status == 200
            held.append(writer)
        status, _, writer = await open_stream(http_server, "198.51.100.7")
        assert status == 503  # this address has its share
        writer.close()
        status, _, writer = await open_stream(http_server, "203.0.113.20")
        assert status == 200  # everyone else still gets in
        held.append(writer)
        assert ctx.live_streams.by_address == {"198.51.100.7": 3, "203.0.113.20": 1}
    finally:
        for writer in held:
            writer.close()
    for _ in range(100):  # the slots come back as the streams end
        if ctx.live_streams.open == 0:
            break
        await asyncio.sleep(0.05)
    assert ctx.live_streams.open == 0 and ctx.live_streams.by_address == {}
