"""Catalogue CRUD, partner keys, admin accounts and the audit log of the admin API, over HTTP.

The role × endpoint matrix is in tests/test_admin_roles.py; this file checks behaviour:
validation, scope, references, audit entries, secrets and ID numbers kept out of answers.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import pytest_asyncio

from models.access import Admin, Partner
from models.audit import AuditEntry
from models.catalog import Staff, Window
from tests.support.admins import PASSWORD, admin_token
from wxbackend.clients.partner import resident_id
from wxbackend.security import normalize_id_number
from wxbackend.services.catalogue.importer import import_catalog

A = "/admin/api"
CENTER_A = "440103-HL"
CENTER_B = "440104-XY"
SECOND_CENTER = {
    "centers": [{"code": CENTER_B, "name": "越秀某街政务服务中心", "area_code": "440104"}],
    "departments": [{"code": "XY-GEN", "name": "综合受理", "center": CENTER_B}],
    "items": [{"code": "440104-ZH-001", "name": "居住证办理", "department": "XY-GEN"}],
    "staff": [
        {
            "staff_no": "XY001",
            "name": "周小红",
            "role": "window",
            "department": "XY-GEN",
            "center": CENTER_B,
        }
    ],
    "windows": [{"code": "XY-W01", "name": "1号窗口", "center": CENTER_B, "staff_no": "XY001"}],
}
TRUST_PROXY = {"server": {"trusted_proxies": ["127.0.0.1"]}}
FROM = {"X-Forwarded-For": "203.0.113.7"}


def code(answer) -> str:
    return answer["error"]["code"]


@pytest_asyncio.fixture
async def seeded(partner, ctx):
    """The example catalogue (center A, via the partner fixture) plus a center B."""
    await ctx.db.run(import_catalog, SECOND_CENTER, ctx.hasher)
    return partner


@pytest_asyncio.fixture
async def root(api, ctx, seeded):
    return await admin_token(api, ctx)


async def audit_entries(ctx, action: str | None = None) -> list[AuditEntry]:
    def load():
        query = AuditEntry.select().order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(query)

    return await ctx.db.run(load)


# ---- centers ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [TRUST_PROXY])
async def test_center_crud_and_audit(api, ctx, root):
    body = {"code": "440105-NEW", "name": "新中心", "area_code": "440105"}
    status, created = await api("POST", f"{A}/centers", body, token=root, headers=FROM)
    assert status == 201, created
    assert created["code"] == "440105-NEW" and created["updated_at"].endswith("+08:00")
    assert (await api("POST", f"{A}/centers", body, token=root))[0] == 409

    status, page = await api("GET", f"{A}/centers", token=root)
    assert status == 200 and {c["code"] for c in page["items"]} == {
        CENTER_A,
        CENTER_B,
        "440105-NEW",
    }
    assert page["next_cursor"] is None
    status, page = await api("GET", f"{A}/centers?limit=2", token=root)
    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["code"]
    status, rest = await api("GET", f"{A}/centers?limit=2&cursor={page['next_cursor']}", token=root)
    assert [c["code"] for c in rest["items"]] == ["440105-NEW"] and rest["next_cursor"] is None

    status, changed = await api(
        "PUT", f"{A}/centers/440105-NEW", {"name": "新中心二"}, token=root, headers=FROM
    )
    assert status == 200 and changed["name"] == "新中心二" and changed["area_code"] == "440105"
    assert (await api("GET", f"{A}/centers/440105-NEW", token=root))[1]["name"] == "新中心二"
    status, _ = await api("DELETE", f"{A}/centers/440105-NEW", token=root, headers=FROM)
    assert status == 204
    assert (await api("GET", f"{A}/centers/440105-NEW", token=root))[0] == 404

    entries = await audit_entries(ctx)
    assert [e.action for e in entries] == ["center.create", "center.update", "center.delete"]
    assert all(e.username == "root" and e.client_ip == "203.0.113.7" for e in entries)
    assert all(e.target_type == "center" and e.target_id == "440105-NEW" for e in entries)
    assert json.loads(entries[1].detail) == {"changed": {"name": "新中心二"}}


@pytest.mark.asyncio
async def test_center_validation(api, root):
    post = f"{A}/centers"
    status, answer = await api("POST", post, {"code": "X1", "name": "n", "area": "1"}, token=root)
    assert status == 400 and code(answer) == "invalid_body"
    status, answer = await api("POST", post, {"code": "X1", "name": "n"}, token=root)
    assert status == 400 and code(answer) == "invalid_body"
    status, answer = await api(
        "POST", post, {"code": "X1", "name": "n", "area_code": 440105}, token=root
    )
    assert status == 400 and code(answer) == "invalid_body"
    status, answer = await api(
        "POST", post, {"code": "X1", "name": "n", "area_code": "44A"}, token=root
    )
    assert status == 422 and code(answer) == "invalid_field"
    assert answer["error"]["field"] == "area_code"
    status, answer = await api(
        "POST", post, {"code": "bad code", "name": "n", "area_code": "440105"}, token=root
    )
    assert status == 422 and answer["error"]["field"] == "code"
    status, answer = await api("PUT", f"{A}/centers/{CENTER_A}", {"code": "OTHER"}, token=root)
    assert status == 422 and answer["error"]["field"] == "code"
    status, answer = await api("PUT", f"{A}/centers/NOPE", {"name": "x"}, token=root)
    assert status == 404 and code(answer) == "not_found"
    status, answer = await api("DELETE", f"{A}/centers/{CENTER_A}", token=root)
    assert status == 409 and code(answer) == "in_use"
    assert "departments" in answer["error"]["used_by"]


# ---- departments, items: scope ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_department_crud_scoped_to_center_admin(api, ctx, root):
    boss_a = await admin_token(api, ctx, "boss_a", "center_admin", CENTER_A)
    body = {"code": "HL-NEW", "name": "新专窗", "center": CENTER_A}
    status, created = await api("POST", f"{A}/departments", body, token=boss_a)
    assert status == 201 and created["credit_code"] is None and created["center"] == CENTER_A

    # center B is out of scope: naming it is 403 beyond_reach, its rows are invisible (404)
    status, answer = await api(
        "POST", f"{A}/departments", {**body, "code": "XY-NEW", "center": CENTER_B}, token=boss_a
    )
    assert status == 403 and code(answer) == "beyond_reach"  # api.md: beyond one's reach
    assert (await api("GET", f"{A}/departments/XY-GEN", token=boss_a))[0] == 404
    assert (await api("PUT", f"{A}/departments/XY-GEN", {"name": "x"}, token=boss_a))[0] == 404
    assert (await api("DELETE", f"{A}/departments/XY-GEN", token=boss_a))[0] == 404
    status, page = await api("GET", f"{A}/departments", token=boss_a)
    assert {d["center"] for d in page["items"]} == {CENTER_A}
    status, page = await api("GET", f"{A}/departments?center={CENTER_B}", token=boss_a)
    assert page["items"] == []
    status, page = await api("GET", f"{A}/departments?center={CENTER_B}", token=root)
    assert [d["code"] for d in page["items"]] == ["XY-GEN"]
    # moving a department into center B is a write there: 403
    status, _ = await api("PUT", f"{A}/departments/HL-NEW", {"center": CENTER_B}, token=boss_a)
    assert status == 403

    status, answer = await api(
        "PUT", f"{A}/departments/HL-NEW", {"credit_code": "91110000600037341X"}, token=boss_a
    )
    assert status == 422 and answer["error"]["field"] == "credit_code"
    status, changed = await api(
        "PUT", f"{A}/departments/HL-NEW", {"credit_code": "91110000600037341L"}, token=boss_a
    )
    assert status == 200 and changed["credit_code"] == "91110000600037341L"
    status, answer = await api(
        "POST", f"{A}/departments", {**body, "code": "HL-X", "center": "NOPE"}, token=boss_a
    )
    assert status == 422 and answer["error"]["field"] == "center"
    assert (await api("POST", f"{A}/departments", body, token=boss_a))[1]["error"][
        "code"
    ] == "exists"

    # a department with staff cannot move, and one with items cannot go
    status, answer = await api("PUT", f"{A}/departments/HL-LABOR", {"center": CENTER_B}, token=root)
    assert status == 409 and code(answer) == "in_use"
    status, answer = await api("DELETE", f"{A}/departments/HL-LABOR", token=boss_a)
    assert status == 409 and set(answer["error"]["used_by"]) >= {"items", "staff"}
    assert (await api("DELETE", f"{A}/departments/HL-NEW", token=boss_a))[0] == 204

    actions = [(e.action, e.username) for e in await audit_entries(ctx)]
    assert actions == [
        ("department.create", "boss_a"),
        ("department.update", "boss_a"),
        ("department.delete", "boss_a"),
    ]


@pytest.mark.asyncio
async def test_items_and_references(api, ctx, root, seeded):
    boss_a = await admin_token(api, ctx, "boss_a", "center_admin", CENTER_A)
    body = {"code": "440103-NEW-001", "name": "新事项", "department": "HL-LABOR"}
    status, item = await api("POST", f"{A}/items", body, token=boss_a)
    assert status == 201 and item["center"] == CENTER_A and item["department"] == "HL-LABOR"
    status, _ = await api(
        "PUT", f"{A}/items/440103-NEW-001", {"department": "XY-GEN"}, token=boss_a
    )
    assert status == 403
    status, answer = await api(
        "PUT", f"{A}/items/440103-NEW-001", {"department": "NOPE"}, token=boss_a
    )
    assert status == 422 and answer["error"]["field"] == "department"
    status, page = await api("GET", f"{A}/items?department=HL-LABOR", token=boss_a)
    assert "440103-NEW-001" in {i["code"] for i in page["items"]}
    assert {i["department"] for i in page["items"]} == {"HL-LABOR"}
    assert (await api("GET", f"{A}/items/440104-ZH-001", token=boss_a))[0] == 404

    # rows named by a case cannot be deleted
    await seeded.new_case()
    status, answer = await api("DELETE", f"{A}/items/440103-SY-001", token=root)
    assert status == 409 and "cases" in answer["error"]["used_by"]
    status, answer = await api("DELETE", f"{A}/windows/HL-W01", token=root)
    assert status == 409 and answer["error"]["used_by"] == ["cases"]
    assert (await api("DELETE", f"{A}/items/440103-NEW-001", token=boss_a))[0] == 204


# ---- staff: ID number kept as a keyed hash only ------------------------------------------------


@pytest.mark.asyncio
async def test_staff_id_number_is_only_a_keyed_hash(api, ctx, root, caplog):
    caplog.set_level(logging.DEBUG)
    number = resident_id(seq=321)
    answers: list[str] = []

    async def call(*args, **kwargs):
        status, answer = await api(*args, token=root, **kwargs)
        answers.append(json.dumps(answer, ensure_ascii=False))
        return status, answer

    body = {
        "staff_no": "HL201",
        "name": "林晓",
        "role": "approver",
        "department": "HL-CIVIL",
        "center": CENTER_A,
        "photo_url": "https://example.org/staff/hl201.jpg",
        "id_number": number.lower(),
    }
    status, staff = await call("POST", f"{A}/staff", body)
    assert status == 201, staff
    assert staff["has_id_number"] is True and staff["active"] is True
    assert "id_number" not in staff and "id_hash" not in staff
    row = await ctx.db.run(Staff.get, Staff.staff_no == "HL201")
    assert row.id_hash == ctx.hasher.hash(normalize_id_number(number), "id_number")

    bad = number[:-1] + ("0" if number[-1] != "0" else "1")
    status, answer = await call("PUT", f"{A}/staff/HL201", {"id_number": bad})
    assert status == 422 and answer["error"]["field"] == "id_number"
    assert bad not in answer["error"]["message"]
    status, answer = await call("GET", f"{A}/staff/HL201")
    assert answer["has_id_number"] is True
    status, answer = await call("PUT", f"{A}/staff/HL201", {"name": "林晓明"})
    assert answer["has_id_number"] is True  # left out: kept
    status, answer = await call("PUT", f"{A}/staff/HL201", {"id_number": None})
    assert status == 200 and answer["has_id_number"] is False
    assert (await ctx.db.run(Staff.get, Staff.staff_no == "HL201")).id_hash is None
    status, answer = await call("PUT", f"{A}/staff/HL201", {"id_number": number})
    assert answer["has_id_number"] is True
    await call("GET", f"{A}/staff?center={CENTER_A}")

    details = [e.detail for e in await audit_entries(ctx)]
    assert json.loads(details[0])["values"]["id_number"] == "set"
    assert any('"id_number": "cleared"' in d for d in details)
    text = "\n".join(answers + details + [caplog.text] + [repr(r.__dict__) for r in caplog.records])
    for form in (number, number.lower(), bad, row.id_hash):
        assert form not in text


@pytest.mark.asyncio
async def test_staff_validation_and_deactivation(api, ctx, root):
    base = {
        "staff_no": "HL202",
        "name": "王五",
        "role": "window",
        "department": "HL-LABOR",
        "center": CENTER_A,
    }
    for field, value in (
        ("role", "boss"),
        ("photo_url", "ftp://example.org/x.jpg"),
        ("department", "XY-GEN"),
        ("name", "  "),
    ):
        status, answer = await api("POST", f"{A}/staff", {**base, field: value}, token=root)
        assert status == 422 and answer["error"]["field"] == field, (field, answer)
    status, answer = await api("POST", f"{A}/staff", {**base, "extra": 1}, token=root)
    assert status == 400 and code(answer) == "invalid_body"
    assert (await api("POST", f"{A}/staff", base, token=root))[0] == 201
    status, answer = await api("POST", f"{A}/staff", base, token=root)
    assert status == 409 and code(answer) == "exists"

    # a window can be staffed only by active staff of its own center
    status, answer = await api("PUT", f"{A}/windows/HL-W01", {"staff_no": "XY001"}, token=root)
    assert status == 422 and answer["error"]["field"] == "staff_no"
    status, window = await api("PUT", f"{A}/windows/HL-W01", {"staff_no": "HL202"}, token=root)
    assert status == 200 and window["staff_no"] == "HL202"
    # staff on a window of center A cannot move to center B
    status, answer = await api(
        "PUT", f"{A}/staff/HL202", {"center": CENTER_B, "department": "XY-GEN"}, token=root
    )
    assert status == 409 and code(answer) == "in_use"

    # DELETE deactivates (cases name staff) and frees their windows
    assert (await api("DELETE", f"{A}/staff/HL202", token=root))[0] == 204
    status, staff = await api("GET", f"{A}/staff/HL202", token=root)
    assert status == 200 and staff["active"] is False
    window = await ctx.db.run(Window.get, Window.code == "HL-W01")
    assert window.staff_id is None
    status, page = await api("GET", f"{A}/staff?active=false", token=root)
    assert [s["staff_no"] for s in page["items"]] == ["HL202"]
    status, answer = await api("PUT", f"{A}/windows/HL-W01", {"staff_no": "HL202"}, token=root)
    assert status == 422 and answer["error"]["field"] == "staff_no"
    status, staff = await api("PUT", f"{A}/staff/HL202", {"active": True}, token=root)
    assert status == 200 and staff["active"] is True
    entry = (await audit_entries(ctx, "staff.deactivate"))[0]
    assert json.loads(entry.detail) == {"windows_cleared": ["HL-W01"]}
    assert (await api("GET", f"{A}/staff?active=maybe", token=root))[0] == 400


@pytest.mark.asyncio
async def test_window_crud(api, ctx, root):
    body = {"code": "HL-W09", "name": "9号窗口", "center": CENTER_A}
    status, window = await api("POST", f"{A}/windows", body, token=root)
    assert status == 201 and window["staff_no"] is None
    status, window = await api("PUT", f"{A}/windows/HL-W09", {"staff_no": "HL003"}, token=root)
    assert window["staff_no"] == "HL003"
    status, window = await api("PUT", f"{A}/windows/HL-W09", {"staff_no": None}, token=root)
    assert window["staff_no"] is None
    assert (await api("DELETE", f"{A}/windows/HL-W09", token=root))[0] == 204
    assert (await api("GET", f"{A}/windows/HL-W09", token=root))[0] == 404


@pytest.mark.asyncio
async def test_handler_reads_only_their_center(api, ctx, root):
    from wxbackend.db import database
    from wxbackend.services.admin.accounts import create_admin

    def make():
        with database.atomic():
            create_admin("clerk_a", PASSWORD, "handler", None, "HL-LABOR")

    await ctx.db.run(make)
    status, answer = await api("POST", f"{A}/login", {"username": "clerk_a", "password": PASSWORD})
    clerk = answer["token"]
    status, page = await api("GET", f"{A}/staff", token=clerk)
    assert status == 200 and {s["center"] for s in page["items"]} == {CENTER_A}
    assert (await api("GET", f"{A}/staff/XY001", token=clerk))[0] == 404
    assert (await api("PUT", f"{A}/staff/HL001", {"name": "x"}, token=clerk))[0] == 403


# ---- partner keys ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_partner_key_secret_once_and_revocation(api, ctx, root):
    from wxbackend.clients.partner import PartnerClient

    status, key = await api("POST", f"{A}/partners", {"name": "  窗口系统二 "}, token=root)
    assert status == 201 and key["key_id"].startswith("pk_") and len(key["secret"]) >= 32
    assert key["name"] == "窗口系统二" and key["revoked_at"] is None
    stored = await ctx.db.run(Partner.get, Partner.key_id == key["key_id"])
    assert key["secret"] not in stored.secret_enc

    status, page = await api("GET", f"{A}/partners", token=root)
    assert key["key_id"] in {p["key_id"] for p in page["items"]}
    assert key["secret"] not in json.dumps(page) and "secret" not in page["items"][0]

    client = PartnerClient(api, key["key_id"], key["secret"])
    status, answer = await client.report_case()
    assert status == 201, answer

    status, revoked = await api("POST", f"{A}/partners/{key['key_id']}/revoke", token=root)
    assert status == 200 and revoked["revoked_at"] is not None
    status, answer = await client.report_case()
    assert status == 401 and code(answer) == "bad_signature"
    again = await api("POST", f"{A}/partners/{key['key_id']}/revoke", token=root)
    assert again[0] == 200 and again[1]["revoked_at"] == revoked["revoked_at"]
    assert (await api("POST", f"{A}/partners/pk_nope/revoke", token=root))[0] == 404
    status, answer = await api("POST", f"{A}/partners", {"name": ""}, token=root)
    assert status == 422 and answer["error"]["field"] == "name"

    entries = await audit_entries(ctx)
    assert [e.action for e in entries] == ["partner.create", "partner.revoke"]
    assert all(key["secret"] not in e.detail for e in entries)


# ---- administrators ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_admin_accounts(api, ctx, root):
    post = f"{A}/admins"
    new = {"username": "boss_b", "password": PASSWORD, "role": "center_admin"}
    status, answer = await api("POST", post, new, token=root)
    assert status == 422 and answer["error"]["field"] == "center"
    status, answer = await api("POST", post, {**new, "role": "handler"}, token=root)
    assert status == 422 and answer["error"]["field"] == "department"
    status, answer = await api(
        "POST",
        post,
        {**new, "role": "handler", "center": CENTER_B, "department": "HL-LABOR"},
        token=root,
    )
    assert status == 422 and answer["error"]["field"] == "department"
    status, answer = await api(
        "POST", post, {**new, "center": CENTER_B, "department": "XY-GEN"}, token=root
    )
    assert status == 422 and answer["error"]["field"] == "department"
    new_b = {**new, "center": CENTER_B}
    status, answer = await api("POST", post, {**new_b, "password": "short"}, token=root)
    assert status == 422 and answer["error"]["field"] == "password"
    status, answer = await api("POST", post, {**new_b, "role": "king"}, token=root)
    assert status == 422 and answer["error"]["field"] == "role"

    status, boss = await api("POST", post, {**new, "center": CENTER_B}, token=root)
    assert status == 201 and boss == {
        "username": "boss_b",
        "role": "center_admin",
        "center": CENTER_B,
        "department": None,
        "staff_no": None,
        "disabled": False,
        "created_at": boss["created_at"],
    }
    status, answer = await api("POST", post, {**new, "center": CENTER_B}, token=root)
    assert status == 409 and code(answer) == "exists"
    status, clerk = await api(
        "POST",
        post,
        {"username": "clerk_b", "password": PASSWORD, "role": "handler", "department": "XY-GEN"},
        token=root,
    )
    assert status == 201 and clerk["center"] == CENTER_B and clerk["department"] == "XY-GEN"

    status, page = await api("GET", post, token=root)
    assert {a["username"] for a in page["items"]} == {"root", "boss_b", "clerk_b"}
    assert "password" not in json.dumps(page) and "scrypt" not in json.dumps(page)

    # a change of role ends the admin's sessions at once
    boss_token = await admin_token(api, ctx, "boss_b")
    assert (await api("GET", f"{A}/me", token=boss_token))[0] == 200
    status, changed = await api("PUT", f"{post}/boss_b", {"role": "viewer"}, token=root)
    assert status == 200 and changed["role"] == "viewer" and changed["center"] == CENTER_B
    assert (await api("GET", f"{A}/me", token=boss_token))[0] == 401
    # leaving the handler role drops the department; becoming one needs it
    status, changed = await api("PUT", f"{post}/clerk_b", {"role": "viewer"}, token=root)
    assert changed["department"] is None and changed["center"] == CENTER_B
    status, answer = await api("PUT", f"{post}/clerk_b", {"role": "handler"}, token=root)
    assert status == 422 and answer["error"]["field"] == "department"
    status, changed = await api(
        "PUT", f"{post}/clerk_b", {"role": "handler", "department": "XY-GEN"}, token=root
    )
    assert status == 200 and changed["department"] == "XY-GEN"

    # a new password ends sessions too; the new one works
    boss_token = await admin_token(api, ctx, "boss_b")
    new_password = "another-long-password"
    status, _ = await api("PUT", f"{post}/boss_b", {"password": new_password}, token=root)
    assert status == 200
    assert (await api("GET", f"{A}/me", token=boss_token))[0] == 401
    login = {"username": "boss_b", "password": new_password}
    assert (await api("POST", f"{A}/login", login))[0] == 200

    # DELETE disables: sessions end, login fails, the row stays
    boss_token = (await api("POST", f"{A}/login", login))[1]["token"]
    assert (await api("DELETE", f"{post}/boss_b", token=root))[0] == 204
    assert (await api("GET", f"{A}/me", token=boss_token))[0] == 401
    assert (await api("POST", f"{A}/login", login))[0] == 401
    status, answer = await api("GET", f"{post}/boss_b", token=root)
    assert status == 200 and answer["disabled"] is True
    assert (await api("PUT", f"{post}/nobody", {"role": "viewer"}, token=root))[0] == 404

    entries = await audit_entries(ctx)
    assert [e.action for e in entries] == [
        "admin.create",
        "admin.create",
        "admin.update",
        "admin.update",
        "admin.update",
        "admin.update",
        "admin.disable",
    ]
    assert json.loads(entries[5].detail) == {"changed": ["password"]}
    assert all(new_password not in e.detail and PASSWORD not in e.detail for e in entries)


@pytest.mark.asyncio
async def test_last_superadmin_cannot_be_disabled_or_demoted(api, ctx, root):
    # nobody changes their own role or reach, nor disables themselves (product rule 20)
    for change in ({"role": "viewer"}, {"disabled": True}, {"center": CENTER_A}):
        status, answer = await api("PUT", f"{A}/admins/root", change, token=root)
        assert status == 403 and code(answer) == "beyond_reach"
    status, answer = await api("DELETE", f"{A}/admins/root", token=root)
    assert status == 403 and code(answer) == "beyond_reach"
    assert (await api("GET", f"{A}/me", token=root))[0] == 200  # nothing changed

    second = {"username": "root2", "password": PASSWORD, "role": "superadmin"}
    assert (await api("POST", f"{A}/admins", second, token=root))[0] == 201
    root2 = await admin_token(api, ctx, "root2")
    status, answer = await api("PUT", f"{A}/admins/root", {"role": "viewer"}, token=root2)
    assert status == 200 and answer["role"] == "viewer"
    assert (await api("GET", f"{A}/me", token=root))[0] == 401  # demoted: sessions ended
    admins = await ctx.db.run(lambda: {a.username: a.role for a in Admin.select()})
    assert admins == {"root": "viewer", "root2": "superadmin"}


@pytest.mark.asyncio
async def test_two_superadmins_disabling_each_other_leave_one(api, ctx, root):
    """The last unrestricted superadmin stays even in a race: each disables the other at
    once; one wins, the other gets 409 last_superadmin (or 401, its session ended)."""
    second = {"username": "root2", "password": PASSWORD, "role": "superadmin"}
    assert (await api("POST", f"{A}/admins", second, token=root))[0] == 201
    root2 = await admin_token(api, ctx, "root2")
    answers = await asyncio.gather(
        api("DELETE", f"{A}/admins/root2", token=root),
        api("DELETE", f"{A}/admins/root", token=root2),
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses in ([204, 401], [204, 409]), answers
    left = await ctx.db.run(
        lambda: [a.username for a in Admin.select().where(Admin.disabled == False)]  # noqa: E712
    )
    assert len(left) == 1


# ---- audit log ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [TRUST_PROXY])
async def test_audit_log_query(api, ctx, root):
    for n in range(5):
        body = {"code": f"AUD-{n}", "name": f"中心{n}", "area_code": "440199"}
        assert (await api("POST", f"{A}/centers", body, token=root, headers=FROM))[0] == 201
    await api("PUT", f"{A}/centers/AUD-0", {"name": "改名"}, token=root, headers=FROM)

    status, page = await api("GET", f"{A}/audit-log?limit=4", token=root)
    assert status == 200 and len(page["items"]) == 4 and page["next_cursor"]
    first = page["items"][0]
    assert first["action"] == "center.update" and first["username"] == "root"
    assert first["client_ip"] == "203.0.113.7" and first["target_id"] == "AUD-0"
    assert first["detail"] == {"changed": {"name": "改名"}}
    assert first["at"].endswith("+08:00")
    status, rest = await api(
        "GET", f"{A}/audit-log?limit=4&cursor={page['next_cursor']}", token=root
    )
    ids = [int(e["id"]) for e in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6 and rest["next_cursor"] is None

    status, page = await api("GET", f"{A}/audit-log?action=center.create", token=root)
    assert [e["target_id"] for e in page["items"]] == [f"AUD-{n}" for n in (4, 3, 2, 1, 0)]
    status, page = await api("GET", f"{A}/audit-log?action=center.", token=root)
    assert len(page["items"]) == 6
    status, page = await api("GET", f"{A}/audit-log?username=nobody", token=root)
    assert page["items"] == []
    status, page = await api(
        "GET", f"{A}/audit-log?from=2000-01-01T00:00:00%2B08:00&to=2000-01-02T00:00:00Z", token=root
    )
    assert page["items"] == []
    status, page = await api("GET", f"{A}/audit-log?from=2000-01-01T00:00:00Z", token=root)
    assert len(page["items"]) == 6
    for bad in ("from=yesterday", "from=2024-01-01T00:00:00", "limit=0", "cursor=abc"):
        status, answer = await api("GET", f"{A}/audit-log?{bad}", token=root)
        assert status == 400 and code(answer) == "invalid_query", bad

    auditor = await admin_token(api, ctx, "auditor", "viewer")
    assert (await api("GET", f"{A}/audit-log", token=auditor))[0] == 200
    local = await admin_token(api, ctx, "local_viewer", "viewer", CENTER_A)
    assert (await api("GET", f"{A}/audit-log", token=local))[0] == 403
