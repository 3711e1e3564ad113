"""The WeChat sandbox over real HTTP. Login: ``sns/jscode2session`` with codes from the control
API."""

from __future__ import annotations

import pytest

from tests.support.sandbox import FakeClock, Sandbox

# --- login -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_jscode2session_ok_unknown_reused_and_old(sandbox: Sandbox, clock: FakeClock) -> None:
    login = await sandbox.login(unionid="union-1")
    assert login["openid"].startswith("o") and len(login["openid"]) == 28
    answer = await sandbox.session(login["code"])
    assert answer["openid"] == login["openid"]
    assert answer["unionid"] == "union-1"
    assert answer["session_key"]
    assert (await sandbox.session(login["code"]))["errcode"] == 40163
    assert (await sandbox.session("no-such-code"))["errcode"] == 40029

    plain = (await sandbox.get("_sandbox/login-code", openid="oFixed"))["code"]
    assert "unionid" not in await sandbox.session(plain)
    old = (await sandbox.login())["code"]
    clock.advance(301)
    assert (await sandbox.session(old))["errcode"] == 40029
    fresh = (await sandbox.login())["code"]
    assert (await sandbox.session(fresh, secret="bad"))["errcode"] == 40125
    assert (await sandbox.session(fresh, appid="bad"))["errcode"] == 40013
    assert (await sandbox.session(fresh))["openid"]
