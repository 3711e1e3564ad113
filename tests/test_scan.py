"""Scanning a one-time QR code, the case summary, ``GET /cases/{id}`` and ``/me`` pending cases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.base import utcnow
from models.case import QrToken
from tests.support.cases import make_case, make_id_number
from tests.support.databases import both_databases
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.timefmt import parse_iso

SCAN = "/api/v1/scan"
ME = "/api/v1/me"
NAME = "黎明"


async def scan(api, token, scene):
    return await api("POST", SCAN, {"scene": scene}, token=token)


@pytest.mark.asyncio
async def test_scan_shows_the_case_and_an_unselected_form(api, sandbox, ctx):
    id_number = make_id_number(1)
    case_id, scene = await make_case(ctx, NAME, id_number)
    token, _ = await api.login(sandbox)  # viewing needs a login, not a verified identity
    status, answer = await scan(api, token, scene)
    assert status == 200, answer
    case = answer["case"]
    assert case["id"] == case_id
    assert case["item"] == {"code": "440103-SY-001", "name": "失业登记"}
    assert case["center"] == {"code": "440103-HL", "name": "广州市荔湾区海龙街政务服务中心"}
    assert case["department"] == {"code": "HL-LABOR", "name": "劳动和社会保障服务专窗"}
    assert case["window_staff"] == {
        "name": "黄玉华",
        "staff_no": "HL001",
        "photo_url": "https://example.org/staff/hl001.jpg",
    }
    assert case["approver"] == {"name": "何国文"}
    assert case["completed_at"].endswith("+08:00")
    assert answer["expires_at"].endswith("+08:00")
    form = answer["form"]
    assert [level["value"] for level in form["levels"]] == [5, 4, 3, 2, 1]
    assert form["levels"][0] == {"value": 5, "label": "非常满意"}
    assert form["levels"][-1] == {"value": 1, "label": "非常不满意"}
    assert [s["code"] for s in form["stages"]] == ["appointment", "handling", "delivery"]
    assert [t["code"] for t in form["targets"]] == ["window_staff", "approver", "department"]
    assert {"code": "not_told_at_once", "label": "未一次性告知所需材料"} in form["indicators"]
    text = str(answer)
    # nothing pre-selected (product.md rule 11), no applicant data
    for word in ("selected", "default", "checked", NAME, id_number):
        assert word not in text


@both_databases
@pytest.mark.asyncio
async def test_scan_of_a_case_without_staff(api, sandbox, ctx):
    _, scene = await make_case(
        ctx, NAME, make_id_number(2), window_code=None, window_staff_no=None, approver_staff_no=None
    )
    token, _ = await api.login(sandbox)
    status, answer = await scan(api, token, scene)
    assert status == 200, answer
    assert answer["case"]["window_staff"] is None and answer["case"]["approver"] is None


@both_databases
@pytest.mark.asyncio
async def test_scan_token_states(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    status, answer = await scan(api, token, "A" * 32)
    assert (status, answer["error"]["code"]) == (404, "token_not_found")
    status, answer = await scan(api, token, "not a scene!")
    assert (status, answer["error"]["code"]) == (404, "token_not_found")
    _, expired = await make_case(
        ctx, NAME, make_id_number(3), token_expires_at=utcnow() - timedelta(seconds=1)
    )
    _, revoked = await make_case(ctx, NAME, make_id_number(4), token_status="revoked")
    _, used = await make_case(ctx, NAME, make_id_number(5), token_status="used")
    for scene, code in (
        (expired, "token_expired"),
        (revoked, "token_revoked"),
        (used, "token_used"),
    ):
        status, answer = await scan(api, token, scene)
        assert (status, answer["error"]["code"]) == (410, code)


@pytest.mark.asyncio
async def test_scan_needs_a_login_and_a_known_body(api, sandbox, ctx):
    _, scene = await make_case(ctx, NAME, make_id_number(6))
    status, answer = await scan(api, None, scene)
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")
    token, _ = await api.login(sandbox)
    status, answer = await api("POST", SCAN, {"scene": scene, "x": 1}, token=token)
    assert (status, answer["error"]["code"]) == (400, "invalid_body")


@pytest.mark.asyncio
async def test_get_case_is_for_its_applicant_only(api, sandbox, ctx):
    mine, other = make_id_number(7), make_id_number(8)
    case_id, _ = await make_case(ctx, NAME, mine)
    path = f"/api/v1/cases/{case_id}"
    unverified, _ = await api.login(sandbox)
    status, answer = await api("GET", path, token=unverified)
    assert (status, answer["error"]["code"]) == (403, "identity_required")
    owner = await verified_user(api, sandbox, NAME, mine)
    status, answer = await api("GET", path, token=owner)
    assert status == 200, answer
    assert answer["case"]["id"] == case_id and answer["rated"] is False
    assert answer["form"]["levels"] and mine not in str(answer)
    stranger = await verified_user(api, sandbox, "张三", other)
    status, answer = await api("GET", path, token=stranger)
    assert (status, answer["error"]["code"]) == (403, "not_applicant")
    for missing in ("999999", "abc"):
        status, answer = await api("GET", f"/api/v1/cases/{missing}", token=owner)
        assert status == 404, answer
    assert (await api("GET", path))[0] == 401


@both_databases
@pytest.mark.asyncio
async def test_me_lists_pending_cases_until_rated(api, sandbox, ctx):
    id_number = make_id_number(9)
    recent_id, _ = await make_case(ctx, NAME, id_number)
    older_id, _ = await make_case(
        ctx, NAME, id_number, completed_at=utcnow() - timedelta(days=2), item_code="440103-JY-001"
    )
    # past the rating window (default rating territory): not pending
    await make_case(ctx, NAME, id_number, completed_at=utcnow() - timedelta(days=8))
    await make_case(ctx, "张三", make_id_number(10))  # someone else's
    token = await verified_user(api, sandbox, NAME, id_number)
    status, me = await api("GET", ME, token=token)
    assert status == 200
    pending = me["pending_cases"]
    assert [p["case_id"] for p in pending] == [recent_id, older_id]
    first = pending[0]
    assert set(first) == {"case_id", "item", "center", "completed_at", "rate_until"}
    assert first["item"] == {"code": "440103-SY-001", "name": "失业登记"}
    assert first["center"]["code"] == "440103-HL"
    assert "scene" not in str(me)
    status, answer = await rate(api, token, case_id=recent_id, overall=4)
    assert status == 201, answer
    assert answer["evaluation"]["channel"] == "miniprogram"
    status, me = await api("GET", ME, token=token)
    assert [p["case_id"] for p in me["pending_cases"]] == [older_id]
    status, answer = await rate(api, token, case_id=older_id, overall=5)
    assert status == 201, answer
    assert (await api("GET", ME, token=token))[1]["pending_cases"] == []
    # rating by case_id closed the case to its QR token
    tokens = await ctx.db.run(lambda: [t.status for t in QrToken.select()])
    assert tokens.count("active") == 2  # the old case's and the stranger's, untouched


@pytest.mark.asyncio
async def test_pending_rate_until_follows_the_setting(api, sandbox, ctx):
    id_number = make_id_number(11)
    await make_case(ctx, NAME, id_number)
    token = await verified_user(api, sandbox, NAME, id_number)
    _, me = await api("GET", ME, token=token)
    (pending,) = me["pending_cases"]
    window = parse_iso(pending["rate_until"]) - parse_iso(pending["completed_at"])
    assert window == timedelta(days=ctx.settings.rating.default_after_days)
