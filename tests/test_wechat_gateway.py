"""The WeChat gateway against the sandbox: shared token, refresh, retries, typed errors."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wxbackend.wechat import errors as wx

#: A hang costs every attempt's whole timeout: a short one keeps the timeout tests quick.
QUICK = {"wechat": {"timeout_seconds": 0.3}}

ROOT = Path(__file__).resolve().parent.parent


async def _openid(sandbox) -> str:
    return (await sandbox.login_code())["openid"]


@pytest.mark.asyncio
async def test_token_fetched_once_and_cached_in_redis(ctx, sandbox):
    openid = await _openid(sandbox)
    results = await asyncio.gather(*[ctx.wechat.msg_sec_check(openid, "你好") for _ in range(20)])
    assert all(r["result"]["suggest"] == "pass" for r in results)
    stats = await sandbox.stats()
    assert stats["token_fetches"]["cgi-bin/stable_token"] == 1
    assert stats["token_fetches"].get("cgi-bin/token", 0) == 0
    key = ctx.rkeys("wechat", "token", ctx.settings.wechat.appid)
    assert await ctx.redis.get(key) == await ctx.wechat.access_token()
    assert 0 < await ctx.redis.ttl(key) <= 7200 - 300


@pytest.mark.asyncio
async def test_invalidated_token_is_refreshed_once(ctx, sandbox):
    openid = await _openid(sandbox)
    await ctx.wechat.msg_sec_check(openid, "first")
    old = await ctx.wechat.access_token()
    await sandbox.control("POST", "tokens/invalidate", {})
    results = await asyncio.gather(*[ctx.wechat.msg_sec_check(openid, "again") for _ in range(10)])
    assert len(results) == 10
    stats = await sandbox.stats()
    assert stats["token_fetches"]["cgi-bin/stable_token"] == 2  # the first and one refresh
    assert await ctx.wechat.access_token() != old


@pytest.mark.asyncio
async def test_expired_token_is_refreshed(ctx, sandbox):
    openid = await _openid(sandbox)
    await ctx.wechat.msg_sec_check(openid, "first")
    await sandbox.control("POST", "tokens/expire", {})
    assert (await ctx.wechat.msg_sec_check(openid, "again"))["errcode"] == 0
    assert (await sandbox.stats())["token_fetches"]["cgi-bin/stable_token"] == 2


@pytest.mark.slow
@pytest.mark.asyncio
async def test_two_processes_share_one_token(ctx, sandbox, redis_url):
    openid = await _openid(sandbox)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "tests/tools/token_user.py"),
            redis_url,
            sandbox.url,
            "15",
            openid,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [int(out.strip()) for out, _ in outputs] == [15, 15]
    stats = await sandbox.stats()
    assert stats["token_fetches"]["cgi-bin/stable_token"] == 1


@pytest.mark.asyncio
async def test_bad_credentials_are_a_typed_error(ctx, sandbox):
    await sandbox.fault("cgi-bin/stable_token", errcode=40125, times=1)
    with pytest.raises(wx.InvalidCredentialError):
        await ctx.wechat.access_token()


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [QUICK])
async def test_hang_gives_up_within_deadline(ctx, sandbox):
    openid = await _openid(sandbox)
    await ctx.wechat.access_token()
    await sandbox.fault("wxa/msg_sec_check", hang_seconds=60)
    started = time.monotonic()
    with pytest.raises(wx.WeChatUnavailableError) as info:
        await ctx.wechat.msg_sec_check(openid, "x")
    elapsed = time.monotonic() - started
    timeout = ctx.settings.wechat.timeout_seconds
    assert elapsed <= 2 * timeout + 2 + 0.3
    assert elapsed >= timeout  # it did wait, and retried
    assert info.value.errcode == "timeout"


@pytest.mark.asyncio
@pytest.mark.usefixtures("quick_wechat_retries")
async def test_http_500_retried_then_ok(ctx, sandbox):
    openid = await _openid(sandbox)
    await sandbox.fault("wxa/msg_sec_check", http_status=500, times=2)
    answer = await ctx.wechat.msg_sec_check(openid, "x")
    assert answer["result"]["suggest"] == "pass"
    assert (await sandbox.stats())["calls"]["wxa/msg_sec_check"] == 3


@pytest.mark.asyncio
@pytest.mark.usefixtures("quick_wechat_retries")
async def test_unreachable_wechat(ctx):
    ctx.wechat.api_base = "http://127.0.0.1:9/"  # discard port: nothing listens
    with pytest.raises(wx.WeChatUnavailableError) as info:
        await ctx.wechat.code2session("abc")
    assert info.value.errcode == "network"
    assert info.value.ambiguous is False  # nothing was sent: safe to retry, even a send


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{}, {"wechat": {"http_keepalive": False}}])
async def test_connections_kept_alive(ctx, sandbox, settings_overrides):
    """With keep-alive (the default) sequential calls share one TCP connection; without it
    each call opens its own. Both give the same answers."""
    openid = await _openid(sandbox)
    await ctx.wechat.access_token()
    before = (await sandbox.stats())["connections"]
    for i in range(5):
        answer = await ctx.wechat.msg_sec_check(openid, f"hello {i}")
        assert answer["result"]["suggest"] == "pass"
    opened = (await sandbox.stats())["connections"] - before
    assert opened == (5 if settings_overrides else 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "errcode, exc",
    [
        (43101, wx.QuotaExhaustedError),
        (47003, wx.TemplateDataError),
        (40037, wx.InvalidTemplateError),
        (41030, wx.InvalidPageError),
        (40003, wx.InvalidUserError),
        (45009, wx.UserRateLimitError),
        (48001, wx.InvalidArgumentError),
    ],
)
async def test_errcodes_are_typed(ctx, sandbox, errcode, exc):
    await sandbox.fault("cgi-bin/message/subscribe/send", errcode=errcode)
    with pytest.raises(exc) as info:
        await ctx.wechat.send_subscribe_message("o1", "tpl", {"thing1": {"value": "x"}})
    assert info.value.errcode == errcode


@pytest.mark.asyncio
async def test_wxacode_is_png(ctx, sandbox):
    image = await ctx.wechat.get_wxacode_unlimit("abcDEF123_-abcDEF123_-", "pages/evaluate/index")
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(wx.InvalidPageError):
        await ctx.wechat.get_wxacode_unlimit("abcDEF123_-abcDEF123_-", "pages/nosuch")
    with pytest.raises(wx.InvalidSceneError):
        await ctx.wechat.get_wxacode_unlimit("x" * 33, "pages/evaluate/index")


@pytest.mark.asyncio
async def test_metrics_count_wechat_calls(ctx, sandbox, api):
    code = await sandbox.login_code()
    await api("POST", "/api/v1/auth/login", {"code": code["code"]})
    await api("POST", "/api/v1/auth/login", {"code": "bad"})
    status, body = await api("GET", "/metrics")
    text = body.decode()
    assert 'wxb_wechat_calls_total{endpoint="sns/jscode2session",errcode="0"} 1.0' in text
    assert 'wxb_wechat_calls_total{endpoint="sns/jscode2session",errcode="40029"} 1.0' in text
    assert 'wxb_http_requests_total{method="POST",route="/api/v1/auth/login",status="200"}' in text


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [QUICK])
@pytest.mark.usefixtures("quick_wechat_retries")
async def test_sends_are_never_resent_after_a_timeout(ctx, sandbox):
    """subscribe/send spends a quota: after a timeout WeChat may have delivered it, so the
    gateway does not resend by itself and says the failure is ambiguous."""
    await ctx.wechat.access_token()
    await sandbox.fault("cgi-bin/message/subscribe/send", hang_seconds=60)
    with pytest.raises(wx.WeChatUnavailableError) as info:
        await ctx.wechat.send_subscribe_message("o1", "tpl", {"thing1": {"value": "x"}})
    assert info.value.ambiguous is True and info.value.errcode == "timeout"
    assert (await sandbox.stats())["calls"]["cgi-bin/message/subscribe/send"] == 1
    # a 5xx answer is not ambiguous: WeChat did not take it, so it is retried
    await sandbox.control("DELETE", "faults")
    await sandbox.fault("cgi-bin/message/subscribe/send", http_status=500)
    with pytest.raises(wx.WeChatUnavailableError) as info:
        await ctx.wechat.send_subscribe_message("o1", "tpl", {"thing1": {"value": "x"}})
    assert info.value.ambiguous is False
    assert (await sandbox.stats())["calls"]["cgi-bin/message/subscribe/send"] == 4


@pytest.mark.parametrize(
    "errno, message, errcode, ambiguous",
    [
        (7, "Failed to connect to 127.0.0.1 port 9: Connection refused", "network", False),
        (6, "Could not resolve host: api.weixin.qq.com", "network", False),
        (28, "Connection timed out after 1001 milliseconds", "timeout", False),
        (28, "Resolving timed out after 1000 milliseconds", "timeout", False),
        (28, "Operation timed out after 1000 milliseconds with 0 bytes received", "timeout", True),
        (52, "Empty reply from server", "network", True),
        (56, "Recv failure: Connection reset by peer", "network", True),
    ],
)
def test_curl_failures_classified(errno, message, errcode, ambiguous):
    """libcurl's errors: only a failure before the request went out is unambiguous (a send
    that WeChat may have taken is never resent)."""
    from tornado.curl_httpclient import CurlError

    from wxbackend.wechat.client import transport_failure

    failure = transport_failure(CurlError(errno, message))
    assert (failure.errcode, failure.ambiguous) == (errcode, ambiguous)


@pytest.mark.asyncio
async def test_token_kept_in_the_process(ctx, sandbox):
    """The token read from Redis is reused by this process for LOCAL_TOKEN_SECONDS: no Redis
    round trip per call (here, its key deleted from Redis does not matter)."""
    openid = await _openid(sandbox)
    await ctx.wechat.msg_sec_check(openid, "first")
    await ctx.redis.delete(ctx.rkeys("wechat", "token", ctx.settings.wechat.appid))
    for i in range(5):
        await ctx.wechat.msg_sec_check(openid, f"again {i}")
    assert (await sandbox.stats())["token_fetches"]["cgi-bin/stable_token"] == 1


@pytest.mark.asyncio
async def test_without_reuse_each_call_reads_redis(ctx, sandbox, monkeypatch):
    from wxbackend.wechat import client

    monkeypatch.setattr(client, "LOCAL_TOKEN_SECONDS", 0.0)
    openid = await _openid(sandbox)
    await ctx.wechat.msg_sec_check(openid, "first")
    await ctx.redis.delete(ctx.rkeys("wechat", "token", ctx.settings.wechat.appid))
    await ctx.wechat.msg_sec_check(openid, "again")
    assert (await sandbox.stats())["token_fetches"]["cgi-bin/stable_token"] == 2
