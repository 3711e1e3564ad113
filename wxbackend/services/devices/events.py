"""The Redis channel of one window's evaluator screens and what goes on it.

One channel per window, ``<prefix>device:<window code>`` (outside the ``live:*`` channels the
public publisher counts). Messages are JSON objects with an ``event``: ``case`` (with
``data``: the screen's case), ``rated`` (the case on the screen was rated) and ``revoked``
(the device key was rotated: streams end, screens pair again). Every process receives them
through its one live hub (``services/public/live_hub.py``) and fans them out to its streams.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.exceptions import RedisError

from wxbackend.context import Context
from wxbackend.services.public import live
from wxbackend.services.public.live_hub import LiveFeed

log = logging.getLogger("wxbackend.devices")

DEVICE = "device"


def channel_name(ctx: Context, window_code: str) -> str:
    """The channel of one window's screens."""
    return ctx.rkeys(DEVICE, window_code)


async def publish(ctx: Context, window_code: str, message: dict[str, Any]) -> None:
    """Publish on the window's channel; best effort (logged), never fails the caller."""
    try:
        await ctx.redis.publish(channel_name(ctx, window_code), json.dumps(message))
    except (TimeoutError, RedisError, OSError) as exc:
        log.warning(
            "device: publish failed",
            extra={"fields": {"event": message.get("event"), "error": type(exc).__name__}},
        )


async def subscribe(ctx: Context, window_code: str) -> LiveFeed:
    """A feed of the window's channel on this process's live hub (one pub/sub connection)."""
    return await live.live_hub(ctx).subscribe(channel_name(ctx, window_code))
