"""Admin login: tokens, lockout per (account, address), roles, console cookie + XSRF, unlock."""

import pytest

from models.catalog import Center, Department
from tests.support.admins import PASSWORD, admin_token
from wxbackend.db import database
from wxbackend.services.admin import permissions
from wxbackend.services.admin.accounts import AccountError, create_admin
from wxbackend.services.admin.lockout import unlock


@pytest.mark.asyncio
async def test_login_and_me(api, ctx):
    token = await admin_token(api, ctx)
    status, me = await api("GET", "/admin/api/me", token=token)
    assert status == 200 and me["role"] == "superadmin" and me["username"] == "root"
    assert (await api("POST", "/admin/api/logout", token=token))[0] == 204
    assert (await api("GET", "/admin/api/me", token=token))[0] == 401


@pytest.mark.asyncio
async def test_bad_credentials_and_lockout(api, ctx):
    await admin_token(api, ctx)
    for _ in range(5):
        status, answer = await api(
            "POST", "/admin/api/login", {"username": "root", "password": "wrong-password"}
        )
        assert status == 401 and answer["error"]["code"] == "bad_credentials"
    # locked now, even with the right password
    status, answer = await api(
        "POST", "/admin/api/login", {"username": "root", "password": PASSWORD}
    )
    assert status == 429 and answer["error"]["code"] == "locked"
    # an unknown account answers like a wrong password
    status, answer = await api("POST", "/admin/api/login", {"username": "nobody", "password": "x"})
    assert status == 401 and answer["error"]["code"] == "bad_credentials"
    assert await unlock(ctx.redis, ctx.rkeys, "root") == 1
    status, _ = await api("POST", "/admin/api/login", {"username": "root", "password": PASSWORD})
    assert status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"server": {"trusted_proxies": ["127.0.0.1"]}}])
async def test_lockout_is_per_address(api, ctx):
    await admin_token(api, ctx)
    bad = {"username": "root", "password": "wrong-password"}
    for _ in range(5):
        await api("POST", "/admin/api/login", bad, headers={"X-Forwarded-For": "203.0.113.9"})
    good = {"username": "root", "password": PASSWORD}
    locked = await api("POST", "/admin/api/login", good, headers={"X-Forwarded-For": "203.0.113.9"})
    assert locked[0] == 429
    other = await api("POST", "/admin/api/login", good, headers={"X-Forwarded-For": "203.0.113.10"})
    assert other[0] == 200


def _labor_handler(username: str) -> None:
    """A handler of department HL-LABOR (a handler is always bound to a department)."""
    with database.atomic():
        center = Center.get_or_none(Center.code == "440103-HL") or Center.create(
            code="440103-HL", name="海珠某街政务服务中心", area_code="440103"
        )
        if Department.get_or_none(Department.code == "HL-LABOR") is None:
            Department.create(code="HL-LABOR", name="劳动保障", center=center)
        create_admin(username, PASSWORD, "handler", None, "HL-LABOR")


@pytest.mark.asyncio
async def test_roles(api, ctx):
    viewer = await admin_token(api, ctx, "viewer1", "viewer")
    status, answer = await api(
        "PUT", "/admin/api/wechat-config", {"env_version": "trial"}, token=viewer
    )
    assert status == 403 and answer["error"]["code"] == "forbidden"
    await ctx.db.run(_labor_handler, "handler1")
    handler = await admin_token(api, ctx, "handler1", "handler")
    assert (await api("GET", "/admin/api/wechat-config", token=handler))[0] == 403
    assert (await api("GET", "/admin/api/wechat-config", token=viewer))[0] == 200
    assert (await api("GET", "/admin/api/wechat-config"))[0] == 401


@pytest.mark.asyncio
async def test_disabled_admin_loses_access_at_once(api, ctx):
    from models.access import Admin

    token = await admin_token(api, ctx, "temp", "viewer")
    await ctx.db.run(lambda: Admin.update(disabled=True).where(Admin.username == "temp").execute())
    assert (await api("GET", "/admin/api/me", token=token))[0] == 401


@pytest.mark.asyncio
async def test_console_cookie_needs_xsrf(api, ctx, http_client, base_url):
    await admin_token(api, ctx)
    response = await http_client.fetch(
        base_url + "/admin/api/login",
        method="POST",
        body=f'{{"username": "root", "password": "{PASSWORD}"}}',
        raise_error=False,
    )
    cookies = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";")[0]
    assert "wxb_admin" in cookies and "_xsrf" in cookies
    assert "HttpOnly" in next(
        h for h in response.headers.get_list("Set-Cookie") if "wxb_admin" in h
    )
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, _ = await api("GET", "/admin/api/me", headers={"Cookie": cookie})
    assert status == 200
    body = {"env_version": "trial"}
    status, answer = await api("PUT", "/admin/api/wechat-config", body, headers={"Cookie": cookie})
    assert status == 403 and "XSRF" in answer["error"]["message"]
    status, _ = await api(
        "PUT",
        "/admin/api/wechat-config",
        body,
        headers={"Cookie": cookie, "X-XSRFToken": cookies["_xsrf"]},
    )
    assert status == 200


@pytest.mark.asyncio
async def test_me_lists_the_permissions_of_the_table(api, ctx):
    """``GET /me``: who, bound where, and exactly the table's actions for the role."""
    root = await admin_token(api, ctx)
    status, me = await api("GET", "/admin/api/me", token=root)
    assert status == 200 and me["username"] == "root" and me["role"] == "superadmin"
    assert me["center"] is None and me["department"] is None and me["staff_no"] is None
    assert set(me["permissions"]) == set(permissions.ROLES["superadmin"].grants)
    assert {r["role"] for r in me["roles"]} == set(permissions.ROLES)
    await ctx.db.run(_labor_handler, "clerk")
    clerk = await admin_token(api, ctx, "clerk", "handler")
    status, me = await api("GET", "/admin/api/me", token=clerk)
    assert me["center"] == "440103-HL" and me["department"] == "HL-LABOR"
    assert "tickets.work" in me["permissions"] and "catalogue.write" not in me["permissions"]
    # a bound viewer lacks what only an account of every center has (the whole audit log)
    for username, center in (("everywhere", None), ("local", "440103-HL")):
        token = await admin_token(api, ctx, username, "viewer", center)
        granted = (await api("GET", "/admin/api/me", token=token))[1]["permissions"]
        assert ("audit.read" in granted) is (center is None), username
    auditor = await admin_token(api, ctx, "inspector", "auditor", "440103-HL")
    status, me = await api("GET", "/admin/api/me", token=auditor)
    assert me["permissions"] == ["tickets.read", "evaluations.read", "audit.read"]


@pytest.mark.asyncio
async def test_one_binding_rule_for_the_command_line_and_the_api(ctx):
    """A handler needs a department and a center_admin a center, wherever it is created."""

    def refused(username: str, role: str) -> str | None:
        try:
            create_admin(username, PASSWORD, role)
        except AccountError as exc:
            return exc.field
        return None

    assert await ctx.db.run(refused, "clerk_nowhere", "handler") == "department"
    assert await ctx.db.run(refused, "boss_nowhere", "center_admin") == "center"
    assert await ctx.db.run(refused, "king", "king") == "role"


def test_the_console_names_no_role():
    """The console reads what it may show from ``/me``'s permissions, never from role names;
    every action it asks about is one of the permission table's."""
    import re
    from pathlib import Path

    static = Path(__file__).parent.parent / "wxbackend/web/static"
    asked = set()
    for script in static.glob("admin*.js"):
        text = script.read_text(encoding="utf-8")
        for role in permissions.ROLES:
            assert f'"{role}"' not in text, (script.name, role)
        asked |= set(re.findall(r'(?:can\(|permission: )"([a-z_.]+)"', text))
    assert asked and asked <= set(permissions.ACTIONS), asked - set(permissions.ACTIONS)


@pytest.mark.asyncio
async def test_openapi_names_the_permission_of_every_admin_operation(api):
    status, doc = await api("GET", "/openapi.json")
    assert status == 200
    for path, entry in doc["paths"].items():
        if not path.startswith("/admin/api/") or path == "/admin/api/login":
            continue
        for method, operation in entry.items():
            action = operation.get("x-permission")
            assert action == "*" or action in permissions.ACTIONS, (method, path, action)
    tickets = doc["paths"]["/admin/api/tickets/{ticket_id}/appeal/decide"]
    assert tickets["post"]["x-permission"] == "tickets.decide_appeal"
    assert doc["paths"]["/admin/api/me"]["get"]["x-permission"] == "*"
