"""Typed WeChat errors: one exception class per errcode family the services care about, and
what each documented errcode means (:func:`meaning`), from WeChat's own pages:

* access token / login: https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-access-token/getStableAccessToken.html
  and https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html
  (40013 invalid appid, 40125 invalid appsecret: the configuration, not WeChat, is wrong);
* subscribe send: https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
  (40003, 40037, 43101, 47003, 41030);
* msg_sec_check v2: https://developers.weixin.qq.com/miniprogram/dev/server/API/sec-center/sec-check/api_msgseccheck.html
  (also the 1.0 page https://developers.weixin.qq.com/miniprogram/en/security/content/security.msgSecCheck-v1.html:
  40003, 40129 scene, 43104 appid/openid, 43302 method, 44002 empty, 47001 format, 61010 the
  user did not use the mini-program in the last two hours);
* face verification (cityservice/face/identify): the queryverifyinfo page
  https://developers.weixin.qq.com/miniprogram/dev/server/API/face/api_queryverifyinfo.html lists
  verify_ret, not errcodes; the cityservice face API family answers ``84001`` for an invalid
  identify (verify) id and ``84002`` for an expired one (用户信息过期), as WeChat's staff
  explain at https://developers.weixin.qq.com/community/minihome/doc/00000e0a1f8760ae70ca1563451800
  and https://developers.weixin.qq.com/community/minihome/doc/00002220e44dc05b71ad808ac51400.
"""

from __future__ import annotations


class WeChatError(Exception):
    """WeChat answered ``{errcode != 0, errmsg}``, or could not be reached."""

    def __init__(self, endpoint: str, errcode: int | str, errmsg: str = ""):
        self.endpoint = endpoint
        self.errcode = errcode
        self.errmsg = errmsg
        super().__init__(f"WeChat {endpoint}: errcode {errcode} {errmsg}".strip())


class WeChatUnavailableError(WeChatError):
    """Busy (-1), HTTP 5xx, a timeout or a network error, after the allowed retries.

    ``ambiguous``: the last attempt may have reached WeChat (a timeout or a connection lost
    after sending), so WeChat may have acted on it.
    """

    def __init__(
        self, endpoint: str, errcode: int | str, errmsg: str = "", ambiguous: bool = False
    ):
        self.ambiguous = ambiguous
        super().__init__(endpoint, errcode, errmsg)


class InvalidCredentialError(WeChatError):
    """40013 bad appid, 40125 bad secret, 40002 bad grant type: a configuration error."""


class AccessTokenError(WeChatError):
    """40001 / 42001 / 41001 that a refresh did not cure."""


class InvalidCodeError(WeChatError):
    """40029 invalid login code, 40163 code already used."""


class UserRateLimitError(WeChatError):
    """45011 per-user minute quota, 45009 API rate limit."""


class RiskyUserError(WeChatError):
    """40226: WeChat blocks this user as high-risk."""


class QuotaExhaustedError(WeChatError):
    """43101: the user has no subscription quota left for the template."""


class TemplateDataError(WeChatError):
    """47003: template data key or value rejected (errmsg names the field)."""


class InvalidPageError(WeChatError):
    """41030: the page does not exist or is not published."""


class InvalidSceneError(WeChatError):
    """40169 / 40129: the scene's length or characters."""


class InvalidUserError(WeChatError):
    """40003: the openid is not a user of this mini-program."""


class InvalidTemplateError(WeChatError):
    """40037: unknown template id."""


class VerifyIdInvalidError(WeChatError):
    """84001: the face verification's verify_id is not one WeChat knows (非法 identify id)."""


class VerifyIdExpiredError(WeChatError):
    """84002: the face verification's verify_id expired (用户信息过期)."""


class UserNotRecentError(WeChatError):
    """61010 (msg_sec_check): the user has not used the mini-program in the last 2 hours."""


class InvalidArgumentError(WeChatError):
    """Any other errcode: the request was wrong."""


BUSY = -1
TOKEN_INVALID = (40001, 42001)
_BY_CODE: dict[int, type[WeChatError]] = {
    -1: WeChatUnavailableError,
    40001: AccessTokenError,
    42001: AccessTokenError,
    41001: AccessTokenError,
    40002: InvalidCredentialError,
    40013: InvalidCredentialError,
    40125: InvalidCredentialError,
    40029: InvalidCodeError,
    40163: InvalidCodeError,
    45009: UserRateLimitError,
    45011: UserRateLimitError,
    40226: RiskyUserError,
    43101: QuotaExhaustedError,
    47003: TemplateDataError,
    41030: InvalidPageError,
    40169: InvalidSceneError,
    40129: InvalidSceneError,
    40003: InvalidUserError,
    40037: InvalidTemplateError,
    84001: VerifyIdInvalidError,
    84002: VerifyIdExpiredError,
}
#: Codes whose meaning depends on the endpoint (40129 is a bad scene *value* for the text
#: check, bad scene *characters* for the mini-program code).
_BY_ENDPOINT: dict[str, dict[int, type[WeChatError]]] = {
    "wxa/msg_sec_check": {
        40129: InvalidArgumentError,
        43104: InvalidUserError,
        61010: UserNotRecentError,
    },
}

#: What each documented errcode means (logs, the console's problems), in WeChat's words.
MEANINGS: dict[int, str] = {
    -1: "WeChat is busy (系统繁忙)",
    40001: "access token invalid or not the latest",
    40002: "grant_type is wrong",
    40003: "openid invalid or not a user of this mini-program",
    40013: "invalid AppID (不合法的 AppID): check the configured appid",
    40029: "login code invalid",
    40037: "template_id invalid (订阅模板 id 不正确)",
    40125: "invalid AppSecret (不合法的 secret): check the configured secret",
    40129: "scene invalid",
    40163: "login code already used",
    40169: "scene too long",
    40226: "high-risk user, login blocked",
    41001: "access token missing",
    41030: "page not in the published mini-program (page 路径不正确)",
    42001: "access token expired",
    43101: "the user has no subscription for this template (用户拒绝接受消息)",
    43104: "appid and openid do not match",
    43302: "the method must be POST",
    44002: "an empty parameter",
    45009: "API rate limit reached",
    45011: "per-user minute quota reached",
    47001: "the parameters are not in the right format",
    47003: "template data invalid: a key or a value breaks its field rule (模板参数不准确)",
    61010: "the user has not used the mini-program in the last two hours",
    84001: "verify_id invalid (非法 identify id)",
    84002: "verify_id expired (用户信息过期)",
}


def meaning(errcode: int | str) -> str:
    """What WeChat says ``errcode`` means ("" when it is not a documented one)."""
    try:
        return MEANINGS.get(int(errcode), "")
    except (TypeError, ValueError):
        return ""


def error_for(endpoint: str, errcode: int, errmsg: str) -> WeChatError:
    """The typed error of ``errcode`` from ``endpoint``."""
    kind = _BY_ENDPOINT.get(endpoint, {}).get(errcode) or _BY_CODE.get(errcode)
    return (kind or InvalidArgumentError)(endpoint, errcode, errmsg)
