"""The transparency log (issue 16): an RFC 6962 / 9162 Merkle tree of every public event.

* :class:`LogHead` — one row: the tree size and its *frontier* (the hashes of the perfect
  subtrees the tree is made of, largest first). Appends lock it, so leaf indexes are gap-free
  and in commit order; an append reads and rewrites O(log n) bytes.
* :class:`LogLeaf` — leaf ``index``: the canonical JSON text (RFC 8785) and its leaf hash; the
  evaluation it is about; the private salt of its commitment (only the rater's receipt
  shows it). Never personal data.
* :class:`LogNode` — every perfect subtree hash above the leaves, keyed ``level *
  NODE_STRIDE + index`` (level 0, the leaf hashes, are the leaf rows' own): proofs read
  O(log n) of them, nothing is recomputed from all leaves.
* :class:`LogCheckpoint` — signed checkpoints (C2SP signed notes), kept in history.
"""

from __future__ import annotations

import peewee

from models.base import BaseModel, utcnow

#: Node key = level * NODE_STRIDE + index (room for 2**40 leaves).
NODE_STRIDE = 1 << 40


class LogHead(BaseModel):
    """The log's head (id 1): size and frontier (concatenated 32-byte hashes)."""

    id = peewee.IntegerField(primary_key=True)
    tree_size = peewee.BigIntegerField(default=0)
    frontier = peewee.BlobField(default=b"")
    updated_at = peewee.DateTimeField(default=utcnow)


class LogLeaf(BaseModel):
    """One entry of the log, in commit order."""

    index = peewee.BigIntegerField(primary_key=True)
    kind = peewee.CharField(max_length=24)
    evaluation_id = peewee.IntegerField(null=True, index=True)  # not a foreign key: it outlives
    leaf = peewee.TextField()
    leaf_hash = peewee.BlobField()
    salt = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class LogNode(BaseModel):
    """A perfect subtree's hash (level ≥ 1)."""

    id = peewee.BigIntegerField(primary_key=True)
    hash = peewee.BlobField()


class LogCheckpoint(BaseModel):
    """A signed checkpoint of tree size ``tree_size`` (the note as served)."""

    tree_size = peewee.BigIntegerField(primary_key=True)
    root_hash = peewee.BlobField()
    note = peewee.TextField()
    signed_at = peewee.DateTimeField(default=utcnow)


class LogCosignature(BaseModel):
    """A witness's cosignature line of a checkpoint (C2SP tlog-witness style)."""

    tree_size = peewee.BigIntegerField(index=True)
    witness = peewee.CharField(max_length=200)
    line = peewee.TextField()
    received_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("tree_size", "witness"), True),)
