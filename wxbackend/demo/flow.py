"""The demo's run: the steps in order, what they hand each other, and the closing summary."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wxbackend.clients.admin import AdminClient
from wxbackend.clients.citizen import Citizen
from wxbackend.clients.http import ApiClient, ApiError
from wxbackend.clients.partner import PartnerClient
from wxbackend.clients.sandbox import SandboxClient
from wxbackend.demo import citizen, office, prepare, window
from wxbackend.demo.output import DemoError, Skip, failure, line, out
from wxbackend.settings import Settings

WAIT_SECONDS = 20.0
Step = Callable[["Demo"], Awaitable[None]]
#: (number, Chinese title, English title, step), in order.
STEPS: list[tuple[str, str, str, Step]] = [
    (
        "1",
        "准备：目录、合作方密钥、演示管理员",
        "setup: catalogue, partner key, demo admin",
        prepare.setup,
    ),
    ("2", "配置微信订阅消息模板", "WeChat subscribe-message templates", office.templates),
    (
        "3",
        "窗口系统上报办件并取二维码",
        "the window system reports a case, gets its QR",
        window.report,
    ),
    ("4.1", "群众微信登录", "citizen logs in with WeChat", citizen.login),
    ("4.2", "同意订阅消息", "citizen accepts the subscribe messages", citizen.subscribe),
    ("4.3", "人脸核身（实名）", "face verification (real name)", citizen.face),
    ("4.4", "我的待评价办件", "/me shows the pending case", citizen.me),
    ("4.5", "扫码", "citizen scans the QR code", citizen.scan),
    ("4.6", "提醒评价（后台任务发送）", "the worker sends a reminder to rate", citizen.reminder),
    ("4.7", "评价：2 星差评", "citizen rates 2 stars (a 差评)", citizen.rate),
    ("4.8", "另一位群众点赞", "a second citizen likes the rating", citizen.like),
    ("5", "差评工单：核实 → 整改 → 回访 → 办结", "the 差评 ticket worked through", office.ticket),
]
#: What `Demo.need` names when a step's input is missing.
NEEDS = {
    "case1": "step 3 (the case)",
    "citizen": "step 4.1 (login)",
    "evaluation_id": "step 4.7 (the rating)",
    "templates": "step 2 (templates)",
}


@dataclass
class State:
    """What the steps hand each other."""

    admin_password: str = ""
    admin_password_new: bool = False
    admin: AdminClient | None = None
    templates: bool = False
    case1: dict[str, Any] | None = None
    citizen: Citizen | None = None
    evaluation_id: str | None = None
    skipped: list[str] = field(default_factory=list)


class Demo:
    """The running server, the clients every actor uses, and the steps' `State`."""

    def __init__(self, server: Any, api: ApiClient, sandbox: SandboxClient, data_dir: str) -> None:
        self.server = server
        self.ctx = server.ctx
        self.settings: Settings = server.settings
        self.api = api
        self.sandbox = sandbox
        self.data_dir = data_dir
        self.s = State()
        self._partner: PartnerClient | None = None

    def use_partner(self, key_id: str, secret: str) -> None:
        """The window system's credentials (step 1)."""
        self._partner = PartnerClient(self.api, key_id, secret)

    def partner(self) -> PartnerClient:
        """The window system's signed client (Skip before step 1 made its key)."""
        if self._partner is None:
            raise Skip("needs step 1 (the partner key), which did not run")
        return self._partner

    def need(self, *what: str) -> None:
        """Skip unless the earlier steps that give ``what`` ran."""
        for attr in what:
            if not getattr(self.s, attr):
                raise Skip(f"needs {NEEDS[attr]}, which did not run")

    async def run(self) -> None:
        """Every step in order; a Skip is noted, a failure stops the demo (`DemoError`)."""
        for number, zh, en, step in STEPS:
            out(f"\n[{number}] {zh} · {en}")
            try:
                try:
                    await step(self)
                except ApiError as exc:
                    raise failure(exc) from None
                except OSError as exc:
                    raise DemoError(str(exc)) from None
            except Skip as exc:
                out(f"    skipped: {exc}")
                self.s.skipped.append(f"{number} ({en}): {exc}")
            except DemoError as exc:
                raise DemoError(f"step {number} ({en}): {exc}") from None

    async def wait_for_message(self, openid: str, template_id: str, page_suffix: str) -> dict:
        """The subscribe message to ``openid`` whose page ends with ``page_suffix``, once
        WeChat (the sandbox) has it; DemoError after `WAIT_SECONDS`."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for item in await self.sandbox.messages(openid, template_id):
                if (item.get("page") or "").endswith(page_suffix):
                    return item
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no {template_id} message for …{page_suffix} reached the sandbox within "
                    f"{WAIT_SECONDS:.0f} s (is the worker running? worker.embedded)"
                )
            await asyncio.sleep(0.2)

    async def public_item(self) -> dict[str, Any] | None:
        """The demo's rating on the public list of its center, if shown."""
        center = window.CASE_CODES["center_code"]
        path = f"/api/v1/public/evaluations?center={center}&limit=20"
        answer = await self.api.expect("GET", path)
        return next((i for i in answer["items"] if str(i["id"]) == self.s.evaluation_id), None)

    def summary(self, keep_running: bool) -> None:
        """Step 6: the URLs to browse, the skipped steps."""
        b = self.api.base_url + "/"
        out("\n[6] 浏览 · Browse")
        line("公开评价页", "public page", f"{b}public/")
        line("评价器页面", "evaluator screen", f"{b}device/{window.CASE_CODES['window_code']}")
        line(
            "公开接口",
            "public API",
            f"{b}api/v1/public/evaluations?center={window.CASE_CODES['center_code']}  "
            f"{b}api/v1/public/stats",
        )
        line("接口文档", "OpenAPI", f"{b}openapi.json")
        where = os.path.join(self.data_dir, prepare.PASSWORD_FILE)
        password = self.s.admin_password if self.s.admin_password_new else f"(see {where})"
        user = prepare.ADMIN_USERNAME
        line("管理后台", "admin console", f"{b}admin/  user {user}  password {password}")
        line("微信沙箱", "WeChat sandbox", f"{self.sandbox.url}_sandbox/")
        line("数据", "data", f"{self.settings.database.url} (kept; `wxbackend serve` shows it too)")
        if self.s.skipped:
            out("\nskipped steps:")
            for text in self.s.skipped:
                out(f"    - {text}")
        if keep_running:
            out("\nserving until Ctrl-C · 服务运行中，按 Ctrl-C 结束")
        else:
            out("\ndemo finished · 演示完成 (run `wxbackend demo --keep-running` to browse)")
