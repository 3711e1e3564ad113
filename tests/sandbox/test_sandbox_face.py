"""The WeChat sandbox over real HTTP. Face verification: ``getverifyid`` / ``queryverifyinfo`` and
the control API's finish."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.sandbox import FakeClock, Sandbox
from wxbackend.sandbox import (
    UNFINISHED_VERIFY_RET,
    cert_hash,
)

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
    ):
        answer = await sandbox.post(path, {**good, **change}, token)
        assert answer["errcode"] == 40097, change
        assert "verify_ret" not in answer
    unknown = await sandbox.post(path, {**good, "verify_id": "unknown"}, token)
    assert unknown["errcode"] == 84001 and "verify_ret" not in unknown  # 非法 identify id
    clock.advance(3600)
    token = await sandbox.token()
    assert (await sandbox.post(path, good, token))["errcode"] == 84002  # 用户信息过期


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
