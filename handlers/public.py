"""The public record, the levels' labels and likes.

``GET /api/v1/public/evaluations``, ``GET /api/v1/public/stats`` and
``GET /api/v1/public/levels`` (no login);
``PUT`` / ``DELETE /api/v1/evaluations/{evaluation_id}/like`` (a citizen's token).
"""

from __future__ import annotations

from typing import Any

from handlers.base import BaseHandler, CitizenHandler, route
from handlers.openapi import DAY, bearer, errors_of
from wxbackend.services.public import figures, listing, stats_cache
from wxbackend.services.ratings import levels, likes


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


class PublicEvaluationsHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "Public ratings, newest first (first ratings only; keyset pagination)",
            "parameters": [
                _query("center", "center code"),
                _query("item", "service item code (事项编码)"),
                _query("staff", "window clerk's staff_no"),
                _query("level", "overall level", {"type": "integer", "minimum": 1, "maximum": 5}),
                _query("cursor", "next_cursor of the previous page (opaque)"),
                _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 50}),
            ],
            "responses": {
                "200": {
                    "description": "{items:[{id, overall, stages, targets, indicators, comment, "
                    "name_masked, channel, item, center, window_staff, created_at, like_count, "
                    "likers, replies, follow_up, ticket_status}], next_cursor}"
                },
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in listing.LIST_PARAMETERS}
        self.send(await listing.public_evaluations(self.ctx, args))


class PublicStatsHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "Public figures: counts per level and the rates (first ratings only)",
            "parameters": [
                _query("center", "center code"),
                _query("item", "service item code"),
                _query("from", "first day, YYYY-MM-DD (Asia/Shanghai)", DAY),
                _query("to", "last day, inclusive, YYYY-MM-DD", DAY),
            ],
            "responses": {
                "200": {
                    "description": "{total, by_level:{'1'..'5'}, satisfaction_rate, bad_rate, "
                    "active_rate, active_good_rate, unrated_rate, on_time_rectification_rate, "
                    "active_total, finished_cases, unrated_cases, rectification_due, "
                    "rectified_on_time}: the cases completed in the range (Asia/Shanghai) and "
                    "their first ratings (product.md rule 10); a rate with a zero denominator "
                    "is null. Cache-Control max-age is public.stats_cache_seconds: how long "
                    "a page waits before asking again after a new rating."
                },
                **errors_of(400),
            },
        }
    }

    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in figures.STATS_PARAMETERS}
        answer = await stats_cache.public_stats(self.ctx, args, self.client_ip())
        ttl = self.ctx.settings.public.stats_cache_seconds
        if ttl > 0:  # the same figures for everyone, as fresh as the server's own cache
            self.set_header("Cache-Control", f"public, max-age={ttl}")
        self.send(answer)


class LevelsHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "The rating levels and their labels, which ones are a 差评, and the "
            "stage, target and channel labels (the pages and the console read them here)",
            "responses": {
                "200": {
                    "description": "{levels:[{value, label, bad}] (best first), bad_max, "
                    "stages:[{code, label}], targets:[{code, label}], channels:[{code, label}]}"
                },
            },
        }
    }

    async def get(self) -> None:
        self.set_header("Cache-Control", "public, max-age=3600")
        self.send(levels.catalogue())


class LikeHandler(CitizenHandler):
    openapi = {
        "put": {
            "summary": "Like a rating (idempotent; a verified identity, one like per person)",
            "description": "403 identity_required / own_rating (nobody likes their own); 404.",
            **bearer(),
            "responses": {
                "200": {"description": "{liked: true, like_count}"},
                **errors_of(401, 403, 404),
            },
        },
        "delete": {
            "summary": "Withdraw a like (idempotent)",
            **bearer(),
            "responses": {
                "200": {"description": "{liked: false, like_count}"},
                **errors_of(401, 404),
            },
        },
    }

    async def put(self, evaluation_id: str) -> None:
        self.json_body({})  # no data: an empty body or {}
        state = await likes.like(self.ctx, evaluation_id, self.user_id)
        listing.forget_first_pages(self.ctx)  # the liker sees the count move on page 1 at once
        self.send(state.as_dict())

    async def delete(self, evaluation_id: str) -> None:
        state = await likes.unlike(self.ctx, evaluation_id, self.user_id)
        listing.forget_first_pages(self.ctx)  # the liker sees the count move on page 1 at once
        self.send(state.as_dict())


default_handlers = [
    route("/api/v1/public/evaluations", PublicEvaluationsHandler),
    route("/api/v1/public/stats", PublicStatsHandler),
    route("/api/v1/public/levels", LevelsHandler),
    route("/api/v1/evaluations/{evaluation_id}/like", LikeHandler),
]
