"""The pages in a real browser: Debian's chromium (with fonts-noto-cjk) driven by Playwright
against a real server and the WeChat sandbox (``tests.support.browser``).

One journey, one browser (~25 s): a refused login, then log in to the console; take a 差评
ticket through every state (a dissatisfied callback back to ``verified`` included), another to
``invalid`` proposed by one admin and confirmed by a second, and two appealed by the center's
admin (one upheld: ``invalid``; one rejected, its invalid proposal refused: on to
``verified``), asking for the applicant's phone; record a callback rating with a reason picked
from the catalogue's list; change the WeChat configuration; open the figures on this month;
open every section and catalogue tab (no English leftover in any, a refusal naming its field
by label, a confirm dialog in Chinese); see a citizen's new rating appear live on ``/public/``
with every figure, and a new case's code on a paired evaluator screen. A comment with markup
renders as text, nowhere as markup; no page logs an error. Screenshots:
``<tmp_path>/screenshots`` (``WXB_SCREENSHOTS=1`` copies them to ``test-output/screenshots``).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from playwright.async_api import expect

from models.base import utcnow
from tests.support.admins import PASSWORD, admin_token
from tests.support.browser import Chromium, no_english_leftovers
from tests.support.cases import make_case, make_id_number
from tests.support.tickets import seed_rating
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.sandbox.png import code_png
from wxbackend.services.devices import screen
from wxbackend.timefmt import SHANGHAI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WINDOW = "HL-W01"
TENTH = Decimal("0.1")
MARKUP = "<img src=x onerror=alert(1)>"
STATUS = {
    "open": "差评待核实",
    "verified": "已核实，整改中",
    "rectified": "已整改，待回访",
    "called_back": "已回访",
    "closed": "已办结",
    "invalid": "核实为无效差评",
}


@pytest.fixture
def settings_overrides() -> dict[str, dict[str, Any]]:
    # figures uncached: the public page asks again a second after a live rating, not 11 s
    return {"public": {"stats_cache_seconds": 0}}


@pytest.mark.asyncio
async def test_console_public_page_and_screen_in_chromium(
    api, ctx, sandbox, partner, base_url, tmp_path
):
    token = await admin_token(api, ctx)  # root, a superadmin
    await admin_token(api, ctx, "root2")  # the second person of a two-person decision
    marked = await seed_rating(ctx, overall=1, comment=f"{MARKUP} 窗口排队太久")
    appealed = [await seed_rating(ctx, overall=2, comment="态度不好") for _ in range(2)]
    await admin_token(api, ctx, "hl-admin", "center_admin", "440103-HL")  # files appeals
    callback_case_no = f"CB{datetime.now(UTC):%H%M%S%f}"
    completed = utcnow() - timedelta(days=2)  # a callback comes 24 h after completion at least
    await make_case(
        ctx,
        "黎明",
        make_id_number(4242),
        case_no=callback_case_no,
        completed_at=completed,
        with_token=False,
    )

    async with Chromium(tmp_path) as browser:
        admin = await browser.page("admin")
        await refused_log_in(admin, browser, base_url)
        await log_in(admin, base_url, "root")
        await browser.shot(admin, "01-console")
        await ticket_through_every_state(admin, browser, api, token, marked.case_no)
        await callback_rating_then_invalid(admin, browser, api, token, callback_case_no)
        await appeals_and_a_refused_proposal(admin, browser, [t.case_no for t in appealed])
        await wechat_config_changed(admin, browser, api, token)
        await stats_open_on_this_month(admin, browser, api, token)
        await every_section_opens(admin, browser)

        public = await browser.page("public")
        await rating_appears_live(public, browser, api, ctx, sandbox, base_url)
        device = await browser.page("device")
        await code_appears_on_the_screen(device, browser, api, ctx, partner, token, base_url)
    assert not browser.problems, "\n".join(browser.problems)
    assert browser.refusals == []  # the wanted refusal was seen (and only it was let pass)
    assert browser.dialogs == ["停用 root2 并结束其所有会话？"]  # a confirm, in Chinese
    assert len(list(browser.shots.glob("*.png"))) == 12 + 9 + 4  # journey, sections, catalogue


async def log_in(page: Any, base_url: str, username: str) -> None:
    await page.goto(base_url + "/admin/")
    form = page.locator("#login-form")
    await form.locator("[name=username]").fill(username)
    await form.locator("[name=password]").fill(PASSWORD)
    await form.get_by_role("button", name="登录").click()
    await expect(page.locator("#who-name")).to_contain_text(username)


async def refused_log_in(page: Any, browser: Chromium, base_url: str) -> None:
    await page.goto(base_url + "/admin/")
    form = page.locator("#login-form")
    await form.locator("[name=username]").fill("root")
    await form.locator("[name=password]").fill("not-the-password")
    browser.expect_refusal("/admin/api/login")
    await form.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
    await browser.shot(page, "00-login-refused")


async def open_section(page: Any, label: str) -> None:
    await page.locator("#nav").get_by_role("button", name=label, exact=True).click()
    await expect(page.locator("#content h2").first).to_have_text(label)


def ticket_row(page: Any, case_no: str) -> Any:
    return page.locator("#content table.data tbody tr").filter(has_text=case_no)


async def step(page: Any, case_no: str, button: str, then: str, **choices: str) -> None:
    """Click a ticket's step button, fill its form (selects by name; ``note``, ``reason``)
    and submit; once the list is shown again (no form open) the row shows the status ``then``."""
    row = ticket_row(page, case_no)
    await row.get_by_role("button", name=button, exact=True).click()
    form = row.locator("form")
    for name, value in choices.items():
        field = form.locator(f"[name={name}]")
        if name in ("note", "reason"):
            await field.fill(value)
        else:
            await field.select_option(value)
    await form.get_by_role("button", name="提交" + button).click()
    await expect(form.locator(".status")).to_have_text(f"{button}已提交。")
    await expect(ticket_row(page, case_no).locator("form")).to_have_count(0)  # listed again
    await expect(ticket_row(page, case_no).locator("span.ticket")).to_have_text(STATUS[then])


async def ticket_through_every_state(
    page: Any, browser: Chromium, api: Any, token: str, case_no: str
) -> None:
    await open_section(page, "差评工单")
    row = ticket_row(page, case_no)
    listed = await api.expect("GET", "/admin/api/tickets", token=token)
    rating = next(t for t in listed["items"] if t["case_no"] == case_no)["rating"]
    # the row shows the rating: item, stars, the comment (as text), the staff
    await expect(row).to_contain_text(rating["item"]["name"])
    await expect(row.locator(".stars.level-1")).to_have_count(1)
    await expect(row.locator("p.comment")).to_have_text(f"{MARKUP} 窗口排队太久")
    await expect(row).to_contain_text(f"{rating['window_staff']['name']}（HL001）")
    assert await page.locator("#content img").count() == 0
    await browser.shot(page, "02-tickets")

    await step(page, case_no, "核实", "verified", valid="true", note="属实，已约谈窗口人员")
    await step(page, case_no, "整改反馈", "rectified", note="增开一个窗口")
    await step(page, case_no, "回访", "verified", channel="phone", satisfied="false")
    await step(page, case_no, "整改反馈", "rectified", note="高峰时段再加派人员")
    await step(page, case_no, "回访", "called_back", channel="phone", satisfied="true")
    await step(page, case_no, "办结", "closed", note="群众满意")
    await row.get_by_role("button", name="处理记录").click()
    await expect(row.locator("ol.history li")).to_have_count(7)
    await expect(row.locator("ol.history")).to_contain_text("电话回访")
    await browser.shot(page, "03-ticket-closed")


async def refusal_of_unknown_case(api: Any, token: str, called: datetime) -> dict[str, Any]:
    """The error the server answers the console's callback for an unknown case."""
    body = {
        "case_no": "NO-SUCH-CASE",
        "channel": "phone",
        "overall": 5,
        "indicators": [],
        "contact_at": called.isoformat(),
        "reference": "CALL-20261202-001",
    }
    status, answer = await api("POST", "/admin/api/callback-evaluations", body, token=token)
    assert status == 404, answer
    return answer["error"]


async def callback_rating_then_invalid(
    page: Any, browser: Chromium, api: Any, token: str, case_no: str
) -> None:
    """A callback rating whose reason is picked from the list opens a ticket; declaring it
    invalid takes two admins."""
    await open_section(page, "评价管理")
    box = page.locator("section.box").filter(has_text="录入回访评价")
    form = box.locator("form")
    called = datetime.now(SHANGHAI) - timedelta(hours=1)  # the browser runs on Beijing time
    await form.locator("[name=contact_at]").fill(called.strftime("%Y-%m-%dT%H:%M"))
    await form.locator("[name=reference]").fill("CALL-20261202-001")

    # a refusal shows the server's message (message_zh where it has one) and its code
    await form.locator("[name=case_no]").fill("NO-SUCH-CASE")
    browser.expect_refusal("/admin/api/callback-evaluations")
    await form.get_by_role("button", name="录入").click()
    refused = await refusal_of_unknown_case(api, token, called)
    await expect(form.locator(".status.error")).to_have_text(
        f"{refused['message_zh'] if 'message_zh' in refused else refused['message']}"
        f"（{refused['code']}，HTTP 404）"
    )

    await form.locator("[name=case_no]").fill(case_no)
    await form.locator("[name=overall]").select_option("1")
    reasons = form.locator("select[name=indicators] option")
    await expect(reasons.filter(has_text="服务态度差")).to_have_count(1)
    await form.locator("select[name=indicators]").select_option(["poor_attitude"])
    await form.locator("[name=comment]").fill("回访时群众反映窗口人员态度生硬")
    await form.get_by_role("button", name="录入").click()
    await expect(form.locator(".status")).to_have_text("已录入。")
    await browser.shot(page, "04-callback-rating")

    await open_section(page, "差评工单")
    row = ticket_row(page, case_no)
    await expect(row).to_contain_text("服务态度差")
    await step(page, case_no, "核实", "open", valid="false", note="群众反映与事实不符")
    await expect(row).to_contain_text("无效差评待确认（root 提出）")
    await page.locator("#logout").click()
    await expect(page.locator("#login-view")).to_be_visible()
    await log_in(page, page.url.split("/admin/")[0], "root2")
    await open_section(page, "差评工单")
    await step(page, case_no, "无效差评确认", "invalid", confirm="true", note="同意")
    await expect(row).not_to_contain_text("待确认")
    await expect(row.get_by_role("button", name="无效差评确认")).to_have_count(0)
    await browser.shot(page, "05-ticket-invalid")


async def switch_admin(page: Any, username: str) -> None:
    await page.locator("#logout").click()
    await expect(page.locator("#login-view")).to_be_visible()
    await log_in(page, page.url.split("/admin/")[0], username)
    await open_section(page, "差评工单")


async def appeals_and_a_refused_proposal(page: Any, browser: Chromium, case_nos: list[str]) -> None:
    """The center's admin files two appeals (申诉) and proposes one 差评 invalid, and asks for
    an applicant's phone (联系群众); a superadmin upholds one appeal (the ticket ends
    ``invalid``), rejects the other and refuses the proposal (the ticket goes on: verified)."""
    rejected, upheld = case_nos
    await switch_admin(page, "hl-admin")
    for case_no in case_nos:
        await step(page, case_no, "申诉", "open", reason="群众误评：当日该窗口无人排队")
        await expect(ticket_row(page, case_no)).to_contain_text("申诉待裁决")
        again = ticket_row(page, case_no).get_by_role("button", name="申诉", exact=True)
        await expect(again).to_have_count(0)  # one appeal a ticket
    await step(page, rejected, "核实", "open", valid="false", note="评价与事实不符")
    row = ticket_row(page, rejected)
    await expect(row).to_contain_text("无效差评待确认（hl-admin 提出）")
    await row.get_by_role("button", name="联系群众").click()
    await row.locator("form [name=reason]").fill("核实差评需联系群众")
    await row.get_by_role("button", name="查看群众电话").click()
    await expect(row.locator("form .status")).to_have_text("该办件未登记联系电话。")
    await browser.shot(page, "05b-tickets-appealed")

    await switch_admin(page, "root")
    await step(page, upheld, "申诉裁决", "invalid", upheld="true", note="经核实为误评")
    await expect(ticket_row(page, upheld)).to_contain_text("申诉成立")
    await step(page, rejected, "申诉裁决", "open", upheld="false", note="差评属实")
    await step(page, rejected, "无效差评确认", "open", confirm="false", note="继续核实")
    await expect(row).to_contain_text("申诉不成立")
    await expect(row.get_by_role("button", name="无效差评确认")).to_have_count(0)
    await step(page, rejected, "核实", "verified", valid="true", note="属实，已约谈")
    await row.get_by_role("button", name="处理记录").click()
    for action in ("提出申诉", "提出无效差评", "申诉不成立", "驳回无效差评", "核实属实"):
        await expect(row.locator("ol.history")).to_contain_text(action)
    await browser.shot(page, "05c-tickets-appeals-decided")


async def wechat_config_changed(page: Any, browser: Chromium, api: Any, token: str) -> None:
    await open_section(page, "微信配置")
    form = page.locator("section.box").filter(has_text="修改配置").locator("form")
    await form.locator("[name=reminder]").fill("TPL-browser-0001")
    await form.get_by_role("button", name="保存配置").click()
    await expect(form.locator(".status")).to_contain_text("已保存，配置版本")
    current = page.locator("section.box").filter(has_text="当前生效的配置")
    await expect(current).to_contain_text("TPL-browser-0001")
    history = page.locator("section.box").filter(has_text="修改历史")
    # only what was changed is sent, so the history names only that
    await expect(history.locator("tbody tr").first.locator("td").nth(1)).to_have_text(
        "评价提醒模板 ID"
    )
    await form.get_by_role("button", name="保存配置").click()
    await expect(form.locator(".status")).to_have_text("没有修改。")
    config = await api.expect("GET", "/admin/api/wechat-config", token=token)
    assert config["templates"]["reminder"] == "TPL-browser-0001"
    await browser.shot(page, "06-wechat-config")


async def stats_open_on_this_month(page: Any, browser: Chromium, api: Any, token: str) -> None:
    today = datetime.now(SHANGHAI).date()
    first = today.replace(day=1).isoformat()
    await open_section(page, "统计分析")
    await expect(page.locator("[name=from]")).to_have_value(first)
    await expect(page.locator("[name=to]")).to_have_value(today.isoformat())
    await expect(page.locator("[name=month]")).to_have_value(today.strftime("%Y-%m"))
    figures = page.locator("#content table.data").first
    await expect(figures).to_contain_text("满意率")
    query = f"?group_by=center&from={first}&to={today.isoformat()}"
    rows = (await api.expect("GET", "/admin/api/stats" + query, token=token))["rows"]
    shown = figures.locator("tbody tr")
    await expect(shown).to_have_count(len(rows))  # this month's figures, row by row
    for number, row in enumerate(rows):
        cells = shown.nth(number).locator("td")
        await expect(cells.nth(0)).to_contain_text(row["key"]["name"])
        await expect(cells.nth(1)).to_have_text(str(row["finished_cases"]))
        await expect(cells.nth(2)).to_have_text(str(row["total"]))
    await expect(page.locator(".ranking-method")).to_contain_text("得分 = (C×m + 星级合计)")
    await browser.shot(page, "07-stats")


async def every_section_opens(page: Any, browser: Chromium) -> None:
    """Each section of the console's menu renders (its errors, if any, are in ``problems``)."""
    labels = await page.locator("#nav button").all_inner_texts()
    assert len(labels) == 9 and labels[-1] == "审计日志", labels
    for number, label in enumerate(labels, start=1):
        await open_section(page, label)
        await page.wait_for_load_state("networkidle")
        await expect(page.locator("#content")).not_to_contain_text("加载中")
        assert await page.locator("#content .error:visible").count() == 0, label
        await no_english_leftovers(page, label)
        await browser.shot(page, f"10-section-{number}")
        if label == "目录管理":
            await a_refusal_names_the_field_by_its_label(page, browser)
            await every_catalogue_tab(page, browser)
        if label == "管理员":
            row = page.locator("#content tbody tr").filter(has_text="root2")
            browser.expect_dialog("停用 root2")
            await row.get_by_role("button", name="停用").click()
            await expect(row).to_contain_text("否")  # dismissed: still enabled
    await expect(page.locator("#content tbody tr").first).to_contain_text(
        "（wechat_config.update）"
    )
    await expect(page.locator("#content tbody")).to_contain_text("工单 · 无效差评确认")


async def a_refusal_names_the_field_by_its_label(page: Any, browser: Chromium) -> None:
    form = page.locator("section.box").filter(has_text="新增服务中心").locator("form")
    await form.locator("[name=code]").fill("HL-NEW")
    await form.locator("[name=name]").fill("新建服务中心")
    await form.locator("[name=area_code]").fill("abc")
    browser.expect_refusal("/admin/api/centers")
    await form.get_by_role("button", name="新增").click()
    await expect(form.locator(".status.error")).to_have_text(
        "行政区划代码：字段取值无效。（invalid_field，HTTP 422）"
    )


async def every_catalogue_tab(page: Any, browser: Chromium) -> None:
    tabs = page.locator("#content .tabs button")
    names = await tabs.all_inner_texts()
    assert names[0] == "服务中心" and len(names) == 5, names
    for number, name in enumerate(names[1:], start=2):
        await tabs.filter(has_text=name).click()
        await expect(page.locator("#content h3").first).to_contain_text(name.split(" ")[0])
        await page.wait_for_load_state("networkidle")
        await no_english_leftovers(page, f"目录管理 · {name}")
        await browser.shot(page, f"11-catalogue-{number}")


#: The public page's figures: element id → the /api/v1/public/stats key it shows.
FIGURES = {
    "fig-satisfaction": "satisfaction_rate",
    "fig-bad": "bad_rate",
    "fig-active-rate": "active_rate",
    "fig-active": "active_good_rate",
    "fig-unrated": "unrated_rate",
    "fig-on-time": "on_time_rectification_rate",
}


async def figures_shown(page: Any, api: Any) -> None:
    """Each figure on /public/ as the stats API gives it now (a rate as ``12.5%``, none ``—``)."""
    stats = await api.expect("GET", "/api/v1/public/stats")
    await expect(page.locator("#fig-total")).to_have_text(str(stats["total"]))
    for element, key in FIGURES.items():
        rate = stats[key]
        shown = "—" if rate is None else f"{Decimal(rate * 100).quantize(TENTH, ROUND_HALF_UP)}%"
        await expect(page.locator(f"#{element}")).to_have_text(shown)


async def rating_appears_live(
    page: Any, browser: Chromium, api: Any, ctx: Any, sandbox: Any, base_url: str
) -> None:
    await page.goto(base_url + "/public/")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "on")
    await expect(page.locator("#ratings .comment").first).to_be_visible()
    marked = page.locator("#ratings .comment").filter(has_text=MARKUP)
    await expect(marked).to_have_text(f"{MARKUP} 窗口排队太久")
    before = (await api.expect("GET", "/api/v1/public/stats"))["total"]
    await figures_shown(page, api)

    id_number = make_id_number(4343)
    _, scene = await make_case(ctx, "黎明", id_number)
    citizen = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await rate(api, citizen, scene=scene, overall=5, comment="办事很快<b>点赞</b>")
    assert status == 201, answer
    card = page.locator(f'#ratings li[data-id="{answer["evaluation"]["id"]}"]')
    await expect(card.locator(".comment")).to_have_text("办事很快<b>点赞</b>")
    await expect(page.locator("#ratings li").first).to_have_attribute(
        "data-id", answer["evaluation"]["id"]
    )
    await expect(page.locator("#fig-total")).to_have_text(str(before + 1))
    await figures_shown(page, api)  # every rate updated with it
    assert await page.locator("#ratings img, #ratings b").count() == 0
    await browser.shot(page, "08-public-live")


async def code_appears_on_the_screen(
    page: Any, browser: Chromium, api: Any, ctx: Any, partner: Any, token: str, base_url: str
) -> None:
    key = await api.expect("POST", f"/admin/api/windows/{WINDOW}/device-key", token=token)
    await page.goto(f"{base_url}/device/{WINDOW}")
    await page.locator("#device-key").fill(key["device_key"])
    await page.locator("#pair-form").get_by_role("button", name="配对").click()
    await expect(page.locator("#screen-status")).to_have_attribute("data-state", "on")
    await expect(page.locator("#qr-box")).to_have_attribute("data-state", "idle")

    report = await partner.new_case(window_code=WINDOW)
    await expect(page.locator("#case-line")).to_contain_text(screen.mask_case_no(report["case_no"]))
    image = page.locator("#qr-box img.qr-image")
    await expect(image).to_be_visible()
    src = await image.get_attribute("src")
    state = await screen.current(ctx, WINDOW)
    scene = ctx.cipher.decrypt(state["scene"], screen.SCENE_CONTEXT)
    assert base64.b64decode(src.split(",", 1)[1]) == code_png(scene, ctx.settings.qr.width)
    feed = page.locator("#feed .comment").filter(has_text=MARKUP)
    await expect(feed).to_have_text(f"{MARKUP} 窗口排队太久")
    assert await page.locator("#feed img").count() == 0
    await browser.shot(page, "09-device-screen")
