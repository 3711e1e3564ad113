"""Issue 12 item 7: a WeChat push downgrade (safe mode stripped) and a replayed signature.

Reproduction from the red-team pass: a genuine safe-mode delivery with ``encrypt_type`` and
``msg_signature`` removed and a forged plaintext body was accepted, twice with the same
signature, and a subscription changed.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest

from models.messaging import PushReceipt, Subscription
from models.user import User
from wxbackend.wechat import push

APPID = "wx00000000000000a1"
TOKEN = "pushToken42"
AES_KEY = push.new_aes_key()
REMINDER = "Reminder_" + "a" * 34
SAFE = {"wechat": {"push_token": TOKEN, "aes_key": AES_KEY, "template_reminder": REMINDER}}
PLAIN = {"wechat": {"push_token": TOKEN, "template_reminder": REMINDER}}


def popup(openid: str, result: str = "accept") -> dict:
    return {
        "ToUserName": "gh_123456789abc",
        "FromUserName": openid,
        "CreateTime": int(time.time()),
        "MsgType": "event",
        "Event": "subscribe_msg_popup_event",
        "List": {"TemplateId": REMINDER, "SubscribeStatusString": result, "PopupScene": "0"},
    }


async def post(api, query: str, body: bytes):
    headers = {"Content-Type": "application/json"}
    return await api("POST", "/wechat/push?" + query, raw=body, headers=headers)


async def openid_of(api, sandbox, ctx) -> tuple[int, str]:
    _, answer = await api.login(sandbox)
    row = await ctx.db.run(User.get_by_id, int(answer["user"]["id"]))
    return row.id, row.openid


def subscription_rows(user_id: int) -> list[tuple[str, int]]:
    query = Subscription.select().where(Subscription.user == user_id)
    return [(row.last_result, row.quota) for row in query]


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [SAFE])
async def test_safe_mode_stripped_to_plaintext_is_refused(api, sandbox, ctx):
    user_id, openid = await openid_of(api, sandbox, ctx)
    query, _ = push.build_delivery(popup(openid), TOKEN, APPID, AES_KEY)
    stripped = {k: v for k, v in parse_qsl(query) if k not in ("encrypt_type", "msg_signature")}
    forged = json.dumps(popup(openid, "reject")).encode()
    for _ in range(2):
        status, answer = await post(api, urlencode(stripped), forged)
        assert status == 401 and answer["error"]["code"] == "bad_signature", answer
    assert await ctx.db.run(subscription_rows, user_id) == []
    assert await ctx.db.run(PushReceipt.select().count) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [PLAIN])
async def test_a_plaintext_signature_is_single_use(api, sandbox, ctx):
    user_id, openid = await openid_of(api, sandbox, ctx)
    query, body = push.build_delivery(popup(openid), TOKEN, APPID)
    status, answer = await post(api, query, body)
    assert status == 200 and answer == b"success"
    assert await ctx.db.run(subscription_rows, user_id) == [("accept", 1)]
    # the very same request again (WeChat missed our answer): success, nothing new
    status, answer = await post(api, query, body)
    assert status == 200 and answer == b"success"
    # the same signed URL with a forged body: a replay
    forged = json.dumps(popup(openid, "reject")).encode()
    status, answer = await post(api, query, forged)
    assert status == 401 and answer["error"]["code"] == "bad_signature", answer
    assert await ctx.db.run(subscription_rows, user_id) == [("accept", 1)]
    assert await ctx.db.run(PushReceipt.select().count) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [SAFE])
async def test_a_safe_mode_signature_is_single_use(api, sandbox, ctx):
    user_id, openid = await openid_of(api, sandbox, ctx)
    query, body = push.build_delivery(popup(openid), TOKEN, APPID, AES_KEY)
    assert (await post(api, query, body))[0] == 200
    # another genuine message sealed with the same timestamp and nonce, same signature slot
    params = dict(parse_qsl(query))
    other_query, other_body = push.build_delivery(
        popup(openid, "reject"),
        TOKEN,
        APPID,
        AES_KEY,
        timestamp=int(params["timestamp"]),
        nonce=params["nonce"],
    )
    status, _ = await post(api, other_query, other_body)
    assert status == 200  # a different msg_signature (it covers Encrypt): its own slot
    status, answer = await post(api, query, other_body)  # mixed: signature does not match
    assert status == 401, answer
    assert await ctx.db.run(PushReceipt.select().count) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [PLAIN])
async def test_a_failed_delivery_frees_its_signature_for_the_retry(api, sandbox, ctx):
    user_id, openid = await openid_of(api, sandbox, ctx)
    query, body = push.build_delivery(popup(openid), TOKEN, APPID)
    await ctx.db.run(lambda: PushReceipt.drop_table())  # the apply fails (500-free? see below)
    try:
        status, _ = await post(api, query, body)
        assert status >= 500
    finally:
        await ctx.db.run(lambda: PushReceipt.create_table())
    status, answer = await post(api, query, body)  # WeChat's retry, same URL and body
    assert status == 200 and answer == b"success"
    assert await ctx.db.run(subscription_rows, user_id) == [("accept", 1)]
