"""The resources one server process shares: settings, database, Redis, keys, WeChat.

Built once at start (:func:`build_context`) and handed to the application and services.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from wxbackend.cache import Keys, make_redis
from wxbackend.db import Database
from wxbackend.metrics import Metrics
from wxbackend.security import FieldCipher, LookupHasher, load_keys
from wxbackend.services.admin.wechat_config import WeChatConfigStore
from wxbackend.settings import Settings
from wxbackend.wechat.client import WeChatGateway

log = logging.getLogger("wxbackend")


def resolve_api_base(settings: Settings) -> str:
    """``"sandbox"`` means the built-in emulator at ``sandbox.address:sandbox.port``."""
    if settings.sandbox_mode:
        return f"http://{settings.sandbox.address}:{settings.sandbox.port}/"
    return settings.wechat.api_base


@dataclass
class Context:
    """Everything a handler or service needs, wired in one place."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    rkeys: Keys
    cipher: FieldCipher
    hasher: LookupHasher
    metrics: Metrics
    wechat: WeChatGateway
    wechat_config: WeChatConfigStore = None  # type: ignore[assignment]
    extras: dict = field(default_factory=dict)

    async def start(self) -> None:
        """Load the stored WeChat configuration and start watching for changes."""
        await self.wechat_config.reload()
        self.wechat_config.start()
        from wxbackend.services.cases import (
            partners as partner_auth,  # lazy: it imports models and this module
        )

        partner_auth.start_watching(self)  # revoked partner keys, in every process

    async def close(self) -> None:
        from wxbackend.services.cases import partners as partner_auth
        from wxbackend.services.public import live as realtime  # lazy: they import this module

        await self.wechat_config.stop()
        await partner_auth.stop_watching(self)  # bounded: never hangs the close
        await realtime.end_live_feeds(self)  # bounded; before Redis goes
        self.wechat.close()
        await self.redis.aclose()
        self.db.close()


def build_context(
    settings: Settings, api_base: str | None = None, redis: aioredis.Redis | None = None
) -> Context:
    """Wire the resources. ``api_base`` overrides the WeChat base URL (tests, sandbox port)."""
    keys = load_keys(settings)
    metrics = Metrics()
    redis = redis if redis is not None else make_redis(settings)
    rkeys = Keys(settings.redis.key_prefix)
    db = Database(settings)
    holder: list[Context] = []
    gateway = WeChatGateway(
        api_base or resolve_api_base(settings),
        lambda: holder[0].wechat_config.credentials(),
        redis,
        rkeys,
        settings.wechat.timeout_seconds,
        metrics,
        keepalive=settings.wechat.http_keepalive,
    )
    ctx = Context(
        settings=settings,
        db=db,
        redis=redis,
        rkeys=rkeys,
        cipher=FieldCipher(keys),
        hasher=LookupHasher(keys),
        metrics=metrics,
        wechat=gateway,
    )
    ctx.wechat_config = WeChatConfigStore(ctx)
    holder.append(ctx)
    from wxbackend.services.public.live import install_publisher  # imports models: keep it lazy

    install_publisher(ctx)
    from wxbackend.services.transparency.checkpoints import signer_of  # imports models

    signer_of(ctx)  # the log's key (generated with SQLite, required with PostgreSQL)
    return ctx
