"""Live ratings (实时公开): every new public rating goes out on Redis pub/sub.

Publishing (:mod:`.live_publisher`): whoever stores a rating (first rating, follow-up,
default or callback rating) calls :func:`publish_after_commit`, which queues it on
``ctx.publisher`` when there is one (the answer does not wait for the publish). A follow-up
publishes its first rating again, now carrying the ``follow_up``. Publishing is best
effort: the rating is already stored, so a Redis failure is logged and never fails the
request.

Receiving (:mod:`.live_hub`): every server process can :func:`subscribe` and push the
ratings to the pages it serves, all its feeds on one Redis pub/sub connection.
"""

from __future__ import annotations

import logging
import uuid

from wxbackend.context import Context
from wxbackend.services.public import listing
from wxbackend.services.public.live_hub import LiveFeed, LiveHub, Sink
from wxbackend.services.public.live_publisher import LivePublisher, channel_name

log = logging.getLogger("wxbackend.realtime")


async def publish_evaluation(ctx: Context, evaluation_id: int | str) -> int:
    """Publish the public shape of the rating now, on ``ctx``'s Redis (whatever
    ``ctx.publisher`` is). Returns how many Redis subscribers received it — one per
    listening server process (0 when nobody listens or it could not be published)."""
    return await LivePublisher(ctx.redis, ctx.rkeys, ctx.db)(evaluation_id)


async def publish_after_commit(ctx: Context, evaluation_id: int) -> None:
    """Hand a rating that was stored or changed to ``ctx.publisher`` (None: nothing is
    published): a :class:`LivePublisher` queues it and this returns at once (its task
    publishes it in a batch, in order); any other publisher is awaited. Never fails the
    caller (the change is committed; publishing is best effort): a failure is logged. This
    process's cached first pages of the public list are dropped first, so the change shows
    there at once."""
    listing.forget_first_pages(ctx)
    publish = ctx.publisher
    if publish is None:
        return
    try:
        if isinstance(publish, LivePublisher):
            publish.submit(evaluation_id)
        else:
            await publish(evaluation_id)
    except Exception as exc:  # noqa: BLE001 - best effort, see above
        log.warning(
            "publishing an evaluation failed",
            extra={"fields": {"evaluation_id": evaluation_id, "error": type(exc).__name__}},
        )


def live_hub(ctx: Context) -> LiveHub:
    """This process's hub, made on first use (again after a failure)."""
    hub = ctx.live_hub
    if hub is None or hub.closed:
        wake = ctx.rkeys("live-hub", uuid.uuid4().hex)
        hub = ctx.live_hub = LiveHub(
            ctx.redis,
            wake,
            ctx.settings.redis.timeout_seconds,
            coalesce_seconds=ctx.settings.live.coalesce_ms / 1000,
        )
    return hub


async def subscribe(
    ctx: Context, center_code: str | None = None, sink: Sink | None = None
) -> LiveFeed:
    """Subscribe to the live ratings of one center (or of all, with ``None``) through this
    process's :class:`LiveHub`: an iterated feed, or with ``sink`` one the hub writes SSE
    batches to (``live.coalesce_ms`` apart at most once per window). A center's feed is on
    that center's own Redis channel: the process never receives, let alone decodes, the other
    centers' ratings for it. Raises a Redis error or TimeoutError when Redis is unavailable."""
    return await live_hub(ctx).subscribe(channel_name(ctx.rkeys, center_code), sink)
