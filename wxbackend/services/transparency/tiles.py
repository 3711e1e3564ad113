"""The log as C2SP ``tlog-tiles`` (static, cacheable paths under ``/api/v1/public/log``):

* ``tile/<L>/<N>[.p/<W>]``: the hashes of tree level ``8 L``, nodes ``256 N`` … ``256 N + W
  - 1`` (W = 256 for a full tile), concatenated (32 bytes each);
* ``tile/entries/<N>[.p/<W>]``: the leaves ``256 N`` … as a bundle, each leaf's UTF-8 bytes
  after its length (2 bytes, big-endian);
* ``checkpoint`` is the signed checkpoint already served there.

``N`` is written in groups of three digits, every group but the last prefixed ``x``
(``x001/x234/067``). Every stored perfect subtree is a tile hash, so a tile is one range read
of the node table. Full tiles never change (served ``immutable``); a partial one only while
the tree is not yet past it.
"""

from __future__ import annotations

import re

from models.transparency import LogLeaf, LogNode
from wxbackend.services.transparency import log

WIDTH = 256
_GROUP = re.compile(r"^x\d{3}$")


class NoTile(LookupError):
    """No such tile (malformed path, or not that much of the tree yet)."""


def _index(groups: list[str]) -> int:
    if not groups or len(groups) > 6 or not re.fullmatch(r"\d{3}", groups[-1]):
        raise NoTile("bad tile index")
    if not all(_GROUP.match(g) for g in groups[:-1]):
        raise NoTile("bad tile index")
    return int("".join(g.lstrip("x") for g in groups))


def parse(path: str) -> tuple[str | int, int, int]:
    """``("entries" or level, index, width)`` of a tile path (NoTile when malformed)."""
    parts = path.split("/")
    width = WIDTH
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        if not re.fullmatch(r"[1-9]\d{0,2}", parts[-1]) or int(parts[-1]) >= WIDTH:
            raise NoTile("bad partial width")
        width = int(parts[-1])
        parts = parts[:-2] + [parts[-2][:-2]]
    if len(parts) < 2:
        raise NoTile("bad tile path")
    head = parts[0]
    if head == "entries":
        return "entries", _index(parts[1:]), width
    if not re.fullmatch(r"\d{1,2}", head) or int(head) > 63:
        raise NoTile("bad tile level")
    return int(head), _index(parts[1:]), width


def read(path: str) -> tuple[bytes, bool]:
    """The tile's bytes and whether it is full (immutable). NoTile when it does not exist."""
    level, index, width = parse(path)
    size = log.tree_size()
    tree_level = 0 if level == "entries" else 8 * int(level)
    complete = size >> tree_level  # complete nodes at that level
    first = index * WIDTH
    if first + width > complete:
        raise NoTile("not that much of the tree yet")
    if level == 0:
        rows = (
            LogLeaf.select(LogLeaf.leaf_hash)
            .where((LogLeaf.index >= first) & (LogLeaf.index < first + width))
            .order_by(LogLeaf.index)
            .tuples()
        )
        return b"".join(bytes(h) for (h,) in rows), width == WIDTH
    if level == "entries":
        rows = (
            LogLeaf.select(LogLeaf.leaf)
            .where((LogLeaf.index >= first) & (LogLeaf.index < first + width))
            .order_by(LogLeaf.index)
            .tuples()
        )
        out = bytearray()
        for (text,) in rows:
            data = text.encode()
            out += len(data).to_bytes(2, "big") + data
        return bytes(out), width == WIDTH
    low, high = log.node_id(tree_level, first), log.node_id(tree_level, first + width)
    rows = (
        LogNode.select(LogNode.hash)
        .where((LogNode.id >= low) & (LogNode.id < high))
        .order_by(LogNode.id)
        .tuples()
    )
    data = b"".join(bytes(h) for (h,) in rows)
    if len(data) != 32 * width:
        raise NoTile("missing nodes")
    return data, width == WIDTH
