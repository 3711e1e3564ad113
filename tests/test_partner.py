"""The partner API: signed requests, case reports, one-time QR tokens, the code image."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from models.access import Partner
from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, Staff
from wxbackend.clients.partner import case_payload, iso_ago, resident_id
from wxbackend.security import normalize_id_number, token_digest
from wxbackend.services.cases import lookup, tokens
from wxbackend.services.cases import partners as partner_auth
from wxbackend.services.cases import reports as cases
from wxbackend.timefmt import parse_iso

SCENE = re.compile(r"^[A-Za-z0-9_-]{32}$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CASES = "/api/v1/partner/cases"


def code(answer) -> str:
    return answer["error"]["code"]


async def case_row(ctx, case_no: str) -> Case:
    return await ctx.db.run(Case.get, Case.case_no == case_no)


async def token_row(ctx, scene: str) -> QrToken:
    return await ctx.db.run(QrToken.get, QrToken.token_hash == token_digest(scene))


async def db_update(ctx, query) -> int:
    return await ctx.db.run(query.execute)


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("test.db*"))


# ---- reporting a case -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_report_case_stores_applicant_encrypted(partner, ctx, data_dir):
    id_number = resident_id(seq=123)
    before = utcnow()
    status, answer = await partner.report_case(
        case_no="HL-2024-000123",
        applicant={
            "name": "黎明亮",
            "id_number": id_number,
            "phone": "+86-13800138000",
            "enterprise": {"name": "广州某某有限公司", "credit_code": "91110000600037341L"},
        },
        completed_at=iso_ago(minutes=1),
    )
    assert status == 201, answer
    assert set(answer) == {"case_id", "scene", "expires_at"}
    assert isinstance(answer["case_id"], str) and SCENE.match(answer["scene"])
    assert answer["expires_at"].endswith("+08:00")

    case = await case_row(ctx, "HL-2024-000123")
    assert str(case.id) == answer["case_id"]
    assert case.partner_id == partner.partner_id
    assert case.window_staff.staff_no == "HL001" and case.approver.staff_no == "HL101"
    assert case.item.code == "440103-SY-001" and case.window.code == "HL-W01"
    assert ctx.cipher.decrypt(case.applicant_name_enc, "case.applicant_name") == "黎明亮"
    assert ctx.cipher.decrypt(case.applicant_id_enc, "case.applicant_id") == id_number
    assert ctx.cipher.decrypt(case.applicant_phone_enc, "case.applicant_phone") == (
        "+86-13800138000"
    )
    assert case.applicant_id_hash == ctx.hasher.hash(normalize_id_number(id_number), "id_number")
    assert case.enterprise_credit_code == "91110000600037341L"
    assert case.first_rated_at is None

    token = await token_row(ctx, answer["scene"])
    assert token.case_id == case.id and token.status == "active"
    # 7 days from now, capped by the rating window's end: rating.window_days (7) from the
    # later of completion and report (rule 14)
    expected = max(case.completed_at, case.reported_at) + timedelta(days=7)
    assert abs(token.expires_at - expected) < timedelta(seconds=2)
    assert token.expires_at <= before + timedelta(days=7, seconds=2)
    assert parse_iso(answer["expires_at"]) == token.expires_at.replace(microsecond=0)

    raw = database_bytes(data_dir)
    for secret in ("黎明亮".encode(), id_number.encode(), b"13800138000", answer["scene"].encode()):
        assert secret not in raw


@pytest.mark.asyncio
async def test_expiry_never_past_the_rating_window(partner, ctx):
    # a case completed and reported 6 days ago: a fresh code lives one day, to the window's end
    answer = await partner.new_case(completed_at=iso_ago(days=6), accepted_at=iso_ago(days=6.5))
    await ctx.db.run(
        lambda: (
            Case.update(reported_at=Case.completed_at)
            .where(Case.case_no == answer["case_no"])
            .execute()
        )
    )
    status, renewed = await partner.qrcode(answer["case_no"])
    assert status == 200, renewed
    expires = parse_iso(renewed["expires_at"])
    assert timedelta(hours=23) < expires - utcnow() < timedelta(days=1, minutes=1)
    # reported only now (rule 14: the window runs from the report): the full qr.ttl_days
    expires = parse_iso(answer["expires_at"])
    assert timedelta(days=7) - timedelta(minutes=1) < expires - utcnow() <= timedelta(days=7)


@pytest.mark.asyncio
async def test_optional_fields_and_window_default_staff(partner, ctx):
    answer = await partner.new_case(
        window_staff_no=None, approver_staff_no=None, applicant={"phone": None}
    )
    case = await case_row(ctx, answer["case_no"])
    assert case.window_staff.staff_no == "HL001"  # the clerk of window HL-W01
    assert case.approver is None and case.applicant_phone_enc is None
    bare = case_payload()
    for key in ("window_code", "window_staff_no", "approver_staff_no"):
        del bare[key]
    status, answer = await partner.request("POST", CASES, bare)
    assert status == 201, answer
    # an approver of another department of the same center is fine
    assert (await partner.report_case(approver_staff_no="HL102"))[0] == 201


# ---- catalogue and value errors ----------------------------------------------------------------


@pytest_asyncio.fixture
async def second_center(ctx):
    def make():
        center = Center.create(code="440103-CH", name="沙面街政务服务中心", area_code="440103")
        department = Department.create(code="CH-LABOR", name="劳动专窗", center=center)
        Staff.create(
            staff_no="CH001", name="张三", role="window", department=department, center=center
        )

    await ctx.db.run(make)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"item_code": "NOPE-001"}, 422, "unknown_item"),
        ({"item_code": "440103-MZ-001"}, 422, "unknown_item"),  # item of another department
        ({"center_code": "NOPE"}, 422, "unknown_center"),
        ({"department_code": "NOPE"}, 422, "unknown_department"),
        ({"department_code": "CH-LABOR"}, 422, "unknown_department"),  # another center's
        ({"window_staff_no": "NOPE"}, 422, "unknown_staff"),
        ({"window_staff_no": "HL101"}, 422, "unknown_staff"),  # an approver, not window staff
        ({"window_staff_no": "CH001"}, 422, "unknown_staff"),  # another center's clerk
        ({"approver_staff_no": "NOPE"}, 422, "unknown_staff"),
        ({"approver_staff_no": "CH001"}, 422, "unknown_staff"),
        ({"window_code": "HL-W99"}, 422, "invalid_field"),
        ({"applicant": {"id_number": "440103199001011230"}}, 422, "invalid_id_number"),
        ({"applicant": {"id_number": "44010319900101123"}}, 422, "invalid_id_number"),
        ({"applicant": {"id_number": ""}}, 422, "invalid_id_number"),
        ({"case_no": "bad case/no"}, 422, "invalid_field"),
        ({"case_no": ""}, 422, "invalid_field"),
        ({"case_no": "x" * 65}, 422, "invalid_field"),
        ({"applicant": {"name": "  "}}, 422, "invalid_field"),
        ({"applicant": {"name": "名" * 65}}, 422, "invalid_field"),
        ({"applicant": {"phone": "call me"}}, 422, "invalid_field"),
        (
            {"applicant": {"enterprise": {"name": "某公司", "credit_code": "91110000600037341X"}}},
            422,
            "invalid_field",
        ),
        (
            {"accepted_at": iso_ago(minutes=1), "completed_at": iso_ago(hours=1)},
            422,
            "invalid_field",
        ),
        (
            {"completed_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
            422,
            "invalid_field",
        ),
        ({"completed_at": "2024-05-01T09:30:00"}, 422, "invalid_field"),  # no offset
        ({"accepted_at": "yesterday"}, 422, "invalid_field"),
        ({"surprise": 1}, 400, "invalid_body"),
        ({"applicant": {"nickname": "x"}}, 400, "invalid_body"),
        (
            {"applicant": {"enterprise": {"name": "x", "credit_code": "y", "boss": "z"}}},
            400,
            "invalid_body",
        ),
        ({"applicant": "黎明"}, 400, "invalid_body"),
        ({"case_no": 12345}, 400, "invalid_body"),
        ({"item_code": None}, 400, "invalid_body"),
    ],
    ids=str,
)
async def test_report_errors(partner, ctx, second_center, overrides, status, error):
    got, answer = await partner.report_case(**overrides)
    assert (got, code(answer)) == (status, error), answer
    assert await ctx.db.run(Case.select().count) == 0


@pytest.mark.asyncio
async def test_missing_required_fields(partner):
    body = case_payload()
    del body["completed_at"]
    status, answer = await partner.request("POST", CASES, body)
    assert status == 400 and code(answer) == "invalid_body" and answer["error"]["field"]
    body = case_payload()
    del body["applicant"]["id_number"]
    status, answer = await partner.request("POST", CASES, body)
    assert status == 400 and code(answer) == "invalid_body"


@pytest.mark.asyncio
async def test_full_width_id_number_is_normalised(partner, ctx):
    id_number = resident_id(birth="19850615", seq=7)
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in id_number)
    answer = await partner.new_case(applicant={"id_number": wide})
    case = await case_row(ctx, answer["case_no"])
    assert ctx.cipher.decrypt(case.applicant_id_enc, "case.applicant_id") == id_number


@pytest.mark.asyncio
async def test_case_exists(partner, ctx):
    first = await partner.new_case()
    status, answer = await partner.report_case(case_no=first["case_no"])
    assert status == 409 and code(answer) == "case_exists"


@pytest.mark.asyncio
async def test_concurrent_reports_of_one_case_no(partner, ctx):
    results = await asyncio.gather(*[partner.report_case(case_no="RACE-1") for _ in range(10)])
    statuses = sorted(s for s, _ in results)
    assert statuses == [201] + [409] * 9, results
    assert all(code(a) == "case_exists" for s, a in results if s == 409)
    assert await ctx.db.run(Case.select().where(Case.case_no == "RACE-1").count) == 1
    assert await ctx.db.run(QrToken.select().count) == 1


# ---- signatures ---------------------------------------------------------------------------------


def _old() -> int:
    return int(time.time()) - 301


def _future() -> int:
    return int(time.time()) + 301


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "forgery",
    [
        {"secret": "not-the-secret"},
        {"sign_body": b'{"case_no": "other"}'},
        {"sign_target": "/api/v1/partner/cases?x=1"},
        {"timestamp": "OLD"},
        {"timestamp": "FUTURE"},
        {"timestamp": "12ab"},
        {"key_id": "pk_0000000000000000"},
        {"nonce": "short"},
        {"nonce": "has spaces in it"},
        {"omit": ("X-Partner-Key",)},
        {"omit": ("X-Timestamp",)},
        {"omit": ("X-Nonce",)},
        {"omit": ("X-Signature",)},
        {"extra_headers": {"X-Signature": "zz"}},
    ],
    ids=str,
)
async def test_bad_signatures(partner, ctx, forgery):
    forgery = dict(forgery)
    if forgery.get("timestamp") in ("OLD", "FUTURE"):
        forgery["timestamp"] = _old() if forgery["timestamp"] == "OLD" else _future()
    status, answer = await partner.request("POST", CASES, case_payload(), **forgery)
    assert status == 401 and code(answer) == "bad_signature", answer
    assert await ctx.db.run(Case.select().count) == 0


@pytest.mark.asyncio
async def test_timestamp_inside_the_window_is_fine(partner):
    body = case_payload()
    status, _ = await partner.request("POST", CASES, body, timestamp=int(time.time()) - 290)
    assert status == 201


@pytest.mark.asyncio
async def test_signature_covers_path_and_query(partner):
    case = await partner.new_case()
    target = "/api/v1/partner/qrcode.png?scene=" + case["scene"]
    status, answer = await partner.request(
        "GET", target, sign_target="/api/v1/partner/qrcode.png?scene=" + "A" * 32
    )
    assert status == 401 and code(answer) == "bad_signature"
    path = f"/api/v1/partner/cases/{case['case_no']}/qrcode"
    status, answer = await partner.request("POST", path, sign_target=path + "?x")
    assert status == 401 and code(answer) == "bad_signature"
    status, answer = await partner.request("POST", path, raw=b"{}", sign_body=b"")
    assert status == 401
    assert (await partner.request("POST", path, raw=b"{}"))[0] == 200


@pytest.mark.asyncio
async def test_nonce_is_single_use_and_forgeries_do_not_burn_it(partner, ctx):
    nonce = "nonce-0001-abcdef"
    status, _ = await partner.request("POST", CASES, case_payload(), nonce=nonce, secret="wrong")
    assert status == 401
    status, answer = await partner.request("POST", CASES, case_payload(), nonce=nonce)
    assert status == 201, answer
    status, answer = await partner.request("POST", CASES, case_payload(), nonce=nonce)
    assert status == 401 and code(answer) == "bad_signature"
    assert "nonce" in answer["error"]["message"].lower()
    key = ctx.rkeys("partner-nonce", partner.key_id, nonce)
    assert 0 < await ctx.redis.ttl(key) <= 600


@pytest.mark.asyncio
async def test_revoked_key(partner, ctx):
    assert (await partner.report_case())[0] == 201  # the secret is now cached in-process
    await db_update(
        ctx, Partner.update(revoked_at=utcnow()).where(Partner.key_id == partner.key_id)
    )
    partner_auth.forget_cached_secrets(ctx)  # else it takes up to SECRET_CACHE_SECONDS
    status, answer = await partner.report_case()
    assert status == 401 and code(answer) == "bad_signature"


@pytest.mark.asyncio
async def test_revoked_key_never_cached(partner, ctx):
    await db_update(
        ctx, Partner.update(revoked_at=utcnow()).where(Partner.key_id == partner.key_id)
    )
    status, answer = await partner.report_case()
    assert status == 401 and code(answer) == "bad_signature"


def test_signature_matches_the_contract():
    body = b'{"a":1}'
    expected_text = "POST\n/p?q=%2F\n1700000000\nabcdefgh\n" + (
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )
    assert partner_auth.string_to_sign("post", "/p?q=%2F", "1700000000", "abcdefgh", body) == (
        expected_text
    )
    empty = partner_auth.string_to_sign("GET", "/x", "1", "abcdefgh", b"")
    assert empty.endswith("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    from wxbackend.clients.partner import sign

    assert sign("s3cret", "POST", "/p?q=%2F", "1700000000", "abcdefgh", body) == (
        partner_auth.compute_signature("s3cret", "POST", "/p?q=%2F", "1700000000", "abcdefgh", body)
    )


# ---- renewing the QR token ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_new_qrcode_revokes_earlier_tokens(partner, ctx):
    case = await partner.new_case()
    status, second = await partner.qrcode(case["case_no"])
    assert status == 200 and set(second) == {"scene", "expires_at"}
    assert SCENE.match(second["scene"]) and second["scene"] != case["scene"]
    status, third = await partner.qrcode(case["case_no"])
    assert status == 200
    assert (await token_row(ctx, case["scene"])).status == "revoked"
    assert (await token_row(ctx, second["scene"])).status == "revoked"
    assert (await token_row(ctx, third["scene"])).status == "active"
    status, answer = await partner.png(case["scene"])
    assert status == 410 and code(answer) == "token_revoked"
    status, image = await partner.png(third["scene"])
    assert status == 200 and image.startswith(PNG_MAGIC)


@pytest.mark.asyncio
async def test_qrcode_errors(partner, ctx):
    status, answer = await partner.qrcode("NO-SUCH-CASE")
    assert status == 404 and code(answer) == "not_found"
    status, answer = await partner.qrcode("bad case")
    assert status == 404 and code(answer) == "not_found"
    case = await partner.new_case()
    status, answer = await partner.qrcode(case["case_no"], body={"x": 1})
    assert status == 400 and code(answer) == "invalid_body"
    await db_update(
        ctx, Case.update(first_rated_at=utcnow()).where(Case.case_no == case["case_no"])
    )
    status, answer = await partner.qrcode(case["case_no"])
    assert status == 409 and code(answer) == "already_evaluated"
    assert (await token_row(ctx, case["scene"])).status == "active"  # nothing changed


# ---- the code image ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_png_is_made_once_then_cached(partner, ctx, sandbox):
    case = await partner.new_case()
    status, image = await partner.png(case["scene"])
    assert status == 200 and image.startswith(PNG_MAGIC)
    status, again = await partner.png(case["scene"])
    assert status == 200 and again == image
    assert (await sandbox.stats())["codes_made"] == 1
    token = await token_row(ctx, case["scene"])
    key = ctx.rkeys("qrpng", token.token_hash)
    ttl = await ctx.redis.ttl(key)
    life = (token.expires_at - utcnow()).total_seconds()
    assert life - 5 < ttl <= life + 1
    # a new code for the case drops the old image from the cache
    await partner.qrcode(case["case_no"])
    assert not await ctx.redis.exists(key)


@pytest.mark.asyncio
async def test_png_content_type(partner, api, base_url, http_client):
    case = await partner.new_case()
    target = "/api/v1/partner/qrcode.png?scene=" + case["scene"]
    headers = partner.headers("GET", target, b"")
    response = await http_client.fetch(base_url + target, headers=headers)
    assert response.code == 200
    assert response.headers["Content-Type"] == "image/png"


@pytest.mark.asyncio
async def test_png_token_states(partner, ctx):
    used, revoked, expired, rated = [await partner.new_case() for _ in range(4)]
    await db_update(
        ctx,
        QrToken.update(status="used", used_at=utcnow()).where(
            QrToken.token_hash == token_digest(used["scene"])
        ),
    )
    await partner.qrcode(revoked["case_no"])
    await db_update(
        ctx,
        QrToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(
            QrToken.token_hash == token_digest(expired["scene"])
        ),
    )
    await db_update(
        ctx, Case.update(first_rated_at=utcnow()).where(Case.case_no == rated["case_no"])
    )
    for case, error in (
        (used, "token_used"),
        (revoked, "token_revoked"),
        (expired, "token_expired"),
        (rated, "token_used"),
    ):
        status, answer = await partner.png(case["scene"])
        assert (status, code(answer)) == (410, error)
    for scene in ("A" * 32, "short", "x" * 200, "%2F" * 10):
        status, answer = await partner.png(scene)
        assert (status, code(answer)) == (404, "token_not_found")
    status, answer = await partner.request("GET", "/api/v1/partner/qrcode.png")
    assert status == 400


@pytest.mark.asyncio
async def test_png_wechat_failure_is_503_and_not_cached(partner, ctx, sandbox):
    case = await partner.new_case()
    await sandbox.fault("wxa/getwxacodeunlimit", errcode=45009, times=1)
    status, answer = await partner.png(case["scene"])
    assert status == 503 and code(answer) == "wechat_unavailable"
    status, image = await partner.png(case["scene"])
    assert status == 200 and image.startswith(PNG_MAGIC)


@pytest.mark.asyncio
async def test_scene_never_logged(partner, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    case = await partner.new_case()
    _, renewed = await partner.qrcode(case["case_no"])
    await partner.png(renewed["scene"])
    await partner.png(case["scene"])
    await partner.png("B" * 32)
    everything = " ".join(
        r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records
    )
    assert everything
    for scene in (case["scene"], renewed["scene"]):
        assert scene not in everything
    routes = {r.fields["route"] for r in caplog.records if r.name == "wxbackend.access"}
    assert "/api/v1/partner/qrcode.png" in routes


# ---- the services the citizen side imports ----------------------------------------------------


@pytest.mark.asyncio
async def test_token_state_and_check(partner, ctx):
    case = await partner.new_case()
    token, row = await ctx.db.run(lookup.token_state, case["scene"])
    assert token is not None and row.case_no == case["case_no"]
    assert tokens.check_token_usable(token, row) is token
    assert await ctx.db.run(lookup.token_state, "A" * 32) == (None, None)
    assert await ctx.db.run(lookup.token_state, "not a scene!") == (None, None)
    with pytest.raises(cases.errors.TokenNotFound):
        tokens.check_token_usable(None)
    with pytest.raises(cases.errors.TokenExpired):
        tokens.check_token_usable(token, row, now=token.expires_at)


def test_scene_format():
    scenes = {tokens.new_scene() for _ in range(100)}
    assert len(scenes) == 100 and all(SCENE.match(s) for s in scenes)
    assert tokens.valid_scene("a" * 22) and not tokens.valid_scene("a" * 21)


@pytest.mark.asyncio
async def test_inactive_staff_cannot_be_named(partner, ctx):
    from models.catalog import Staff

    await ctx.db.run(
        lambda: Staff.update(active=False).where(Staff.staff_no.in_(["HL001", "HL101"])).execute()
    )
    for field, staff_no in (("window_staff_no", "HL001"), ("approver_staff_no", "HL101")):
        status, answer = await partner.report_case(**{field: staff_no})
        assert status == 422 and answer["error"]["code"] == "unknown_staff", answer
