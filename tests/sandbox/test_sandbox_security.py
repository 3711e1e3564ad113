"""The WeChat sandbox over real HTTP. Text security: ``wxa/msg_sec_check`` v2."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sandbox import Sandbox

# --- text security ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_msg_sec_check_pass_review_risky(sandbox: Sandbox) -> None:
    token, openid = await sandbox.token(), await sandbox.openid()
    path = "wxa/msg_sec_check"

    async def check(content: str) -> dict[str, Any]:
        body = {"version": 2, "openid": openid, "scene": 2, "content": content}
        return await sandbox.post(path, body, token)

    passed = await check("服务很好，办事很快")
    assert passed["errcode"] == 0
    assert passed["result"] == {"suggest": "pass", "label": 100}
    assert passed["detail"][0]["strategy"] == "content_model"
    assert passed["trace_id"]
    assert (await check("这条待审"))["result"] == {"suggest": "review", "label": 20001}
    assert (await check("this is risky 待审"))["result"] == {"suggest": "risky", "label": 20006}

    await sandbox.post("_sandbox/sec-words", {"risky": ["坏词"], "review": []})
    assert (await check("有坏词"))["result"]["suggest"] == "risky"
    assert (await check("这条待审"))["result"]["suggest"] == "pass"


@pytest.mark.asyncio
async def test_msg_sec_check_errors(sandbox: Sandbox) -> None:
    token, openid = await sandbox.token(), await sandbox.openid()
    good = {"version": 2, "openid": openid, "scene": 2, "content": "x"}
    path = "wxa/msg_sec_check"
    assert (await sandbox.post(path, {**good, "version": 1}, token))["errcode"] == 40097
    assert (await sandbox.post(path, {**good, "scene": 5}, token))["errcode"] == 40097
    too_long = {**good, "content": "x" * 2501}
    assert (await sandbox.post(path, too_long, token))["errcode"] == 40097
    assert (await sandbox.post(path, {**good, "openid": "oNope"}, token))["errcode"] == 40003
