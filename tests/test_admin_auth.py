"""Admin login: tokens, lockout per (account, address), roles, console cookie + XSRF, unlock."""

import pytest

from tests.support.admins import PASSWORD, admin_token
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


@pytest.mark.asyncio
async def test_roles(api, ctx):
    viewer = await admin_token(api, ctx, "viewer1", "viewer")
    status, answer = await api(
        "PUT", "/admin/api/wechat-config", {"env_version": "trial"}, token=viewer
    )
    assert status == 403 and answer["error"]["code"] == "forbidden"
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
