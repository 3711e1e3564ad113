"""A center's WeCom robot key over the admin API: write-only, encrypted at rest, masked in
answers, audited without the key; and the alert it enables reaching the sandbox's robot."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from models.audit import AuditEntry
from models.catalog import Center
from tests.support.admins import admin_token
from wxbackend.services.alerts import robot
from wxbackend.services.catalogue.admin_rows import WECOM_KEY_CONTEXT
from wxbackend.services.catalogue.importer import import_catalog

A = "/admin/api"
CENTER_A = "440103-HL"
CENTER_B = "440104-XY"
KEY = "693a91f6-7a0c-4bc4-97a0-0ec2f1fa5aaa"
SECOND_CENTER = {
    "centers": [{"code": CENTER_B, "name": "越秀某街政务服务中心", "area_code": "440104"}],
}


@pytest.fixture
def settings_overrides():
    return {"wecom": {"api_base": "sandbox"}}


@pytest_asyncio.fixture
async def root(api, ctx, partner):
    await ctx.db.run(import_catalog, SECOND_CENTER, ctx.hasher)
    return await admin_token(api, ctx)


def stored(code: str) -> Center:
    return Center.get(Center.code == code)


def audit_text() -> str:
    return " ".join(f"{e.action} {e.detail}" for e in AuditEntry.select().order_by(AuditEntry.id))


@pytest.mark.asyncio
async def test_the_key_is_write_only_encrypted_and_audited_without_it(api, ctx, root):
    status, answer = await api("GET", f"{A}/centers/{CENTER_A}", token=root)
    assert status == 200
    assert answer["wecom_webhook_key"] is None and answer["has_wecom_webhook"] is False

    status, answer = await api(
        "PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": KEY}, token=root
    )
    assert status == 200, answer
    assert answer["wecom_webhook_key"] == "****5aaa" and answer["has_wecom_webhook"] is True
    assert KEY not in str(answer)
    for path in (f"{A}/centers/{CENTER_A}", f"{A}/centers"):
        status, answer = await api("GET", path, token=root)
        assert status == 200 and KEY not in str(answer)

    row = await ctx.db.run(stored, CENTER_A)
    assert KEY not in row.wecom_key_enc and KEY[-12:] not in row.wecom_key_enc
    assert ctx.cipher.decrypt(row.wecom_key_enc, WECOM_KEY_CONTEXT) == KEY
    text = await ctx.db.run(audit_text)
    assert "center.update" in text and "wecom_webhook_key" in text and "set" in text
    assert KEY not in text and "5aaa" not in text

    # The robot's whole webhook address, as WeCom shows it, is taken for its key.
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY[::-1]}"
    status, answer = await api(
        "PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": url}, token=root
    )
    assert status == 200 and answer["wecom_webhook_key"] == "****" + KEY[::-1][-4:]
    row = await ctx.db.run(stored, CENTER_A)
    assert ctx.cipher.decrypt(row.wecom_key_enc, WECOM_KEY_CONTEXT) == KEY[::-1]

    # Other fields change without touching it; null clears it.
    status, answer = await api("PUT", f"{A}/centers/{CENTER_A}", {"name": "海龙街"}, token=root)
    assert status == 200 and answer["has_wecom_webhook"] is True
    status, answer = await api(
        "PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": None}, token=root
    )
    assert status == 200 and answer["has_wecom_webhook"] is False
    assert answer["wecom_webhook_key"] is None
    assert (await ctx.db.run(stored, CENTER_A)).wecom_key_enc is None
    assert "cleared" in await ctx.db.run(audit_text)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "bad", ["short", "has space inside it", "x" * 65, "http://example.com/?key=abcdefgh12"]
)
async def test_a_bad_key_is_an_invalid_field(api, ctx, root, bad):
    status, answer = await api(
        "PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": bad}, token=root
    )
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_field"
    assert answer["error"]["field"] == "wecom_webhook_key"
    status, answer = await api(
        "PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": 5}, token=root
    )
    assert status == 400 and answer["error"]["field"] == "wecom_webhook_key"
    assert (await ctx.db.run(stored, CENTER_A)).wecom_key_enc is None


@pytest.mark.asyncio
async def test_only_an_admin_who_may_write_the_center_sets_its_key(api, ctx, root):
    other = await admin_token(api, ctx, "boss_b", "center_admin", CENTER_B)
    status, _ = await api("PUT", f"{A}/centers/{CENTER_A}", {"wecom_webhook_key": KEY}, token=other)
    assert status in (403, 404)
    assert (await ctx.db.run(stored, CENTER_A)).wecom_key_enc is None


@pytest.mark.asyncio
async def test_a_center_created_with_a_key(api, ctx, root):
    body = {"code": "440105-NEW", "name": "新中心", "area_code": "440105", "wecom_webhook_key": KEY}
    status, answer = await api("POST", f"{A}/centers", body, token=root)
    assert status == 201, answer
    assert answer["has_wecom_webhook"] is True and KEY not in str(answer)
    assert KEY not in await ctx.db.run(audit_text)


@pytest.mark.asyncio
async def test_the_sandbox_robot_as_wecom_answers(ctx, sandbox):
    """Document 91770's answers: ok; 93000 for an unknown key; 40058 over 4096 bytes;
    45009 past 20 in a minute."""
    sandbox.state.clock = lambda: 1_790_000_000.0  # one minute throughout
    key = (await sandbox.expect("POST", "wecom/robots", {}))["key"]
    assert await robot.send(ctx, key, "**测试**") == robot.Answer(True, False, None)
    assert (await robot.send(ctx, "no-such-robot-key", "x")).errcode == "93000"
    assert (await robot.send(ctx, key, "长" * 1366)).errcode == "40058"  # 4098 bytes
    results = await asyncio.gather(*(robot.send(ctx, key, "x") for _ in range(25)))
    codes = [r.errcode for r in results]
    assert codes.count(None) == 19 and codes.count("45009") == 6  # 20 with the first
    items = (await sandbox.expect("GET", f"wecom/messages?key={key}"))["items"]
    assert len(items) == 20
    assert {k: items[0][k] for k in ("key", "msgtype", "content")} == {
        "key": key,
        "msgtype": "markdown",
        "content": "**测试**",
    }
