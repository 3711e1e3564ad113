"""Live ratings are only shaped and sent when some live channel has a subscriber."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.public_seed import OTHER_CENTER, rated_case, seed_catalog
from wxbackend.services.public import live as realtime
from wxbackend.services.public import live_publisher


@pytest.mark.asyncio
async def test_no_listener_builds_no_shape(ctx, monkeypatch):
    def seed():
        seed_catalog(ctx)
        return rated_case(ctx, 4)

    rating = await ctx.db.run(seed)
    shaped: list[int] = []
    real_shapes = live_publisher.public_shapes_of

    def counted(evaluation_ids):
        shaped.extend(evaluation_ids)
        return real_shapes(evaluation_ids)

    monkeypatch.setattr(live_publisher, "public_shapes_of", counted)
    assert await realtime.publish_evaluation(ctx, rating) == 0
    assert shaped == []  # nobody listens: no queries, nothing sent
    # a subscriber of another center's channel is enough to build it (and to see it at once)
    async with await realtime.subscribe(ctx, OTHER_CENTER) as other:
        async with await realtime.subscribe(ctx) as feed:
            assert await realtime.publish_evaluation(ctx, rating) == 1
            assert (await asyncio.wait_for(anext(feed), 5))["id"] == str(rating)
        assert shaped == [rating]
        assert other.channel == realtime.channel_name(ctx.rkeys, OTHER_CENTER)
