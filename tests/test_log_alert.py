"""Issue 16, monitoring: the hourly self-check of the transparency log failing is an alert to
every center's WeCom robot — once per failure, again only after the log verified in between;
the alert carries the verifier's findings and nothing personal."""

from __future__ import annotations

import pytest

from models.catalog import Center
from tests.support.public_seed import OTHER_CENTER, seed_catalog
from wxbackend.services.alerts import log_monitor
from wxbackend.services.catalogue.admin_rows import WECOM_KEY_CONTEXT

URL = "https://pj.example.gov.cn"


@pytest.fixture
def settings_overrides():
    return {"wecom": {"api_base": "sandbox", "timeout_seconds": 2.0}}


async def robots(ctx, sandbox) -> list[str]:
    keys = [(await sandbox.expect("POST", "wecom/robots", {}))["key"] for _ in range(2)]

    def store() -> None:
        seed_catalog(ctx)
        for code, key in zip(("440103-HL", OTHER_CENTER), keys, strict=True):
            enc = ctx.cipher.encrypt(key, WECOM_KEY_CONTEXT)
            Center.update(wecom_key_enc=enc, wecom_key_mask="****" + key[-4:]).where(
                Center.code == code
            ).execute()

    await ctx.db.run(store)
    return keys


async def received(sandbox, key: str) -> list[dict]:
    return (await sandbox.expect("GET", f"wecom/messages?key={key}"))["items"]


@pytest.mark.asyncio
async def test_a_failing_log_alerts_every_center_once(ctx, sandbox):
    keys = await robots(ctx, sandbox)
    problems = ["checkpoint 12: the signature does not verify"]
    assert await log_monitor.log_check(ctx, URL, False, problems) == 2
    for key in keys:
        (message,) = await received(sandbox, key)
        text = str(message)
        assert "评价公示日志校验失败" in text and "signature does not verify" in text
    assert await log_monitor.log_check(ctx, URL, False, problems) == 0  # the same failure
    assert await log_monitor.log_check(ctx, URL, True, []) == 0  # verified: reset
    assert await log_monitor.log_check(ctx, URL, False, ["entry 3 was changed"]) == 2
    assert [len(await received(sandbox, key)) for key in keys] == [2, 2]
