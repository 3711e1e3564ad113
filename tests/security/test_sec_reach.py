"""Issue 12 items 1 and 2: an admin acting beyond their role and reach, and a made-up rating.

Reproductions from the red-team pass: a superadmin created with ``--center 440103-HL``
created an unbound superadmin, reset another center's admin's password, unbound itself,
revealed another center's rating, changed the WeChat configuration, created partner keys and
read every center's audit log. A handler recorded a 5-star "SMS callback" on a case finished
60 seconds before, with no contact, closing it to the citizen.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.base import utcnow
from models.case import Case
from tests.support.admins import PASSWORD, admin_token
from tests.support.cases import make_case, make_id_number
from tests.support.public_seed import OTHER_CENTER, insert_case, insert_rating, seed_catalog
from wxbackend.timefmt import iso

A = "/admin/api"
CENTER = "440103-HL"


def code(answer) -> str:
    return answer["error"]["code"]


@pytest.mark.asyncio
async def test_a_center_bound_superadmin_stays_in_its_center(api, ctx, partner):
    await ctx.db.run(seed_catalog, ctx)
    root = await admin_token(api, ctx)  # unbound
    other = await admin_token(api, ctx, "other_boss", "center_admin", OTHER_CENTER)
    await api("PUT", f"{A}/centers/{OTHER_CENTER}", {"name": "西村街中心"}, token=other)
    bound = await admin_token(api, ctx, "hl_super", "superadmin", CENTER)

    body = {"username": "evil", "password": PASSWORD, "role": "superadmin"}
    status, answer = await api("POST", f"{A}/admins", body, token=bound)
    assert (status, code(answer)) == (403, "beyond_reach")
    status, _ = await api(
        "PUT", f"{A}/admins/other_boss", {"password": "Hijack-123456"}, token=bound
    )
    assert status == 404, answer  # another center's account is not even confirmed
    status, _ = await api(
        "POST", f"{A}/login", {"username": "other_boss", "password": "Hijack-123456"}
    )
    assert status == 401
    for change in ({"center": None}, {"role": "viewer"}, {"disabled": True}):
        status, answer = await api("PUT", f"{A}/admins/hl_super", change, token=bound)
        assert (status, code(answer)) == (403, "beyond_reach"), change
    rating = await ctx.db.run(
        lambda: insert_rating(insert_case(ctx, "440104-XX-001"), 1, comment="差")
    )
    why = {"reason": "核对身份"}
    status, _ = await api("POST", f"{A}/evaluations/{rating}/reveal", why, token=bound)
    assert status == 404
    status, answer = await api("PUT", f"{A}/wechat-config", {"env_version": "trial"}, token=bound)
    assert (status, code(answer)) == (403, "beyond_reach")
    status, answer = await api("POST", f"{A}/partners", {"name": "x"}, token=bound)
    assert (status, code(answer)) == (403, "beyond_reach")
    status, page = await api("GET", f"{A}/audit-log", token=bound)
    assert status == 200 and "other_boss" not in {e["username"] for e in page["items"]}
    # the unbound superadmin still reaches everything
    status, _ = await api("PUT", f"{A}/wechat-config", {"env_version": "trial"}, token=root)
    assert status == 200


async def _case_no(ctx, completed_at) -> str:
    case_id, _ = await make_case(ctx, "黎明", make_id_number(909), completed_at=completed_at)
    return await ctx.db.run(lambda: Case.get_by_id(int(case_id)).case_no)


def callback(case_no: str, **extra) -> dict:
    return {
        "case_no": case_no,
        "channel": "sms",
        "overall": 5,
        "contact_at": iso(utcnow() - timedelta(minutes=30)),
        "reference": "SMS-7781",
        **extra,
    }


@pytest.mark.asyncio
async def test_no_made_up_callback_ratings(api, ctx, partner):
    root = await admin_token(api, ctx)
    fresh = await _case_no(ctx, utcnow() - timedelta(seconds=60))
    status, answer = await api("POST", f"{A}/callback-evaluations", callback(fresh), token=root)
    assert (status, code(answer)) == (422, "too_early")
    old = await _case_no(ctx, utcnow() - timedelta(hours=30))
    for missing in ("contact_at", "reference"):
        body = callback(old)
        del body[missing]
        status, answer = await api("POST", f"{A}/callback-evaluations", body, token=root)
        assert (status, code(answer)) == (400, "invalid_body"), missing
    for bad in (
        {"contact_at": "yesterday"},
        {"contact_at": iso(utcnow() + timedelta(days=1))},
        {"contact_at": iso(utcnow() - timedelta(days=3))},
        {"reference": " "},
    ):
        status, answer = await api(
            "POST", f"{A}/callback-evaluations", callback(old, **bad), token=root
        )
        assert (status, code(answer)) == (422, "invalid_field"), bad

    # the case's own window staff (HL001) cannot record it, even as an admin
    clerk = {
        "username": "hl001",
        "password": PASSWORD,
        "role": "handler",
        "department": "HL-LABOR",
        "staff_no": "HL001",
    }
    status, made = await api("POST", f"{A}/admins", clerk, token=root)
    assert status == 201 and made["staff_no"] == "HL001", made
    clerk_token = await admin_token(api, ctx, "hl001")
    status, answer = await api(
        "POST", f"{A}/callback-evaluations", callback(old), token=clerk_token
    )
    assert (status, code(answer)) == (403, "own_case")
    status, me = await api("GET", f"{A}/me", token=clerk_token)
    assert me["staff_no"] == "HL001"

    status, answer = await api("POST", f"{A}/callback-evaluations", callback(old), token=root)
    assert status == 201, answer
    listed = await api("GET", "/api/v1/public/evaluations?limit=5")
    shown = [i for i in listed[1]["items"] if i["id"] == answer["evaluation"]["id"]]
    assert shown and shown[0]["channel"] == "sms"  # public: a callback (短信回访)
