"""Rating a case (一事一评), its follow-up (追评) and the citizen's own list, over HTTP against
the sandbox and a real Redis; single use under concurrency and without Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from models.base import utcnow
from models.case import Case, QrToken
from models.evaluation import Evaluation, EvaluationIndicator
from models.ticket import Ticket, TicketEvent
from tests.support.cases import STAFF_HL002_ID, make_case, make_id_number
from tests.support.databases import both_databases
from wxbackend import errors
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.services.ratings import submit, writer
from wxbackend.services.ratings.rules import parse_rating
from wxbackend.timefmt import parse_iso

NAME = "黎明"
MINE = "/api/v1/me/evaluations"
FAST_WECHAT = {"wechat": {"timeout_seconds": 0.5}}


def follow_up_path(evaluation_id: str) -> str:
    return f"/api/v1/evaluations/{evaluation_id}/follow-up"


async def applicant_with_case(api, sandbox, ctx, seed: int, **kw):
    """A verified applicant and their case: ``(token, case_id, scene)``."""
    id_number = make_id_number(seed)
    case_id, scene = await make_case(ctx, NAME, id_number, **kw)
    token = await verified_user(api, sandbox, NAME, id_number)
    return token, case_id, scene


async def count(ctx, model, *where) -> int:
    return await ctx.db.run(
        lambda: model.select().where(*where).count() if where else model.select().count()
    )


def assert_error(result, status: int, code: str) -> None:
    got_status, answer = result
    assert (got_status, answer["error"]["code"]) == (status, code), answer


# ---- end to end --------------------------------------------------------------------------------


@both_databases
@pytest.mark.asyncio
async def test_scan_rate_then_my_evaluations(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 1)
    status, scanned = await api("POST", "/api/v1/scan", {"scene": scene}, token=token)
    assert status == 200 and scanned["case"]["id"] == case_id
    published: list[int] = []

    async def publish(evaluation_id: int) -> None:
        published.append(evaluation_id)

    ctx.publisher = publish
    status, answer = await rate(
        api,
        token,
        scene=scene,
        overall=5,
        stages={"appointment": 5, "handling": 4},
        targets={"window_staff": 5},
        indicators=["efficiency", "service_attitude"],
        comment="  办事很快，态度很好  ",
    )
    assert status == 201, answer
    evaluation = answer["evaluation"]
    assert evaluation == {
        "id": evaluation["id"],
        "case_id": case_id,
        "overall": 5,
        "stages": {"appointment": 5, "handling": 4},
        "targets": {"window_staff": 5},
        "indicators": ["efficiency", "service_attitude"],
        "comment": "办事很快，态度很好",
        "comment_status": "visible",
        "channel": "qr",
        "assess_number": 1,
        "like_count": 0,
        "created_at": evaluation["created_at"],
        "receipt": evaluation["receipt"],
    }
    assert evaluation["created_at"].endswith("+08:00")
    receipt = evaluation["receipt"]  # the transparency log's receipt (no checkpoint yet)
    assert set(receipt) == {"leaf_index", "leaf_hash", "salt", "checkpoint"}
    assert receipt["leaf_index"] == 0 and receipt["checkpoint"] is None
    assert len(receipt["leaf_hash"]) == 64 and len(receipt["salt"]) == 32
    assert published == [int(evaluation["id"])]
    status, mine = await api("GET", MINE, token=token)
    assert status == 200 and mine == {"items": [evaluation]}
    stored = await ctx.db.run(Evaluation.get_by_id, int(evaluation["id"]))
    case = await ctx.db.run(Case.get_by_id, int(case_id))
    assert stored.name_masked == "黎**" and stored.rater_id_hash == case.applicant_id_hash
    assert (stored.center_id, stored.item_id, stored.department_id) == (
        case.center_id,
        case.item_id,
        case.department_id,
    )
    assert (stored.window_staff_id, stored.approver_id) == (case.window_staff_id, case.approver_id)
    assert case.first_rated_at is not None
    token_row = await ctx.db.run(QrToken.get, QrToken.case == case.id)
    assert token_row.status == "used" and token_row.used_at is not None
    assert await count(ctx, Ticket) == 0  # not a 差评
    # the scene is spent
    assert_error(
        await api("POST", "/api/v1/scan", {"scene": scene}, token=token), 410, "token_used"
    )


@both_databases
@pytest.mark.asyncio
async def test_rating_closes_the_case_to_every_token(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 2)
    other_scene = await ctx.db.run(_second_token, int(case_id))
    assert (await rate(api, token, scene=scene, overall=4))[0] == 201
    statuses = await ctx.db.run(lambda: sorted(t.status for t in QrToken.select()))
    assert statuses == ["revoked", "used"]
    assert_error(await rate(api, token, scene=other_scene, overall=4), 410, "token_used")
    assert_error(await rate(api, token, case_id=case_id, overall=4), 409, "already_evaluated")


def _second_token(case_id: int) -> str:
    from wxbackend.security import token_digest
    from wxbackend.services.cases.tokens import new_scene

    scene = new_scene()
    QrToken.create(
        case=case_id, token_hash=token_digest(scene), expires_at=utcnow() + timedelta(days=1)
    )
    return scene


@pytest.mark.asyncio
async def test_publish_failure_never_fails_the_rating(api, sandbox, ctx, caplog):
    token, _, scene = await applicant_with_case(api, sandbox, ctx, 3)

    async def broken(evaluation_id: int) -> None:
        raise RuntimeError("pub/sub down")

    ctx.publisher = broken
    status, answer = await rate(api, token, scene=scene, overall=5)
    assert status == 201, answer
    assert "publishing an evaluation failed" in caplog.text


# ---- single use ----------------------------------------------------------------------------------


@both_databases
@pytest.mark.asyncio
async def test_fifty_concurrent_submissions_store_one_rating(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 4)
    results = await asyncio.gather(*[rate(api, token, scene=scene, overall=5) for _ in range(50)])
    statuses = [status for status, _ in results]
    print("50 concurrent:", {s: statuses.count(s) for s in set(statuses)})
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 409, 410}
    for status, answer in results:
        if status == 409:
            assert answer["error"]["code"] == "already_evaluated"
        elif status == 410:
            assert answer["error"]["code"] == "token_used"
    assert await count(ctx, Evaluation) == 1


@pytest.mark.asyncio
async def test_concurrent_submissions_without_a_working_claim(api, sandbox, ctx, monkeypatch):
    """Every claim vanishes right after it is taken (Redis flushed between claim and insert)
    and all 30 submissions are held until each has passed its checks: all reach the
    transaction at once, and still exactly one rating is stored."""
    token, _, scene = await applicant_with_case(api, sandbox, ctx, 9)
    real_set, real_status = ctx.redis.set, submit.comment_status
    arrived: list[int] = []
    everyone_checked = asyncio.Event()
    stores: list[int] = []
    real_write = writer.write

    async def forgetful_set(key, value, **kw):
        if key.startswith(ctx.rkeys("claim", "")):
            return True  # claimed, and flushed at once
        return await real_set(key, value, **kw)

    async def gated_status(*args):
        arrived.append(1)
        if len(arrived) == 30:
            everyone_checked.set()
        await asyncio.wait_for(everyone_checked.wait(), 10)
        return await real_status(*args)

    def counted_write(first, settings, **kw):
        stores.append(1)
        return real_write(first, settings, **kw)

    monkeypatch.setattr(ctx.redis, "set", forgetful_set)
    monkeypatch.setattr(submit, "comment_status", gated_status)
    monkeypatch.setattr(writer, "write", counted_write)
    results = await asyncio.gather(*[rate(api, token, scene=scene, overall=4) for _ in range(30)])
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) + statuses.count(410) == 29, statuses
    assert len(stores) == 30  # every one reached the transaction: the database decided
    assert await count(ctx, Evaluation) == 1


@pytest.mark.asyncio
async def test_redis_flushed_between_submissions(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 5)
    assert (await rate(api, token, scene=scene, overall=5))[0] == 201
    await ctx.redis.flushdb()  # the claim and every other key are gone
    token = await verified_user(api, sandbox, NAME, make_id_number(5))  # sessions went too
    assert_error(await rate(api, token, scene=scene, overall=3), 410, "token_used")
    await ctx.redis.flushdb()
    token = await verified_user(api, sandbox, NAME, make_id_number(5))
    assert_error(await rate(api, token, case_id=case_id, overall=3), 409, "already_evaluated")
    assert await count(ctx, Evaluation) == 1


@both_databases
@pytest.mark.asyncio
async def test_the_database_constraint_holds_without_the_claim(api, sandbox, ctx):
    """Two submissions that both passed their checks (Redis flushed in between): the
    transaction re-reads the case, and the unique (case, assess_number) index is the last word
    even when the case's flag says "unrated"."""
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 6)
    user_id = (await api("GET", "/api/v1/me", token=token))[1]["user"]["id"]
    prepared = await ctx.db.run(submit.prepare_first_rating, int(user_id), scene, None, True)
    new = submit.first_rating(prepared, parse_rating(5), {}, "visible")
    await ctx.redis.delete(writer.claim_key(ctx, prepared.case_id))
    first = (await ctx.db.run(writer.write, new, ctx.settings)).evaluation_id
    await ctx.redis.delete(writer.claim_key(ctx, prepared.case_id))
    with pytest.raises(errors.AlreadyEvaluated):
        await ctx.db.run(writer.write, new, ctx.settings)
    # Even with the case's flag and token reset (as if read before the first commit), the
    # unique index refuses a second first rating.
    await ctx.db.run(_forget_rating, int(case_id))
    with pytest.raises(errors.AlreadyEvaluated):
        await ctx.db.run(writer.write, new, ctx.settings)
    assert await count(ctx, Evaluation) == 1
    assert (await ctx.db.run(Evaluation.get_by_id, first)).assess_number == 1


def _forget_rating(case_id: int) -> None:
    Case.update(first_rated_at=None).where(Case.id == case_id).execute()
    QrToken.update(status="active", used_at=None).where(QrToken.case == case_id).execute()


@pytest.mark.asyncio
async def test_a_taken_claim_answers_rating_in_progress(api, sandbox, ctx, monkeypatch):
    """Another request holds the case and nothing is stored: never "already rated" (issue
    13: a claim left by a killed process used to say so), but "retry"."""
    monkeypatch.setattr(writer, "CLAIM_WAIT_SECONDS", 0.2)
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 7)
    key = writer.claim_key(ctx, int(case_id))
    await ctx.redis.set(key, "someone-else", ex=30)
    assert_error(await rate(api, token, scene=scene, overall=5), 409, "rating_in_progress")
    assert await ctx.redis.get(key) == "someone-else"  # another submission's claim is kept
    await ctx.redis.delete(key)
    assert (await rate(api, token, scene=scene, overall=5))[0] == 201


@pytest.mark.asyncio
async def test_a_failed_store_releases_the_claim(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 8)
    # the token expires between the checks and the transaction
    user_id = int((await api("GET", "/api/v1/me", token=token))[1]["user"]["id"])
    prepared = await ctx.db.run(submit.prepare_first_rating, user_id, scene, None, True)
    await ctx.db.run(lambda: QrToken.update(expires_at=utcnow() - timedelta(seconds=1)).execute())
    new = submit.first_rating(prepared, parse_rating(4), {}, "visible")
    with pytest.raises(errors.TokenExpired):
        await writer.record(ctx, new, claim=True)
    assert await ctx.redis.get(writer.claim_key(ctx, int(case_id))) is None
    assert await count(ctx, Evaluation) == 0


# ---- who may rate ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_identity_and_applicant_rules(api, sandbox, ctx):
    mine = make_id_number(10)
    case_id, scene = await make_case(ctx, NAME, mine)
    assert_error(await rate(api, None, scene=scene, overall=5), 401, "unauthenticated")
    unverified, _ = await api.login(sandbox)
    assert_error(await rate(api, unverified, scene=scene, overall=5), 403, "identity_required")
    assert_error(await rate(api, unverified, case_id=case_id, overall=5), 403, "identity_required")
    stranger = await verified_user(api, sandbox, "张三", make_id_number(11))
    assert_error(await rate(api, stranger, scene=scene, overall=5), 403, "not_applicant")
    assert_error(await rate(api, stranger, case_id=case_id, overall=5), 403, "not_applicant")
    assert_error(await rate(api, stranger, case_id="999999", overall=5), 404, "not_found")
    assert await count(ctx, Evaluation) == 0
    owner = await verified_user(api, sandbox, NAME, mine)
    assert (await rate(api, owner, case_id=int(case_id), overall=5))[0] == 201


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"rating": {"require_applicant": False}}])
async def test_anyone_verified_may_rate_a_scene_when_not_required(api, sandbox, ctx):
    _, scene = await make_case(ctx, NAME, make_id_number(12))
    stranger = await verified_user(api, sandbox, "张三", make_id_number(13))
    status, answer = await rate(api, stranger, scene=scene, overall=5)
    assert status == 201, answer
    # a case_id is always for the applicant only
    case_id, _ = await make_case(ctx, NAME, make_id_number(12))
    assert_error(await rate(api, stranger, case_id=case_id, overall=5), 403, "not_applicant")


@both_databases
@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"rating": {"require_applicant": False}}])
async def test_staff_may_not_rate_their_own_case(api, sandbox, ctx):
    _, as_window = await make_case(
        ctx, NAME, make_id_number(14), window_code="HL-W02", window_staff_no="HL002"
    )
    _, as_other = await make_case(ctx, NAME, make_id_number(14))  # HL001 / HL101
    staff = await verified_user(api, sandbox, "陈嘉敏", STAFF_HL002_ID)
    assert_error(
        await rate(api, staff, scene=as_window, overall=5), 403, "self_evaluation_forbidden"
    )
    assert (await rate(api, staff, scene=as_other, overall=5))[0] == 201


@pytest.mark.asyncio
async def test_staff_applicant_of_own_case_is_refused(api, sandbox, ctx):
    case_id, _ = await make_case(ctx, "陈嘉敏", STAFF_HL002_ID, approver_staff_no="HL002")
    staff = await verified_user(api, sandbox, "陈嘉敏", STAFF_HL002_ID)
    assert_error(
        await rate(api, staff, case_id=case_id, overall=5), 403, "self_evaluation_forbidden"
    )


@both_databases
@pytest.mark.asyncio
async def test_token_errors_on_rating(api, sandbox, ctx):
    id_number = make_id_number(15)
    _, expired = await make_case(
        ctx, NAME, id_number, token_expires_at=utcnow() - timedelta(seconds=1)
    )
    _, revoked = await make_case(ctx, NAME, id_number, token_status="revoked")
    _, used = await make_case(ctx, NAME, id_number, token_status="used")
    token = await verified_user(api, sandbox, NAME, id_number)
    assert_error(await rate(api, token, scene="B" * 30, overall=5), 404, "token_not_found")
    assert_error(await rate(api, token, scene=expired, overall=5), 410, "token_expired")
    assert_error(await rate(api, token, scene=revoked, overall=5), 410, "token_revoked")
    assert_error(await rate(api, token, scene=used, overall=5), 410, "token_used")


# ---- the rating's content -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_invalid_ratings(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 16)
    bad_bodies = [
        {"overall": 0},
        {"overall": 6},
        {"overall": "5"},
        {"overall": 4.5},
        {"overall": True},
        {"overall": None},
        {"overall": 5, "stages": {"queue": 5}},
        {"overall": 5, "stages": {"handling": 0}},
        {"overall": 5, "stages": {"delivery": "4"}},
        {"overall": 5, "targets": {"approver": True}},
        {"overall": 5, "targets": {"mayor": 5}},
    ]
    for body in bad_bodies:
        assert_error(await rate(api, token, scene=scene, **body), 422, "invalid_rating")
    assert_error(
        await rate(api, token, scene=scene, overall=5, indicators=["no_such_code"]),
        422,
        "unknown_indicator",
    )
    assert_error(
        await rate(api, token, scene=scene, overall=5, indicators=[1]), 422, "unknown_indicator"
    )
    for body in (
        {"overall": 2},
        {"overall": 1, "comment": "   "},
        {"overall": 2, "indicators": []},
    ):
        assert_error(await rate(api, token, scene=scene, **body), 422, "reason_required")
    too_long = "慢" * (ctx.settings.rating.comment_max_chars + 1)
    assert_error(
        await rate(api, token, scene=scene, overall=5, comment=too_long), 422, "comment_too_long"
    )
    # malformed requests
    assert_error(await rate(api, token, scene=scene, overall=5, extra=1), 400, "invalid_body")
    assert_error(
        await rate(api, token, scene=scene, case_id=case_id, overall=5), 400, "invalid_body"
    )
    assert_error(await rate(api, token, overall=5), 400, "invalid_body")
    assert_error(await rate(api, token, scene=scene, overall=5, stages=[5]), 400, "invalid_body")
    assert_error(await rate(api, token, scene=scene), 400, "invalid_body")
    assert await count(ctx, Evaluation) == 0
    # a full-length comment and repeated indicators are fine (repeats stored once)
    status, answer = await rate(
        api,
        token,
        scene=scene,
        overall=3,
        indicators=["long_queue", "long_queue"],
        comment=too_long[:-1],
    )
    assert status == 201, answer
    assert answer["evaluation"]["indicators"] == ["long_queue"]


@pytest.mark.asyncio
async def test_text_check_verdicts(api, sandbox, ctx):
    token, _, scene = await applicant_with_case(api, sandbox, ctx, 17)
    assert_error(
        await rate(api, token, scene=scene, overall=5, comment="这里有违禁内容"),
        422,
        "comment_rejected",
    )
    assert await count(ctx, Evaluation) == 0
    assert (await ctx.db.run(QrToken.get, QrToken.id > 0)).status == "active"  # not consumed
    status, answer = await rate(api, token, scene=scene, overall=5, comment="内容待审一下")
    assert status == 201, answer
    assert answer["evaluation"]["comment_status"] == "pending_review"
    assert answer["evaluation"]["comment"] == "内容待审一下"  # the owner still sees it
    assert (await sandbox.stats())["calls"]["wxa/msg_sec_check"] == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [FAST_WECHAT])
async def test_text_check_unavailable_keeps_the_rating(api, sandbox, ctx):
    token, _, scene = await applicant_with_case(api, sandbox, ctx, 18)
    await sandbox.fault("wxa/msg_sec_check", errcode=-1)
    status, answer = await rate(api, token, scene=scene, overall=4, comment="还行")
    assert status == 201, answer
    assert answer["evaluation"]["comment_status"] == "pending_review"
    assert await count(ctx, Evaluation) == 1


@both_databases
@pytest.mark.asyncio
async def test_a_bad_rating_opens_one_ticket(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 19)
    status, answer = await rate(
        api, token, scene=scene, overall=1, indicators=["repeat_visits", "not_told_at_once"]
    )
    assert status == 201, answer
    assert answer["evaluation"]["indicators"] == ["not_told_at_once", "repeat_visits"]
    tickets = await ctx.db.run(lambda: list(Ticket.select()))
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket.evaluation_id == int(answer["evaluation"]["id"])
    assert ticket.case_id == int(case_id) and ticket.status == "open"
    assert ticket.opened_at < ticket.verify_due < ticket.rectify_due
    assert ticket.rectify_due - ticket.opened_at >= timedelta(days=15)
    events = await ctx.db.run(lambda: [(e.status, e.action, e.by) for e in TicketEvent.select()])
    assert events == [("open", "open", "system")]
    assert await count(ctx, EvaluationIndicator) == 2
    created = parse_iso(answer["evaluation"]["created_at"])
    assert abs(created - ticket.opened_at) < timedelta(seconds=1)


# ---- follow-up (追评) -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_follow_up_once_by_the_owner(api, sandbox, ctx):
    token, case_id, scene = await applicant_with_case(api, sandbox, ctx, 20)
    status, answer = await rate(api, token, scene=scene, overall=2, comment="排队太久")
    assert status == 201, answer
    first = answer["evaluation"]
    # a 差评's follow-up waits for its ticket to be closed (rule 15: tests/test_rating_rules.py)
    await ctx.db.run(lambda: Ticket.update(status="closed").execute())
    path = follow_up_path(first["id"])
    assert_error(await api("POST", path, {"overall": 5, "x": 1}, token=token), 400, "invalid_body")
    assert_error(await api("POST", path, {"overall": "5"}, token=token), 422, "invalid_rating")
    assert_error(await api("POST", path, {"overall": 1}, token=token), 422, "reason_required")
    assert_error(
        await api("POST", path, {"overall": 5, "indicators": ["nope"]}, token=token),
        422,
        "unknown_indicator",
    )
    assert_error(
        await api("POST", path, {"overall": 5, "comment": "违禁"}, token=token),
        422,
        "comment_rejected",
    )
    stranger = await verified_user(api, sandbox, "张三", make_id_number(21))
    assert_error(await api("POST", path, {"overall": 5}, token=stranger), 403, "not_owner")
    assert_error(
        await api("POST", follow_up_path("999999"), {"overall": 5}, token=token), 404, "not_found"
    )
    assert_error(await api("POST", path, {"overall": 5}), 401, "unauthenticated")
    status, answer = await api(
        "POST", path, {"overall": 1, "comment": "问题依旧", "indicators": ["overdue"]}, token=token
    )
    assert status == 201, answer
    second = answer["evaluation"]
    assert second["assess_number"] == 2 and second["channel"] == "qr"
    assert second["case_id"] == case_id and second["indicators"] == ["overdue"]
    assert second["stages"] == {} and second["targets"] == {}
    assert await count(ctx, Ticket) == 1  # the first rating's only: a follow-up opens none
    assert_error(await api("POST", path, {"overall": 5}, token=token), 409, "follow_up_exists")
    assert_error(
        await api("POST", follow_up_path(second["id"]), {"overall": 5}, token=token),
        409,
        "follow_up_exists",
    )
    status, mine = await api("GET", MINE, token=token)
    assert [item["id"] for item in mine["items"]] == [second["id"], first["id"]]


@pytest.mark.asyncio
async def test_concurrent_follow_ups_store_one(api, sandbox, ctx):
    token, case_id, _ = await applicant_with_case(api, sandbox, ctx, 22)
    status, answer = await rate(api, token, case_id=case_id, overall=4)
    assert status == 201
    path = follow_up_path(answer["evaluation"]["id"])
    results = await asyncio.gather(
        *[api("POST", path, {"overall": 5}, token=token) for _ in range(10)]
    )
    statuses = [status for status, _ in results]
    assert statuses.count(201) == 1 and set(statuses) == {201, 409}, statuses
    follow_ups = await count(ctx, Evaluation, Evaluation.assess_number == 2)
    assert follow_ups == 1
    (follow,) = [a["evaluation"] for s, a in results if s == 201]
    assert follow["channel"] == "miniprogram"


@pytest.mark.asyncio
async def test_my_evaluations_are_mine_only(api, sandbox, ctx):
    token, _, scene = await applicant_with_case(api, sandbox, ctx, 23)
    other = await verified_user(api, sandbox, "张三", make_id_number(24))
    assert (await rate(api, token, scene=scene, overall=5))[0] == 201
    assert (await api("GET", MINE, token=other))[1] == {"items": []}
    assert len((await api("GET", MINE, token=token))[1]["items"]) == 1
    assert_error(await api("GET", MINE), 401, "unauthenticated")
