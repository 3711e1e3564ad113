"""The WeChat sandbox over real HTTP. Subscribe messages: templates, quotas, ``subscribe/send`` and
its value rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.sandbox import Sandbox
from wxbackend.sandbox import (
    check_template_value,
)

TEMPLATE = "tmpl_reminder_0000000000000000000000000001"
FIELDS = {"thing1": "thing", "time2": "time", "phrase3": "phrase"}
GOOD_DATA = {
    "thing1": {"value": "失业登记"},
    "time2": {"value": "2026-11-26 10:00"},
    "phrase3": {"value": "待评价"},
}


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
