"""Real-name identity through WeChat face verification (实名核身), over HTTP against the sandbox."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from stdnum.cn import ric

from models.base import utcnow
from models.identity import FaceAttempt, Identity
from models.user import User
from wxbackend.security import normalize_id_number
from wxbackend.services.citizens import identity as identity_service
from wxbackend.wechat import errors as wx

START = "/api/v1/identity/face/start"
FINISH = "/api/v1/identity/face/finish"
ME = "/api/v1/me"
MY_IDENTITY = "/api/v1/me/identity"


def resident_id(first17: str) -> str:
    """A valid 18-character resident ID: ``first17`` plus its GB 11643 check character."""
    return first17 + ric.calc_check_digit(first17 + "?")


def bad_checksum(number: str) -> str:
    """The same ID with a wrong check character."""
    wrong = "0" if number[-1] != "0" else "1"
    return number[:-1] + wrong


ID_A = resident_id("11010519491231002")
ID_B = resident_id("44010319900307123")
NAME = "张三丰"


async def start(api, token: str, name: str = NAME, id_number: str = ID_A) -> tuple[int, dict]:
    return await api("POST", START, {"name": name, "id_number": id_number}, token=token)


async def finish(api, token: str, verify_id: str) -> tuple[int, dict]:
    return await api("POST", FINISH, {"verify_id": verify_id}, token=token)


async def started(api, token: str, name: str = NAME, id_number: str = ID_A) -> str:
    status, answer = await start(api, token, name, id_number)
    assert status == 200, answer
    return answer["verify_id"]


async def face_done(sandbox, verify_id: str, verify_ret: int = 10000) -> None:
    answer = await sandbox.control(
        "POST", "face/finish", {"verify_id": verify_id, "verify_ret": verify_ret}
    )
    assert answer == {"ok": True}, answer


async def verify(api, sandbox, token: str, name: str = NAME, id_number: str = ID_A) -> dict:
    verify_id = await started(api, token, name, id_number)
    await face_done(sandbox, verify_id)
    status, answer = await finish(api, token, verify_id)
    assert status == 200, answer
    return answer


async def identities(ctx) -> list[Identity]:
    return await ctx.db.run(lambda: list(Identity.select()))


# ---- cert_hash and the sandbox ---------------------------------------------------------------


def test_cert_hash_matches_the_wechat_test_vector():
    assert identity_service.cert_hash("张三", "310101199801011234") == (
        "3c241f7ff324977aeb91f173bb2a7b06569e6fd784d5573db34a636d8671108b"
    )


@pytest.mark.asyncio
async def test_sandbox_accepts_our_cert_hash_and_rejects_a_wrong_one(api, sandbox, ctx):
    token, _ = await api.login(sandbox, "oCertHash0000000000000000001")
    verify_id = await started(api, token)
    attempt = await ctx.db.run(FaceAttempt.get, FaceAttempt.verify_id == verify_id)
    openid = "oCertHash0000000000000000001"
    good = identity_service.cert_hash(NAME, ID_A)
    answer = await ctx.wechat.query_verify_info(verify_id, attempt.out_seq_no, good, openid)
    assert answer["verify_ret"] == 90199  # not finished: WeChat's 用户系统错误
    wrong = identity_service.cert_hash("李四", ID_A)
    with pytest.raises(wx.InvalidArgumentError) as caught:
        await ctx.wechat.query_verify_info(verify_id, attempt.out_seq_no, wrong, openid)
    assert "cert_hash not match" in caught.value.errmsg
    # the sandbox kept the same hash we compute, from the certificate we sent
    items = (await sandbox.control("GET", "face/attempts"))["items"]
    assert [i["cert_hash"] for i in items] == [good]
    assert items[0]["out_seq_no"] == attempt.out_seq_no and items[0]["openid"] == openid


# ---- start: validation -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "id_number",
    [bad_checksum(ID_A), "310101199801011234", ID_A[:-1], ID_A + "1", "", "1101051949123100AX"],
    ids=["checksum", "wechat-md-vector", "17-chars", "19-chars", "empty", "letters"],
)
async def test_start_rejects_invalid_id_numbers(api, sandbox, id_number):
    token, _ = await api.login(sandbox)
    status, answer = await start(api, token, id_number=id_number)
    assert status == 400 and answer["error"]["code"] == "invalid_id_number", answer
    assert (await sandbox.stats())["calls"].get("cityservice/face/identify/getverifyid", 0) == 0


@pytest.mark.asyncio
async def test_start_normalizes_full_width_and_lower_x(api, sandbox):
    token, _ = await api.login(sandbox)
    with_x = next(  # an ID whose check character is X
        resident_id(f"1101051949123100{i}")
        for i in range(10)
        if resident_id(f"1101051949123100{i}").endswith("X")
    )
    full_width = with_x[:-1].translate(str.maketrans("0123456789", "０１２３４５６７８９")) + "x"
    status, answer = await start(api, token, id_number=full_width)
    assert status == 200, answer


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name",
    ["张", "", "   ", "张三1", "Zhang San", "张·", "·张三", "张··三", "张" * 33, "张 三", "<张三>"],
)
async def test_start_rejects_invalid_names(api, sandbox, name):
    token, _ = await api.login(sandbox)
    status, answer = await start(api, token, name=name)
    assert status == 400 and answer["error"]["code"] == "invalid_name", answer
    if name.strip():
        assert name.strip() not in answer["error"]["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("  张三  ", "张三"),
        ("迪丽热巴·迪力木拉提", "迪丽热巴·迪力木拉提"),
        ("阿卜杜・热合曼", "阿卜杜·热合曼"),
        ("张" * 32, "张" * 32),
    ],
)
async def test_start_accepts_valid_names_trimmed(api, sandbox, name, sent):
    token, _ = await api.login(sandbox, "oNames00000000000000000000001")
    verify_id = await started(api, token, name=name)
    items = (await sandbox.control("GET", "face/attempts"))["items"]
    assert items[0]["verify_id"] == verify_id
    assert items[0]["cert_hash"] == identity_service.cert_hash(sent, ID_A)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {"name": NAME, "id_number": ID_A, "extra": 1},
        {"name": NAME},
        {"name": 12, "id_number": ID_A},
        {"name": NAME, "id_number": ID_A, "out_seq_no": "client-chosen"},
    ],
    ids=["unknown", "missing", "wrong-type", "client-out-seq-no"],
)
async def test_start_body_is_strict(api, sandbox, body):
    token, _ = await api.login(sandbox)
    status, answer = await api("POST", START, body, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_body"


@pytest.mark.asyncio
async def test_finish_body_is_strict(api, sandbox):
    token, _ = await api.login(sandbox)
    status, answer = await api("POST", FINISH, {"verify_id": "x", "openid": "o"}, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_body"
    status, answer = await api("POST", FINISH, {}, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_body"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", START, {"name": NAME, "id_number": ID_A}), ("POST", FINISH, {"verify_id": "v"})]
    + [("DELETE", MY_IDENTITY, None)],
)
async def test_identity_endpoints_need_a_login(api, method, path, body):
    status, answer = await api(method, path, body)
    assert status == 401 and answer["error"]["code"] == "unauthenticated"
    status, answer = await api(method, path, body, token="forged")
    assert status == 401


# ---- the happy path --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_start_keeps_the_attempt_encrypted(api, sandbox, ctx):
    token, _ = await api.login(sandbox, "oStart00000000000000000000001")
    status, answer = await start(api, token)
    assert status == 200 and set(answer) == {"verify_id", "expires_in"}
    assert answer["expires_in"] == 3600
    attempt = await ctx.db.run(FaceAttempt.get, FaceAttempt.verify_id == answer["verify_id"])
    assert len(attempt.out_seq_no) == 32 and attempt.consumed_at is None
    assert NAME not in attempt.cert_enc and ID_A not in attempt.cert_enc
    assert ctx.cipher.decrypt(attempt.cert_enc, identity_service.CERT_CONTEXT)
    delta = attempt.expires_at - attempt.created_at
    assert timedelta(seconds=3590) < delta <= timedelta(seconds=3601)


@pytest.mark.asyncio
async def test_success_binds_a_verified_identity(api, sandbox, ctx):
    token, login = await api.login(sandbox, "oHappy00000000000000000000001")
    verify_id = await started(api, token)
    await face_done(sandbox, verify_id)
    status, answer = await finish(api, token, verify_id)
    assert status == 200 and answer == {"verified": True, "name_masked": "张**"}

    status, me = await api("GET", ME, token=token)
    assert status == 200
    assert me["identity"]["verified"] is True and me["identity"]["name_masked"] == "张**"
    assert me["identity"]["verified_at"].endswith("+08:00")
    assert me["user"]["verified"] is True and me["user"]["name_masked"] == "张**"

    (row,) = await identities(ctx)
    assert row.user_id == int(login["user"]["id"])
    assert ctx.cipher.decrypt(row.name_enc, "identity.name") == NAME
    assert ctx.cipher.decrypt(row.id_number_enc, "identity.id_number") == ID_A
    assert row.id_hash == ctx.hasher.hash(normalize_id_number(ID_A), "id_number")
    assert row.method == "wechat_face"
    assert row.expires_at - row.verified_at == timedelta(days=365)
    attempt = await ctx.db.run(FaceAttempt.get, FaceAttempt.verify_id == verify_id)
    assert attempt.consumed_at is not None and attempt.last_verify_ret == 10000
    assert attempt.cert_enc == ""  # no longer needed once consumed


@pytest.mark.asyncio
async def test_replay_is_409(api, sandbox):
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    await face_done(sandbox, verify_id)
    assert (await finish(api, token, verify_id))[0] == 200
    status, answer = await finish(api, token, verify_id)
    assert status == 409 and answer["error"]["code"] == "verify_id_used"


@pytest.mark.asyncio
async def test_another_users_verify_id_is_404(api, sandbox, ctx):
    owner, _ = await api.login(sandbox, "oOwner00000000000000000000001")
    thief, _ = await api.login(sandbox, "oThief00000000000000000000001")
    verify_id = await started(api, owner)
    await face_done(sandbox, verify_id)
    status, answer = await finish(api, thief, verify_id)
    assert status == 404 and answer["error"]["code"] == "unknown_verify_id"
    status, answer = await finish(api, thief, "no-such-verify-id")
    assert status == 404 and answer["error"]["code"] == "unknown_verify_id"
    status, answer = await finish(api, thief, "v" * 300)
    assert status == 404
    assert await identities(ctx) == []
    assert (await finish(api, owner, verify_id))[0] == 200


@pytest.mark.asyncio
async def test_expired_verify_id_is_410(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    await face_done(sandbox, verify_id)

    def expire() -> int:
        past = utcnow() - timedelta(seconds=1)
        return (
            FaceAttempt.update(expires_at=past).where(FaceAttempt.verify_id == verify_id).execute()
        )

    assert await ctx.db.run(expire) == 1
    status, answer = await finish(api, token, verify_id)
    assert status == 410 and answer["error"]["code"] == "verify_id_expired"
    assert await identities(ctx) == []


@pytest.mark.asyncio
async def test_wechat_side_expiry_is_410(api, sandbox, ctx):
    """Our record still live, WeChat says expired (clock skew): 410 as well."""
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    sandbox.state.face.attempts[verify_id].expires_at = sandbox.state.now() - 1
    status, answer = await finish(api, token, verify_id)
    assert status == 410 and answer["error"]["code"] == "verify_id_expired"


# ---- failures keep the verify_id usable -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("verify_ret", "reason"),
    [
        (10001, "bad_parameters"),
        (10002, "face_not_detected"),
        (10003, "id_mismatch"),
        (10004, "face_mismatch"),
        (90001, "device_unsupported"),
        (90002, "cancelled"),
        (90008, "camera_permission"),
        (90017, "timeout"),
        (90107, "timeout"),
        (90109, "device_unsupported"),
        (90050, "client_failed"),
        (90018, "wechat_system_error"),
        (90199, "wechat_system_error"),
        # never finished: WeChat has no "not finished" value; the sandbox answers 90199
        (None, "wechat_system_error"),
    ],
)
async def test_failing_verify_ret_is_403_and_the_verify_id_stays_usable(
    api, sandbox, ctx, verify_ret, reason
):
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    if verify_ret is not None:
        await face_done(sandbox, verify_id, verify_ret)
    status, answer = await finish(api, token, verify_id)
    assert status == 403, answer
    error = answer["error"]
    assert error["code"] == "face_verify_failed"
    assert error["verify_ret"] == (verify_ret or 90199)
    assert error["reason"] == reason and error["message"]
    assert NAME not in error["message"] and ID_A not in error["message"]
    attempt = await ctx.db.run(FaceAttempt.get, FaceAttempt.verify_id == verify_id)
    assert attempt.consumed_at is None and attempt.last_verify_ret == (verify_ret or 90199)
    status, me = await api("GET", ME, token=token)
    assert me["identity"]["verified"] is False

    await face_done(sandbox, verify_id, 10000)
    status, answer = await finish(api, token, verify_id)
    assert status == 200 and answer["verified"] is True


def test_every_failure_has_its_own_clear_message():
    codes = [10001, 10002, 10003, 10004, 90001, 90002, 90008, 90017, 90199]
    messages = [identity_service.failure_reason(c)[1] for c in codes]
    assert len(set(messages)) == len(codes)


# ---- WeChat down -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault", [{"errcode": -1}, {"http_status": 500}, {"errcode": 40097}], ids=str
)
@pytest.mark.usefixtures("quick_wechat_retries")
async def test_wechat_down_on_start_is_503(api, sandbox, ctx, fault):
    token, _ = await api.login(sandbox)
    await sandbox.fault("cityservice/face/identify/getverifyid", **fault)
    status, answer = await start(api, token)
    assert status == 503 and answer["error"]["code"] == "wechat_unavailable", answer
    assert await ctx.db.run(FaceAttempt.select().count) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", [{"errcode": -1}, {"http_status": 500}], ids=str)
@pytest.mark.usefixtures("quick_wechat_retries")
async def test_wechat_down_on_finish_is_503_and_retryable(api, sandbox, ctx, fault):
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    await face_done(sandbox, verify_id)
    await sandbox.fault("cityservice/face/identify/queryverifyinfo", **fault)
    status, answer = await finish(api, token, verify_id)
    assert status == 503 and answer["error"]["code"] == "wechat_unavailable"
    await sandbox.control("DELETE", "faults")
    assert (await finish(api, token, verify_id))[0] == 200


# ---- rate limit ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sixth_start_in_an_hour_is_429_before_wechat(api, sandbox):
    token, _ = await api.login(sandbox)
    statuses = [(await start(api, token))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    status, answer = await start(api, token)
    assert status == 429 and answer["error"]["code"] == "rate_limited"
    assert (await sandbox.stats())["calls"]["cityservice/face/identify/getverifyid"] == 5
    other, _ = await api.login(sandbox)
    assert (await start(api, other))[0] == 200


# ---- one identity per user, rebinding ----------------------------------------------------------


@pytest.mark.asyncio
async def test_verifying_again_replaces_the_users_identity(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    await verify(api, sandbox, token)
    answer = await verify(api, sandbox, token, name="李四", id_number=ID_B)
    assert answer["name_masked"] == "李**"
    (row,) = await identities(ctx)
    assert row.id_hash == ctx.hasher.hash(ID_B, "id_number")


@pytest.mark.asyncio
async def test_rebind_newest_wins_by_default(api, sandbox, ctx, caplog):
    caplog.set_level(logging.INFO, logger="wxbackend.identity")
    first, _ = await api.login(sandbox, "oFirst00000000000000000000001")
    second, login2 = await api.login(sandbox, "oSecond0000000000000000000001")
    await verify(api, sandbox, first)
    await verify(api, sandbox, second)
    assert (await api("GET", ME, token=first))[1]["identity"]["verified"] is False
    assert (await api("GET", ME, token=second))[1]["identity"]["verified"] is True
    (row,) = await identities(ctx)
    assert row.user_id == int(login2["user"]["id"])
    rebound = [r for r in caplog.records if "rebound" in r.getMessage()]
    assert len(rebound) == 1
    assert rebound[0].fields["new_user_id"] == int(login2["user"]["id"])
    assert NAME not in str(rebound[0].__dict__) and ID_A not in str(rebound[0].__dict__)


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"identity": {"allow_rebind": False}}])
async def test_rebind_refused_when_not_allowed(api, sandbox, ctx):
    first, login1 = await api.login(sandbox, "oFirst00000000000000000000001")
    second, _ = await api.login(sandbox, "oSecond0000000000000000000001")
    await verify(api, sandbox, first)
    verify_id = await started(api, second)
    await face_done(sandbox, verify_id)
    status, answer = await finish(api, second, verify_id)
    assert status == 409 and answer["error"]["code"] == "identity_bound_elsewhere"
    (row,) = await identities(ctx)
    assert row.user_id == int(login1["user"]["id"])
    assert (await api("GET", ME, token=first))[1]["identity"]["verified"] is True
    # nothing was consumed: once the first user erases it, the second can bind
    assert (await api("DELETE", MY_IDENTITY, token=first))[0] == 204
    assert (await finish(api, second, verify_id))[0] == 200


# ---- validity, erasure, retention ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_identity_shown_verified_only_while_valid(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    await verify(api, sandbox, token)

    def lapse() -> int:
        return Identity.update(expires_at=utcnow() - timedelta(seconds=1)).execute()

    assert await ctx.db.run(lapse) == 1
    status, me = await api("GET", ME, token=token)
    assert me["identity"] == {"verified": False, "name_masked": None, "verified_at": None}


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [{"identity": {"valid_days": 30}}])
async def test_valid_days_setting(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    await verify(api, sandbox, token)
    (row,) = await identities(ctx)
    assert row.expires_at - row.verified_at == timedelta(days=30)


@pytest.mark.asyncio
async def test_delete_identity_erases_it(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    await verify(api, sandbox, token)
    await started(api, token)  # a pending attempt: its encrypted certificate goes too
    status, body = await api("DELETE", MY_IDENTITY, token=token)
    assert status == 204 and not body
    status, me = await api("GET", ME, token=token)
    assert me["identity"] == {"verified": False, "name_masked": None, "verified_at": None}
    assert me["user"]["verified"] is False
    assert await identities(ctx) == []
    assert await ctx.db.run(FaceAttempt.select().count) == 0
    assert (await api("DELETE", MY_IDENTITY, token=token))[0] == 204  # idempotent


@pytest.mark.asyncio
async def test_purge_face_attempts_by_retention(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    old_id = await started(api, token)
    await started(api, token)

    def age() -> int:
        long_ago = utcnow() - timedelta(days=31)
        return (
            FaceAttempt.update(created_at=long_ago).where(FaceAttempt.verify_id == old_id).execute()
        )

    await ctx.db.run(age)
    retention = ctx.settings.identity.attempt_retention_days
    assert await ctx.db.run(identity_service.purge_face_attempts, retention) == 1
    assert await ctx.db.run(identity_service.purge_face_attempts, retention) == 0
    assert await ctx.db.run(FaceAttempt.select().count) == 1
    status, answer = await finish(api, token, old_id)
    assert status == 404


# ---- concurrency ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fifty_concurrent_finishes_bind_once(api, sandbox, ctx):
    token, _ = await api.login(sandbox)
    verify_id = await started(api, token)
    await face_done(sandbox, verify_id)
    results = await asyncio.gather(*[finish(api, token, verify_id) for _ in range(50)])
    statuses = sorted(status for status, _ in results)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 49, statuses
    assert {a["error"]["code"] for s, a in results if s == 409} == {"verify_id_used"}
    assert len(await identities(ctx)) == 1


@pytest.mark.asyncio
async def test_openapi_documents_identity_routes(api):
    status, doc = await api("GET", "/openapi.json")
    assert status == 200
    assert "post" in doc["paths"]["/api/v1/identity/face/start"]
    assert "post" in doc["paths"]["/api/v1/identity/face/finish"]
    assert "delete" in doc["paths"]["/api/v1/me/identity"]


@pytest.mark.asyncio
async def test_user_openid_comes_from_the_server(ctx, api, sandbox):
    """The attempt is tied to the caller's own openid (the sandbox checks it at finish)."""
    token, login = await api.login(sandbox, "oMine000000000000000000000001")
    await started(api, token)
    user = await ctx.db.run(User.get_by_id, int(login["user"]["id"]))
    items = (await sandbox.control("GET", "face/attempts"))["items"]
    assert items[0]["openid"] == user.openid
