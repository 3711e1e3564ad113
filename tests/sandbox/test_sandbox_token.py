"""The WeChat sandbox over real HTTP. Access tokens: ``cgi-bin/token``, ``cgi-bin/stable_token``
and the ``access_token`` rules."""

from __future__ import annotations

import json

import pytest

from tests.support.sandbox import FakeClock, Sandbox
from wxbackend.sandbox import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
)

# --- access tokens ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_token_each_fetch_is_new_and_the_previous_overlaps_300s(
    sandbox: Sandbox, clock: FakeClock
) -> None:
    first = await sandbox.plain_token()
    assert first["expires_in"] == 7200
    second = await sandbox.plain_token()
    assert second["access_token"] != first["access_token"]
    sec = {"version": 2, "openid": await sandbox.openid(), "scene": 2, "content": "好"}
    clock.advance(299)
    assert (await sandbox.post("wxa/msg_sec_check", sec, first["access_token"]))["errcode"] == 0
    clock.advance(2)
    assert (await sandbox.post("wxa/msg_sec_check", sec, first["access_token"]))["errcode"] == 40001
    assert (await sandbox.post("wxa/msg_sec_check", sec, second["access_token"]))["errcode"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("override", "errcode"),
    [({"appid": "wx_wrong"}, 40013), ({"secret": "nope"}, 40125), ({"grant_type": "x"}, 40002)],
)
async def test_token_errors(sandbox: Sandbox, override: dict[str, str], errcode: int) -> None:
    answer = await sandbox.plain_token(**override)
    assert answer["errcode"] == errcode
    assert "access_token" not in answer


@pytest.mark.asyncio
async def test_stable_token_same_until_5min_before_expiry_and_force_refresh_limits(
    sandbox: Sandbox, clock: FakeClock
) -> None:
    creds = {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}
    one = await sandbox.post("cgi-bin/stable_token", creds)
    clock.advance(1000)
    again = await sandbox.post("cgi-bin/stable_token", creds)
    assert again["access_token"] == one["access_token"]
    assert again["expires_in"] == 6200
    clock.advance(6200 - 299)  # inside the last 5 minutes: a new one
    renewed = await sandbox.post("cgi-bin/stable_token", creds)
    assert renewed["access_token"] != one["access_token"]
    assert renewed["expires_in"] == 7200

    forced = await sandbox.post("cgi-bin/stable_token", {**creds, "force_refresh": True})
    assert forced["access_token"] != renewed["access_token"]
    too_soon = await sandbox.post("cgi-bin/stable_token", {**creds, "force_refresh": True})
    assert too_soon["errcode"] == 45009
    for _ in range(19):
        clock.advance(31)
        answer = await sandbox.post("cgi-bin/stable_token", {**creds, "force_refresh": True})
        assert "access_token" in answer
    clock.advance(31)
    over_quota = await sandbox.post("cgi-bin/stable_token", {**creds, "force_refresh": True})
    assert over_quota["errcode"] == 45009

    stats = await sandbox.get("_sandbox/stats")
    assert stats["token_fetches"] == {"cgi-bin/token": 0, "cgi-bin/stable_token": 23}
    assert stats["calls"]["cgi-bin/stable_token"] == 25


@pytest.mark.asyncio
async def test_stable_token_errors(sandbox: Sandbox) -> None:
    base = {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}
    assert (await sandbox.post("cgi-bin/stable_token", {**base, "appid": "x"}))["errcode"] == 40013
    assert (await sandbox.post("cgi-bin/stable_token", {**base, "secret": "x"}))["errcode"] == 40125
    bad_grant = {**base, "grant_type": "password"}
    assert (await sandbox.post("cgi-bin/stable_token", bad_grant))["errcode"] == 40002
    response = await sandbox.raw("POST", "cgi-bin/stable_token", b"not json")
    assert response.code == 200
    assert json.loads(response.body)["errcode"] == 47001


@pytest.mark.asyncio
async def test_access_token_missing_unknown_expired_invalidated(
    sandbox: Sandbox, clock: FakeClock
) -> None:
    body = {"version": 2, "openid": await sandbox.openid(), "scene": 2, "content": "hi"}
    assert (await sandbox.post("wxa/msg_sec_check", body))["errcode"] == 41001
    assert (await sandbox.post("wxa/msg_sec_check", body, "bogus"))["errcode"] == 40001
    token = await sandbox.token()
    clock.advance(7200)
    assert (await sandbox.post("wxa/msg_sec_check", body, token))["errcode"] == 42001

    token = await sandbox.token()
    await sandbox.post("_sandbox/tokens/expire")
    assert (await sandbox.post("wxa/msg_sec_check", body, token))["errcode"] == 42001
    token = await sandbox.token()
    await sandbox.post("_sandbox/tokens/invalidate")
    assert (await sandbox.post("wxa/msg_sec_check", body, token))["errcode"] == 40001
    fresh = await sandbox.token()
    assert fresh != token
    assert (await sandbox.post("wxa/msg_sec_check", body, fresh))["errcode"] == 0
