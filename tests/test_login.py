"""Citizen login through the sandbox's code2Session, sessions, /me, rate limits."""

import asyncio
import time

import pytest

from models.user import User
from tests.support.databases import both_databases
from wxbackend.security import FieldCipher

#: A hang costs every attempt's whole timeout: a short one keeps the deadline test quick.
QUICK_WECHAT = {"wechat": {"timeout_seconds": 0.3}}


@pytest.mark.asyncio
async def test_login_then_me(api, sandbox, ctx):
    code = await sandbox.login_code("oUserA000000000000000000001", unionid="uUnion1")
    status, answer = await api("POST", "/api/v1/auth/login", {"code": code["code"]})
    assert status == 200, answer
    assert answer["expires_in"] == ctx.settings.auth.session_ttl_seconds
    assert answer["user"] == {"id": answer["user"]["id"], "verified": False, "name_masked": None}
    assert "session_key" not in str(answer) and "openid" not in str(answer)
    status, me = await api("GET", "/api/v1/me", token=answer["token"])
    assert status == 200
    assert me["user"]["id"] == answer["user"]["id"]
    assert me["identity"] == {"verified": False, "name_masked": None, "verified_at": None}
    assert me["pending_cases"] == []
    user = await ctx.db.run(User.get, User.openid == "oUserA000000000000000000001")
    assert user.unionid == "uUnion1"
    # session_key is stored encrypted, never in clear
    assert user.session_key_enc and ":" in user.session_key_enc
    assert FieldCipher.decrypt(ctx.cipher, user.session_key_enc, "user.session_key")


@pytest.mark.asyncio
async def test_same_openid_same_user(api, sandbox, ctx):
    _, first = await api.login(sandbox, "oSame00000000000000000000001")
    _, second = await api.login(sandbox, "oSame00000000000000000000001")
    assert first["user"]["id"] == second["user"]["id"]
    assert await ctx.db.run(User.select().count) == 1


@both_databases
@pytest.mark.asyncio
async def test_concurrent_first_logins_make_one_user(api, sandbox, ctx):
    codes = [await sandbox.login_code("oRace00000000000000000000001") for _ in range(8)]
    results = await asyncio.gather(
        *[api("POST", "/api/v1/auth/login", {"code": c["code"]}) for c in codes]
    )
    assert {s for s, _ in results} == {200}
    assert len({a["user"]["id"] for _, a in results}) == 1
    assert await ctx.db.run(User.select().count) == 1
    status, me = await api("GET", "/api/v1/me", token=results[0][1]["token"])
    assert status == 200 and me["identity"]["verified"] is False
    assert (await api("GET", "/healthz"))[0] == 200


@pytest.mark.asyncio
async def test_invalid_and_reused_code(api, sandbox):
    status, answer = await api("POST", "/api/v1/auth/login", {"code": "nonsense"})
    assert status == 401 and answer["error"]["code"] == "wechat_code_invalid"
    code = await sandbox.login_code()
    assert (await api("POST", "/api/v1/auth/login", {"code": code["code"]}))[0] == 200
    status, answer = await api("POST", "/api/v1/auth/login", {"code": code["code"]})
    assert status == 401 and answer["error"]["code"] == "wechat_code_invalid"


@pytest.mark.asyncio
async def test_me_needs_a_live_token(api, sandbox):
    status, answer = await api("GET", "/api/v1/me")
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    status, _ = await api("GET", "/api/v1/me", token="forged-token")
    assert status == 401
    token, _ = await api.login(sandbox)
    assert (await api("GET", "/api/v1/me", token=token))[0] == 200
    assert (await api("POST", "/api/v1/auth/logout", token=token))[0] == 204
    assert (await api("GET", "/api/v1/me", token=token))[0] == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [QUICK_WECHAT], ids=["timeout0.3"])
@pytest.mark.parametrize(
    "fault",
    [{"errcode": -1}, {"http_status": 500}, {"hang_seconds": 30}],
    ids=["busy", "http500", "hang"],
)
async def test_wechat_down_is_503_within_deadline(api, sandbox, ctx, fault):
    await sandbox.fault("sns/jscode2session", **fault)
    code = await sandbox.login_code()
    started = time.monotonic()
    login = asyncio.ensure_future(api("POST", "/api/v1/auth/login", {"code": code["code"]}))
    # /healthz keeps answering while the login waits on WeChat
    await asyncio.sleep(0.2)
    health_started = time.monotonic()
    status, _ = await api("GET", "/healthz")
    assert status == 200 and time.monotonic() - health_started < 0.5
    status, answer = await login
    elapsed = time.monotonic() - started
    assert status == 503 and answer["error"]["code"] == "wechat_unavailable"
    limit = 2 * ctx.settings.wechat.timeout_seconds + 2
    assert elapsed <= limit + 0.5, elapsed


@pytest.mark.asyncio
async def test_busy_once_then_ok_is_retried(api, sandbox):
    await sandbox.fault("sns/jscode2session", errcode=-1, times=1)
    code = await sandbox.login_code()
    status, answer = await api("POST", "/api/v1/auth/login", {"code": code["code"]})
    assert status == 200, answer


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"ratelimit": {"login_per_ip_per_minute": 3}}])
async def test_login_rate_limit_per_address(api, sandbox):
    statuses = []
    for _ in range(5):
        code = await sandbox.login_code()
        statuses.append((await api("POST", "/api/v1/auth/login", {"code": code["code"]}))[0])
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    status, answer = await api("POST", "/api/v1/auth/login", {"code": "x"})
    assert answer["error"]["code"] == "rate_limited"


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"ratelimit": {"login_per_openid_per_minute": 2}}])
async def test_login_rate_limit_per_openid(api, sandbox):
    statuses = []
    for _ in range(3):
        code = await sandbox.login_code("oLimited000000000000000000001")
        statuses.append((await api("POST", "/api/v1/auth/login", {"code": code["code"]}))[0])
    assert statuses == [200, 200, 429]
    # another user is not affected
    code = await sandbox.login_code("oOther00000000000000000000001")
    assert (await api("POST", "/api/v1/auth/login", {"code": code["code"]}))[0] == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides",
    [{"ratelimit": {"login_per_ip_per_minute": 2}, "server": {"trusted_proxies": ["127.0.0.1"]}}],
)
async def test_forwarded_for_trusted_proxy(api, sandbox):
    """Behind a trusted proxy each forwarded client has its own limit."""
    for client in ("203.0.113.1", "203.0.113.2"):
        for _ in range(2):
            code = await sandbox.login_code()
            status, _ = await api(
                "POST",
                "/api/v1/auth/login",
                {"code": code["code"]},
                headers={"X-Forwarded-For": client},
            )
            assert status == 200
    code = await sandbox.login_code()
    status, _ = await api(
        "POST",
        "/api/v1/auth/login",
        {"code": code["code"]},
        headers={"X-Forwarded-For": "203.0.113.1"},
    )
    assert status == 429


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"ratelimit": {"login_per_ip_per_minute": 2}}])
async def test_forwarded_for_ignored_without_trusted_proxy(api, sandbox):
    statuses = []
    for i in range(3):
        code = await sandbox.login_code()
        status, _ = await api(
            "POST",
            "/api/v1/auth/login",
            {"code": code["code"]},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
        statuses.append(status)
    assert statuses == [200, 200, 429]
