"""The log's writer and readers: :func:`append` (the one entry point of every writer),
receipts, entries and proofs.

:func:`append` runs inside the caller's transaction (``database.atomic()``), so an event
and its leaf commit or roll back together. It locks the head row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's IMMEDIATE transactions already serialize writers), so leaf indexes are
gap-free and in commit order. Cost: one read of the head, one leaf row, O(1) amortized node
rows (never more than log n), one head update.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.evaluation import Evaluation, Reply
from models.ticket import Ticket, TicketEvent
from models.transparency import NODE_STRIDE, LogCheckpoint, LogHead, LogLeaf, LogNode
from wxbackend import errors
from wxbackend.db import compiled_rows, database, param
from wxbackend.services.transparency import events, merkle
from wxbackend.services.transparency.canonical import canonical_json
from wxbackend.timefmt import iso

#: Entries served per request at most.
MAX_ENTRIES = 1000
_STATE = {"enabled": True}


def configure(enabled: bool) -> None:
    """Turn appending on or off (``transparency.enabled``; off only to measure its cost)."""
    _STATE["enabled"] = enabled


def is_enabled() -> bool:
    """Whether events are appended (``transparency.enabled``)."""
    return _STATE["enabled"]


@dataclass(frozen=True)
class Receipt:
    """What proves a rating is in the log: its leaf, the salt of its commitment (private to
    the rater) and the first signed checkpoint that includes it (None until signed)."""

    leaf_index: int
    leaf_hash: str
    salt: str | None
    checkpoint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The receipt as the API shows it."""
        return {
            "leaf_index": self.leaf_index,
            "leaf_hash": self.leaf_hash,
            "salt": self.salt,
            "checkpoint": self.checkpoint,
        }


def commitment(salt: str, fields: Mapping[str, Any]) -> str:
    """Hex ``SHA-256(salt bytes || canonical JSON of fields)``."""
    return hashlib.sha256(bytes.fromhex(salt) + canonical_json(dict(fields)).encode()).hexdigest()


def node_id(level: int, index: int) -> int:
    """The ``log_node`` key of the perfect subtree ``(level, index)``."""
    return level * NODE_STRIDE + index


def _split(frontier: bytes) -> list[bytes]:
    return [frontier[i : i + 32] for i in range(0, len(frontier), 32)]


# The append's statements are compiled once per database (db.compiled_rows): it runs in
# every rating's transaction, where peewee's query building would cost more than SQLite.


def _p(n: int) -> peewee.Value:
    return peewee.Value(param(n), converter=False)


def _head_query() -> tuple[peewee.Query, tuple[peewee.Field, ...]]:
    fields = (LogHead.tree_size, LogHead.frontier)
    query = LogHead.select(*fields).where(LogHead.id == 1)
    if not isinstance(database.obj, peewee.SqliteDatabase):
        query = query.for_update()  # the lock that orders appends on PostgreSQL
    return query, fields


def _head_update() -> tuple[peewee.Query, tuple[()]]:
    query = LogHead.update(tree_size=_p(0), frontier=_p(1), updated_at=_p(2))
    return query.where(LogHead.id == 1), ()


_LEAF_COLUMNS = (
    LogLeaf.index,
    LogLeaf.kind,
    LogLeaf.evaluation_id,
    LogLeaf.leaf,
    LogLeaf.leaf_hash,
    LogLeaf.salt,
    LogLeaf.created_at,
)


def _leaf_insert() -> tuple[peewee.Query, tuple[()]]:
    query = LogLeaf.insert({f: _p(n) for n, f in enumerate(_LEAF_COLUMNS)}).as_rowcount()
    return query, ()


def _nodes_insert(count: int) -> tuple[peewee.Query, tuple[()]]:
    rows = [(_p(2 * i), _p(2 * i + 1)) for i in range(count)]
    query = LogNode.insert_many(rows, fields=[LogNode.id, LogNode.hash]).as_rowcount()
    return query, ()


def _locked_head() -> tuple[int, list[bytes]]:
    size, frontier = compiled_rows("tlog.head", _head_query)[0]
    return size, _split(bytes(frontier))


def append(
    kind: str,
    refs: Mapping[str, Any],
    at: datetime,
    *,
    written: events.RatingFields | None = None,
) -> Receipt | None:
    """Append the public event ``kind`` about the rows ``refs`` names (see
    :data:`events.BUILDERS`: ``rating`` / ``follow_up`` / ``moderation`` ``{evaluation_id}``,
    ``reply`` ``{reply_id}``, ``ticket`` ``{ticket_id}``) at time ``at``; its receipt.

    Call it inside the event's transaction, after the event's writes. ``written``: the
    rating's values exactly as the caller has just stored them (the rating writer), so they
    are not read back. None when the log is turned off.
    """
    if not _STATE["enabled"]:
        return None
    if written is not None:
        evaluation_id, public, committed = events.rating_fields(written)
    else:
        evaluation_id, public, committed = events.BUILDERS[kind](refs)
    leaf: dict[str, Any] = {"kind": kind, "at": iso(at), **public}
    salt = None
    if committed is not None:
        salt = secrets.token_hex(16)
        leaf["commitment"] = commitment(salt, committed)
    text = canonical_json(leaf)
    if database.in_transaction():
        return _append(kind, evaluation_id, text, salt, at)
    with database.atomic():
        return _append(kind, evaluation_id, text, salt, at)


def _append(
    kind: str, evaluation_id: int | None, text: str, salt: str | None, at: datetime
) -> Receipt:
    hashed = merkle.leaf_hash(text.encode())
    size, frontier = _locked_head()
    nodes, frontier = merkle.append_leaf(frontier, size, hashed)
    values = (size, kind, evaluation_id, text, hashed, salt, at)
    args = [
        None if v is None else f.db_value(v) for f, v in zip(_LEAF_COLUMNS, values, strict=True)
    ]
    compiled_rows("tlog.leaf", _leaf_insert, args)
    node_args: list[Any] = []
    for level, index, value in nodes[1:]:  # level 0 is the leaf row's own hash
        node_args += [node_id(level, index), LogNode.hash.db_value(value)]
    count = len(nodes) - 1  # none for half the appends, one for a quarter, …
    if count:
        compiled_rows(f"tlog.nodes.{count}", functools.partial(_nodes_insert, count), node_args)
    head = (
        size + 1,
        LogHead.frontier.db_value(b"".join(frontier)),
        LogHead.updated_at.db_value(at),
    )
    compiled_rows("tlog.head_update", _head_update, head)
    return Receipt(size, hashed.hex(), salt)


def backfill() -> int:
    """Append the public events stored before the log existed, oldest first: every rating
    and follow-up (in its current state), every reply, every ticket that left ``open`` (its
    current status). Run once, by the migration that creates the log, so an installation
    that had ratings before verifies like a new one. Returns how many leaves it wrote."""
    if not _STATE["enabled"]:
        return 0
    pending: list[tuple[datetime, int, str, dict[str, Any]]] = []
    for e in Evaluation.select(Evaluation.id, Evaluation.assess_number, Evaluation.created_at):
        kind = "rating" if e.assess_number == 1 else "follow_up"
        pending.append((e.created_at, e.id, kind, {"evaluation_id": e.id}))
    for r in Reply.select(Reply.id, Reply.created_at):
        pending.append((r.created_at, r.id, "reply", {"reply_id": r.id}))
    stepped = Ticket.select(Ticket.id, Ticket.opened_at).where(
        (Ticket.status != "open") | Ticket.appeal_status.is_null(False)
    )
    for t in stepped:
        last = TicketEvent.select(peewee.fn.MAX(TicketEvent.at)).where(TicketEvent.ticket == t.id)
        pending.append((last.scalar() or t.opened_at, t.id, "ticket", {"ticket_id": t.id}))
    pending.sort(key=lambda event: (event[0], event[1]))
    for at, _, kind, refs in pending:
        append(kind, refs, at)
    return len(pending)


# --------------------------------------------------------------------------- reading


def tree_size() -> int:
    """The number of leaves (committed)."""
    return LogHead.select(LogHead.tree_size).where(LogHead.id == 1).scalar() or 0


def fetch_nodes(keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the perfect subtrees ``keys`` (``(level, index)``; level 0 is a
    leaf's hash, kept in its leaf row)."""
    found: dict[tuple[int, int], bytes] = {}
    leaves = [index for level, index in keys if level == 0]
    if leaves:
        rows = LogLeaf.select(LogLeaf.index, LogLeaf.leaf_hash).where(LogLeaf.index.in_(leaves))
        found.update({(0, i): bytes(h) for i, h in rows.tuples()})
    ids = {node_id(level, index): (level, index) for level, index in keys if level}
    if ids:
        rows = LogNode.select(LogNode.id, LogNode.hash).where(LogNode.id.in_(list(ids)))
        found.update({ids[i]: bytes(h) for i, h in rows.tuples()})
    return found


def root_at(size: int) -> bytes:
    """The root hash of the tree's first ``size`` leaves (O(log n) stored nodes)."""
    return merkle.proof_hashes([(0, size)], fetch_nodes)[0] if size else merkle.EMPTY_ROOT


def _size_arg(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16:
        number = int(value)
        if low <= number <= high:
            return number
    raise errors.InvalidQuery(f"{name} must be an integer from {low} to {high}.", parameter=name)


def inclusion_proof(leaf_index: Any, size: Any) -> dict[str, Any]:
    """``GET …/proof/inclusion``: the RFC 9162 inclusion path; 400 ``invalid_query`` unless
    0 ≤ leaf_index < tree_size ≤ the log's size."""
    current = tree_size()
    n = _size_arg(size, "tree_size", 1, max(current, 1))
    if current == 0:
        raise errors.InvalidQuery("The log is empty.", parameter="tree_size")
    index = _size_arg(leaf_index, "leaf_index", 0, n - 1)
    hashes = merkle.proof_hashes(merkle.inclusion_ranges(index, n), fetch_nodes)
    return {"leaf_index": index, "tree_size": n, "hashes": [h.hex() for h in hashes]}


def consistency_proof(first: Any, second: Any) -> dict[str, Any]:
    """``GET …/proof/consistency``: the RFC 9162 consistency proof; 400 ``invalid_query``
    unless 0 ≤ first ≤ second ≤ the log's size."""
    n = _size_arg(second, "second", 0, tree_size())
    m = _size_arg(first, "first", 0, n)
    hashes = merkle.proof_hashes(merkle.consistency_ranges(m, n), fetch_nodes)
    return {"first": m, "second": n, "hashes": [h.hex() for h in hashes]}


def entries(start: Any, end: Any) -> dict[str, Any]:
    """``GET …/entries?start=&end=`` (end exclusive, at most :data:`MAX_ENTRIES` after
    start); an end beyond the log's size serves the entries up to it (as CT's get-entries)."""
    size = tree_size()
    first = _size_arg(start, "start", 0, size)
    last = min(_size_arg(end, "end", first, first + MAX_ENTRIES), size)
    rows = (
        LogLeaf.select(LogLeaf.index, LogLeaf.leaf, LogLeaf.leaf_hash)
        .where((LogLeaf.index >= first) & (LogLeaf.index < last))
        .order_by(LogLeaf.index)
        .tuples()
    )
    return {
        "entries": [{"index": i, "leaf": text, "leaf_hash": bytes(h).hex()} for i, text, h in rows]
    }


def receipts_for(evaluation_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``{evaluation id: receipt}`` of the given ratings (their first leaf with a salt), each
    with the first signed checkpoint that includes it (or None). Two queries."""
    ids = list(evaluation_ids)
    if not ids:
        return {}
    covering = LogCheckpoint.select(peewee.fn.MIN(LogCheckpoint.tree_size)).where(
        LogCheckpoint.tree_size > LogLeaf.index
    )
    rows = (
        LogLeaf.select(
            LogLeaf.evaluation_id,
            LogLeaf.index,
            LogLeaf.leaf_hash,
            LogLeaf.salt,
            covering.alias("covered_by"),
        )
        .where(LogLeaf.evaluation_id.in_(ids) & LogLeaf.salt.is_null(False))
        .order_by(LogLeaf.index.desc())
        .tuples()
    )
    found = {e: (i, bytes(h).hex(), s, c) for e, i, h, s, c in rows}  # lowest index wins
    sizes = {c for *_, c in found.values() if c is not None}
    notes = (
        dict(
            LogCheckpoint.select(LogCheckpoint.tree_size, LogCheckpoint.note)
            .where(LogCheckpoint.tree_size.in_(list(sizes)))
            .tuples()
        )
        if sizes
        else {}
    )
    return {e: Receipt(i, h, s, notes.get(c)).as_dict() for e, (i, h, s, c) in found.items()}


def receipt_of(evaluation_id: int) -> dict[str, Any] | None:
    """The receipt of one rating (None when the log has no receipt for it)."""
    return receipts_for([evaluation_id]).get(evaluation_id)
