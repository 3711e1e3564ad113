"""Admin statistics (统计), scoped to the admin (the monthly staff ranking:
:mod:`wxbackend.services.admin.ranking`).

They are SQL aggregations (``GROUP BY`` with ``COUNT`` / ``SUM(CASE …)``); Python only
combines the aggregated rows, never the ratings themselves. The definitions are those of the
public figures, from the one module :mod:`wxbackend.services.public.figures`
(``tallies`` and ``figures``).

``GET /admin/api/stats?group_by=center|item|department|staff|day&from=&to=`` — one row per
group that has finished cases or due tickets in the range (dates in Asia/Shanghai, both
inclusive; optional ``center`` / ``item`` codes narrow it further). The period selects the
**cases completed** in it (for ``day``: by completion day) and counts their first ratings:

* ``total`` and ``by_level`` — the first ratings (``assess_number`` 1) of those cases, every
  channel; ``finished_cases``, ``active_total`` (rated by the citizen), ``unrated_cases``.
* ``satisfaction_rate``, ``bad_rate``, ``active_rate``, ``active_good_rate``,
  ``unrated_rate``, ``on_time_rectification_rate`` — product.md rule 10, exactly as on the
  public page (``figures.figures``); the on-time rate is over the 差评 tickets whose
  rectification fell due in the range (``rectification_due``, ``rectified_on_time``).
* ``follow_ups`` — 追评 (``assess_number`` 2) of those cases.
* Rates are rounded to 4 places and ``null`` when their denominator is 0.

``group_by=staff`` gives a row per window clerk (``role: "window_staff"``, a rating counts
for the case's clerk) and a row per back-office approver (``role: "approver"``, the same
rating counts for the case's approver). Staff rows leave out the cases whose 差评 ticket had
its appeal upheld (申诉成立) — center, item, department and day rows never do (product.md
rule 6). Cases without a clerk / approver appear in no staff row.

Scope (``wxbackend.services.admin.scope``): a center-bound admin sees only their center; a handler
only their department's ratings, cases and staff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from models.catalog import Center, Department, ServiceItem, Staff
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.admin import scope
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import db_share
from wxbackend.services.public import figures

GROUPS = ("center", "item", "department", "staff", "day")
STATS_PARAMETERS = ("group_by", "from", "to", "center", "item")

# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class AdminStatsQuery:
    group_by: str
    first: str | None  # the from/to as given, echoed in the answer
    last: str | None
    range: figures.StatsQuery


def parse_stats_query(args: Mapping[str, str | None]) -> AdminStatsQuery:
    """``group_by`` (required, one of :data:`GROUPS`), ``from``, ``to``, ``center``, ``item``."""
    group_by = args.get("group_by")
    if group_by not in GROUPS:
        raise errors.InvalidQuery(
            f"Parameter group_by must be one of {', '.join(GROUPS)}.", parameter="group_by"
        )
    return AdminStatsQuery(
        group_by=group_by,
        first=args.get("from") or None,
        last=args.get("to") or None,
        range=figures.parse_stats_query(args),
    )


# --------------------------------------------------------------------------- the scope


def admin_scope(principal: Principal, query: figures.StatsQuery) -> figures.Scope:
    """The public scope of ``query`` (codes, range) narrowed to what ``principal`` sees."""
    wanted = figures.resolve_scope(query)
    center_id = scope.center_filter(principal, "stats.read")
    department_id = scope.department_filter(principal, "stats.read")
    empty = wanted.empty
    if center_id is not None and wanted.center_id not in (None, center_id):
        empty = True
    return replace(
        wanted,
        center_id=center_id if center_id is not None else wanted.center_id,
        department_id=department_id,
        empty=empty,
    )


# --------------------------------------------------------------------------- statistics


def _catalogue_keys(group_by: str, ids: list[int]) -> dict[int, dict[str, str]]:
    if not ids:
        return {}
    model, code = {
        "center": (Center, Center.code),
        "item": (ServiceItem, ServiceItem.code),
        "department": (Department, Department.code),
        "window_staff": (Staff, Staff.staff_no),
        "approver": (Staff, Staff.staff_no),
    }[group_by]
    found = model.select(model.id, code, model.name).where(model.id.in_(ids)).tuples()
    return {i: {"code": c, "name": n} for i, c, n in found}


def row_figures(tally: figures.Tally) -> dict[str, Any]:
    """The figures of one row: :func:`figures.figures` plus the follow-ups."""
    return {**figures.figures(tally), "follow_ups": tally.follow_ups}


def _rows(where: figures.Scope, column: str, role: str | None = None) -> list[dict[str, Any]]:
    counted = figures.tallies(where, column, extended=True)
    if column == "day":
        return [{"key": {"date": day}, **row_figures(counted[day])} for day in sorted(counted)]
    ids = [i for i in counted if i is not None]
    keys = _catalogue_keys(column, ids)
    rows = []
    for group_id in ids:
        key = keys.get(group_id, {"code": None, "name": None})
        if role is not None:
            key = {**key, "role": role}
        rows.append({"key": key, **row_figures(counted[group_id])})
    rows.sort(key=lambda r: r["key"]["code"] or "")
    return rows


def admin_stats(principal: Principal, query: AdminStatsQuery) -> dict[str, Any]:
    """``GET /admin/api/stats`` on the database thread."""
    where = admin_scope(principal, query.range)
    if query.group_by == "staff":
        staff_scope = replace(where, exclude_upheld=True)
        rows = _rows(staff_scope, "window_staff", "window_staff")
        rows += _rows(staff_scope, "approver", "approver")
    else:
        rows = _rows(where, query.group_by)
    return {"group_by": query.group_by, "from": query.first, "to": query.last, "rows": rows}


async def stats(ctx: Context, principal: Principal, args: Mapping[str, str | None]) -> dict:
    """``GET /admin/api/stats``: on the admin reports' share of the database threads."""
    query = parse_stats_query(args)
    return await db_share.run_in_share(
        ctx, db_share.report_slots(ctx), admin_stats, principal, query
    )
