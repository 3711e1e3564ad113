"""Redis: real (``redis://``, ``rediss://``, ``redis+sentinel://``) or embedded (fakeredis).

Redis holds what makes the server fast and coordinated — the shared WeChat access token,
session tokens, one-time claims, nonces, rate limits, pub/sub — never the only copy of a
rating. ``embedded`` runs fakeredis (with Lua) inside the process: fine for one process on a
laptop, not durable and not shared, so ``--processes`` above 1 refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, unquote, urlparse

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ConstantBackoff

from wxbackend.security import StartupError
from wxbackend.settings import Settings, SettingsError, shown_url

log = logging.getLogger("wxbackend.cache")

#: Seconds an idle pooled connection may wait before redis-py checks it with a PING first.
HEALTH_CHECK_SECONDS = 5


def _retry_once() -> Retry:
    """One more try, on a new connection, after a connection error: a pooled connection
    Redis closed (it restarted) fails its first command, and the retry succeeds at once.
    redis-py's default (ten tries with backoff) made every request wait seconds while Redis
    was down, before the 503."""
    return Retry(
        ConstantBackoff(0.05),
        1,
        (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
    )


def make_redis(settings: Settings) -> aioredis.Redis:
    """The Redis client the settings ask for (responses decoded as text)."""
    url = settings.redis.url
    timeout = settings.redis.timeout_seconds
    if url == "embedded":
        import fakeredis

        log.warning(
            "redis.url is 'embedded': using in-process fakeredis — one process only, "
            "nothing survives a restart; configure a real Redis for production"
        )
        return fakeredis.FakeAsyncRedis(decode_responses=True)
    if url.startswith("redis+sentinel://"):
        return _sentinel_client(url, timeout)
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=_retry_once(),
    )


def _sentinel_client(url: str, timeout: float) -> aioredis.Redis:
    """``redis+sentinel://[:password@]host:port[,host:port]/service[/db]``."""
    parts = urlparse(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    password = unquote(parts.password) if parts.password else None
    hosts = []
    for hostport in netloc.split(","):
        host, _, port = hostport.partition(":")
        hosts.append((host, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise SettingsError("setting redis.url: redis+sentinel:// needs a service name")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else 0
    options = parse_qs(parts.query)
    sentinel = Sentinel(
        hosts,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        password=password,
        sentinel_kwargs={"password": options.get("sentinel_password", [None])[0]},
    )
    return sentinel.master_for(
        service,
        db=db,
        decode_responses=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=_retry_once(),
    )


async def check_redis(settings: Settings) -> None:
    """Refuse to start (StartupError, one line naming the URL) when a configured Redis does
    not answer a PING within ``redis.timeout_seconds``; ``embedded`` needs nothing."""
    url = settings.redis.url
    if url == "embedded":
        return
    client = make_redis(settings)
    try:
        await asyncio.wait_for(client.ping(), settings.redis.timeout_seconds + 1)
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StartupError(f"cannot reach Redis at {shown_url(url)}: {reason}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


class Keys:
    """Builds every Redis key under the configured prefix, so deployments can share a Redis."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


class ChannelWatcher:
    """Runs ``on_message(data)`` for each message on a Redis channel, and ``on_idle()``
    after each ``interval`` without one (the polling fallback), until :meth:`stop`.

    A Redis outage is survived (it resubscribes each interval). It is never cancelled in the
    middle of a pub/sub read (that can leave the connection stuck): :meth:`stop` sets a flag
    and publishes a wake-up on the channel, so the loop ends at once.
    """

    WAKE = "__stop__"

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        on_message: Callable[[str], Awaitable[None]],
        on_idle: Callable[[], Awaitable[None]] | None = None,
        interval: float = 1.0,
    ):
        self.redis = redis
        self.channel = channel
        self.on_message = on_message
        self.on_idle = on_idle
        self.interval = interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            await self.redis.publish(self.channel, self.WAKE)
        await self._task
        self._task = None

    async def _run(self) -> None:
        pubsub = None
        failing = False
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.redis.pubsub()
                    await pubsub.subscribe(self.channel)
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self.interval
                )
                data = str(message.get("data", "")) if message is not None else None
                if self._stop.is_set():
                    break
                if data is not None and data != self.WAKE:
                    await self.on_message(data)
                elif data is None and self.on_idle is not None:
                    await self.on_idle()
                if failing:
                    failing = False
                    log.info("watching %s again", self.channel)
            except Exception as exc:  # noqa: BLE001 - keep watching whatever happens
                if not failing:  # one line per outage, not one per interval
                    failing = True
                    reason = " ".join(str(exc).split())[:160]  # what is down, e.g. Redis's address
                    log.warning("watching %s: %s: %s", self.channel, type(exc).__name__, reason)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                pubsub = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
