"""Issue 12 item 8: memory and connections held by slow or endless request bodies.

Reproduction: 30 never-finished chunked uploads of 7.5 MiB grew the server 286 → 509 MB
(chunked bodies were buffered up to Tornado's 8 MiB cap), and a half-sent header stayed open
95 s. Now a chunked body is answered 413 at the chunk that crosses the 64 KiB limit and
never buffered, and the headers and the body each have a deadline.
"""

from __future__ import annotations

import asyncio
import time

import pytest

FAST = {"server": {"header_timeout_seconds": 0.5, "body_timeout_seconds": 0.5}}


async def connect(http_server):
    return await asyncio.open_connection("127.0.0.1", http_server[1])


async def read_all(reader, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            data += chunk
    return data


@pytest.mark.asyncio
async def test_an_endless_chunked_body_is_413_at_the_limit(http_server):
    for _ in range(10):  # ten uploads of up to 2 MiB in 16 KiB chunks, never ending
        reader, writer = await connect(http_server)
        writer.write(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # a client reads while it sends, and stops sending when the answer comes
        answer = asyncio.ensure_future(reader.read(65536))
        chunk = b"%x\r\n%s\r\n" % (16384, b"[" * 16384)
        sent = 0
        while not answer.done() and sent < 2 << 20:
            try:
                writer.write(chunk)
                await writer.drain()
            except ConnectionError:
                break
            sent += 16384
            await asyncio.sleep(0)
        answer = await answer
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert b'"body_too_large"' in answer
        assert sent <= 65536 + (1 << 20)  # the server stopped taking it
        writer.close()


@pytest.mark.asyncio
async def test_a_chunked_body_under_the_limit_is_served(http_server):
    reader, writer = await connect(http_server)
    body = b'{"code": 1}'
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    answer = await read_all(reader)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]  # a normal contract answer
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [FAST])
async def test_a_half_sent_header_is_closed_after_the_header_timeout(http_server):
    reader, writer = await connect(http_server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    assert await read_all(reader) == b""  # closed without an answer
    assert time.monotonic() - started < 3.0
    writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [FAST])
async def test_a_stalled_body_is_closed_after_the_body_timeout(http_server):
    reader, writer = await connect(http_server)
    writer.write(b'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"co')
    started = time.monotonic()
    await read_all(reader)
    assert time.monotonic() - started < 3.0
    writer.close()
