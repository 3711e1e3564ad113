"""Access tokens: ``GET cgi-bin/token`` and ``POST cgi-bin/stable_token``.

``GET cgi-bin/token?grant_type=client_credential&appid=&secret=``
    ``{access_token, expires_in: 7200}``. Each fetch issues a new token; the previous one stays
    valid 300 s more. ``40002`` grant_type not client_credential, ``40013`` wrong (or missing)
    appid, ``40125`` wrong (or missing) secret.
``POST cgi-bin/stable_token`` ``{grant_type, appid, secret, force_refresh?}``
    A token chain separate from ``cgi-bin/token`` (as on WeChat). Returns the same token (with
    its remaining ``expires_in``) until 5 min before its expiry, then a new one.
    ``force_refresh: true`` issues a new one (the previous stays valid 300 s), at most 20 per
    day (UTC+8 calendar day) and 30 s apart, else ``45009``. Errors as for ``cgi-bin/token``;
    ``force_refresh`` not a boolean: ``40097``.

Every other call (but ``sns/jscode2session``) needs ``?access_token=``: missing ``41001``;
unknown, invalidated, or replaced more than 300 s ago ``40001``; past its lifetime ``42001``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import JSONDict, WeChatError, bad_args
from wxbackend.sandbox.paths import STABLE_TOKEN_PATH, TOKEN_PATH

TOKEN_TTL = 7200
TOKEN_OVERLAP = 300
STABLE_RENEW_BEFORE = 300
FORCE_REFRESH_PER_DAY = 20
FORCE_REFRESH_INTERVAL = 30
_CHINA_TZ = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class AppCredentials:
    """The mini-program's appid and secret, as WeChat checks them."""

    appid: str
    secret: str

    def check(self, appid: Any, secret: Any) -> None:
        """``40013`` wrong appid, ``40125`` wrong secret."""
        if appid != self.appid:
            raise WeChatError(40013)
        if secret != self.secret:
            raise WeChatError(40125)


@dataclass
class AccessToken:
    """An issued access token."""

    value: str
    endpoint: str
    issued_at: float
    expires_at: float
    replaced_until: float | None = None
    invalidated: bool = False


class TokenState:
    """Issued tokens of both chains, forced refreshes, and how many fetches were answered."""

    def __init__(self, app: AppCredentials, now: Callable[[], float]) -> None:
        self.app = app
        self.now = now
        self.tokens: dict[str, AccessToken] = {}
        self.current: dict[str, str] = {}
        self.force_refreshes: list[float] = []
        self.fetches: dict[str, int] = {TOKEN_PATH: 0, STABLE_TOKEN_PATH: 0}

    def _issue(self, endpoint: str) -> AccessToken:
        """A new token for ``endpoint``'s chain; the previous one stays valid 300 s more."""
        now = self.now()
        previous = self.tokens.get(self.current.get(endpoint, ""))
        if previous is not None and previous.replaced_until is None:
            previous.replaced_until = min(previous.expires_at, now + TOKEN_OVERLAP)
        token = AccessToken(secrets.token_urlsafe(96), endpoint, now, now + TOKEN_TTL)
        self.tokens[token.value] = token
        self.current[endpoint] = token.value
        return token

    def _answer(self, endpoint: str, token: AccessToken) -> JSONDict:
        self.fetches[endpoint] += 1
        expires_in = max(0, round(token.expires_at - self.now()))
        return {"access_token": token.value, "expires_in": expires_in}

    def fetch_token(self, grant_type: str, appid: str, secret: str) -> JSONDict:
        """``GET cgi-bin/token``."""
        if grant_type != "client_credential":
            raise WeChatError(40002)
        self.app.check(appid, secret)
        return self._answer(TOKEN_PATH, self._issue(TOKEN_PATH))

    def fetch_stable_token(self, body: JSONDict) -> JSONDict:
        """``POST cgi-bin/stable_token``."""
        if body.get("grant_type") != "client_credential":
            raise WeChatError(40002)
        self.app.check(body.get("appid"), body.get("secret"))
        force = body.get("force_refresh", False)
        if not isinstance(force, bool):
            raise bad_args("force_refresh must be a boolean")
        if force:
            self._use_force_refresh()
            return self._answer(STABLE_TOKEN_PATH, self._issue(STABLE_TOKEN_PATH))
        current = self.tokens.get(self.current.get(STABLE_TOKEN_PATH, ""))
        usable = (
            current is not None
            and not current.invalidated
            and self.now() < current.expires_at - STABLE_RENEW_BEFORE
        )
        if current is None or not usable:
            current = self._issue(STABLE_TOKEN_PATH)
        return self._answer(STABLE_TOKEN_PATH, current)

    def _use_force_refresh(self) -> None:
        """Enforce 20 forced refreshes per day, 30 s apart (``45009``)."""
        now = self.now()
        today = datetime.fromtimestamp(now, _CHINA_TZ).date()
        history = self.force_refreshes
        if history and now - history[-1] < FORCE_REFRESH_INTERVAL:
            raise WeChatError(45009, "reach max api daily quota limit: force_refresh too often")
        done_today = [t for t in history if datetime.fromtimestamp(t, _CHINA_TZ).date() == today]
        if len(done_today) >= FORCE_REFRESH_PER_DAY:
            raise WeChatError(45009)
        self.force_refreshes = [*done_today, now]

    def check_access_token(self, value: str | None) -> None:
        """``41001`` missing, ``40001`` unknown/invalid/replaced, ``42001`` expired."""
        if not value:
            raise WeChatError(41001)
        token = self.tokens.get(value)
        if token is None or token.invalidated:
            raise WeChatError(40001)
        now = self.now()
        if now >= token.expires_at:
            raise WeChatError(42001)
        if token.replaced_until is not None and now >= token.replaced_until:
            raise WeChatError(40001)

    def invalidate(self) -> None:
        """Every issued token becomes invalid (``40001``)."""
        for token in self.tokens.values():
            token.invalidated = True
        self.current.clear()

    def expire(self) -> None:
        """Every issued token becomes expired (``42001``)."""
        now = self.now()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now)
        self.current.clear()


# --- HTTP -------------------------------------------------------------------------------------


class TokenHandler(WeChatHandler):
    """``GET cgi-bin/token``."""

    wechat_path = TOKEN_PATH
    needs_access_token = False

    def get(self) -> None:
        self.answer(
            lambda: self.state.tokens.fetch_token(
                self.arg("grant_type"), self.arg("appid"), self.arg("secret")
            )
        )


class StableTokenHandler(WeChatHandler):
    """``POST cgi-bin/stable_token``."""

    wechat_path = STABLE_TOKEN_PATH
    needs_access_token = False

    def post(self) -> None:
        self.answer(lambda: self.state.tokens.fetch_stable_token(self.json_body()))


HANDLERS: tuple[type[WeChatHandler], ...] = (TokenHandler, StableTokenHandler)
