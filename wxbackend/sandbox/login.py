"""Mini-program login: ``GET sns/jscode2session`` (and the codes ``wx.login`` would give).

``GET sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code``
    ``{openid, session_key, unionid?}`` (``unionid`` only if the code has one). Codes come
    from the control API only (``/_sandbox/login-code``). ``40029`` unknown, missing or older
    than 5 min, ``40163`` already used; ``40013``/``40125`` credentials, ``40002`` grant_type not
    authorization_code.

The openids known here (through a login code, or the bulk quota of load tests) are the only
ones other endpoints accept (``40003`` otherwise).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import JSONDict, WeChatError
from wxbackend.sandbox.paths import CODE2SESSION_PATH
from wxbackend.sandbox.token import AppCredentials

LOGIN_CODE_TTL = 300


@dataclass
class LoginCode:
    """A ``wx.login`` code made through the control API."""

    code: str
    openid: str
    unionid: str | None
    created_at: float
    used: bool = False


def new_openid() -> str:
    """An openid shaped like WeChat's: ``"o"`` + 27 URL-safe characters."""
    return "o" + secrets.token_urlsafe(21)[:27]


class LoginState:
    """Login codes and the openids WeChat knows."""

    def __init__(self, app: AppCredentials, now: Callable[[], float]) -> None:
        self.app = app
        self.now = now
        self.codes: dict[str, LoginCode] = {}
        self.openids: set[str] = set()

    def issue_code(self, openid: str | None = None, unionid: str | None = None) -> JSONDict:
        """A ``wx.login`` code for ``openid`` (generated when None)."""
        openid = openid or new_openid()
        code = secrets.token_urlsafe(24)
        self.codes[code] = LoginCode(code, openid, unionid, self.now())
        self.openids.add(openid)
        return {"code": code, "openid": openid, "unionid": unionid}

    def code_to_session(self, appid: str, secret: str, js_code: str, grant_type: str) -> JSONDict:
        """``GET sns/jscode2session``."""
        self.app.check(appid, secret)
        if grant_type != "authorization_code":
            raise WeChatError(40002)
        login = self.codes.get(js_code)
        if login is None:
            raise WeChatError(40029)
        if login.used:
            raise WeChatError(40163)
        if self.now() - login.created_at > LOGIN_CODE_TTL:
            raise WeChatError(40029, "invalid code: expired")
        login.used = True
        answer: JSONDict = {
            "openid": login.openid,
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
        }
        if login.unionid:
            answer["unionid"] = login.unionid
        return answer

    def known_openid(self, openid: Any) -> str:
        """``openid`` if WeChat issued it, else ``40003``."""
        if not isinstance(openid, str) or openid not in self.openids:
            raise WeChatError(40003)
        return openid


# --- HTTP -------------------------------------------------------------------------------------


class CodeToSessionHandler(WeChatHandler):
    """``GET sns/jscode2session``."""

    wechat_path = CODE2SESSION_PATH
    needs_access_token = False

    def get(self) -> None:
        self.answer(
            lambda: self.state.logins.code_to_session(
                self.arg("appid"), self.arg("secret"), self.arg("js_code"), self.arg("grant_type")
            )
        )


HANDLERS: tuple[type[WeChatHandler], ...] = (CodeToSessionHandler,)
