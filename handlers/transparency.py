"""The public transparency log (no login): ``/api/v1/public/log/…`` (api.md, "Transparency
log"): the key, the signed checkpoint, RFC 9162 proofs, the entries, the checkpoint history
and witnesses' cosignatures."""

from __future__ import annotations

from typing import Any

import tornado.web

from handlers.base import BaseHandler, Field, route
from handlers.openapi import errors_of, json_body
from wxbackend.services.transparency import api


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 0},
    }


class LogKeyHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "The log's origin and note verifier key (C2SP vkey, Ed25519)",
            "responses": {"200": {"description": "{origin, vkey}"}},
        }
    }

    async def get(self) -> None:
        self.send(await api.key(self.ctx))


class LogCheckpointHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "The latest signed checkpoint (C2SP signed note, text/plain)",
            "responses": {
                "200": {
                    "description": "<origin>\\n<tree size>\\n<base64 root hash>\\n\\n— <name> "
                    "<base64 signature>\\n (and witnesses' cosignature lines)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }

    async def get(self) -> None:
        text = await api.checkpoint(self.ctx)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text.encode())


class InclusionProofHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "RFC 9162 inclusion proof of a leaf in a tree size",
            "parameters": [_query("leaf_index", "the leaf"), _query("tree_size", "the tree")],
            "responses": {
                "200": {"description": "{leaf_index, tree_size, hashes:[hex]}"},
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        self.send(
            await api.inclusion(
                self.ctx,
                self.get_query_argument("leaf_index", None),
                self.get_query_argument("tree_size", None),
            )
        )


class ConsistencyProofHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "RFC 9162 consistency proof between two tree sizes",
            "parameters": [_query("first", "older size"), _query("second", "newer size")],
            "responses": {
                "200": {"description": "{first, second, hashes:[hex]}"},
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        self.send(
            await api.consistency(
                self.ctx,
                self.get_query_argument("first", None),
                self.get_query_argument("second", None),
            )
        )


class EntriesHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "Log entries [start, end) (at most 1,000): canonical JSON leaves",
            "parameters": [_query("start", "first index"), _query("end", "end, exclusive")],
            "responses": {
                "200": {"description": "{entries:[{index, leaf, leaf_hash}]}"},
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        self.send(
            await api.entries(
                self.ctx,
                self.get_query_argument("start", None),
                self.get_query_argument("end", None),
            )
        )


class CheckpointHistoryHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "Every signed checkpoint, newest first (100 a page)",
            "parameters": [
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "description": "only tree sizes below this",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 10**15 - 1},
                }
            ],
            "responses": {
                "200": {"description": "{checkpoints:[{tree_size, root_hash, note}]}"},
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        self.send(await api.history(self.ctx, self.get_query_argument("before", None)))


class CosignHandler(BaseHandler):
    openapi = {
        "post": {
            "summary": "A witness (transparency.witnesses) adds its cosignature to a checkpoint",
            "requestBody": json_body(
                {"vkey": {"type": "string"}, "note": {"type": "string"}}, ["vkey", "note"]
            ),
            "responses": {
                "200": {"description": "{tree_size, witness}"},
                **errors_of(400, 403, 422),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(
            {"vkey": Field(str, required=True), "note": Field(str, required=True)}
        )
        self.send(await api.cosign(self.ctx, body["vkey"], body["note"]))


class TileHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "C2SP tlog-tiles: tile/<L>/<N>[.p/<W>] (hashes) and "
            "tile/entries/<N>[.p/<W>] (leaf bundles); full tiles are immutable",
            "responses": {
                "200": {
                    "description": "binary tile",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                **errors_of(404),
            },
        }
    }

    async def get(self, path: str) -> None:
        data, full = await api.tile(self.ctx, path)
        self.set_header("Content-Type", "application/octet-stream")
        if full:
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "public, max-age=10")
        self.finish(data)


TILE_TEMPLATE = "/api/v1/public/log/tile/{path}"

default_handlers = [
    route("/api/v1/public/log/key", LogKeyHandler),
    route("/api/v1/public/log/checkpoint", LogCheckpointHandler),
    route("/api/v1/public/log/checkpoints", CheckpointHistoryHandler),
    route("/api/v1/public/log/proof/inclusion", InclusionProofHandler),
    route("/api/v1/public/log/proof/consistency", ConsistencyProofHandler),
    route("/api/v1/public/log/entries", EntriesHandler),
    route("/api/v1/public/log/cosign", CosignHandler),
    # a tile path has several segments: the template's {path} spans them
    tornado.web.url(
        r"/api/v1/public/log/tile/(?P<path>[0-9a-z./]+)$",
        TileHandler,
        {"route_template": TILE_TEMPLATE},
        name=TILE_TEMPLATE,
    ),
]
