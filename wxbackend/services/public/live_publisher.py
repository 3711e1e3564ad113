"""Publishing live ratings: a rating's public shape on Redis pub/sub, after its commit.

The public shape (the same JSON as one item of ``GET /api/v1/public/evaluations``: masks
only, nothing personal) goes on two channels: ``rkeys("live", <center code>)`` and
``rkeys("live", "all")``. :class:`LivePublisher` is the context's ``publisher``
(``ctx.publisher``, set by ``build_context``).
"""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wxbackend.cache import Keys
from wxbackend.db import Database
from wxbackend.services.public.shape import public_shape_of

log = logging.getLogger("wxbackend.realtime")

LIVE = "live"
ALL_CENTERS = "all"
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def channel_name(rkeys: Keys, center_code: str | None) -> str:
    """The live channel of one center, or of all centers (``None``)."""
    return rkeys(LIVE, center_code if center_code is not None else ALL_CENTERS)


def live_pattern(rkeys: Keys) -> str:
    """The ``PUBSUB CHANNELS`` pattern of every live channel (the key prefix glob-escaped)."""
    return rkeys(LIVE, "").translate(_GLOB_SPECIAL) + "*"


class LivePublisher:
    """Publishes ratings on the live channels of one Redis."""

    def __init__(self, redis: aioredis.Redis, rkeys: Keys, db: Database):
        self.redis = redis
        self.rkeys = rkeys
        self.db = db

    async def __call__(self, evaluation_id: int | str) -> int:
        """Publish the public shape of the rating on its center's channel and the all-centers
        channel. Returns how many Redis subscribers received it — one per listening server
        process, however many streams it serves (0 when it could not be published).

        Nobody subscribed to any live channel (``PUBSUB CHANNELS <prefix>live:*``, one round
        trip, never cached, so a subscriber of any process counts at once) → the public shape is
        not built and nothing is sent: 0."""
        try:
            listened = await self.redis.pubsub_channels(live_pattern(self.rkeys))
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning(
                "live: publish failed (the rating is stored; pages catch up on reload)",
                extra={
                    "fields": {"evaluation_id": str(evaluation_id), "error": type(exc).__name__}
                },
            )
            return 0
        if not listened:
            return 0
        found = await self.db.run(public_shape_of, int(evaluation_id))
        if found is None:
            log.warning(
                "live: no such evaluation", extra={"fields": {"evaluation_id": evaluation_id}}
            )
            return 0
        center_code, shape = found
        payload = json.dumps(shape, ensure_ascii=False, separators=(",", ":"))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.publish(channel_name(self.rkeys, center_code), payload)
                pipe.publish(channel_name(self.rkeys, None), payload)
                receivers = await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning(
                "live: publish failed (the rating is stored; pages catch up on reload)",
                extra={"fields": {"evaluation_id": shape["id"], "error": type(exc).__name__}},
            )
            return 0
        return sum(receivers)
