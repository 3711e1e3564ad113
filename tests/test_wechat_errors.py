"""WeChat's errors as WeChat documents them (wxbackend/wechat/errors.py cites the pages).

* A wrong AppSecret (40125) or AppID (40013) is our configuration, not WeChat being down:
  503 ``wechat_misconfigured`` at login and face start, listed under ``problems.credentials``
  of ``GET /admin/api/wechat-config`` until the credentials are corrected.
* An expired verify_id is known by its errcode (84002), not by the words of errmsg.
* Codes of the subscribe and text-check pages carry their meaning.
"""

from __future__ import annotations

import pytest

from tests.support.admins import admin_token
from wxbackend.clients.citizen import login
from wxbackend.clients.partner import resident_id
from wxbackend.wechat import errors as wx

CONFIG = "/admin/api/wechat-config"
LOGIN = "sns/jscode2session"
WRONG_SECRET = "f" * 32


async def _problem(api, token):
    status, config = await api("GET", CONFIG, token=token)
    assert status == 200, config
    return config["problems"]["credentials"]


async def _login_status(api, sandbox):
    code = (await sandbox.login_code())["code"]
    status, answer = await api("POST", "/api/v1/auth/login", {"code": code})
    return status, answer


@pytest.mark.asyncio
async def test_wrong_secret_is_a_configuration_error_listed_until_corrected(api, sandbox, ctx):
    admin = await admin_token(api, ctx)
    assert await _problem(api, admin) is None
    right = ctx.wechat_config.config().secret
    status, _ = await api("PUT", CONFIG, {"secret": WRONG_SECRET}, token=admin)
    assert status == 200

    status, answer = await _login_status(api, sandbox)
    assert (status, answer["error"]["code"]) == (503, "wechat_misconfigured"), answer
    problem = await _problem(api, admin)
    assert problem["errcode"] == 40125 and problem["endpoint"] == LOGIN
    assert "AppSecret" in problem["meaning"] and problem["at"]
    assert WRONG_SECRET not in str(problem)

    status, _ = await api("PUT", CONFIG, {"secret": right}, token=admin)
    assert status == 200
    assert await _problem(api, admin) is None  # about credentials no longer in force
    token, _ = await login(api, sandbox)
    assert token


@pytest.mark.asyncio
async def test_wrong_appid_is_a_configuration_error_too(api, sandbox, ctx):
    admin = await admin_token(api, ctx)
    status, _ = await api("PUT", CONFIG, {"appid": "wx" + "0" * 15 + "f"}, token=admin)
    assert status == 200
    status, answer = await _login_status(api, sandbox)
    assert (status, answer["error"]["code"]) == (503, "wechat_misconfigured")
    assert (await _problem(api, admin))["errcode"] == 40013


@pytest.mark.asyncio
async def test_busy_is_not_a_configuration_error(api, sandbox, ctx):
    admin = await admin_token(api, ctx)
    await sandbox.fault(LOGIN, errcode=-1, times=3)
    status, answer = await _login_status(api, sandbox)
    assert (status, answer["error"]["code"]) == (503, "wechat_unavailable")
    assert await _problem(api, admin) is None


@pytest.mark.asyncio
async def test_a_refusal_clears_once_a_call_works(api, sandbox, ctx):
    admin = await admin_token(api, ctx)
    await sandbox.fault(LOGIN, errcode=40125, times=1)
    status, answer = await _login_status(api, sandbox)
    assert (status, answer["error"]["code"]) == (503, "wechat_misconfigured")
    assert (await _problem(api, admin))["errcode"] == 40125
    token, _ = await login(api, sandbox)  # the same credentials work again
    assert token and await _problem(api, admin) is None


@pytest.mark.asyncio
async def test_face_start_with_a_wrong_secret_is_misconfigured(api, sandbox, ctx):
    token, _ = await login(api, sandbox)
    await ctx.redis.delete(ctx.rkeys("wechat", "token", ctx.wechat_config.config().appid))
    ctx.wechat._local_token = None  # the cached token would hide the refusal
    await sandbox.fault("cgi-bin/stable_token", errcode=40125, times=1)
    body = {"name": "张三", "id_number": resident_id("110105", "19491231")}
    status, answer = await api("POST", "/api/v1/identity/face/start", body, token=token)
    assert (status, answer["error"]["code"]) == (503, "wechat_misconfigured"), answer


@pytest.mark.asyncio
async def test_expired_verify_id_is_known_by_its_errcode(api, sandbox, ctx):
    token, _ = await login(api, sandbox)
    body = {"name": "张三", "id_number": resident_id("110105", "19491231")}
    status, started = await api("POST", "/api/v1/identity/face/start", body, token=token)
    assert status == 200, started
    finish = {"verify_id": started["verify_id"]}
    path = "cityservice/face/identify/queryverifyinfo"
    await sandbox.fault(path, errcode=84002, times=1)
    status, answer = await api("POST", "/api/v1/identity/face/finish", finish, token=token)
    assert (status, answer["error"]["code"]) == (410, "verify_id_expired")
    # an argument error is not an expiry, whatever its words
    await sandbox.fault(path, errcode=40097, times=1)
    status, answer = await api("POST", "/api/v1/identity/face/finish", finish, token=token)
    assert (status, answer["error"]["code"]) == (503, "wechat_unavailable")


@pytest.mark.parametrize(
    ("endpoint", "errcode", "kind"),
    [
        ("sns/jscode2session", 40125, wx.InvalidCredentialError),
        ("cgi-bin/stable_token", 40013, wx.InvalidCredentialError),
        ("cityservice/face/identify/queryverifyinfo", 84002, wx.VerifyIdExpiredError),
        ("cityservice/face/identify/queryverifyinfo", 84001, wx.VerifyIdInvalidError),
        ("wxa/msg_sec_check", 61010, wx.UserNotRecentError),
        ("wxa/msg_sec_check", 43104, wx.InvalidUserError),
        ("wxa/msg_sec_check", 40129, wx.InvalidArgumentError),  # a bad scene value
        ("wxa/getwxacodeunlimit", 40129, wx.InvalidSceneError),  # bad scene characters
        ("cgi-bin/message/subscribe/send", 43101, wx.QuotaExhaustedError),
        ("cgi-bin/message/subscribe/send", 47003, wx.TemplateDataError),
        ("cgi-bin/message/subscribe/send", 40037, wx.InvalidTemplateError),
        ("cgi-bin/message/subscribe/send", 41030, wx.InvalidPageError),
        ("cgi-bin/message/subscribe/send", 40003, wx.InvalidUserError),
    ],
)
def test_documented_codes_have_their_type_and_meaning(endpoint, errcode, kind):
    error = wx.error_for(endpoint, errcode, "")
    assert type(error) is kind
    assert wx.meaning(errcode)


def test_unknown_codes_have_no_made_up_meaning():
    assert wx.meaning(99999) == "" and wx.meaning("timeout") == ""
    assert type(wx.error_for("wxa/msg_sec_check", 99999, "")) is wx.InvalidArgumentError
