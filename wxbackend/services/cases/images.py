"""The mini-program code image of a case's one-time token (``GET /partner/qrcode.png``).

WeChat draws the code (``getwxacodeunlimit``) for a usable scene; the image is cached in Redis
under the token's hash for the token's life, and dropped when a partner replaces the token.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import redis.exceptions

from models.base import utcnow
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.services.cases.lookup import token_state
from wxbackend.services.cases.tokens import check_token_usable
from wxbackend.wechat import errors as wx

log = logging.getLogger("wxbackend.cases")


def image_key(ctx: Context, token_hash: str) -> str:
    """The Redis key of a token's cached code image."""
    return ctx.rkeys("qrpng", token_hash)


async def forget_images(ctx: Context, token_hashes: list[str]) -> None:
    """Drop the cached images of replaced tokens (best effort: the TTL cleans up anyway)."""
    try:
        await ctx.redis.delete(*[image_key(ctx, h) for h in token_hashes])
    except redis.exceptions.RedisError as exc:  # the TTL cleans up anyway
        log.warning("qrcode cache: delete failed", extra={"fields": {"error": type(exc).__name__}})


def code_options(ctx: Context) -> dict[str, Any]:
    """``page`` / ``check_path`` / ``env_version`` / ``width`` of the mini-program code, from
    the WeChat configuration in force (admin-stored over environment over file)."""
    wechat = ctx.wechat_config.config()
    return {
        "page": wechat.miniprogram_page,
        "check_path": wechat.check_path,
        "env_version": wechat.env_version,
        "width": ctx.settings.qr.width,
    }


def image_type(image: bytes) -> str:
    """The MIME type of WeChat's image bytes (PNG usually, JPEG sometimes)."""
    return "image/jpeg" if image.startswith(b"\xff\xd8") else "image/png"


async def _cached_image(ctx: Context, key: str) -> bytes | None:
    try:
        cached = await ctx.redis.get(key)
    except redis.exceptions.RedisError as exc:
        log.warning("qrcode cache: read failed", extra={"fields": {"error": type(exc).__name__}})
        return None
    if not cached:
        return None
    try:
        return base64.b64decode(cached, validate=True)
    except (binascii.Error, ValueError):
        return None


async def qrcode_image(ctx: Context, scene: str) -> bytes:
    """``GET /partner/qrcode.png``: the code image of a usable token (404/410 otherwise).

    Cached in Redis (base64, the client decodes responses as text) under the token's hash until
    the token expires. WeChat failing → 503 ``wechat_unavailable``. The scene is never logged.
    """
    token, case = await ctx.db.run(token_state, scene)
    token = check_token_usable(token, case)
    key = image_key(ctx, token.token_hash)
    image = await _cached_image(ctx, key)
    if image is not None:
        return image
    try:
        image = await ctx.wechat.get_wxacode_unlimit(scene, **code_options(ctx))
    except wx.WeChatError as exc:
        log.warning(
            "qrcode: WeChat failed",
            extra={"fields": {"endpoint": "getwxacodeunlimit", "errcode": str(exc.errcode)}},
        )
        raise errors.WeChatUnavailable(
            f"WeChat did not make the code (errcode {exc.errcode}); try again later."
        ) from None
    ttl = int((token.expires_at - utcnow()).total_seconds())
    if ttl > 0:
        try:
            await ctx.redis.set(key, base64.b64encode(image).decode("ascii"), ex=ttl)
        except redis.exceptions.RedisError as exc:
            log.warning(
                "qrcode cache: write failed", extra={"fields": {"error": type(exc).__name__}}
            )
    return image
