"""Statistics, the staff ranking and the export of the admin API.

``GET /admin/api/stats``, ``GET /admin/api/staff-ranking`` (permission ``stats.read``),
``GET /admin/api/export`` (``export``), each narrowed to the permission's reach. The
figures are documented in ``wxbackend.services.admin.stats``, the ranking's method in
``wxbackend.services.admin.ranking``, the export's fields and streaming in
``wxbackend.services.admin.export``.
"""

from __future__ import annotations

from typing import Any

from tornado.iostream import StreamClosedError

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import route
from handlers.openapi import DAY, errors_of
from wxbackend.services.admin import export, ranking, stats


def _query(name: str, description: str, required: bool = False, **schema: Any) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


#: Empty means no bound, for ``from`` and ``to`` alike (every listing reads them so).
_FROM = {**_query("from", "first day, YYYY-MM-DD (Asia/Shanghai); empty: no bound"), "schema": DAY}
_TO = {**_query("to", "last day, inclusive, YYYY-MM-DD; empty: no bound"), "schema": DAY}


class StatsHandler(AdminHandler):
    permissions = {"get": "stats.read"}
    openapi = {
        "get": {
            "summary": "Figures per center, item, department, staff member or day "
            "(product.md rule 10; SQL aggregation; scoped)",
            **admin_security(),
            "parameters": [
                _query("group_by", "what a row is", True, enum=list(stats.GROUPS)),
                _FROM,
                _TO,
                _query("center", "only this center (code)"),
                _query("item", "only this service item (code)"),
            ],
            "responses": {
                "200": {
                    "description": "{group_by, from, to, rows:[{key:{code, name} (staff: "
                    "+role window_staff|approver; day: {date}), total, by_level:{'1'..'5'}, "
                    "satisfaction_rate, bad_rate, active_rate, active_good_rate, unrated_rate, "
                    "on_time_rectification_rate, follow_ups, active_total, finished_cases, "
                    "unrated_cases, rectification_due, rectified_on_time}]}: the cases "
                    "completed in the range and their first ratings; a rate with a zero "
                    "denominator is null"
                },
                **errors_of(400, 401),
            },
        }
    }

    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in stats.STATS_PARAMETERS}
        self.send(await stats.stats(self.ctx, self.admin, args))


class StaffRankingHandler(AdminHandler):
    permissions = {"get": "stats.read"}
    openapi = {
        "get": {
            "summary": "Window staff and approvers of a month, each ranked by their own target "
            "level with a Bayesian-smoothed score (scoped)",
            "description": ranking.RANKING_METHOD + "\n\n" + ranking.RANKING_METHOD_ZH,
            **admin_security(),
            "parameters": [_query("month", "YYYY-MM (Asia/Shanghai)", True)],
            "responses": {
                "200": {
                    "description": "{month, method, method_zh, prior_weight, bad_penalty, "
                    "items:[{rank, role: window_staff|approver, staff:{staff_no, name, "
                    "center:{code,name}, department:{code,name}}, ratings, target_rated, mean, "
                    "bad, center_mean, score}]}"
                },
                **errors_of(400, 401),
            },
        }
    }

    async def get(self) -> None:
        month = self.get_query_argument("month", None)
        self.send(await ranking.ranking(self.ctx, self.admin, month))


class ExportHandler(AdminHandler):
    permissions = {"get": "export"}
    openapi = {
        "get": {
            "summary": "Ratings for the provincial platform (product.md rule 12), streamed "
            "as CSV (UTF-8 BOM) or JSON Lines; scoped and audited",
            **admin_security(),
            "parameters": [
                _FROM,
                _TO,
                _query("format", "csv (default) or jsonl", enum=list(export.FORMATS)),
            ],
            "responses": {
                "200": {
                    "description": "one row per evaluation: " + ", ".join(export.FIELDS),
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
                **errors_of(400, 401),
            },
        }
    }

    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in export.PARAMETERS}
        query = export.parse_export_query(args)
        await self.ctx.db.run(export.record_export, self.actor, self.admin, query)
        self.set_header("Content-Type", export.media_type(query))
        self.set_header("Content-Disposition", f'attachment; filename="{export.filename(query)}"')
        try:
            async for data in export.stream(self.ctx, self.admin, query):
                self.write(data)
                await self.flush()
        except StreamClosedError:
            return  # the client went away: stop reading
        self.finish()


default_handlers = [
    route("/admin/api/stats", StatsHandler),
    route("/admin/api/staff-ranking", StaffRankingHandler),
    route("/admin/api/export", ExportHandler),
]
