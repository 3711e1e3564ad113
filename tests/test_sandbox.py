"""The WeChat sandbox, exercised over real HTTP."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from wxbackend.sandbox import (
    DEFAULT_APPID,
    DEFAULT_SECRET,
    UNFINISHED_VERIFY_RET,
    SandboxState,
    cert_hash,
    check_template_value,
    start_sandbox,
    stop_sandbox,
)

TEMPLATE = "tmpl_reminder_0000000000000000000000000001"
FIELDS = {"thing1": "thing", "time2": "time", "phrase3": "phrase"}
GOOD_DATA = {
    "thing1": {"value": "失业登记"},
    "time2": {"value": "2026-11-26 10:00"},
    "phrase3": {"value": "待评价"},
}


class FakeClock:
    """A settable clock for expiry tests."""

    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sandbox:
    """A running sandbox plus an HTTP client and small call helpers."""

    state: SandboxState
    client: AsyncHTTPClient

    @property
    def base(self) -> str:
        return self.state.base_url

    async def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HTTPResponse:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        if method in ("POST", "PUT") and data is None:
            data = b""
        return await self.client.fetch(
            self.base + path, method=method, body=data, raise_error=False, **kwargs
        )

    async def get(self, path: str, **params: Any) -> Any:
        query = f"?{urlencode(params)}" if params else ""
        response = await self.raw("GET", path + query)
        return json.loads(response.body)

    async def post(self, path: str, body: Any = None, token: str | None = None) -> Any:
        if token is not None:
            path += f"?access_token={token}"
        response = await self.raw("POST", path, {} if body is None else body)
        return json.loads(response.body)

    async def token(self) -> str:
        answer = await self.post(
            "cgi-bin/stable_token",
            {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET},
        )
        return answer["access_token"]

    async def plain_token(self, **overrides: str) -> Any:
        params = {
            "grant_type": "client_credential",
            "appid": DEFAULT_APPID,
            "secret": DEFAULT_SECRET,
            **overrides,
        }
        return await self.get("cgi-bin/token", **params)

    async def login(self, **body: Any) -> dict[str, Any]:
        return await self.post("_sandbox/login-code", body)

    async def session(self, code: str, **overrides: str) -> Any:
        params = {
            "appid": DEFAULT_APPID,
            "secret": DEFAULT_SECRET,
            "js_code": code,
            "grant_type": "authorization_code",
            **overrides,
        }
        return await self.get("sns/jscode2session", **params)

    async def openid(self) -> str:
        return (await self.login())["openid"]


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    server, state = await start_sandbox(port=0)
    client = AsyncHTTPClient(force_instance=True)
    try:
        yield Sandbox(state, client)
    finally:
        client.close()
        await stop_sandbox(server, state)


@pytest.fixture
def clock(sandbox: Sandbox) -> FakeClock:
    fake = FakeClock()
    sandbox.state.clock = fake
    return fake


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


# --- face verification ---------------------------------------------------------------------


def test_cert_hash_matches_the_documented_vector() -> None:
    expected = "3c241f7ff324977aeb91f173bb2a7b06569e6fd784d5573db34a636d8671108b"
    assert cert_hash("IDENTITY_CARD", "张三", "310101199801011234") == expected


def face_body(openid: str, out_seq_no: str = "seq_00001") -> dict[str, Any]:
    return {
        "out_seq_no": out_seq_no,
        "cert_info": {
            "cert_type": "IDENTITY_CARD",
            "cert_name": "张三",
            "cert_no": "310101199801011234",
        },
        "openid": openid,
    }


@pytest.mark.asyncio
async def test_face_start_query_finish_query(sandbox: Sandbox) -> None:
    token, openid = await sandbox.token(), await sandbox.openid()
    started = await sandbox.post("cityservice/face/identify/getverifyid", face_body(openid), token)
    assert started["errcode"] == 0 and started["expires_in"] == 3600
    verify_id = started["verify_id"]
    query = {
        "verify_id": verify_id,
        "out_seq_no": "seq_00001",
        "cert_hash": cert_hash("IDENTITY_CARD", "张三", "310101199801011234"),
        "openid": openid,
    }
    path = "cityservice/face/identify/queryverifyinfo"
    unfinished = await sandbox.post(path, query, token)
    assert unfinished == {"errcode": 0, "errmsg": "ok", "verify_ret": UNFINISHED_VERIFY_RET}
    assert 90001 <= UNFINISHED_VERIFY_RET <= 90199

    attempts = (await sandbox.get("_sandbox/face/attempts"))["items"]
    assert [(a["verify_id"], a["status"]) for a in attempts] == [(verify_id, "pending")]
    assert "张三" not in json.dumps(attempts, ensure_ascii=False)
    assert (await sandbox.post("_sandbox/face/finish", {"verify_id": verify_id})) == {"ok": True}
    finished = await sandbox.post(path, query, token)
    assert finished["errcode"] == 0 and finished["verify_ret"] == 10000

    missing = await sandbox.raw("POST", "_sandbox/face/finish", {"verify_id": "nope"})
    assert missing.code == 404
    assert json.loads(missing.body)["error"]["code"] == "unknown_verify_id"


@pytest.mark.asyncio
async def test_face_query_rejects_mismatches_and_expiry(sandbox: Sandbox, clock: FakeClock) -> None:
    token, openid = await sandbox.token(), await sandbox.openid()
    started = await sandbox.post("cityservice/face/identify/getverifyid", face_body(openid), token)
    good = {
        "verify_id": started["verify_id"],
        "out_seq_no": "seq_00001",
        "cert_hash": cert_hash("IDENTITY_CARD", "张三", "310101199801011234"),
        "openid": openid,
    }
    path = "cityservice/face/identify/queryverifyinfo"
    await sandbox.post(
        "_sandbox/face/finish", {"verify_id": good["verify_id"], "verify_ret": 10004}
    )
    assert (await sandbox.post(path, good, token))["verify_ret"] == 10004
    wrong_hash = cert_hash("IDENTITY_CARD", "李四", "310101199801011234")
    for change in (
        {"cert_hash": wrong_hash},
        {"out_seq_no": "seq_00002"},
        {"openid": await sandbox.openid()},
        {"verify_id": "unknown"},
    ):
        answer = await sandbox.post(path, {**good, **change}, token)
        assert answer["errcode"] == 40097, change
        assert "verify_ret" not in answer
    clock.advance(3600)
    token = await sandbox.token()
    assert (await sandbox.post(path, good, token))["errcode"] == 40097


@pytest.mark.asyncio
async def test_getverifyid_validation(sandbox: Sandbox) -> None:
    token, openid = await sandbox.token(), await sandbox.openid()
    path = "cityservice/face/identify/getverifyid"
    assert (await sandbox.post(path, face_body(openid, "abc"), token))["errcode"] == 40097
    assert (await sandbox.post(path, face_body(openid, "bad seq!"), token))["errcode"] == 40097
    assert (await sandbox.post(path, face_body("oUnknown"), token))["errcode"] == 40003
    passport = face_body(openid)
    passport["cert_info"]["cert_type"] = "PASSPORT"
    assert (await sandbox.post(path, passport, token))["errcode"] == 40097
    assert (await sandbox.post(path, face_body(openid, "seq-AB_9"), token))["errcode"] == 0
    assert (await sandbox.post(path, face_body(openid, "seq-AB_9"), token))["errcode"] == 40097


# --- mini-program code -----------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, data) chunks, checking the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    return chunks


@pytest.mark.asyncio
@pytest.mark.parametrize("width", [None, 280, 1280])
async def test_wxacode_is_a_valid_png(sandbox: Sandbox, width: int | None) -> None:
    token = await sandbox.token()
    body: dict[str, Any] = {"scene": "AbC_123-xyz~!*", "page": "pages/evaluate/index"}
    if width is not None:
        body["width"] = width
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.code == 200
    assert response.headers["Content-Type"] == "image/png"
    chunks = png_chunks(response.body)
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    expected = width or 430
    assert (w, h, depth, color, interlace) == (expected, expected, 1, 0, 0)
    raw = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    assert len(raw) == h * (1 + (w + 7) // 8)
    assert (await sandbox.get("_sandbox/stats"))["codes_made"] == 1


@pytest.mark.asyncio
async def test_wxacode_differs_per_scene(sandbox: Sandbox) -> None:
    token = await sandbox.token()
    path = f"wxa/getwxacodeunlimit?access_token={token}"
    one = await sandbox.raw("POST", path, {"scene": "scene-one"})
    two = await sandbox.raw("POST", path, {"scene": "scene-two"})
    assert one.body != two.body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"scene": ""}, 40169),
        ({"scene": "x" * 33}, 40169),
        ({"scene": "a%20b"}, 40129),
        ({"scene": "空格"}, 40129),
        ({"scene": "ok", "page": "/pages/evaluate/index"}, 41030),
        ({"scene": "ok", "page": "pages/evaluate/index?x=1"}, 41030),
        ({"scene": "ok", "page": "pages/unpublished/index"}, 41030),
        ({"scene": "ok", "width": 279}, 40097),
        ({"scene": "ok", "width": 1281}, 40097),
        ({"scene": "ok", "env_version": "beta"}, 40097),
    ],
)
async def test_wxacode_errors(sandbox: Sandbox, body: dict[str, Any], errcode: int) -> None:
    token = await sandbox.token()
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body)["errcode"] == errcode


@pytest.mark.asyncio
async def test_wxacode_unpublished_page_allowed_without_check_path(sandbox: Sandbox) -> None:
    token = await sandbox.token()
    body = {
        "scene": "x" * 32,
        "page": "pages/new/index",
        "check_path": False,
        "env_version": "trial",
    }
    response = await sandbox.raw("POST", f"wxa/getwxacodeunlimit?access_token={token}", body)
    assert response.headers["Content-Type"] == "image/png"


# --- subscribe messages ----------------------------------------------------------------------


async def subscribe_setup(sandbox: Sandbox) -> tuple[str, str]:
    await sandbox.post("_sandbox/templates", {"template_id": TEMPLATE, "fields": FIELDS})
    return await sandbox.token(), await sandbox.openid()


def message(openid: str, **changes: Any) -> dict[str, Any]:
    return {
        "touser": openid,
        "template_id": TEMPLATE,
        "page": "pages/evaluate/index?case_id=1",
        "data": GOOD_DATA,
        "miniprogram_state": "formal",
        **changes,
    }


@pytest.mark.asyncio
async def test_subscribe_quota_then_ok_then_43101(sandbox: Sandbox) -> None:
    token, openid = await subscribe_setup(sandbox)
    path = "cgi-bin/message/subscribe/send"
    assert (await sandbox.post(path, message(openid), token))["errcode"] == 43101
    assert (await sandbox.get("_sandbox/messages"))["items"] == []

    quota = await sandbox.post("_sandbox/quota", {"openid": openid, "template_id": TEMPLATE})
    assert quota == {"count": 1, "long_term": False}
    sent = await sandbox.post(path, message(openid), token)
    assert sent["errcode"] == 0 and isinstance(sent["msgid"], int)
    assert (await sandbox.post(path, message(openid), token))["errcode"] == 43101
    assert await sandbox.get("_sandbox/quota", openid=openid, template_id=TEMPLATE) == {
        "count": 0,
        "long_term": False,
    }
    items = (await sandbox.get("_sandbox/messages", openid=openid))["items"]
    assert len(items) == 1
    assert items[0]["msgid"] == sent["msgid"]
    assert items[0]["data"] == GOOD_DATA and items[0]["miniprogram_state"] == "formal"

    long_term = {"openid": openid, "template_id": TEMPLATE, "long_term": True}
    await sandbox.post("_sandbox/quota", long_term)
    for _ in range(3):
        assert (await sandbox.post(path, message(openid), token))["errcode"] == 0
    await sandbox.raw("DELETE", "_sandbox/messages")
    assert (await sandbox.get("_sandbox/messages"))["items"] == []


@pytest.mark.asyncio
async def test_subscribe_47003_names_the_field(sandbox: Sandbox) -> None:
    token, openid = await subscribe_setup(sandbox)
    await sandbox.post("_sandbox/quota", {"openid": openid, "template_id": TEMPLATE, "count": 5})
    path = "cgi-bin/message/subscribe/send"
    too_long = {**GOOD_DATA, "thing1": {"value": "一" * 21}}
    answer = await sandbox.post(path, message(openid, data=too_long), token)
    assert answer["errcode"] == 47003
    assert "data.thing1.value" in answer["errmsg"]
    unknown = {**GOOD_DATA, "thing9": {"value": "x"}}
    answer = await sandbox.post(path, message(openid, data=unknown), token)
    assert answer["errcode"] == 47003 and "data.thing9" in answer["errmsg"]
    missing = {k: v for k, v in GOOD_DATA.items() if k != "time2"}
    answer = await sandbox.post(path, message(openid, data=missing), token)
    assert answer["errcode"] == 47003 and "data.time2.value" in answer["errmsg"]
    bad_time = {**GOOD_DATA, "time2": {"value": "tomorrow"}}
    assert (await sandbox.post(path, message(openid, data=bad_time), token))["errcode"] == 47003
    assert await sandbox.get("_sandbox/quota", openid=openid, template_id=TEMPLATE) == {
        "count": 5,
        "long_term": False,
    }


@pytest.mark.asyncio
async def test_subscribe_other_errors(sandbox: Sandbox) -> None:
    token, openid = await subscribe_setup(sandbox)
    path = "cgi-bin/message/subscribe/send"
    assert (await sandbox.post(path, message("oNobody"), token))["errcode"] == 40003
    wrong_template = message(openid, template_id="other")
    assert (await sandbox.post(path, wrong_template, token))["errcode"] == 40037
    slash_page = message(openid, page="/pages/evaluate/index")
    assert (await sandbox.post(path, slash_page, token))["errcode"] == 41030
    bad_state = message(openid, miniprogram_state="release")
    assert (await sandbox.post(path, bad_state, token))["errcode"] == 40097


@pytest.mark.parametrize(
    ("field_type", "value", "fits"),
    [
        ("thing", "一" * 20, True),
        ("thing", "一" * 21, False),
        ("phrase", "已受理", True),
        ("phrase", "六个汉字啊啊", False),
        ("phrase", "OK", False),
        ("name", "欧阳娜娜", True),
        ("name", "一" * 11, False),
        ("name", "Zhang San", True),
        ("name", "A" * 21, False),
        ("character_string", "AB-123_x/9", True),
        ("character_string", "x" * 33, False),
        ("character_string", "中文", False),
        ("number", "-12.5", True),
        ("number", "1" * 33, False),
        ("number", "12a", False),
        ("time", "2026-11-26 10:00", True),
        ("time", "2026年11月26日 10:00", True),
        ("time", "15:01", True),
        ("time", "2026-11-26 10:00~2026-11-26 12:00", True),
        ("time", "2026-13-01 10:00", False),
        ("date", "2026年11月26日", True),
        ("date", "2026-11-26 10:00", True),
        ("date", "10:00", False),
        ("phone_number", "+86 020-1234 5678", True),
        ("phone_number", "1" * 18, False),
        ("phone_number", "call me", False),
    ],
)
def test_template_value_rules(field_type: str, value: str, fits: bool) -> None:
    assert (check_template_value(field_type, value) is None) is fits


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
