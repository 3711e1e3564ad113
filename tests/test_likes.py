"""Likes over HTTP: verified identities only, idempotent, one per person, exact counts under
concurrency, and every error code."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from models.base import utcnow
from models.evaluation import Evaluation, Like
from models.identity import Identity
from tests.support.cases import make_id_number
from tests.support.databases import both_databases
from tests.support.public_seed import insert_rating, rated_case, seed_catalog
from wxbackend.clients.citizen import verified_user

NAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"


def like_path(evaluation_id: int | str) -> str:
    return f"/api/v1/evaluations/{evaluation_id}/like"


async def a_rating(ctx, **kw) -> int:
    def seed():
        seed_catalog(ctx)
        return rated_case(ctx, 4, **kw)

    return await ctx.db.run(seed)


async def stored(ctx, evaluation_id: int) -> tuple[int, int]:
    """(like_count column, like rows) of the rating."""

    def read():
        count = Evaluation.get_by_id(evaluation_id).like_count
        rows = Like.select().where(Like.evaluation == evaluation_id).count()
        return count, rows

    return await ctx.db.run(read)


@pytest.mark.asyncio
async def test_like_unlike_idempotent_and_public(api, sandbox, ctx):
    rating = await a_rating(ctx)
    token = await verified_user(api, sandbox, "黎明", make_id_number(1))
    for _ in range(2):
        status, answer = await api("PUT", like_path(rating), token=token)
        assert status == 200 and answer == {"liked": True, "like_count": 1}
    status, answer = await api("PUT", like_path(rating), {}, token=token)  # {} is fine too
    assert status == 200 and answer == {"liked": True, "like_count": 1}
    status, page = await api("GET", "/api/v1/public/evaluations")
    assert page["items"][0]["likers"] == ["黎**"] and page["items"][0]["like_count"] == 1
    for _ in range(2):
        status, answer = await api("DELETE", like_path(rating), token=token)
        assert status == 200 and answer == {"liked": False, "like_count": 0}
    assert await stored(ctx, rating) == (0, 0)
    status, page = await api("GET", "/api/v1/public/evaluations")
    assert page["items"][0]["likers"] == [] and page["items"][0]["like_count"] == 0


@both_databases
@pytest.mark.asyncio
async def test_one_like_per_person_across_wechat_accounts(api, sandbox, ctx):
    """The identity moves to a second WeChat account of the same person (allow_rebind): its
    like is the same person's like, so it is not counted twice — and it can withdraw it."""
    rating = await a_rating(ctx)
    id_number = make_id_number(2)
    first = await verified_user(api, sandbox, "黎明", id_number)
    assert (await api("PUT", like_path(rating), token=first))[1]["like_count"] == 1
    second = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await api("PUT", like_path(rating), token=second)
    assert status == 200 and answer == {"liked": True, "like_count": 1}
    assert await stored(ctx, rating) == (1, 1)
    status, answer = await api("DELETE", like_path(rating), token=second)
    assert answer == {"liked": False, "like_count": 0}


@pytest.mark.asyncio
async def test_like_needs_a_verified_identity(api, sandbox, ctx):
    rating = await a_rating(ctx)
    status, answer = await api("PUT", like_path(rating))
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    status, answer = await api("DELETE", like_path(rating))
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    token, _ = await api.login(sandbox)
    status, answer = await api("PUT", like_path(rating), token=token)
    assert status == 403 and answer["error"]["code"] == "identity_required"
    # withdrawing a like never made just answers liked:false
    status, answer = await api("DELETE", like_path(rating), token=token)
    assert status == 200 and answer == {"liked": False, "like_count": 0}
    # an expired verification is no verification
    verified = await verified_user(api, sandbox, "陈静", make_id_number(3))
    await ctx.db.run(lambda: Identity.update(expires_at=utcnow() - timedelta(seconds=1)).execute())
    status, answer = await api("PUT", like_path(rating), token=verified)
    assert status == 403 and answer["error"]["code"] == "identity_required"
    assert await stored(ctx, rating) == (0, 0)


@pytest.mark.asyncio
async def test_erased_identity_can_still_withdraw_its_like(api, sandbox, ctx):
    rating = await a_rating(ctx)
    token = await verified_user(api, sandbox, "黎明", make_id_number(4))
    assert (await api("PUT", like_path(rating), token=token))[0] == 200
    assert (await api("DELETE", "/api/v1/me/identity", token=token))[0] == 204
    status, answer = await api("DELETE", like_path(rating), token=token)
    assert status == 200 and answer == {"liked": False, "like_count": 0}


@pytest.mark.asyncio
async def test_unknown_and_follow_up_ids_are_404(api, sandbox, ctx):
    def seed():
        seed_catalog(ctx)
        first = rated_case(ctx, 2)
        follow_up = insert_rating(Evaluation.get_by_id(first).case_id, 4, assess_number=2)
        return first, follow_up

    first, follow_up = await ctx.db.run(seed)
    token = await verified_user(api, sandbox, "黎明", make_id_number(5))
    for bad in (str(follow_up), "999999", "0", "-1", "abc", "1e3", "%E4%B8%80", "9" * 30):
        for method in ("PUT", "DELETE"):
            status, answer = await api(method, like_path(bad), token=token)
            assert status == 404 and answer["error"]["code"] == "not_found", (method, bad)
    status, answer = await api("PUT", like_path(first), {"extra": 1}, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_body"
    assert await stored(ctx, first) == (0, 0)


async def verified_users(api, sandbox, n: int, offset: int) -> list[str]:
    """``n`` distinct verified people (a few at a time, so the sandbox keeps up)."""
    tokens: list[str] = []
    for start in range(0, n, 10):
        tokens += await asyncio.gather(
            *[
                verified_user(
                    api, sandbox, NAMES[i % len(NAMES)] + "明", make_id_number(offset + i)
                )
                for i in range(start, min(n, start + 10))
            ]
        )
    return tokens


@both_databases
@pytest.mark.asyncio
async def test_counts_are_exact_under_concurrency(api, sandbox, ctx):
    rating = await a_rating(ctx)
    tokens = await verified_users(api, sandbox, 30, 100)
    # 30 people like at once
    answers = await asyncio.gather(*[api("PUT", like_path(rating), token=t) for t in tokens])
    assert {status for status, _ in answers} == {200}
    assert max(a["like_count"] for _, a in answers) == 30
    assert await stored(ctx, rating) == (30, 30)
    # 12 withdraw while the 30 like again (idempotent) and 12 withdraw twice
    calls = [api("PUT", like_path(rating), token=t) for t in tokens[12:]]
    calls += [api("DELETE", like_path(rating), token=t) for t in tokens[:12] * 2]
    answers = await asyncio.gather(*calls)
    assert {status for status, _ in answers} == {200}
    assert await stored(ctx, rating) == (18, 18)
    # chaos: everyone likes and unlikes at the same time; the count is whatever the rows say
    calls = [api("PUT", like_path(rating), token=t) for t in tokens]
    calls += [api("DELETE", like_path(rating), token=t) for t in tokens[::2]]
    answers = await asyncio.gather(*calls)
    assert {status for status, _ in answers} == {200}
    count, rows = await stored(ctx, rating)
    assert count == rows and 15 <= rows <= 30
    status, page = await api("GET", "/api/v1/public/evaluations")
    assert page["items"][0]["like_count"] == rows
    assert len(page["items"][0]["likers"]) == min(rows, 10)


@both_databases
@pytest.mark.asyncio
async def test_same_person_liking_twenty_times_at_once_is_one_like(api, sandbox, ctx):
    rating = await a_rating(ctx)
    token = await verified_user(api, sandbox, "黎明", make_id_number(6))
    answers = await asyncio.gather(*[api("PUT", like_path(rating), token=token) for _ in range(20)])
    assert {status for status, _ in answers} == {200}
    assert {a["like_count"] for _, a in answers} == {1}
    assert await stored(ctx, rating) == (1, 1)
