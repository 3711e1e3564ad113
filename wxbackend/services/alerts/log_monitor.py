"""The transparency log's self-check failing is an alert to every center's WeCom robot.

The log is everyone's record, so every center's staff group hears when it does not verify
(issue 16: "a failure is an alert"). One alert per failure: the failing state is kept in
Redis; the hourly check that fails again stays quiet until the log verifies once more. A
robot that cannot be reached is logged; the metric and the ERROR line remain the source of
truth (the console and monitoring read them).
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from models.catalog import Center
from wxbackend.context import Context
from wxbackend.security import DecryptionError
from wxbackend.services.alerts import robot
from wxbackend.services.catalogue.admin_rows import WECOM_KEY_CONTEXT

log = logging.getLogger("wxbackend.alerts")


def _robot_keys(ctx: Context) -> list[str]:
    keys = []
    for center in Center.select(Center.wecom_key_enc).where(Center.wecom_key_enc.is_null(False)):
        try:
            keys.append(ctx.cipher.decrypt(center.wecom_key_enc, WECOM_KEY_CONTEXT))
        except DecryptionError:
            log.warning("a center's robot key does not decrypt: skipped")
    return keys


def message(url: str, problems: list[str]) -> str:
    """The alert's markdown: what failed (the verifier's own words), never personal data
    (the log holds none)."""
    lines = "\n".join(f"> {p[:200]}" for p in problems[:5])
    return (
        '## <font color="warning">评价公示日志校验失败</font>\n'
        f"公开日志 {url} 未通过每小时的自动校验（签名、一致性或内容）：\n{lines}\n"
        "请立即核查：已公开的评价不应被改动或删除。"
    )


async def log_check(ctx: Context, url: str, ok: bool, problems: list[str]) -> int:
    """After a self-check: on the first failure, tell every center's robot; reset on
    success. Returns how many robots were told."""
    flag = ctx.rkeys("tlog", "alerted")
    try:
        if ok:
            await ctx.redis.delete(flag)
            return 0
        if not await ctx.redis.set(flag, "1", nx=True):
            return 0  # already told about this failure
    except RedisError as exc:
        log.warning("log alert state unavailable", extra={"fields": {"error": type(exc).__name__}})
        return 0
    told = 0
    for key in await ctx.db.run(_robot_keys, ctx):
        answer = await robot.send(ctx, key, message(url, problems))
        told += answer.sent
    return told
