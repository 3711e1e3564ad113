"""The log's public API (``/api/v1/public/log/…``), on the database pool."""

from __future__ import annotations

from typing import Any

from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.transparency import checkpoints, log, note, tiles


async def key(ctx: Context) -> dict[str, str]:
    """``GET /log/key`` → ``{origin, vkey}``."""
    signer = checkpoints.signer_of(ctx)
    return {"origin": signer.name, "vkey": signer.vkey}


async def checkpoint(ctx: Context) -> str:
    """``GET /log/checkpoint``: the latest signed note (with witnesses' cosignatures)."""
    return await ctx.db.run(checkpoints.current_note, checkpoints.signer_of(ctx))


async def inclusion(ctx: Context, leaf_index: Any, tree_size: Any) -> dict[str, Any]:
    """``GET /log/proof/inclusion``: see :func:`log.inclusion_proof`."""
    return await ctx.db.run(log.inclusion_proof, leaf_index, tree_size)


async def consistency(ctx: Context, first: Any, second: Any) -> dict[str, Any]:
    """``GET /log/proof/consistency``: see :func:`log.consistency_proof`."""
    return await ctx.db.run(log.consistency_proof, first, second)


async def entries(ctx: Context, start: Any, end: Any) -> dict[str, Any]:
    """``GET /log/entries``: see :func:`log.entries`."""
    return await ctx.db.run(log.entries, start, end)


async def history(ctx: Context, before: Any) -> dict[str, Any]:
    """``GET /log/checkpoints?before=``: signed checkpoints, newest first (100 a page)."""
    limit = None
    if before not in (None, ""):
        if not (isinstance(before, str) and before.isdigit() and len(before) < 16):
            raise errors.InvalidQuery("before must be a tree size.", parameter="before")
        limit = int(before)
    items = await ctx.db.run(checkpoints.checkpoint_history, limit)
    return {"checkpoints": items}


async def cosign(ctx: Context, witness_vkey: str, text: str) -> dict[str, Any]:
    """``POST /log/cosign``: a configured witness's cosignature of one of our checkpoints
    (403 ``forbidden`` for a key not in ``transparency.witnesses``)."""
    allowed = {str(v).strip() for v in ctx.settings.transparency.witnesses}
    if witness_vkey.strip() not in allowed:
        raise errors.Forbidden("This key is not one of the log's witnesses.")
    try:
        note.parse_vkey(witness_vkey)
    except note.NoteError as exc:
        raise errors.InvalidField(str(exc), field="vkey") from None
    return await ctx.db.run(checkpoints.add_cosignature, witness_vkey, text)


async def tile(ctx: Context, path: str) -> tuple[bytes, bool]:
    """``GET /log/tile/…`` (tlog-tiles): the tile's bytes and whether it is full; 404
    ``not_found`` for a malformed path or a tile beyond the tree."""
    try:
        return await ctx.db.run(tiles.read, path)
    except tiles.NoTile as exc:
        raise errors.NotFound(f"No such tile ({exc}).") from None
