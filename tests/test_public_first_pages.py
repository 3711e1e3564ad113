"""Page 1 of the public list from the process's cache (``listing.FirstPages``): a change this
process publishes shows at once (a new rating, a hidden comment), anything else after at most
``public.list_cache_seconds``; misses at once share one read; deeper pages are never cached.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.cases import make_case, make_id_number
from tests.support.public_seed import rated_case, seed_catalog
from tests.support.tickets import PUBLIC, seed_rating, staff_token
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.public import listing


async def first_page(api, **params: object) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, page = await api("GET", f"{PUBLIC}?{query}" if query else PUBLIC)
    assert status == 200
    return page


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["items"]]


@pytest.mark.asyncio
async def test_a_new_rating_is_on_page_1_at_once(api, sandbox, ctx):
    await seed_rating(ctx, overall=5, comment=None)
    before = await first_page(api)
    pages = listing.first_pages(ctx)
    reads = pages.reads
    assert await first_page(api) == before and pages.reads == reads  # served from the cache
    id_number = make_id_number(91)
    _, scene = await make_case(ctx, "黎明辉", id_number)
    token = await verified_user(api, sandbox, "黎明辉", id_number)
    status, answer = await rate(api, token, scene=scene, overall=4, comment="很快")
    assert status == 201, answer
    after = await first_page(api)
    assert ids(after)[0] == answer["evaluation"]["id"]
    assert ids(after)[1:] == ids(before)


@pytest.mark.asyncio
async def test_a_hidden_comment_is_never_served_after_the_hide(api, sandbox, ctx):
    seeded = await seed_rating(ctx, overall=4, comment="某某某电话1380000")
    token = await staff_token(api, ctx, "hl_admin", "center_admin", "440103-HL")
    for params in ({}, {"center": "440103-HL"}, {"level": 4}):
        assert "某某某电话1380000" in json.dumps(
            await first_page(api, **params), ensure_ascii=False
        )
    path = f"/admin/api/evaluations/{seeded.evaluation_id}/moderate"
    status, _ = await api("POST", path, {"visible": False, "reason": "含个人信息"}, token=token)
    assert status == 200
    for params in ({}, {"center": "440103-HL"}, {"level": 4}):
        page = await first_page(api, **params)
        assert "某某某电话1380000" not in json.dumps(page, ensure_ascii=False)
        assert page["items"][0]["id"] == str(seeded.evaluation_id)


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"public": {"list_cache_seconds": 0.3}}])
async def test_an_unannounced_change_shows_within_the_max_age(api, ctx):
    older = await ctx.db.run(lambda: (seed_catalog(ctx), rated_case(ctx, 5))[1])
    assert ids(await first_page(api)) == [str(older)]
    newer = await ctx.db.run(rated_case, ctx, 3)  # written behind the process's back
    assert ids(await first_page(api)) == [str(older)]  # kept…
    await asyncio.sleep(0.35)
    assert ids(await first_page(api)) == [str(newer), str(older)]  # …no longer than 0.3 s


@pytest.mark.asyncio
async def test_misses_at_once_share_one_read_and_deeper_pages_are_not_kept(api, ctx):
    rated = await ctx.db.run(lambda: (seed_catalog(ctx), [rated_case(ctx, 5) for _ in range(3)])[1])
    answers = await asyncio.gather(*(first_page(api, limit=2) for _ in range(8)))
    assert all(answer == answers[0] for answer in answers)
    pages = listing.first_pages(ctx)
    assert pages.reads == 1
    cursor = answers[0]["next_cursor"]
    for _ in range(2):
        assert ids(await first_page(api, limit=2, cursor=cursor)) == [str(rated[0])]
    assert pages.reads == 1  # page 2 went to the database, past the cache
    await first_page(api, limit=3)  # another filter (the page size), another page 1
    assert pages.reads == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"public": {"list_cache_seconds": 0}}])
async def test_zero_turns_the_cache_off(api, ctx):
    await ctx.db.run(lambda: (seed_catalog(ctx), rated_case(ctx, 5))[1])
    await first_page(api)
    assert listing.first_pages(ctx) is None and ctx.public_pages is None
