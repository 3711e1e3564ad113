"""The staff alert steps: the admin gives the center its WeCom group robot (2.1), and the
差评 reaches that robot in the sandbox (4.9) — item, level, reasons, deadline, console link,
nothing personal."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from wxbackend.demo.office import admin
from wxbackend.demo.output import DemoError, Skip, line, out
from wxbackend.demo.session import CASE_CODES

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo

WAIT_SECONDS = 15.0


async def robot(demo: Demo) -> None:
    """A robot in the sandbox's WeCom (as adding one to the staff's group chat does); its
    key set on the demo center through the console API, answered masked."""
    if demo.settings.wecom.api_base != "sandbox":
        raise Skip('wecom.api_base is not "sandbox"')
    key = (await demo.sandbox.expect("POST", "wecom/robots", {}))["key"]
    console = await admin(demo)
    center = CASE_CODES["center_code"]
    answer = await console.expect("PUT", f"/admin/api/centers/{center}", {"wecom_webhook_key": key})
    line(
        "企业微信群机器人",
        f"PUT /admin/api/centers/{center}",
        f"wecom_webhook_key {answer['wecom_webhook_key']} (stored encrypted, never shown)",
    )
    demo.s.robot_key = key


async def alert(demo: Demo) -> None:
    """The worker's alert of the new 差评, as the staff group sees it."""
    key = demo.s.robot_key
    if not key:
        raise Skip("no robot configured (step 2.1)")
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        items = (await demo.sandbox.expect("GET", f"wecom/messages?key={key}"))["items"]
        if items:
            break
        if time.monotonic() > deadline:
            raise DemoError(f"no alert reached the robot within {WAIT_SECONDS:.0f} s")
        await asyncio.sleep(0.2)
    text = items[-1]["content"]
    line("差评提醒已送达（沙箱企业微信）", "alert in GET /_sandbox/wecom/messages")
    for row in text.splitlines():
        out(f"        {row}")
