"""Signed checkpoints: the log's key, signing new tree heads, their history, witnesses.

The key is ``transparency.signing_key`` (standard base64 of a 32-byte Ed25519 seed); with
SQLite and no key it is generated once into ``<data_dir>/transparency.key`` like the other
keys, with PostgreSQL a missing key stops the start (:class:`StartupError`). The note
signer's name is the log's origin.

:func:`sign_new` (the worker, every ``transparency.checkpoint_seconds``) signs the current
tree head when it grew since the last checkpoint; every checkpoint is kept.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any
from urllib.parse import urlparse

from models.base import utcnow
from models.transparency import LogCheckpoint, LogCosignature
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import StartupError, _key_from_file
from wxbackend.services.transparency import log, note

logger = logging.getLogger("wxbackend.transparency")

KEY_FILE = "transparency.key"
DEFAULT_ORIGIN = "wxbackend.local/log"


def origin_of(settings: Any) -> str:
    """``transparency.origin``, else ``<host><path>/log`` of ``server.public_url``."""
    configured = str(settings.transparency.origin).strip()
    if configured:
        return configured
    url = urlparse(str(settings.server.public_url))
    if url.hostname:
        return f"{url.netloc}{url.path.rstrip('/')}/log"
    return DEFAULT_ORIGIN


def load_signer(settings: Any) -> note.Signer:
    """The checkpoint signer (StartupError when the key is missing with PostgreSQL or
    malformed); also applies ``transparency.enabled``."""
    log.configure(bool(settings.transparency.enabled))
    text = str(settings.transparency.signing_key).strip()
    if text:
        try:
            seed = base64.b64decode(text, validate=True)
        except binascii.Error:
            seed = b""
        if len(seed) != 32:
            raise StartupError(
                "setting transparency.signing_key: must be standard base64 of 32 bytes"
            )
    elif not settings.is_sqlite:
        raise StartupError(
            "transparency.signing_key (WXB_TRANSPARENCY_SIGNING_KEY) must be set when the "
            "database is PostgreSQL (standard base64 of 32 random bytes)"
        )
    else:
        seed = _key_from_file(
            str(settings.server.data_dir), KEY_FILE, "transparency signing key", logger
        )
    return note.Signer(origin_of(settings), seed)


def signer_of(ctx: Any) -> note.Signer:
    """The context's signer (loaded once per context, at its start)."""
    if ctx.log_signer is None:
        ctx.log_signer = load_signer(ctx.settings)
    return ctx.log_signer


def latest() -> LogCheckpoint | None:
    """The newest signed checkpoint (None before the first)."""
    return LogCheckpoint.select().order_by(LogCheckpoint.tree_size.desc()).first()


def sign_new(signer: note.Signer) -> LogCheckpoint | None:
    """Sign the current tree head if no checkpoint has its size yet (the first one even
    for the empty log); the new checkpoint, or None when nothing changed."""
    with database.atomic():
        size = log.tree_size()
        last = latest()
        if last is not None and last.tree_size >= size:
            return None
        root = log.root_at(size)
        text = signer.sign(note.checkpoint_body(signer.name, size, root))
        LogCheckpoint.insert(
            tree_size=size, root_hash=root, note=text, signed_at=utcnow()
        ).on_conflict_ignore().execute()
    logger.info("checkpoint signed", extra={"fields": {"tree_size": size}})
    return LogCheckpoint.get_by_id(size)


def current_note(signer: note.Signer) -> str:
    """The latest checkpoint with its cosignatures (signing the first one if none exists)."""
    checkpoint = latest() or sign_new(signer) or latest()
    assert checkpoint is not None
    lines = [
        row.line
        for row in LogCosignature.select(LogCosignature.line)
        .where(LogCosignature.tree_size == checkpoint.tree_size)
        .order_by(LogCosignature.id)
    ]
    return checkpoint.note + "".join(lines)


def checkpoint_history(before: int | None, limit: int = 100) -> list[dict[str, Any]]:
    """Signed checkpoints, newest first (``before``: only smaller tree sizes)."""
    query = LogCheckpoint.select().order_by(LogCheckpoint.tree_size.desc()).limit(limit)
    if before is not None:
        query = query.where(LogCheckpoint.tree_size < before)
    return [
        {"tree_size": c.tree_size, "root_hash": bytes(c.root_hash).hex(), "note": c.note}
        for c in query
    ]


def add_cosignature(witness_vkey: str, text: str) -> dict[str, Any]:
    """Store a witness's cosignature of one of our checkpoints: ``text`` is the checkpoint
    note the witness signed (its signature line among ours). 422 ``invalid_field`` when
    the note is not ours, the size unknown, or no valid signature of the witness is on it."""
    try:
        verifier = note.parse_vkey(witness_vkey)
        parsed = note.parse_checkpoint(text)
    except note.NoteError as exc:
        raise errors.InvalidField(str(exc), field="note") from None
    stored = LogCheckpoint.get_or_none(LogCheckpoint.tree_size == parsed.size)
    if stored is None or parsed.body != stored.note.partition("\n\n")[0] + "\n":
        raise errors.InvalidField("This is not one of the log's checkpoints.", field="note")
    if not parsed.signed_by(verifier):
        raise errors.InvalidField("No valid signature of this witness.", field="note")
    line = next(
        note.SIGNATURE_PREFIX + f"{name} {base64.b64encode(hashed + signature).decode()}\n"
        for name, hashed, signature in parsed.signatures
        if name == verifier.name and hashed == verifier.hash
    )
    LogCosignature.insert(
        tree_size=parsed.size, witness=verifier.name, line=line
    ).on_conflict_ignore().execute()
    return {"tree_size": parsed.size, "witness": verifier.name}
