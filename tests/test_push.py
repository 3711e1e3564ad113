"""WeChat message push: GET verification, POST events in plaintext and safe mode (JSON and
XML), refusals (forged, unsigned, stale, wrong appid, malformed) and retries applied once."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from models.base import utcnow
from models.job import Job
from models.messaging import Message, PushReceipt, Subscription
from models.user import User
from wxbackend.services.jobs import housekeeping
from wxbackend.services.messaging import subscriptions as subs
from wxbackend.wechat import push

APPID = "wx00000000000000a1"
TOKEN = "pushToken42"
AES_KEY = push.new_aes_key()
REMINDER = "Reminder_" + "a" * 34
RECTIFIED = "Rectified-" + "b" * 33
LONG = "LongTerm_" + "c" * 34


@pytest.fixture
def settings_overrides():
    return {
        "wechat": {
            "push_token": TOKEN,
            "aes_key": AES_KEY,
            "template_reminder": REMINDER,
            "template_rectified": RECTIFIED,
            "long_term_templates": [LONG],
        }
    }


def popup(openid, *items, create_time=None, xml=False):
    entries = [{"TemplateId": t, "SubscribeStatusString": s, "PopupScene": "0"} for t, s in items]
    message = {
        "ToUserName": "gh_123456789abc",
        "FromUserName": openid,
        "CreateTime": create_time or int(time.time()),
        "MsgType": "event",
        "Event": "subscribe_msg_popup_event",
    }
    if xml:
        message["SubscribeMsgPopupEvent"] = {"List": entries}
    else:
        message["List"] = entries[0] if len(entries) == 1 else entries
    return message


async def deliver(api, message, fmt="json", safe=True, **kwargs):
    query, body = push.build_delivery(
        message, TOKEN, APPID, AES_KEY if safe else None, fmt=fmt, **kwargs
    )
    return await post(api, query, body, fmt)


async def post(api, query, body, fmt="json"):
    ctype = "application/json" if fmt == "json" else "text/xml"
    return await api("POST", "/wechat/push?" + query, raw=body, headers={"Content-Type": ctype})


async def user(api, sandbox, ctx):
    token, answer = await api.login(sandbox)
    row = await ctx.db.run(User.get_by_id, int(answer["user"]["id"]))
    return token, row.id, row.openid


def quota(user_id, template_id):
    row = Subscription.get_or_none(
        Subscription.user == user_id, Subscription.template_id == template_id
    )
    return None if row is None else (subs.LONG_TERM if row.long_term else row.quota)


async def nothing_stored(ctx):
    assert await ctx.db.run(PushReceipt.select().count) == 0
    assert await ctx.db.run(Subscription.select().count) == 0


# ---- GET verification ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_echoes_echostr(api, ctx):
    ts, nonce = str(int(time.time())), "12345"
    query = {"signature": push.sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    status, body = await api("GET", "/wechat/push?" + urlencode({**query, "echostr": "e1x"}))
    assert status == 200 and body == b"e1x"
    query["signature"] = push.sign("another", ts, nonce)
    status, body = await api("GET", "/wechat/push?" + urlencode({**query, "echostr": "e1x"}))
    assert status == 401 and body["error"]["code"] == "bad_signature"
    status, body = await api("GET", "/wechat/push?echostr=e1x")
    assert status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"wechat": {"push_token": ""}}])
async def test_not_configured_refuses(api, ctx):
    ts, nonce = str(int(time.time())), "1"
    query = urlencode({"signature": push.sign("", ts, nonce), "timestamp": ts, "nonce": nonce})
    status, _ = await api("GET", f"/wechat/push?{query}&echostr=x")
    assert status == 401
    status, _ = await post(api, query, b'{"MsgType":"event"}')
    assert status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"wechat": {"push_token": "", "aes_key": ""}}])
async def test_admin_configured_push(api, sandbox, ctx):
    """Token and EncodingAESKey stored by an admin take effect without a restart."""
    from tests.support.admins import admin_token

    admin = await admin_token(api, ctx)
    key = push.new_aes_key()
    status, answer = await api(
        "PUT",
        "/admin/api/wechat-config",
        {"push_token": "adminToken7", "aes_key": key, "templates": {"reminder": REMINDER}},
        token=admin,
    )
    assert status == 200, answer
    _, user_id, openid = await user(api, sandbox, ctx)
    query, body = push.build_delivery(
        popup(openid, (REMINDER, "accept")), "adminToken7", APPID, key
    )
    status, answer = await post(api, query, body)
    assert status == 200 and answer == b"success"
    assert await ctx.db.run(quota, user_id, REMINDER) == 1


# ---- events applied -----------------------------------------------------------------------------


PLAINTEXT_ONLY = {
    "wechat": {"push_token": TOKEN, "template_reminder": REMINDER, "template_rectified": RECTIFIED}
}


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [PLAINTEXT_ONLY])
async def test_plaintext_json_event_applied(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    status, body = await deliver(api, popup(openid, (REMINDER, "accept")), safe=False)
    assert status == 200 and body == b"success"
    assert await ctx.db.run(quota, user_id, REMINDER) == 1


@pytest.mark.asyncio
async def test_safe_mode_json_event_decrypted_and_applied(api, sandbox, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    _, user_id, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"), (RECTIFIED, "accept"), (LONG, "accept"))
    query, body = push.build_delivery(message, TOKEN, APPID, AES_KEY)
    assert openid.encode() not in body and b"Encrypt" in body
    status, answer = await post(api, query, body)
    assert status == 200 and answer == b"success"
    assert await ctx.db.run(quota, user_id, REMINDER) == 1
    assert await ctx.db.run(quota, user_id, RECTIFIED) == 1
    assert await ctx.db.run(quota, user_id, LONG) == subs.LONG_TERM
    assert await ctx.db.run(PushReceipt.select().count) == 1
    assert openid not in caplog.text  # never logged


@pytest.mark.asyncio
async def test_safe_mode_xml_event_applied(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"), (RECTIFIED, "reject"), xml=True)
    status, body = await deliver(api, message, fmt="xml")
    assert status == 200 and body == b"success"
    assert await ctx.db.run(quota, user_id, REMINDER) == 1
    row = await ctx.db.run(
        Subscription.get, Subscription.user == user_id, Subscription.template_id == RECTIFIED
    )
    assert row.last_result == "reject" and row.quota == 0
    # a single <List> (one template) works as well
    message = popup(openid, (REMINDER, "accept"), xml=True)
    status, _ = await deliver(api, message, fmt="xml")
    assert status == 200
    assert await ctx.db.run(quota, user_id, REMINDER) == 2


@pytest.mark.asyncio
async def test_change_and_sent_events(api, sandbox, ctx):
    token, user_id, openid = await user(api, sandbox, ctx)
    await api("POST", "/api/v1/subscriptions", {"results": {REMINDER: "accept"}}, token=token)
    base = {"ToUserName": "gh", "FromUserName": openid, "MsgType": "event"}
    change = {
        **base,
        "CreateTime": 1,
        "Event": "subscribe_msg_change_event",
        "List": [
            {"TemplateId": REMINDER, "SubscribeStatusString": "reject"},
            {"TemplateId": LONG, "SubscribeStatusString": "accept"},
        ],
    }
    status, _ = await deliver(api, change)
    assert status == 200
    assert await ctx.db.run(quota, user_id, REMINDER) == 0
    assert await ctx.db.run(quota, user_id, LONG) == subs.LONG_TERM

    def make_messages():
        other = User.create(openid="oOther0000000000000000000001")
        Message.create(key="r:1", kind="reminder", user=user_id, template_id=REMINDER, msgid="7")
        Message.create(key="r:2", kind="reminder", user=other, template_id=REMINDER, msgid="8")

    await ctx.db.run(make_messages)
    sent = {
        **base,
        "CreateTime": 2,
        "Event": "subscribe_msg_sent_event",
        "SubscribeMsgSentEvent": {
            "List": [
                {"TemplateId": REMINDER, "MsgID": "7", "ErrorCode": "0", "ErrorStatus": "success"},
                {"TemplateId": REMINDER, "MsgID": "8", "ErrorCode": "0", "ErrorStatus": "success"},
                {"TemplateId": REMINDER, "MsgID": "9", "ErrorCode": "20004"},
            ]
        },
    }
    status, _ = await deliver(api, sent, fmt="xml")
    assert status == 200
    mine = await ctx.db.run(Message.get, Message.key == "r:1")
    theirs = await ctx.db.run(Message.get, Message.key == "r:2")
    assert mine.delivery_errcode == "0" and mine.delivery_at is not None
    assert theirs.delivery_errcode is None  # another user's msgid: not touched


@pytest.mark.asyncio
async def test_unknown_openid_and_other_messages(api, sandbox, ctx):
    status, body = await deliver(api, popup("oNobody000000000000000000001", (REMINDER, "accept")))
    assert status == 200 and body == b"success"
    text = {"ToUserName": "gh", "FromUserName": "oX", "MsgType": "text", "Content": "你好"}
    status, body = await deliver(api, text, fmt="xml")
    assert status == 200 and body == b"success"
    await nothing_stored(ctx)


# ---- retries and replays ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_retried_delivery_applied_once(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"))
    query, body = push.build_delivery(message, TOKEN, APPID, AES_KEY)
    for _ in range(3):  # the very same request replayed
        status, answer = await post(api, query, body)
        assert status == 200 and answer == b"success"
    # WeChat's retry: same message, encrypted afresh, new nonce
    status, _ = await deliver(api, message)
    assert status == 200
    assert await ctx.db.run(quota, user_id, REMINDER) == 1
    assert await ctx.db.run(PushReceipt.select().count) == 1


@pytest.mark.asyncio
async def test_stale_or_future_timestamp_refused(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"))
    for offset in (-301, -86400, 301):
        status, answer = await deliver(api, message, timestamp=int(time.time()) + offset)
        assert status == 401 and answer["error"]["code"] == "bad_signature"
    await nothing_stored(ctx)


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_forged_and_unsigned_refused(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"))
    query, body = push.build_delivery(message, TOKEN, APPID, AES_KEY)
    params = dict(parse_qsl(query))
    forged = {**params, "msg_signature": push.sign("guessed", params["timestamp"], "n", "x")}
    status, answer = await post(api, urlencode(forged), body)
    assert status == 401 and answer["error"]["code"] == "bad_signature"
    # a valid signature over another Encrypt does not cover this one
    other_query, other_body = push.build_delivery(
        popup(openid, (RECTIFIED, "accept")), TOKEN, APPID, AES_KEY
    )
    status, _ = await post(api, other_query, body)
    assert status == 401
    # safe mode without msg_signature, plaintext without signature, nothing at all
    no_msg_sig = {k: v for k, v in params.items() if k != "msg_signature"}
    status, _ = await post(api, urlencode(no_msg_sig), body)
    assert status == 401
    plain_query, plain_body = push.build_delivery(message, TOKEN, APPID)
    unsigned = {k: v for k, v in dict(parse_qsl(plain_query)).items() if k != "signature"}
    status, _ = await post(api, urlencode(unsigned), plain_body)
    assert status == 401
    status, _ = await post(api, "", plain_body)
    assert status == 401
    # plaintext signed with another token
    ts, nonce = str(int(time.time())), "99"
    bad = urlencode(
        {"signature": push.sign("nottoken", ts, nonce), "timestamp": ts, "nonce": nonce}
    )
    status, _ = await post(api, bad, plain_body)
    assert status == 401
    await nothing_stored(ctx)


@pytest.mark.asyncio
async def test_wrong_appid_inside_refused(api, sandbox, ctx):
    _, user_id, openid = await user(api, sandbox, ctx)
    query, body = push.build_delivery(
        popup(openid, (REMINDER, "accept")), TOKEN, "wx00000000000000ff", AES_KEY
    )
    status, answer = await post(api, query, body)
    assert status == 401 and answer["error"]["code"] == "bad_signature"
    await nothing_stored(ctx)


def signed_safe(encrypted: str, fmt="json") -> tuple[str, bytes]:
    ts, nonce = str(int(time.time())), "4242"
    query = {
        "signature": push.sign(TOKEN, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": push.sign(TOKEN, ts, nonce, encrypted),
    }
    envelope = {"ToUserName": "gh", "Encrypt": encrypted}
    body = json.dumps(envelope).encode() if fmt == "json" else push.to_xml(envelope)
    return urlencode(query), body


def signed_plain() -> str:
    ts, nonce = str(int(time.time())), str(time.monotonic_ns())
    return urlencode({"signature": push.sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce})


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [PLAINTEXT_ONLY])
async def test_malformed_plaintext_refused(api, sandbox, ctx):
    for body in (b"", b"garbage", b"{not json", b"[1,2]", b"<xml><a></xml>", b"<other/>"):
        status, answer = await post(api, signed_plain(), body)
        assert status == 400 and answer["error"]["code"] == "invalid_body", body
    xxe = b'<!DOCTYPE x [<!ENTITY e "boom">]><xml><Event>&e;</Event></xml>'
    status, _ = await post(api, signed_plain(), xxe, fmt="xml")
    assert status == 400
    status, _ = await post(api, signed_plain().replace("nonce", "encrypt_type=des&nonce"), b"{}")
    assert status == 400
    await nothing_stored(ctx)


@pytest.mark.asyncio
async def test_malformed_refused(api, sandbox, ctx):
    _, _, openid = await user(api, sandbox, ctx)
    plain = signed_plain()
    for body in (b"", b"garbage", b"{not json", b"<xml><a></xml>"):  # safe mode is configured
        status, answer = await post(api, plain, body)
        assert status == 401 and answer["error"]["code"] == "bad_signature", body
    message = json.dumps(popup(openid, (REMINDER, "accept"))).encode()
    other_key = push.new_aes_key()
    for encrypted in (
        "not base64!!",
        "QUJD",  # base64, not whole AES blocks
        push.encrypt(other_key, message, APPID),  # another EncodingAESKey
        push.encrypt(AES_KEY, b"not json nor xml", APPID),
    ):
        for fmt in ("json", "xml"):
            status, answer = await post(api, *signed_safe(encrypted, fmt), fmt=fmt)
            assert status == 400 and answer["error"]["code"] == "invalid_body", encrypted
    status, _ = await post(api, plain.replace("nonce", "encrypt_type=des&nonce"), message)
    assert status == 400
    await nothing_stored(ctx)


@pytest.mark.asyncio
async def test_body_limit(api, sandbox, ctx):
    _, _, openid = await user(api, sandbox, ctx)
    message = popup(openid, (REMINDER, "accept"))
    message["Padding"] = "x" * (70 * 1024)
    status, answer = await deliver(api, message)
    assert status == 413
    await nothing_stored(ctx)


# ---- one popup, reported twice, counted once ---------------------------------------------------


@pytest.mark.asyncio
async def test_popup_reported_by_api_and_push_counts_once(api, sandbox, ctx):
    token, user_id, openid = await user(api, sandbox, ctx)

    async def by_api(*templates):
        results = {t: "accept" for t in templates}
        status, answer = await api(
            "POST", "/api/v1/subscriptions", {"results": results}, token=token
        )
        assert status == 200
        return answer["quota"]

    async def by_push(*templates, create_time=None):
        items = [(t, "accept") for t in templates]
        status, _ = await deliver(api, popup(openid, *items, create_time=create_time))
        assert status == 200

    # the API first, then WeChat's event for the same popup
    assert await by_api(REMINDER) == {REMINDER: 1}
    await by_push(REMINDER, create_time=1)
    assert await ctx.db.run(quota, user_id, REMINDER) == 1
    # the event first, then the API
    await by_push(REMINDER, RECTIFIED, create_time=2)
    assert await by_api(REMINDER, RECTIFIED) == {REMINDER: 2, RECTIFIED: 1}
    # two popups, reports interleaved: api, api, push, push → 2 more
    await by_api(REMINDER)
    await by_api(REMINDER)
    await by_push(REMINDER, create_time=3)
    await by_push(REMINDER, create_time=4)
    assert await ctx.db.run(quota, user_id, REMINDER) == 4
    # push only (the mini-program never reported): each event counts
    await by_push(REMINDER, create_time=5)
    assert await ctx.db.run(quota, user_id, REMINDER) == 5
    # a report whose counterpart is older than the pairing window counts again
    stale = utcnow() - subs.PAIR_WINDOW - timedelta(seconds=1)
    await ctx.db.run(
        lambda: (
            Subscription.update(popup_balance_at=stale)
            .where(Subscription.user == user_id, Subscription.template_id == REMINDER)
            .execute()
        )
    )
    assert await by_api(REMINDER) == {REMINDER: 6}


@pytest.mark.asyncio
async def test_popup_pairing_under_concurrency(api, sandbox, ctx):
    """10 popups, each reported by the API and by push, all at once: exactly 10 quotas."""
    import asyncio

    token, user_id, openid = await user(api, sandbox, ctx)
    calls = []
    for n in range(10):
        calls.append(
            api("POST", "/api/v1/subscriptions", {"results": {REMINDER: "accept"}}, token=token)
        )
        calls.append(deliver(api, popup(openid, (REMINDER, "accept"), create_time=100 + n)))
    answers = await asyncio.gather(*calls)
    assert all(status == 200 for status, _ in answers)
    assert await ctx.db.run(quota, user_id, REMINDER) == 10


@pytest.mark.asyncio
async def test_housekeeping_prunes_old_receipts(ctx):
    """The hourly ``purge_push_receipts`` job: receipts past the retention go, recent stay."""
    now = utcnow()
    old = now - timedelta(days=housekeeping.RECEIPT_RETENTION_DAYS, minutes=1)
    recent = now - timedelta(days=housekeeping.RECEIPT_RETENTION_DAYS - 1)

    def seed():
        PushReceipt.create(key="old", event="e", received_at=old)
        PushReceipt.create(key="recent", event="e", received_at=recent)
        PushReceipt.create(key="now", event="e", received_at=now)
        housekeeping.ensure_scheduled(now)
        return Job.get(Job.key == housekeeping.hour_key("purge_push_receipts", now))

    job = await ctx.db.run(seed)
    await housekeeping.handle(ctx, job)
    kept = await ctx.db.run(lambda: sorted(r.key for r in PushReceipt.select()))
    assert kept == ["now", "recent"]
