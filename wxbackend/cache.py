"""Redis: real (``redis://``, ``rediss://``, ``redis+sentinel://``) or embedded (fakeredis).

Redis holds what makes the server fast and coordinated — the shared WeChat access token,
session tokens, one-time claims, nonces, rate limits, pub/sub — never the only copy of a
rating. ``embedded`` runs fakeredis (with Lua) inside the process: fine for one process on a
laptop, not durable and not shared, so ``--processes`` above 1 refuses it.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, unquote, urlparse

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from wxbackend.settings import Settings, SettingsError

log = logging.getLogger("wxbackend.cache")


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
        health_check_interval=30,
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
    return sentinel.master_for(service, db=db, decode_responses=True)


class Keys:
    """Builds every Redis key under the configured prefix, so deployments can share a Redis."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)
