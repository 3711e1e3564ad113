"""Typed WeChat errors: one exception class per errcode family the services care about."""

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
}


def error_for(endpoint: str, errcode: int, errmsg: str) -> WeChatError:
    return _BY_CODE.get(errcode, InvalidArgumentError)(endpoint, errcode, errmsg)
