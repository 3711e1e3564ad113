"""The admin's steps: the subscribe-message templates (2) and the 差评 ticket worked (5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wxbackend.clients.admin import AdminClient
from wxbackend.demo.output import DemoError, line
from wxbackend.demo.prepare import ADMIN_USERNAME

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo

TEMPLATE_REMINDER = "wxb-demo-reminder"
TEMPLATE_RECTIFIED = "wxb-demo-rectified"
#: The ticket's workflow as the demo admin works it: (Chinese, step, body).
TICKET_STEPS = [
    ("核实", "verify", {"valid": True, "note": "核实属实：窗口未一次性告知所需材料。"}),
    ("整改", "rectify", {"note": "已培训窗口人员，材料清单张贴上墙并一次性告知。"}),
    (
        "回访",
        "callback",
        {"channel": "phone", "satisfied": True, "note": "电话回访，群众表示满意。"},
    ),
    ("办结", "close", {}),
]


async def admin(demo: Demo) -> AdminClient:
    """The demo superadmin, logged in once."""
    if demo.s.admin is None:
        demo.s.admin = await AdminClient.login(demo.api, ADMIN_USERNAME, demo.s.admin_password)
        role = demo.s.admin.answer["role"]
        line("管理员登录", "admin logged in", f"{ADMIN_USERNAME} (role {role})")
    return demo.s.admin


async def templates(demo: Demo) -> None:
    """The admin configures the two templates; the sandbox (WeChat) registers them."""
    console = await admin(demo)
    answer = await console.set_templates(reminder=TEMPLATE_REMINDER, rectified=TEMPLATE_RECTIFIED)
    line(
        "模板已配置",
        "templates configured",
        f"reminder={answer['templates']['reminder']}, "
        f"rectified={answer['templates']['rectified']} "
        f"(config version {answer.get('version')})",
    )
    maps = demo.settings
    fields = list(maps.templates.reminder_fields or maps.reminders.template_fields)
    rectified = list(maps.templates.rectified_fields)  # its own map (rule 23)
    await demo.sandbox.register_template(TEMPLATE_REMINDER, fields)
    await demo.sandbox.register_template(TEMPLATE_RECTIFIED, rectified)
    line(
        "沙箱登记模板",
        "registered in the sandbox",
        f"fields {'/'.join(fields)}; rectified {'/'.join(rectified)}",
    )
    demo.s.templates = True


async def ticket(demo: Demo) -> None:
    """The 差评's ticket: verify → rectify → callback (satisfied) → close; the citizen gets
    the rectified notice."""
    demo.need("evaluation_id")
    console = await admin(demo)
    found = await console.ticket_of(demo.s.evaluation_id or "")
    if found is None:
        raise DemoError(f"no open ticket for evaluation {demo.s.evaluation_id}")
    line(
        "差评工单",
        "GET /admin/api/tickets",
        f"ticket {found['id']} for case {found['case_no']}: {found['status']}; "
        f"verify_due {found['verify_due']}, rectify_due {found['rectify_due']}, "
        f"overdue {found['overdue']}",
    )
    current = found
    for zh, step, body in TICKET_STEPS:
        current = await console.ticket_step(found["id"], step, body)
        line(zh, f"POST …/{step}", f"→ {current['status']}")
    line(
        "时限",
        "deadlines (working days)",
        f"verify_due {current['verify_due']}, rectify_due {current['rectify_due']}, "
        f"overdue {current['overdue']}",
    )
    item = await demo.public_item()
    if item is not None:
        line("公开整改状态", "public ticket status", str(item["ticket_status"]))
    if demo.s.templates and demo.s.citizen is not None:
        case_id = demo.s.case1["case_id"] if demo.s.case1 else ""
        message = await demo.wait_for_message(
            demo.s.citizen.openid, TEMPLATE_RECTIFIED, f"?case_id={case_id}"
        )
        data = {k: v.get("value") for k, v in (message.get("data") or {}).items()}
        line(
            "整改通知已送达（沙箱）",
            "rectified notice in GET /_sandbox/messages",
            f"page {message['page']}, data {data}",
        )
