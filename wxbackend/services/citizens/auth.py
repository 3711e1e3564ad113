"""Citizen login through WeChat (code2Session) and opaque session tokens.

A session token is random (256 bits), handed to the mini-program once and kept only as its
SHA-256 digest: in the database (the source, with its expiry and revocation) and in Redis
(the cache every request reads), see :mod:`wxbackend.services.common.session_store`. A Redis
restarted empty logs nobody out. No JWT: nothing the client holds can outlive a revocation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.citizens import ratelimit
from wxbackend.services.citizens import users as user_service
from wxbackend.services.common import session_store
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.auth")


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_in: int
    user_id: int


#: ``Session.kind`` and the Redis key prefix of citizens' sessions.
KIND = "citizen"
LEGACY_INDEX = "user-sess"  # before migration 14 (see session_store.revoke_all)
CACHE_PREFIX = "sess"


async def login(ctx: Context, code: str, client_ip: str) -> LoginResult:
    """Exchange a ``wx.login`` code for a session; the user is created on first login."""
    limits = ctx.settings.ratelimit
    await ratelimit.hit(ctx, "login-ip", client_ip, limits.login_per_ip_per_minute, 60)
    if not code or len(code) > 128:
        raise errors.WeChatCodeInvalid()
    try:
        answer = await ctx.wechat.code2session(code)
    except wx.InvalidCodeError:
        raise errors.WeChatCodeInvalid() from None
    except wx.UserRateLimitError:
        raise errors.RateLimited(
            "WeChat limits logins for this user; try again in a minute."
        ) from None
    except wx.RiskyUserError:
        raise errors.WeChatUserBlocked() from None
    except wx.InvalidCredentialError:  # 40013 / 40125: our configuration, not WeChat
        raise errors.WeChatMisconfigured() from None
    except wx.WeChatError as exc:
        log.warning("login: WeChat failed", extra={"fields": {"errcode": str(exc.errcode)}})
        raise errors.WeChatUnavailable() from None
    openid = answer.get("openid")
    if not openid:
        raise errors.WeChatUnavailable("WeChat gave no openid.")
    await ratelimit.hit(ctx, "login-openid", openid, limits.login_per_openid_per_minute, 60)
    session_key_enc = ctx.cipher.encrypt(answer.get("session_key", ""), "user.session_key")
    user_id = await ctx.db.run(
        user_service.upsert_wechat_user, openid, answer.get("unionid"), session_key_enc
    )
    token = await create_session(ctx, user_id)
    return LoginResult(token, ctx.settings.auth.session_ttl_seconds, user_id)


async def create_session(ctx: Context, user_id: int) -> str:
    """A new session token for ``user_id`` (stored for ``auth.session_ttl_seconds``)."""
    ttl = ctx.settings.auth.session_ttl_seconds
    return await session_store.create(ctx, KIND, CACHE_PREFIX, user_id, ttl)


async def session_user(ctx: Context, token: str) -> int | None:
    """The user id of a live session token, or None."""
    return await session_store.lookup(ctx, KIND, CACHE_PREFIX, token)


async def logout(ctx: Context, token: str) -> None:
    """End this session."""
    await session_store.revoke(ctx, KIND, CACHE_PREFIX, token)


async def revoke_all(ctx: Context, user_id: int) -> int:
    """End every session of a user; returns how many were live."""
    return await session_store.revoke_all(ctx, KIND, CACHE_PREFIX, user_id, LEGACY_INDEX)
