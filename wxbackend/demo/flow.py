"""The demo's run: the steps in order and the closing summary."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from wxbackend.clients.http import ApiError
from wxbackend.demo import alerts, citizen, office, prepare, screen, window
from wxbackend.demo.output import DemoError, Skip, failure, line, out
from wxbackend.demo.session import CASE_CODES, Demo

Step = Callable[[Demo], Awaitable[None]]
#: (number, Chinese title, English title, step), in order.
STEPS: list[tuple[str, str, str, Step]] = [
    (
        "1",
        "准备：目录、合作方密钥、演示管理员",
        "setup: catalogue, partner key, demo admin",
        prepare.setup,
    ),
    ("2", "配置微信订阅消息模板", "WeChat subscribe-message templates", office.templates),
    ("2.1", "配置中心的企业微信群机器人", "the center's WeCom group robot", alerts.robot),
    ("2.2", "评价器配对", "the window's evaluator screen pairs", screen.paired),
    (
        "3",
        "窗口系统上报办件并取二维码",
        "the window system reports a case, gets its QR",
        window.report,
    ),
    ("3.1", "评价器显示办件二维码", "the screen shows the case's code", screen.shows_code),
    ("4.1", "群众微信登录", "citizen logs in with WeChat", citizen.login),
    ("4.2", "同意订阅消息", "citizen accepts the subscribe messages", citizen.subscribe),
    ("4.3", "人脸核身（实名）", "face verification (real name)", citizen.face),
    ("4.4", "我的待评价办件", "/me shows the pending case", citizen.me),
    ("4.5", "扫码", "citizen scans the QR code", citizen.scan),
    ("4.6", "提醒评价（后台任务发送）", "the worker sends a reminder to rate", citizen.reminder),
    ("4.7", "评价：2 星差评", "citizen rates 2 stars (a 差评)", citizen.rate),
    ("4.8", "另一位群众点赞", "a second citizen likes the rating", citizen.like),
    ("4.9", "差评提醒：企业微信群", "the 差评 alert reaches the staff group", alerts.alert),
    ("5", "差评工单：核实 → 整改 → 回访 → 办结", "the 差评 ticket worked through", office.ticket),
]


async def run_steps(demo: Demo) -> None:
    """Every step in order; a Skip is noted, a failure stops the demo (`DemoError`)."""
    for number, zh, en, step in STEPS:
        out(f"\n[{number}] {zh} · {en}")
        try:
            try:
                await step(demo)
            except ApiError as exc:
                raise failure(exc) from None
            except OSError as exc:
                raise DemoError(str(exc)) from None
        except Skip as exc:
            out(f"    skipped: {exc}")
            demo.s.skipped.append(f"{number} ({en}): {exc}")
        except DemoError as exc:
            raise DemoError(f"step {number} ({en}): {exc}") from None


def summary(demo: Demo, keep_running: bool) -> None:
    """Step 6: the URLs to browse, the skipped steps."""
    b = demo.api.base_url + "/"
    out("\n[6] 浏览 · Browse")
    line("公开评价页", "public page", f"{b}public/")
    line("评价器页面", "evaluator screen", f"{b}device/{CASE_CODES['window_code']}")
    line(
        "公开接口",
        "public API",
        f"{b}api/v1/public/evaluations?center={CASE_CODES['center_code']}  {b}api/v1/public/stats",
    )
    line("接口文档", "OpenAPI", f"{b}openapi.json")
    where = os.path.join(demo.data_dir, prepare.PASSWORD_FILE)
    password = demo.s.admin_password if demo.s.admin_password_new else f"(see {where})"
    user = prepare.ADMIN_USERNAME
    line("管理后台", "admin console", f"{b}admin/  user {user}  password {password}")
    line("微信沙箱", "WeChat sandbox", f"{demo.sandbox.url}_sandbox/")
    line(
        "数据",
        "data",
        f"{demo.settings.database.url} (kept, apart from `serve`'s; "
        "`wxbackend demo --keep-running` to browse it)",
    )
    if demo.s.skipped:
        out("\nskipped steps:")
        for text in demo.s.skipped:
            out(f"    - {text}")
    if keep_running:
        out("\nserving until Ctrl-C · 服务运行中，按 Ctrl-C 结束")
    else:
        out("\ndemo finished · 演示完成 (run `wxbackend demo --keep-running` to browse)")
