"""The monthly staff ranking (product.md rule 21), scoped to the admin.

``GET /admin/api/staff-ranking?month=YYYY-MM`` ranks the window staff and the approvers, each
by their own target level: see :data:`RANKING_METHOD` (in Chinese for the console:
:data:`RANKING_METHOD_ZH`). SQL aggregation (``GROUP BY`` with ``COUNT`` / ``SUM``); Python
only combines the aggregated rows.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import peewee

from models.catalog import Center, Department, Staff
from models.rollup import RollupRanking
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.admin import scope
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import db_share, query_args
from wxbackend.services.public.rollups import RANKED_ROLES, local_day
from wxbackend.services.ratings import levels

_MONTH = re.compile(r"(\d{4})-(\d{2})")

#: Ranking: weight C of the prior (the center's mean), in ratings.
PRIOR_WEIGHT = 10
#: Ranking: stars taken off for a share of 差评 of 100 %.
BAD_PENALTY = 0.5
RANKING_METHOD = (
    "Each person is ranked by their own target level: window staff (role window_staff) by "
    "target_window_staff, approvers (role approver) by target_approver; where the citizen did "
    "not rate that target, the overall level counts instead. "
    f"score = (C*m + sum_stars) / (C + n) - P * bad / n, C = {PRIOR_WEIGHT}, P = {BAD_PENALTY}; "
    f"n, sum_stars, bad (levels 1-{levels.BAD_MAX}) over the person's first ratings of the "
    "month in that role, citizen and callback ones (assess_number 1, channel not 'default', "
    "Asia/Shanghai month), "
    "leaving out ratings whose appeal was upheld; m = the mean of the same level over the same "
    "ratings of the person's whole center; ties: more ratings first, then staff_no; each role "
    "ranked on its own (window staff first)"
)
RANKING_METHOD_ZH = (
    "排名按本人被评的对象等级：窗口人员按“窗口人员”评价等级，审批人员按“审批人员”评价等级；"
    "评价人未评该对象时，以总体满意度等级代替（“评了本岗位”为实际评了该对象的条数）。"
    f"得分 = (C×m + 星级合计) ÷ (C + n) − P × 差评数 ÷ n，其中 C = {PRIOR_WEIGHT}、"
    f"P = {BAD_PENALTY}；n、星级合计、差评数（{levels.BAD_MAX} 星及以下）取本人当月"
    "（北京时间）的首次评价（群众评价和回访评价；不含追评和系统默认评价），不含申诉成立的差评；"
    "m 为本人所在中心同类评价的平均等级，评价少的人向中心平均靠拢，避免一两条评价决定名次。"
    "同分时评价多者在前，再按工号。窗口人员与审批人员分别排名。"
)


def month_range(text: str | None) -> tuple[str, Any, Any]:
    """``YYYY-MM`` → (the month, its first instant, the next month's) as naive UTC."""
    found = _MONTH.fullmatch(text or "")
    year_ok = found and query_args.FIRST_YEAR <= int(found.group(1)) <= query_args.LAST_YEAR
    if not found or not year_ok or not 1 <= int(found.group(2)) <= 12:
        raise errors.InvalidQuery("Parameter month must be YYYY-MM.", parameter="month")
    year, month = int(found.group(1)), int(found.group(2))
    first = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return text or "", query_args.day_start_utc(first), query_args.day_start_utc(following)


def score(stars: int, n: int, bad: int, prior_mean: float) -> float:
    """:data:`RANKING_METHOD` for one person (``n`` > 0), rounded to 4 places."""
    smoothed = (PRIOR_WEIGHT * prior_mean + stars) / (PRIOR_WEIGHT + n)
    return round(smoothed - BAD_PENALTY * bad / n, 4)


def _days(start: Any, end: Any) -> list[peewee.Expression]:
    """The rollup days of the month ``[start, end)`` (Asia/Shanghai month starts in UTC)."""
    return [RollupRanking.day >= local_day(start), RollupRanking.day < local_day(end)]


def _role_counts(principal: Principal, role: str, start: Any, end: Any) -> dict:
    """Per person of ``role`` in scope: (ratings, stars, 差评, target actually rated) of their
    own target level (the overall where the target was not rated), from the ranking rollup
    (``models/rollup.py``: citizen and callback first ratings, no upheld appeal)."""
    n = peewee.fn.SUM(RollupRanking.n)
    per_staff = (
        RollupRanking.select(
            RollupRanking.staff,
            n,
            peewee.fn.SUM(RollupRanking.stars),
            peewee.fn.SUM(RollupRanking.bad),
            peewee.fn.SUM(RollupRanking.target_rated),
        )
        .where(RollupRanking.role == role, RollupRanking.staff != 0, *_days(start, end))
        .group_by(RollupRanking.staff)
        .having(n > 0)
        .tuples()
    )
    terms = scope.where_clauses(
        principal, "stats.read", RollupRanking.center, RollupRanking.department
    )
    if terms:
        per_staff = per_staff.where(*terms)
    return {row[0]: (row[1], row[2], row[3] or 0, row[4] or 0) for row in per_staff}


def _center_means(role: str, centers: set[int], start: Any, end: Any) -> dict[int, float]:
    """Per center: the mean of ``role``'s ranked level over the month's ratings (the prior)."""
    n = peewee.fn.SUM(RollupRanking.n)
    per_center = (
        RollupRanking.select(RollupRanking.center, n, peewee.fn.SUM(RollupRanking.stars))
        .where(
            RollupRanking.role == role,
            RollupRanking.center.in_(list(centers)),
            *_days(start, end),
        )
        .group_by(RollupRanking.center)
        .tuples()
    )
    return {center: stars / n for center, n, stars in per_center if n}


def _ranked_role(principal: Principal, role: str, start: Any, end: Any) -> list:
    counts = _role_counts(principal, role, start, end)
    if not counts:
        return []
    staff = {
        row[0]: row
        for row in Staff.select(
            Staff.id, Staff.staff_no, Staff.name, Staff.center, Staff.department
        )
        .where(Staff.id.in_(list(counts)))
        .tuples()
    }
    centers = {row[3] for row in staff.values()}
    means = _center_means(role, centers, start, end)
    names = _names(Center, centers) | _names(Department, {row[4] for row in staff.values()})
    items = []
    for staff_id, (n, stars, bad_n, target_rated) in counts.items():
        _, staff_no, name, center_id, department_id = staff[staff_id]
        prior = means.get(center_id, stars / n)
        items.append(
            {
                "role": role,
                "staff": {
                    "staff_no": staff_no,
                    "name": name,
                    "center": names[(Center, center_id)],
                    "department": names[(Department, department_id)],
                },
                "ratings": n,
                "target_rated": target_rated,
                "mean": round(stars / n, 4),
                "bad": bad_n,
                "center_mean": round(prior, 4),
                "score": score(stars, n, bad_n, prior),
            }
        )
    items.sort(key=lambda i: (-i["score"], -i["ratings"], i["staff"]["staff_no"]))
    return [{"rank": rank, **item} for rank, item in enumerate(items, 1)]


def staff_ranking(principal: Principal, month: str, start: Any, end: Any) -> dict[str, Any]:
    """``GET /admin/api/staff-ranking`` on the database thread: the window staff, then the
    approvers, in scope, each role ranked on its own (:data:`RANKING_METHOD`)."""
    items = []
    for role, _target in RANKED_ROLES:
        items += _ranked_role(principal, role, start, end)
    return {
        "month": month,
        "method": RANKING_METHOD,
        "method_zh": RANKING_METHOD_ZH,
        "prior_weight": PRIOR_WEIGHT,
        "bad_penalty": BAD_PENALTY,
        "items": items,
    }


def _names(model: type[peewee.Model], ids: set[int]) -> dict[tuple, dict[str, str]]:
    found = model.select(model.id, model.code, model.name).where(model.id.in_(list(ids)))
    return {(model, i): {"code": c, "name": n} for i, c, n in found.tuples()}


async def ranking(ctx: Context, principal: Principal, month: str | None) -> dict[str, Any]:
    """``GET /admin/api/staff-ranking``: on the admin reports' share of the database threads."""
    slots = db_share.report_slots(ctx)
    return await db_share.run_in_share(ctx, slots, staff_ranking, principal, *month_range(month))
