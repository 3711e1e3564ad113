"""Publishing live ratings: a rating's public shape on Redis pub/sub, after its commit.

The public shape (the same JSON as one item of ``GET /api/v1/public/evaluations``: masks
only, nothing personal) goes on two channels: ``rkeys("live", <center code>)`` and
``rkeys("live", "all")``. :class:`LivePublisher` is the context's ``publisher``
(``ctx.publisher``, set by ``build_context``).

Off the request's path: a request only queues the id (:meth:`LivePublisher.submit`); one
task per process drains the queue in batches, in order: one ``PUBSUB CHANNELS`` per batch,
every shape of the batch built at once (:func:`public_shapes_of`: the same handful of IN
queries for one rating or hundreds) and all sent in one pipeline. The queue is bounded: when
full, the id is dropped with one log line (pages catch up on reload, as after a publish
failure). :meth:`LivePublisher.aclose` publishes what is still queued (the server's stop).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wxbackend.cache import Keys
from wxbackend.db import Database
from wxbackend.services.public.shape import public_shapes_of

log = logging.getLogger("wxbackend.realtime")

LIVE = "live"
ALL_CENTERS = "all"
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})
#: Ids waiting to be published, at most (past it they are dropped, with one log line).
QUEUE_LIMIT = 10_000
#: Ratings published in one batch, at most (one pipeline, one set of IN queries).
BATCH_LIMIT = 500
#: How long the drain waits for more ids after the first of a batch (seconds).
LINGER_SECONDS = 0.003
#: How long stopping waits for the queued ids to be published (seconds).
FLUSH_SECONDS = 5.0
_FAILED = "live: publish failed (the rating is stored; pages catch up on reload)"


def channel_name(rkeys: Keys, center_code: str | None) -> str:
    """The live channel of one center, or of all centers (``None``)."""
    return rkeys(LIVE, center_code if center_code is not None else ALL_CENTERS)


def live_pattern(rkeys: Keys) -> str:
    """The ``PUBSUB CHANNELS`` pattern of every live channel (the key prefix glob-escaped)."""
    return rkeys(LIVE, "").translate(_GLOB_SPECIAL) + "*"


class LivePublisher:
    """Publishes ratings on the live channels of one Redis: at once (``await publisher(id)``)
    or, on a request's path, queued and batched (:meth:`submit`)."""

    def __init__(self, redis: aioredis.Redis, rkeys: Keys, db: Database):
        self.redis = redis
        self.rkeys = rkeys
        self.db = db
        self._queue: deque[int] = deque()
        self._wake = asyncio.Event()
        self._drain: asyncio.Task[None] | None = None
        self._full_logged = False
        self._closed = False

    async def __call__(self, evaluation_id: int | str) -> int:
        """Publish the public shape of the rating on its center's channel and the all-centers
        channel now (not queued: tools and tests). Returns how many Redis subscribers received
        it — one per listening server process, however many streams it serves (0 when it could
        not be published).

        Nobody subscribed to any live channel (``PUBSUB CHANNELS <prefix>live:*``, one round
        trip, never cached, so a subscriber of any process counts at once) → the public shape is
        not built and nothing is sent: 0."""
        return sum(await self.publish_batch([int(evaluation_id)]))

    def submit(self, evaluation_id: int) -> None:
        """Queue a stored rating for publishing and return at once (never raises): the task
        of this process drains the queue in batches, in the order submitted. A full queue
        drops the id, with one log line until the queue drains."""
        if self._closed:
            return
        if len(self._queue) >= QUEUE_LIMIT:
            if not self._full_logged:
                self._full_logged = True
                log.warning(
                    "live: publish queue full, ratings not published live (pages catch up on"
                    " reload)",
                    extra={"fields": {"queued": len(self._queue)}},
                )
            return
        self._queue.append(int(evaluation_id))
        if self._drain is None or self._drain.done():
            self._wake = asyncio.Event()  # of the running loop (a test's ctx may outlive one)
            self._drain = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    @property
    def queued(self) -> int:
        """How many ids wait to be published."""
        return len(self._queue)

    async def _run(self) -> None:
        """Publish queued ids, batch after batch, until closed and empty."""
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < BATCH_LIMIT and not self._closed:
                await asyncio.sleep(LINGER_SECONDS)  # what arrives within a few ms joins
            batch = [self._queue.popleft() for _ in range(min(BATCH_LIMIT, len(self._queue)))]
            if len(self._queue) < QUEUE_LIMIT // 2:
                self._full_logged = False
            try:
                await self.publish_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the task outlives any one batch
                log.warning(
                    _FAILED, extra={"fields": {"ratings": len(batch), "error": type(exc).__name__}}
                )

    async def aclose(self, seconds: float = FLUSH_SECONDS) -> None:
        """Publish what is queued (for up to ``seconds``; the rest is dropped with one log
        line), then stop the task. Later submits are ignored. Before Redis closes."""
        self._closed = True
        self._wake.set()
        drain = self._drain
        if drain is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(drain), seconds)
        except TimeoutError:
            drain.cancel()
            log.warning(_FAILED, extra={"fields": {"ratings": len(self._queue)}})
            self._queue.clear()

    async def publish_batch(self, evaluation_ids: list[int]) -> list[int]:
        """Publish the ratings in order, their shapes built at once and sent in one pipeline.
        Returns the subscribers each one reached (0 each when nobody listens or on failure,
        which is logged)."""
        none = [0] * len(evaluation_ids)
        try:
            listened = await self.redis.pubsub_channels(live_pattern(self.rkeys))
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed(evaluation_ids, exc)
            return none
        if not listened:
            return none
        found = await self.db.run(public_shapes_of, evaluation_ids)
        payloads: dict[str, str] = {}  # a rating twice in a batch: serialized once
        sent: list[int] = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for evaluation_id, shaped in zip(evaluation_ids, found, strict=True):
                    if shaped is None:
                        log.warning(
                            "live: no such evaluation",
                            extra={"fields": {"evaluation_id": evaluation_id}},
                        )
                        continue
                    center_code, shape = shaped
                    payload = payloads.get(shape["id"]) or _dumps(shape)
                    payloads[shape["id"]] = payload
                    pipe.publish(channel_name(self.rkeys, center_code), payload)
                    pipe.publish(channel_name(self.rkeys, None), payload)
                    sent.append(evaluation_id)
                receivers = await pipe.execute() if sent else []
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed(sent, exc)
            return none
        counts = iter(receivers)
        return [0 if shaped is None else next(counts) + next(counts) for shaped in found]

    def _failed(self, evaluation_ids: list[int], exc: BaseException) -> None:
        log.warning(
            _FAILED,
            extra={
                "fields": {
                    "evaluation_ids": ",".join(map(str, evaluation_ids[:20])),
                    "ratings": len(evaluation_ids),
                    "error": type(exc).__name__,
                }
            },
        )


def _dumps(shape: dict[str, Any]) -> str:
    return json.dumps(shape, ensure_ascii=False, separators=(",", ":"))
