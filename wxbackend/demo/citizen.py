"""The citizens' steps (4.1–4.8): login, subscriptions, face verification, /me, scan, the
worker's reminder, a 2-star rating (a 差评), and a second citizen's like."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wxbackend.clients.citizen import Citizen
from wxbackend.clients.http import ApiError
from wxbackend.demo.office import TEMPLATE_RECTIFIED, TEMPLATE_REMINDER
from wxbackend.demo.output import (
    DemoError,
    Skip,
    failure,
    line,
    mask_id,
    mask_name,
    mask_token,
)
from wxbackend.demo.window import APPLICANT, SECOND_ITEM, fictional_id_number, report_case

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo

LIKER = "周子安"
COMMENT = "材料清单没有一次性告知，我跑了两趟才办成。"


def citizen(demo: Demo) -> Citizen:
    """The logged-in citizen of step 4.1 (Skip when it did not run)."""
    demo.need("citizen")
    assert demo.s.citizen is not None
    return demo.s.citizen


def case1(demo: Demo) -> dict:
    """The case of step 3 (Skip when it did not run)."""
    demo.need("case1")
    assert demo.s.case1 is not None
    return demo.s.case1


async def login(demo: Demo) -> None:
    """4.1: a login code from the sandbox (``wx.login``), then the backend's login."""
    demo.s.citizen = who = await Citizen.login(demo.api, demo.sandbox)
    line(
        "沙箱 wx.login 取 code，登录",
        "login code from the sandbox → POST /api/v1/auth/login",
        f"user {who.user['id']}, openid {mask_token(who.openid, 6)}, "
        f"verified {who.user['verified']}",
    )


async def subscribe(demo: Demo) -> None:
    """4.2: two popups accepted; the same quota given at WeChat (the sandbox)."""
    who = citizen(demo)
    demo.need("templates")
    # Two popups (wx.requestSubscribeMessage): reminders for two cases, one rectified notice.
    popups = [{TEMPLATE_REMINDER: "accept", TEMPLATE_RECTIFIED: "accept"}]
    popups.append({TEMPLATE_REMINDER: "accept"})
    quota: dict[str, int] = {}
    for results in popups:
        quota.update((await who.subscribe(results))["quota"])
    line("订阅结果", "POST /api/v1/subscriptions (two popups)", f"quota {quota}")
    for template_id, count in ((TEMPLATE_REMINDER, 2), (TEMPLATE_RECTIFIED, 1)):
        await demo.sandbox.set_quota(who.openid, template_id, count=count)
    line(
        "微信侧额度",
        "the same quota at WeChat (sandbox)",
        f"{TEMPLATE_REMINDER} 2, {TEMPLATE_RECTIFIED} 1",
    )


async def face(demo: Demo) -> None:
    """4.3: face verification as the case's applicant."""
    who, case = citizen(demo), case1(demo)
    done = await who.verify(APPLICANT, case["id_number"])
    line(
        "核身通过",
        "verified (sandbox verify_ret 10000)",
        f"{APPLICANT} {mask_id(case['id_number'])} → shown as {done['name_masked']}",
    )


async def me(demo: Demo) -> None:
    """4.4: /me shows the identity and the reported case as pending."""
    who, case = citizen(demo), case1(demo)
    answer = await who.me()
    identity = answer.get("identity") or {}
    line(
        "实名状态",
        "identity",
        f"verified {identity.get('verified')}, {identity.get('name_masked')}",
    )
    pending = [c for c in answer.get("pending_cases", []) if c["case_id"] == case["case_id"]]
    if not pending:
        raise DemoError("the reported case is not among /me's pending_cases")
    item = pending[0]
    line(
        "待评价",
        "pending case",
        f"case_id {item['case_id']} {item['item']['name']} @ {item['center']['name']}, "
        f"rate until {item['rate_until']}",
    )


async def scan(demo: Demo) -> None:
    """4.5: the QR code scanned: the case and the form."""
    who, case = citizen(demo), case1(demo)
    status, answer = await who.scan(case["scene"])
    if status != 200:
        raise failure(ApiError("POST", "/api/v1/scan", status, answer))
    shown, form = answer["case"], answer["form"]
    case["form"] = form
    staff = shown.get("window_staff") or {}
    line(
        "办件信息",
        "POST /api/v1/scan → the case",
        f"{shown['item']['name']} ({shown['department']['name']}), window staff "
        f"{mask_name(staff.get('name'))} #{staff.get('staff_no')}, "
        f"completed {shown['completed_at']}",
    )
    labels = ", ".join(i["label"] for i in form.get("indicators", [])[:4])
    line(
        "评价表",
        "the form",
        f"{len(form.get('levels', []))} levels, indicators e.g. {labels} … (token valid until "
        f"{answer['expires_at']})",
    )


async def reminder(demo: Demo) -> None:
    """4.6: a second case for the same citizen; the worker's reminder reaches WeChat."""
    who, case = citizen(demo), case1(demo)
    demo.need("templates")
    second = await report_case(demo, SECOND_ITEM, case["id_number"])
    case_id = second["case_id"]
    line(
        "第二件办件已上报",
        "a second case reported for the same citizen",
        f"case_no {second['case_no']}, case_id {case_id}, item {SECOND_ITEM}; reminder due in "
        f"{demo.settings.reminders.first_after_seconds} s (demo setting)",
    )
    message = await demo.wait_for_message(who.openid, TEMPLATE_REMINDER, f"?case_id={case_id}")
    data = {k: v.get("value") for k, v in (message.get("data") or {}).items()}
    line(
        "提醒已送达（沙箱）",
        "reminder in GET /_sandbox/messages",
        f"template {message['template_id']}, page {message['page']}, data {data}",
    )
    others = [
        m["page"]
        for m in await demo.sandbox.messages(who.openid, TEMPLATE_REMINDER)
        if m != message and not m["page"].endswith(f"?case_id={case_id}")
    ]
    if others:
        line(
            "另有提醒",
            "also sent (the first case: identity bound after it was reported)",
            ", ".join(others),
        )


async def rate(demo: Demo) -> None:
    """4.7: 2 stars, stage and target scores, an indicator and a comment: a 差评."""
    who, case = citizen(demo), case1(demo)
    indicators = (case.get("form") or {}).get("indicators") or []
    if not indicators:
        raise Skip("needs step 4.5 (the scanned form with its indicators)")
    chosen = next((i for i in indicators if "一次" in i["label"]), indicators[0])
    status, answer = await who.rate(
        scene=case["scene"],
        overall=2,
        stages={"appointment": 4, "handling": 2, "delivery": 3},
        targets={"window_staff": 2, "approver": 3, "department": 3},
        indicators=[chosen["code"]],
        comment=COMMENT,
    )
    if status != 201:
        raise failure(ApiError("POST", "/api/v1/evaluations", status, answer))
    evaluation = answer["evaluation"]
    demo.s.evaluation_id = str(evaluation["id"])
    line(
        "已评价",
        "POST /api/v1/evaluations → 201",
        f"evaluation {evaluation['id']}: overall {evaluation['overall']} (不满意), indicator "
        f"{chosen['code']} {chosen['label']}, channel {evaluation['channel']}, comment "
        f"{evaluation['comment_status']}: {COMMENT}",
    )


async def like(demo: Demo) -> None:
    """4.8: a second citizen, verified, likes the rating; it shows on the public list."""
    demo.need("evaluation_id")
    liker = await Citizen.login(demo.api, demo.sandbox)
    done = await liker.verify(LIKER, fictional_id_number())
    line("第二位群众", "second citizen logged in and verified", f"{LIKER} → {done['name_masked']}")
    answer = await liker.like(demo.s.evaluation_id or "")
    line("点赞", "PUT /like", f"liked {answer['liked']}, like_count {answer['like_count']}")
    item = await demo.public_item()
    if item is not None:
        line(
            "公开展示",
            "on the public list",
            f"{item['name_masked']} {item['overall']}★ “{item['comment']}”, likers "
            f"{item['likers']}, ticket {item['ticket_status']}",
        )
