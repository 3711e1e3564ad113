"""Nothing lost, nothing confusing when answers are lost (issue 13 items 1 and 2).

A claim left in Redis by a process killed between claim and commit used to answer 409
``already_evaluated`` for up to 30 s about a rating that was never stored (a client that took
409 as done lost it). Now the claim only turns concurrent submissions away early: a request
waits for the database's word and answers 409 ``rating_in_progress`` (retry) while another
holds the case. A retry with the same ``Idempotency-Key`` and body gets the original 201
again; ``already_evaluated`` says which rating is the caller's own.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from models.evaluation import Evaluation
from tests.support.cases import make_case, make_id_number
from tests.support.databases import both_databases
from wxbackend.clients.citizen import verified_user
from wxbackend.services.ratings import writer

RATE = "/api/v1/evaluations"


async def rated_by(api, sandbox, ctx, seed: int):
    id_number = make_id_number(seed)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    return case_id, scene, token


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


@pytest.mark.asyncio
async def test_a_leftover_claim_never_answers_already_evaluated(api, sandbox, ctx, monkeypatch):
    monkeypatch.setattr(writer, "CLAIM_WAIT_SECONDS", 0.3)
    case_id, scene, token = await rated_by(api, sandbox, ctx, 801)
    # what a process killed between its claim and its commit leaves behind
    await ctx.redis.set(writer.claim_key(ctx, int(case_id)), "dead-process", ex=30)
    status, answer = await api("POST", RATE, {"scene": scene, "overall": 5}, token=token)
    assert (status, answer["error"]["code"]) == (409, "rating_in_progress"), answer
    assert await ctx.db.run(Evaluation.select().count) == 0  # nothing stored, and not said so
    # once the leftover is gone (it expires), the same submission is stored
    await ctx.redis.delete(writer.claim_key(ctx, int(case_id)))
    status, answer = await api("POST", RATE, {"scene": scene, "overall": 5}, token=token)
    assert status == 201, answer


@pytest.mark.asyncio
async def test_rating_in_progress_says_when_to_retry(
    api, sandbox, ctx, monkeypatch, http_client, base_url
):
    monkeypatch.setattr(writer, "CLAIM_WAIT_SECONDS", 0.2)
    case_id, scene, token = await rated_by(api, sandbox, ctx, 802)
    await ctx.redis.set(writer.claim_key(ctx, int(case_id)), "other", ex=30)
    response = await http_client.fetch(
        base_url + RATE,
        method="POST",
        body=json.dumps({"scene": scene, "overall": 4}),
        headers={"Authorization": f"Bearer {token}"},
        raise_error=False,
    )
    assert response.code == 409 and response.headers["Retry-After"] == "2"


@pytest.mark.asyncio
async def test_the_claim_holder_finishing_gives_already_evaluated_with_its_id(api, sandbox, ctx):
    case_id, scene, token = await rated_by(api, sandbox, ctx, 803)
    answers = await asyncio.gather(
        *(api("POST", RATE, {"case_id": case_id, "overall": 5}, token=token) for _ in range(8))
    )
    created = [a for s, a in answers if s == 201]
    assert len(created) == 1
    mine = created[0]["evaluation"]["id"]
    for status, answer in answers:
        if status != 201:
            assert (status, answer["error"]["code"]) == (409, "already_evaluated"), answer
            assert answer["error"]["evaluation_id"] == mine  # the caller's own rating


@pytest.mark.asyncio
async def test_a_retry_with_its_key_gets_the_original_answer(api, sandbox, ctx):
    case_id, scene, token = await rated_by(api, sandbox, ctx, 804)
    body = {"scene": scene, "overall": 2, "indicators": ["long_queue"], "comment": "排队太久"}
    status, first = await api("POST", RATE, body, token=token, headers=keyed("k-20261202-1"))
    assert status == 201, first
    # the answer was lost; the client retries the very same request
    status, again = await api("POST", RATE, body, token=token, headers=keyed("k-20261202-1"))
    assert status == 201, again
    assert again["evaluation"]["id"] == first["evaluation"]["id"]
    assert again["evaluation"]["overall"] == 2 and again["evaluation"]["comment"] == "排队太久"
    assert await ctx.db.run(Evaluation.select().count) == 1
    # the same key with another body is a mistake, not a retry
    status, answer = await api(
        "POST", RATE, {**body, "overall": 1}, token=token, headers=keyed("k-20261202-1")
    )
    assert (status, answer["error"]["code"]) == (422, "idempotency_mismatch")
    # without the key, the used scene says so, as before
    status, answer = await api("POST", RATE, body, token=token)
    assert (status, answer["error"]["code"]) == (410, "token_used")
    # another user's key space is their own
    _, _, other = await rated_by(api, sandbox, ctx, 805)
    status, answer = await api("POST", RATE, body, token=other, headers=keyed("k-20261202-1"))
    assert status in (403, 410), answer


@pytest.mark.asyncio
async def test_concurrent_retries_with_one_key_all_learn_the_one_rating(api, sandbox, ctx):
    case_id, _, token = await rated_by(api, sandbox, ctx, 806)
    body = {"case_id": case_id, "overall": 4}
    answers = await asyncio.gather(
        *(api("POST", RATE, body, token=token, headers=keyed("same-key-001")) for _ in range(6))
    )
    assert [s for s, _ in answers] == [201] * 6, answers
    assert len({a["evaluation"]["id"] for _, a in answers}) == 1
    assert await ctx.db.run(Evaluation.select().count) == 1


@pytest.mark.asyncio
async def test_follow_ups_take_a_key_too(api, sandbox, ctx):
    case_id, scene, token = await rated_by(api, sandbox, ctx, 807)
    status, rated = await api("POST", RATE, {"scene": scene, "overall": 4}, token=token)
    assert status == 201
    path = f"{RATE}/{rated['evaluation']['id']}/follow-up"
    body = {"overall": 5, "comment": "后来很好"}
    status, first = await api("POST", path, body, token=token, headers=keyed("fu-key-0001"))
    assert status == 201, first
    status, again = await api("POST", path, body, token=token, headers=keyed("fu-key-0001"))
    assert status == 201 and again["evaluation"]["id"] == first["evaluation"]["id"]
    status, answer = await api("POST", path, body, token=token)
    assert (status, answer["error"]["code"]) == (409, "follow_up_exists")


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["short", "x" * 65, "with space!", "tab\tin-the-key"])
async def test_bad_keys_are_400(api, sandbox, ctx, key):
    _, scene, token = await rated_by(api, sandbox, ctx, 808)
    status, answer = await api(
        "POST", RATE, {"scene": scene, "overall": 5}, token=token, headers=keyed(key)
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_body"), answer


@pytest.mark.asyncio
async def test_keys_are_forgotten_after_a_day(api, sandbox, ctx):
    from datetime import timedelta

    from models.base import utcnow
    from models.idempotency import IdempotentRequest
    from wxbackend.services.jobs import housekeeping

    case_id, scene, token = await rated_by(api, sandbox, ctx, 809)
    body = {"scene": scene, "overall": 5}
    assert (await api("POST", RATE, body, token=token, headers=keyed("old-key-001")))[0] == 201
    old = utcnow() - timedelta(hours=25)
    await ctx.db.run(lambda: IdempotentRequest.update(created_at=old).execute())
    assert await housekeeping.TASKS["purge_idempotency_keys"](ctx) == 1
    assert await ctx.db.run(IdempotentRequest.select().count) == 0


@both_databases
@pytest.mark.asyncio
async def test_an_expired_key_is_replaced_by_its_next_use(api, sandbox, ctx):
    """The key is recorded by one upsert in the rating's transaction: a key used again after
    it expired (not purged yet) stores the new rating and now answers for that one."""
    from datetime import timedelta

    from models.base import utcnow
    from models.idempotency import IdempotentRequest

    number = make_id_number(811)
    _, first_scene = await make_case(ctx, "黎明", number)
    _, second_scene = await make_case(ctx, "黎明", number)
    token = await verified_user(api, sandbox, "黎明", number)
    first = {"scene": first_scene, "overall": 5}
    status, answer = await api("POST", RATE, first, token=token, headers=keyed("reused-key-1"))
    assert status == 201, answer
    old = utcnow() - timedelta(hours=25)
    await ctx.db.run(lambda: IdempotentRequest.update(created_at=old).execute())
    second = {"scene": second_scene, "overall": 4}
    status, again = await api("POST", RATE, second, token=token, headers=keyed("reused-key-1"))
    assert status == 201, again
    assert again["evaluation"]["id"] != answer["evaluation"]["id"]
    rows = await ctx.db.run(lambda: list(IdempotentRequest.select().dicts()))
    assert [r["evaluation_id"] for r in rows] == [int(again["evaluation"]["id"])]
    assert rows[0]["created_at"] > old
    status, replayed = await api("POST", RATE, second, token=token, headers=keyed("reused-key-1"))
    assert (status, replayed["evaluation"]["id"]) == (201, again["evaluation"]["id"])
    status, _ = await api("POST", RATE, first, token=token, headers=keyed("reused-key-1"))
    assert status == 422
