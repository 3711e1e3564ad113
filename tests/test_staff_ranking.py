"""The staff ranking of product.md rule 21: each person by their own target level (window
staff by ``target_window_staff``, approvers by ``target_approver``), the overall level only
where the citizen did not rate that target; the method explained in Chinese."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from models.case import Case
from models.catalog import Staff
from tests.support.admins import admin_token
from tests.support.public_seed import insert_case, insert_rating, rebuild_rollups, seed_catalog

RANKING = "/admin/api/staff-ranking"
MARCH = datetime(2026, 3, 5, 4, 0, 0)


def staff_id(staff_no: str | None) -> int | None:
    return Staff.get(Staff.staff_no == staff_no).id if staff_no else None


def rate(ctx, item: str, clerk: str, approver: str | None, overall: int, **targets) -> None:
    case_id = insert_case(ctx, item, MARCH - timedelta(hours=1))
    Case.update(window_staff=staff_id(clerk), approver=staff_id(approver)).where(
        Case.id == case_id
    ).execute()
    rebuild_rollups()  # the case's staff changed after it was counted
    insert_rating(case_id, overall, created_at=MARCH, **targets)


def seed(ctx) -> None:
    """Four March ratings of center A: the targets disagree with the overall level."""
    seed_catalog(ctx)
    sy, mz = "440103-SY-001", "440103-MZ-001"
    rate(ctx, sy, "HL001", "HL101", 5, target_window_staff=1, target_approver=5)
    rate(ctx, sy, "HL001", "HL101", 4, target_approver=2)
    rate(ctx, mz, "HL002", "HL102", 2, target_window_staff=5)
    rate(ctx, mz, "HL002", None, 3)


def expected(role, staff_no, levels, target_rated, center_levels):
    n, stars = len(levels), sum(levels)
    bad = sum(level <= 2 for level in levels)
    m = sum(center_levels) / len(center_levels)
    score = round((10 * m + stars) / (10 + n) - 0.5 * bad / n, 4)
    return role, staff_no, n, target_rated, round(stars / n, 4), bad, round(m, 4), score


@pytest.mark.asyncio
async def test_each_by_their_own_target(api, ctx):
    await ctx.db.run(seed, ctx)
    token = await admin_token(api, ctx)
    status, answer = await api("GET", f"{RANKING}?month=2026-03", token=token)
    assert status == 200, answer
    got = [
        (
            i["role"],
            i["staff"]["staff_no"],
            i["ratings"],
            i["target_rated"],
            i["mean"],
            i["bad"],
            i["center_mean"],
            i["score"],
        )
        for i in answer["items"]
    ]
    window = [1, 4, 5, 3]  # the window-staff level of each rating (overall where unrated)
    approver = [5, 2, 2, 3]
    assert got == [
        expected("window_staff", "HL002", [5, 3], 1, window),  # 3.375
        expected("window_staff", "HL001", [1, 4], 1, window),  # 2.875: the overall 5 is not his
        expected("approver", "HL101", [5, 2], 2, approver),
        expected("approver", "HL102", [2], 0, approver),
    ]
    assert [i["rank"] for i in answer["items"]] == [1, 2, 1, 2]
    assert [i["score"] for i in answer["items"]] == [3.375, 2.875, 2.8333, 2.4091]
    assert "target_window_staff" in answer["method"] and "target_approver" in answer["method"]
    assert "窗口人员" in answer["method_zh"] and "审批人员" in answer["method_zh"]
    assert "总体" in answer["method_zh"]
