"""The WeChat sandbox over real HTTP. Mini-program codes: ``wxa/getwxacodeunlimit`` answers a valid
PNG, or WeChat's errors."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import pytest

from tests.support.sandbox import Sandbox

# --- mini-program code -----------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, data) chunks, checking the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    return chunks


@pytest.mark.asyncio
@pytest.mark.parametrize("width", [None, 280, 1280])
async def test_wxacode_is_a_valid_png(sandbox: Sandbox, width: int | None) -> None:
    token = await sandbox.token()
    body: dict[str, Any] = {"scene": "AbC_123-xyz~!*", "page": "pages/evaluate/index"}
    if width is not None:
        body["width"] = width
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.code == 200
    assert response.headers["Content-Type"] == "image/png"
    chunks = png_chunks(response.body)
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    expected = width or 430
    assert (w, h, depth, color, interlace) == (expected, expected, 1, 0, 0)
    raw = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    assert len(raw) == h * (1 + (w + 7) // 8)
    assert (await sandbox.get("_sandbox/stats"))["codes_made"] == 1


@pytest.mark.asyncio
async def test_wxacode_differs_per_scene(sandbox: Sandbox) -> None:
    token = await sandbox.token()
    path = f"wxa/getwxacodeunlimit?access_token={token}"
    one = await sandbox.raw("POST", path, {"scene": "scene-one"})
    two = await sandbox.raw("POST", path, {"scene": "scene-two"})
    assert one.body != two.body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"scene": ""}, 40169),
        ({"scene": "x" * 33}, 40169),
        ({"scene": "a%20b"}, 40129),
        ({"scene": "空格"}, 40129),
        ({"scene": "ok", "page": "/pages/evaluate/index"}, 41030),
        ({"scene": "ok", "page": "pages/evaluate/index?x=1"}, 41030),
        ({"scene": "ok", "page": "pages/unpublished/index"}, 41030),
        ({"scene": "ok", "width": 279}, 40097),
        ({"scene": "ok", "width": 1281}, 40097),
        ({"scene": "ok", "env_version": "beta"}, 40097),
    ],
)
async def test_wxacode_errors(sandbox: Sandbox, body: dict[str, Any], errcode: int) -> None:
    token = await sandbox.token()
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body)["errcode"] == errcode


@pytest.mark.asyncio
async def test_wxacode_unpublished_page_allowed_without_check_path(sandbox: Sandbox) -> None:
    token = await sandbox.token()
    body = {
        "scene": "x" * 32,
        "page": "pages/new/index",
        "check_path": False,
        "env_version": "trial",
    }
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.headers["Content-Type"] == "image/png"
