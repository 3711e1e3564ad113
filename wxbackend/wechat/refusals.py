"""WeChat refusing the configured credentials (40013 AppID, 40125 AppSecret), remembered for
every process in Redis so the console can list it (``problems.credentials`` of
``GET /admin/api/wechat-config``) instead of "WeChat is not answering".

An entry names the credentials it was about by a hash prefix (never the secret): once an admin
changes them, the old refusal is no longer shown. A call that works with them clears it; else it
expires after :data:`PROBLEM_TTL_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as aioredis

from wxbackend.cache import Keys
from wxbackend.timefmt import iso
from wxbackend.wechat import errors as e

log = logging.getLogger("wxbackend.wechat")

#: How long a refusal of the credentials stays listed without being seen again.
PROBLEM_TTL_SECONDS = 86400


class _Credentials(Protocol):
    appid: str
    secret: str


class CredentialRefusals:
    """The last refusal of the credentials, shared through Redis."""

    def __init__(
        self, redis: aioredis.Redis, rkeys: Keys, credentials: Callable[[], _Credentials]
    ) -> None:
        self.redis = redis
        self.key = rkeys("wechat", "credentials-problem")
        self.credentials = credentials
        #: This process recorded a refusal (a success then clears it).
        self.noted = False

    def _fingerprint(self) -> str:
        cred = self.credentials()
        return hashlib.sha256(f"{cred.appid}\n{cred.secret}".encode()).hexdigest()[:16]

    async def note(self, path: str, exc: e.WeChatError) -> None:
        """Record that WeChat refused the credentials in force at ``path``."""
        entry = {
            "errcode": exc.errcode,
            "meaning": e.meaning(exc.errcode),
            "endpoint": path,
            "at": iso(datetime.now(UTC)),
            "credentials": self._fingerprint(),
        }
        log.error(
            "WeChat refused the configured credentials",
            extra={"fields": {"endpoint": path, "errcode": str(exc.errcode)}},
        )
        self.noted = True
        try:
            await self.redis.set(self.key, json.dumps(entry), ex=PROBLEM_TTL_SECONDS)
        except Exception as err:  # noqa: BLE001 - the caller still gets its error
            log.warning("could not record a credentials problem: %s", type(err).__name__)

    async def clear(self, always: bool = False) -> None:
        """A call with the credentials worked: drop the refusal (``always``, or when this
        process recorded one: a Redis round trip only then)."""
        if not (always or self.noted):
            return
        self.noted = False
        try:
            await self.redis.delete(self.key)
        except Exception as exc:  # noqa: BLE001 - the entry expires by itself
            log.warning("could not clear a credentials problem: %s", type(exc).__name__)

    async def problem(self) -> dict[str, Any] | None:
        """``{errcode, meaning, endpoint, at}`` of the last refusal of the credentials in
        force, or None (none, or it was about credentials since changed)."""
        raw = await self.redis.get(self.key)
        if not raw:
            return None
        entry = json.loads(raw)
        if entry.pop("credentials", None) != self._fingerprint():
            return None
        return entry
