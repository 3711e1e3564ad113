"""POST /api/v1/subscriptions and the quota functions the reminder sender spends with."""

from __future__ import annotations

import asyncio

import pytest

from models.messaging import Subscription
from tests.support.databases import both_databases
from wxbackend.db import database
from wxbackend.services.messaging import subscriptions as subs

REMINDER = "Reminder_" + "a" * 34
RECTIFIED = "Rectified-" + "b" * 33
LONG = "LongTerm_" + "c" * 34


@pytest.fixture
def settings_overrides():
    return {
        "wechat": {
            "template_reminder": REMINDER,
            "template_rectified": RECTIFIED,
            "long_term_templates": [LONG],
        }
    }


async def _user(api, sandbox, openid=None) -> tuple[str, int]:
    token, answer = await api.login(sandbox, openid)
    return token, int(answer["user"]["id"])


async def _subscribe(api, token, results):
    return await api("POST", "/api/v1/subscriptions", {"results": results}, token=token)


def _row(user_id, template_id):
    return Subscription.get_or_none(
        Subscription.user == user_id, Subscription.template_id == template_id
    )


@pytest.mark.asyncio
async def test_accept_reject_ban(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    status, answer = await _subscribe(api, token, {REMINDER: "accept", RECTIFIED: "reject"})
    assert status == 200, answer
    assert answer == {"quota": {REMINDER: 1, RECTIFIED: 0}}
    status, answer = await _subscribe(api, token, {REMINDER: "accept", RECTIFIED: "accept"})
    assert answer == {"quota": {REMINDER: 2, RECTIFIED: 1}}
    # reject keeps the quota earlier accepts gave (WeChat does too), records the choice
    status, answer = await _subscribe(api, token, {REMINDER: "reject"})
    assert answer == {"quota": {REMINDER: 2}}
    row = await ctx.db.run(_row, user_id, REMINDER)
    assert row.last_result == "reject" and row.quota == 2
    # ban: notifications off → nothing left
    status, answer = await _subscribe(api, token, {REMINDER: "ban"})
    assert answer == {"quota": {REMINDER: 0}}
    row = await ctx.db.run(_row, user_id, REMINDER)
    assert row.last_result == "ban" and row.quota == 0


@pytest.mark.asyncio
async def test_long_term_template(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    status, answer = await _subscribe(api, token, {LONG: "accept"})
    assert status == 200 and answer == {"quota": {LONG: -1}}
    status, answer = await _subscribe(api, token, {LONG: "accept"})
    assert answer == {"quota": {LONG: -1}}
    row = await ctx.db.run(_row, user_id, LONG)
    assert row.long_term and row.quota == 0
    status, answer = await _subscribe(api, token, {LONG: "reject"})
    assert answer == {"quota": {LONG: 0}}
    assert not (await ctx.db.run(_row, user_id, LONG)).long_term


@pytest.mark.asyncio
async def test_unknown_templates_ignored_and_filter_noop(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    results = {"someone-elses-template": "accept", REMINDER: "accept", "errMsg": "x:ok"}
    status, answer = await _subscribe(api, token, results)
    assert status == 200 and answer == {"quota": {REMINDER: 1}}
    assert await ctx.db.run(_row, user_id, "someone-elses-template") is None
    status, answer = await _subscribe(api, token, {REMINDER: "filter", RECTIFIED: "filter"})
    assert answer == {"quota": {REMINDER: 1, RECTIFIED: 0}}
    assert await ctx.db.run(_row, user_id, RECTIFIED) is None
    status, answer = await _subscribe(api, token, {})
    assert status == 200 and answer == {"quota": {}}


@pytest.mark.asyncio
async def test_bad_bodies(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    four = {REMINDER: "accept", RECTIFIED: "accept", LONG: "accept", "x": "accept"}
    for body in (
        {"results": four},
        {"results": {REMINDER: "maybe"}},
        {"results": {REMINDER: 1}},
        {"results": [REMINDER]},
        {},
        {"results": {}, "extra": 1},
    ):
        status, answer = await api("POST", "/api/v1/subscriptions", body, token=token)
        assert status == 400 and answer["error"]["code"] == "invalid_body", (body, answer)
    assert await ctx.db.run(Subscription.select().count) == 0


@pytest.mark.asyncio
async def test_needs_login(api, ctx):
    status, answer = await api("POST", "/api/v1/subscriptions", {"results": {REMINDER: "accept"}})
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    status, answer = await api(
        "POST", "/api/v1/subscriptions", {"results": {}}, token="not-a-token"
    )
    assert status == 401


@pytest.mark.asyncio
@both_databases
async def test_concurrent_accepts_exact(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    answers = await asyncio.gather(
        *(_subscribe(api, token, {REMINDER: "accept", RECTIFIED: "accept"}) for _ in range(20))
    )
    assert all(status == 200 for status, _ in answers), answers
    # every answer saw its own increment: 20 distinct values 1..20
    assert sorted(a["quota"][REMINDER] for _, a in answers) == list(range(1, 21))
    assert (await ctx.db.run(_row, user_id, REMINDER)).quota == 20
    assert (await ctx.db.run(_row, user_id, RECTIFIED)).quota == 20


# ---- the reminder sender's functions ------------------------------------------------------------


def _in_tx(fn, *args):
    with database.atomic():
        return fn(*args)


@pytest.mark.asyncio
@both_databases
async def test_spend_restore_zero_has(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    run = ctx.db.run
    assert not await run(_in_tx, subs.has_quota, user_id, REMINDER)
    assert not await run(_in_tx, subs.spend_quota, user_id, REMINDER)  # no row at all
    await _subscribe(api, token, {REMINDER: "accept"})
    assert await run(_in_tx, subs.has_quota, user_id, REMINDER)
    assert await run(_in_tx, subs.spend_quota, user_id, REMINDER)
    assert not await run(_in_tx, subs.spend_quota, user_id, REMINDER)  # quota 0
    assert (await run(_row, user_id, REMINDER)).quota == 0
    await run(_in_tx, subs.restore_quota, user_id, REMINDER)
    assert (await run(_row, user_id, REMINDER)).quota == 1
    await run(_in_tx, subs.zero_quota, user_id, REMINDER)
    assert not await run(_in_tx, subs.has_quota, user_id, REMINDER)
    # a spend rolled back with its transaction leaves the quota as it was
    await _subscribe(api, token, {REMINDER: "accept"})

    def spend_then_fail():
        with database.atomic():
            assert subs.spend_quota(user_id, REMINDER)
            raise RuntimeError("send failed before commit")

    with pytest.raises(RuntimeError):
        await run(spend_then_fail)
    assert (await run(_row, user_id, REMINDER)).quota == 1
    # long-term: always True, nothing spent; restore adds nothing; 43101 ends it
    await _subscribe(api, token, {LONG: "accept"})
    for _ in range(3):
        assert await run(_in_tx, subs.spend_quota, user_id, LONG)
    await run(_in_tx, subs.restore_quota, user_id, LONG)
    row = await run(_row, user_id, LONG)
    assert row.long_term and row.quota == 0
    await run(_in_tx, subs.zero_quota, user_id, LONG)
    assert not await run(_in_tx, subs.spend_quota, user_id, LONG)


@pytest.mark.asyncio
@both_databases
async def test_concurrent_spends_exact(api, sandbox, ctx):
    token, user_id = await _user(api, sandbox)
    for _ in range(5):
        await _subscribe(api, token, {REMINDER: "accept"})
    results = await asyncio.gather(
        *(ctx.db.run(_in_tx, subs.spend_quota, user_id, REMINDER) for _ in range(20))
    )
    assert results.count(True) == 5 and results.count(False) == 15
    assert (await ctx.db.run(_row, user_id, REMINDER)).quota == 0
