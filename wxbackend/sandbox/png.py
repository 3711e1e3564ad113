"""A tiny PNG encoder (zlib + struct only) and the sandbox's fake mini-program code image.

The sandbox answers ``wxa/getwxacodeunlimit`` with a real, decodable PNG: a 21x21 grid of
modules derived from ``sha256(scene)`` (with three corner "finder" squares so it looks like a
code), scaled to ``width`` pixels square, 1-bit greyscale. It is not a scannable code: it only
has to be a valid image that differs per scene.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MODULES = 21
QUIET_ZONE = 2
_FINDER_SIZE = 7


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_packed_png(width: int, packed_rows: Sequence[bytes]) -> bytes:
    """Encode already bit-packed 1-bit greyscale rows (MSB first, 1 = white) as PNG bytes."""
    height = len(packed_rows)
    row_bytes = (width + 7) // 8
    if width < 1 or height < 1 or any(len(row) != row_bytes for row in packed_rows):
        raise ValueError("need a non-empty image with rows of (width + 7) // 8 bytes")
    raw = b"".join(b"\x00" + row for row in packed_rows)  # filter type 0 (none) per row
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _pack_bits(row: Sequence[bool]) -> bytes:
    """Pack one row, most significant bit first; in greyscale 0 is black and 1 is white."""
    out = bytearray((len(row) + 7) // 8)
    for x, black in enumerate(row):
        if not black:
            out[x >> 3] |= 0x80 >> (x & 7)
    return bytes(out)


def module_pattern(scene: str) -> list[list[bool]]:
    """The 21x21 module grid for ``scene``: finder squares plus hash-derived data modules."""
    bits = _hash_bits(scene.encode("utf-8"), MODULES * MODULES)
    grid = [[bits[y * MODULES + x] for x in range(MODULES)] for y in range(MODULES)]
    last = MODULES - _FINDER_SIZE
    for top, left in ((0, 0), (0, last), (last, 0)):
        _draw_finder(grid, top, left)
    return grid


def _hash_bits(seed: bytes, count: int) -> list[bool]:
    """``count`` pseudo-random bits from chained SHA-256 of ``seed``."""
    bits: list[bool] = []
    block = hashlib.sha256(seed).digest()
    while len(bits) < count:
        for byte in block:
            bits.extend(bool(byte & (0x80 >> i)) for i in range(8))
        block = hashlib.sha256(block).digest()
    return bits[:count]


def _draw_finder(grid: list[list[bool]], top: int, left: int) -> None:
    """A 7x7 finder square: dark ring, light ring, dark 3x3 centre; light separator around."""
    for dy in range(-1, _FINDER_SIZE + 1):
        for dx in range(-1, _FINDER_SIZE + 1):
            y, x = top + dy, left + dx
            if not (0 <= y < MODULES and 0 <= x < MODULES):
                continue
            ring = max(abs(dy - 3), abs(dx - 3))
            grid[y][x] = ring in (0, 1, 3)


def code_png(scene: str, width: int = 430) -> bytes:
    """The fake mini-program code for ``scene``: ``width`` x ``width`` pixels, PNG bytes."""
    if width < 1:
        raise ValueError("width must be positive")
    grid = module_pattern(scene)
    total = MODULES + 2 * QUIET_ZONE
    # Module index of every pixel column/row (negative or >= MODULES: quiet zone).
    index = [p * total // width - QUIET_ZONE for p in range(width)]
    blank = _pack_bits([False] * width)
    packed = [
        _pack_bits([0 <= mx < MODULES and grid[my][mx] for mx in index]) for my in range(MODULES)
    ]
    return encode_packed_png(width, [packed[my] if 0 <= my < MODULES else blank for my in index])
