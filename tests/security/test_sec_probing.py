"""Issue 12 item 16: a center_admin creating a ``staff_no`` of another center got 409 with the
row named, confirming what lies beyond its reach. Now naming another center is 403
``beyond_reach`` before any key is looked at, and a taken key gets the same answer whether
its row is the caller's or another center's."""

from __future__ import annotations

import pytest

from tests.support.admins import admin_token
from tests.support.public_seed import OTHER_CENTER, seed_catalog

A = "/admin/api"


def staff(staff_no: str, center: str, department: str) -> dict:
    return {
        "staff_no": staff_no,
        "name": "林晓",
        "role": "window",
        "department": department,
        "center": center,
    }


@pytest.mark.asyncio
async def test_taken_codes_do_not_say_where(api, ctx):
    await ctx.db.run(seed_catalog, ctx)
    boss = await admin_token(api, ctx, "hl_boss", "center_admin", "440103-HL")
    # XX001 is a clerk of the other center, HL001 one of the caller's own
    foreign = await api("POST", f"{A}/staff", staff("XX001", "440103-HL", "HL-LABOR"), token=boss)
    own = await api("POST", f"{A}/staff", staff("HL001", "440103-HL", "HL-LABOR"), token=boss)
    assert foreign[0] == own[0] == 409
    assert (
        foreign[1]
        == own[1]
        == {
            "error": {
                "code": "exists",
                "message": "This staff_no is taken: choose another (codes are unique everywhere).",
                "field": "staff_no",
                "message_zh": "已存在此代码的记录。",
            }
        }
    )
    # naming the other center is refused before any code is looked at
    for code in ("XX001", "NEW-77"):
        status, answer = await api(
            "POST", f"{A}/staff", staff(code, OTHER_CENTER, "XX-GENERAL"), token=boss
        )
        assert (status, answer["error"]["code"]) == (403, "beyond_reach"), code
