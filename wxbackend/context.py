"""The resources one server process shares: settings, database, Redis, keys, WeChat.

Built once at start (:func:`build_context`) and handed to the application and services.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from wxbackend.cache import Keys, make_redis
from wxbackend.db import Database
from wxbackend.metrics import Metrics
from wxbackend.security import FieldCipher, LookupHasher, load_keys
from wxbackend.services.admin.wechat_config import WeChatConfigStore
from wxbackend.services.cases.partner_keys import SecretCache
from wxbackend.services.common.outages import Outages
from wxbackend.services.public.live_hub import LiveHub, StreamSlots
from wxbackend.services.public.live_publisher import LivePublisher
from wxbackend.services.transparency.checkpoints import load_signer
from wxbackend.services.transparency.note import Signer
from wxbackend.settings import Settings
from wxbackend.wechat.client import WeChatGateway

log = logging.getLogger("wxbackend")

#: ``await publisher(evaluation_id)`` publishes a stored rating live; the receivers reached.
Publisher = Callable[[int], Awaitable[int]]


def resolve_api_base(settings: Settings) -> str:
    """``"sandbox"`` means the built-in emulator at ``sandbox.address:sandbox.port``."""
    if settings.sandbox_mode:
        return f"http://{settings.sandbox.address}:{settings.sandbox.port}/"
    return settings.wechat.api_base


@dataclass
class Context:
    """Everything a handler or service needs, wired in one place: the shared resources,
    then the state one process keeps for the services, each field owned by the module named
    in its comment (which makes it on first use when it starts as None)."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    rkeys: Keys
    cipher: FieldCipher
    hasher: LookupHasher
    metrics: Metrics
    wechat: WeChatGateway
    #: The WeChat configuration in force, watched on Redis (admin.wechat_config).
    wechat_config: WeChatConfigStore
    #: Decrypted partner secrets, watched on Redis (cases.partner_keys).
    partner_secrets: SecretCache
    #: Publishes a stored rating live (public.live_publisher); None: nothing is published.
    publisher: Publisher | None = None
    #: The one pub/sub connection of the live feeds (public.live).
    live_hub: LiveHub | None = None
    #: The live streams this process serves (handlers.live).
    live_streams: StreamSlots = field(default_factory=StreamSlots)
    #: The evaluator screens' streams open in this process, by window (handlers/devices.py).
    device_streams: StreamSlots = field(default_factory=StreamSlots)
    #: Page 1 of each public list, per filter (public.listing.FirstPages).
    public_pages: object | None = None
    #: The figures computed at once, at most a quarter of the database threads (public.stats_cache).
    stats_slots: asyncio.Semaphore | None = None
    #: Until when (time.monotonic()) the figures skip their Redis cache after an error.
    stats_paused_until: float = 0.0
    #: The admin reports computed at once: statistics, ranking, export chunks (common.db_share).
    report_slots: asyncio.Semaphore | None = None
    #: WeChat calls in flight for subscribe messages (messaging.sending).
    send_slots: asyncio.Semaphore | None = None
    #: Subscribe-message sends by kind and outcome (messaging.sending).
    messages_counter: Counter | None = None
    #: The transparency log's checkpoint signer (transparency.checkpoints), loaded at start.
    log_signer: Signer | None = None
    #: The log's self-verification metrics: failures, last result (transparency.jobs).
    log_metrics: tuple[Counter, Gauge] | None = None
    #: Redis, the database, the disk: which are down in this process (common.outages).
    outages: Outages | None = None

    async def start(self) -> None:
        """Load the stored WeChat configuration and start watching for changes (of it and of
        partner keys, in every process)."""
        await self.wechat_config.reload()
        self.wechat_config.start()
        self.partner_secrets.start()

    async def end_live_feeds(self) -> None:
        """Close this process's live hub: every live feed ends (SSE clients reconnect
        elsewhere). The server calls it before draining connections, so open streams do not
        hold the drain."""
        hub, self.live_hub = self.live_hub, None
        if hub is not None:
            await hub.aclose()

    async def close(self) -> None:
        """Stop the watchers and the live feeds (each bounded), publish the ratings still
        queued (bounded), then close the connections."""
        if isinstance(self.publisher, LivePublisher):
            await self.publisher.aclose()  # while Redis and the database are open
        await self.wechat_config.stop()
        await self.partner_secrets.stop()
        await self.end_live_feeds()  # before Redis goes
        if self.outages is not None:
            await self.outages.stop()
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
    cipher = FieldCipher(keys)
    config = WeChatConfigStore(settings, db, redis, rkeys, cipher)
    gateway = WeChatGateway(
        api_base or resolve_api_base(settings),
        config.credentials,
        redis,
        rkeys,
        settings.wechat.timeout_seconds,
        metrics,
        keepalive=settings.wechat.http_keepalive,
    )
    return Context(
        settings=settings,
        db=db,
        redis=redis,
        rkeys=rkeys,
        cipher=cipher,
        hasher=LookupHasher(keys),
        metrics=metrics,
        wechat=gateway,
        wechat_config=config,
        partner_secrets=SecretCache(redis, rkeys, db, cipher),
        publisher=LivePublisher(redis, rkeys, db),
        log_signer=load_signer(settings),  # generated with SQLite, required with PostgreSQL
    )
