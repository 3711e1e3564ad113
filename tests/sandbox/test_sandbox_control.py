"""The WeChat sandbox over real HTTP. Faults, stats, reset and the control API's own answers."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from tests.support.sandbox import Sandbox
from wxbackend.sandbox import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
)

# --- faults ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fault_errcode_once(sandbox: Sandbox) -> None:
    code = (await sandbox.login())["code"]
    fault = {"path": "sns/jscode2session", "errcode": -1, "times": 1}
    assert await sandbox.post("_sandbox/faults", fault) == {"ok": True}
    busy = await sandbox.session(code)
    assert busy["errcode"] == -1 and busy["errmsg"].startswith("system error")
    assert (await sandbox.session(code))["openid"]  # the fault did not use the code
    assert (await sandbox.get("_sandbox/faults"))["items"] == []


@pytest.mark.asyncio
async def test_fault_after_lets_calls_through_first(sandbox: Sandbox) -> None:
    fault = {"path": "cgi-bin/token", "http_status": 503, "after": 2, "times": 1}
    assert await sandbox.post("_sandbox/faults", fault) == {"ok": True}
    assert [(await sandbox.raw("GET", "cgi-bin/token")).code for _ in range(4)] == [
        *(200, 200),  # let through (a token call without credentials still answers 200)
        503,
        200,
    ]
    assert (await sandbox.get("_sandbox/faults"))["items"] == []
    assert (await sandbox.raw("POST", "_sandbox/faults", {"path": "*", "after": -1})).code == 400


@pytest.mark.asyncio
async def test_fault_http_500_until_cleared(sandbox: Sandbox) -> None:
    await sandbox.post("_sandbox/faults", {"path": "*", "http_status": 500})
    for _ in range(2):
        response = await sandbox.raw("GET", "cgi-bin/token")
        assert response.code == 500
        assert response.headers["Content-Type"].startswith("text/plain")
    assert (await sandbox.raw("GET", "_sandbox/stats")).code == 200  # control API unaffected
    await sandbox.raw("DELETE", "_sandbox/faults")
    assert "access_token" in await sandbox.plain_token()


@pytest.mark.asyncio
async def test_fault_hang_times_out_the_client_but_not_the_sandbox(sandbox: Sandbox) -> None:
    await sandbox.post("_sandbox/faults", {"path": "cgi-bin/stable_token"})  # hangs 3600 s
    hanging = asyncio.ensure_future(
        sandbox.client.fetch(
            sandbox.base + "cgi-bin/stable_token", method="POST", body="{}", request_timeout=0.5
        )
    )
    await asyncio.sleep(0.1)
    other = AsyncHTTPClient(force_instance=True)
    try:
        response = await other.fetch(
            sandbox.base + "cgi-bin/token?grant_type=client_credential"
            f"&appid={DEFAULT_APPID}&secret={DEFAULT_SECRET}",
            request_timeout=2,
        )
        assert "access_token" in json.loads(response.body)
        assert not hanging.done()
    finally:
        other.close()
    with pytest.raises(HTTPClientError) as raised:
        await hanging
    assert raised.value.code == 599  # timeout


@pytest.mark.asyncio
async def test_fault_short_hang_then_normal_answer(sandbox: Sandbox) -> None:
    await sandbox.post(
        "_sandbox/faults", {"path": "cgi-bin/token", "hang_seconds": 0.2, "times": 1}
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert "access_token" in await sandbox.plain_token()
    assert loop.time() - started >= 0.2


@pytest.mark.asyncio
async def test_fault_rejects_control_paths(sandbox: Sandbox) -> None:
    response = await sandbox.raw(
        "POST", "_sandbox/faults", {"path": "_sandbox/stats", "errcode": 1}
    )
    assert response.code == 400
    assert json.loads(response.body)["error"]["code"] == "invalid_body"


# --- control API -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stats_and_reset(sandbox: Sandbox) -> None:
    await sandbox.plain_token()
    await sandbox.plain_token(appid="wrong")
    await sandbox.post("_sandbox/templates", {"template_id": "T1", "fields": ["thing1", "time2"]})
    stats = await sandbox.get("_sandbox/stats")
    assert stats["calls"] == {"cgi-bin/token": 2}
    assert stats["token_fetches"]["cgi-bin/token"] == 1
    templates = (await sandbox.get("_sandbox/templates"))["items"]
    assert templates == [{"template_id": "T1", "fields": {"thing1": "thing", "time2": "time"}}]

    assert await sandbox.post("_sandbox/reset") == {"ok": True}
    stats = await sandbox.get("_sandbox/stats")
    assert stats["calls"] == {} and stats["codes_made"] == 0
    assert (await sandbox.get("_sandbox/templates"))["items"] == []
    assert "access_token" in await sandbox.plain_token()  # credentials survive a reset


@pytest.mark.asyncio
async def test_index_page_and_bad_control_input(sandbox: Sandbox) -> None:
    page = await sandbox.raw("GET", "_sandbox/")
    assert page.code == 200 and b"/_sandbox/faults" in page.body
    bad = await sandbox.raw("POST", "_sandbox/templates", {"template_id": "T", "fields": ["x"]})
    assert bad.code == 400
    assert (await sandbox.raw("GET", "_sandbox/nowhere")).code == 404
