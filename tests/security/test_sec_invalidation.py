"""Issue 12 item 3: a handler voided a 差评 alone (``verify {valid:false}`` → ``invalid``,
dropped from the figures). Product rule 19: two people — the handler proposes, a center_admin
or superadmin within reach who did not propose it confirms; until then the ticket stays open,
its deadlines run and the 差评 counts."""

from __future__ import annotations

import pytest

from tests.support.admins import admin_token
from tests.support.tickets import seed_rating, staff_token

T = "/admin/api/tickets"


@pytest.mark.asyncio
async def test_a_handler_alone_cannot_void_a_bad_rating(api, ctx, sandbox):
    seeded = await seed_rating(ctx)
    handler = await staff_token(api, ctx, "labor_clerk", "handler", None, "HL-LABOR")
    boss = await staff_token(api, ctx, "hl_admin", "center_admin", "440103-HL")
    tid = seeded.ticket_id
    _, before = await api("GET", "/api/v1/public/stats")
    status, view = await api(
        "POST", f"{T}/{tid}/verify", {"valid": False, "note": "恶意差评"}, token=handler
    )
    assert status == 200 and view["status"] == "open" and view["pending_invalidation"]
    _, after = await api("GET", "/api/v1/public/stats")
    assert after["by_level"] == before["by_level"]  # still counted
    decide = f"{T}/{tid}/invalidation/decide"
    assert (await api("POST", decide, {"confirm": True}, token=handler))[0] == 403
    # a center_admin who proposes cannot confirm their own proposal either
    status, view = await api("POST", decide, {"confirm": False}, token=boss)
    assert status == 200 and view["pending_invalidation"] is None and view["status"] == "open"
    status, _ = await api("POST", f"{T}/{tid}/verify", {"valid": False, "note": "再议"}, token=boss)
    assert status == 200
    status, answer = await api("POST", decide, {"confirm": True}, token=boss)
    assert status == 403, answer
    root = await admin_token(api, ctx)
    status, view = await api("POST", decide, {"confirm": True, "note": "核实无效"}, token=root)
    assert status == 200 and view["status"] == "invalid"
