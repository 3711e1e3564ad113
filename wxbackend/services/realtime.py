"""Live ratings (实时公开): every new public rating goes out on Redis pub/sub.

A rating is published, after its transaction commits, as its public shape (the same JSON as
one item of ``GET /api/v1/public/evaluations``: masks only, nothing personal) on two
channels: ``rkeys("live", <center code>)`` and ``rkeys("live", "all")``. Every server
process can subscribe (:func:`subscribe`) and push it to the pages it serves.

Wiring: :func:`install_publisher` puts ``ctx.extras["publish_evaluation"]`` — an
``async fn(evaluation_id)`` — in the context; whoever stores a rating (first rating, follow-up,
default or callback rating) awaits it after commit when it is present. A follow-up publishes
its first rating again, now carrying the ``follow_up``. Publishing is best effort: the
rating is already stored, so a Redis failure is logged and never fails the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from wxbackend.context import Context
from wxbackend.services.public import public_shape_of

log = logging.getLogger("wxbackend.realtime")

LIVE = "live"
ALL_CENTERS = "all"
HOOK = "publish_evaluation"


def channel_name(ctx: Context, center_code: str | None) -> str:
    """The live channel of one center, or of all centers (``None``)."""
    return ctx.rkeys(LIVE, center_code if center_code is not None else ALL_CENTERS)


async def publish_evaluation(ctx: Context, evaluation_id: int | str) -> int:
    """Publish the public shape of the rating on its center's channel and the all-centers
    channel. Returns how many subscribers received it (0 when it could not be published).

    Nobody subscribed to any live channel (``PUBSUB CHANNELS <prefix>live:*``, one round
    trip, never cached, so a subscriber of any process counts at once) → the public shape is
    not built and nothing is sent: 0."""
    try:
        listened = await ctx.redis.pubsub_channels(_live_pattern(ctx))
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning(
            "live: publish failed (the rating is stored; pages catch up on reload)",
            extra={"fields": {"evaluation_id": str(evaluation_id), "error": type(exc).__name__}},
        )
        return 0
    if not listened:
        return 0
    found = await ctx.db.run(public_shape_of, int(evaluation_id))
    if found is None:
        log.warning("live: no such evaluation", extra={"fields": {"evaluation_id": evaluation_id}})
        return 0
    center_code, shape = found
    payload = json.dumps(shape, ensure_ascii=False, separators=(",", ":"))
    try:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.publish(channel_name(ctx, center_code), payload)
            pipe.publish(channel_name(ctx, None), payload)
            receivers = await pipe.execute()
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning(
            "live: publish failed (the rating is stored; pages catch up on reload)",
            extra={"fields": {"evaluation_id": shape["id"], "error": type(exc).__name__}},
        )
        return 0
    return sum(receivers)


_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def _live_pattern(ctx: Context) -> str:
    """The ``PUBSUB CHANNELS`` pattern of every live channel (the key prefix glob-escaped)."""
    return ctx.rkeys(LIVE, "").translate(_GLOB_SPECIAL) + "*"


def install_publisher(ctx: Context) -> None:
    """Put the publish hook in the context: ``await ctx.extras["publish_evaluation"](id)``."""

    async def publish(evaluation_id: int | str) -> int:
        return await publish_evaluation(ctx, evaluation_id)

    ctx.extras[HOOK] = publish


class LiveFeed:
    """A subscription to live ratings: an async iterator of public shapes (dicts).

    Already subscribed when :func:`subscribe` returns, so nothing published afterwards is
    missed. Close it with :meth:`aclose` or use it as ``async with``.
    """

    def __init__(self, pubsub: Any, channel: str):
        self._pubsub = pubsub
        self.channel = channel
        self._messages: AsyncIterator[dict[str, Any]] | None = None

    def __aiter__(self) -> LiveFeed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._messages is None:
            self._messages = self._pubsub.listen()
        async for message in self._messages:
            if message.get("type") != "message":
                continue
            try:
                return json.loads(message["data"])
            except ValueError:
                log.warning("live: a message that is not JSON was skipped")
        raise StopAsyncIteration

    async def aclose(self) -> None:
        try:
            await self._pubsub.unsubscribe()
        finally:
            await self._pubsub.aclose()

    async def __aenter__(self) -> LiveFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def subscribe(ctx: Context, center_code: str | None = None) -> LiveFeed:
    """Subscribe to the live ratings of one center (or of all, with ``None``)."""
    channel = channel_name(ctx, center_code)
    pubsub = ctx.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    return LiveFeed(pubsub, channel)
