"""``GET /admin/api/messages``: filters, paging, scope and the role table rows."""

import pytest

from models.base import utcnow
from models.case import Case
from models.messaging import Message, MessageAttempt
from tests.support.admins import admin_token
from tests.support.cases import make_case
from tests.support.roles import NO_AUDITOR, expect, role_env, run_table
from tests.support.roles import Case as Row

CASES: list[Row] = [
    Row("GET", "/admin/api/messages", expected=expect(200, **NO_AUDITOR)),
    Row(
        "GET",
        "/admin/api/messages?status=config_error&kind=reminder",
        expected=expect(200, **NO_AUDITOR),
    ),
    Row("GET", "/admin/api/messages?status=nonsense", expected=expect(400, **NO_AUDITOR)),
]


@pytest.mark.asyncio
async def test_messages_role_table(api, ctx, sandbox):
    await run_table(await role_env(api, ctx), CASES)


def _seed(case_ids: list[int]) -> None:
    for i, case_id in enumerate(case_ids):
        case = Case.get_by_id(case_id)
        message = Message.create(
            key=f"reminder:{case_id}:1",
            kind="reminder",
            case=case,
            template_id="tpl",
            status="config_error" if i % 2 else "sent",
            errcode="47003" if i % 2 else None,
            sent_at=None if i % 2 else utcnow(),
        )
        MessageAttempt.create(message=message, status=message.status, errcode=message.errcode)


@pytest.mark.asyncio
async def test_list_filters_pages_and_scope(api, ctx, sandbox):
    ids = []
    for n in range(5):
        case_id, _ = await make_case(ctx, "林晓雨", "11010519900307" + "1665", case_no=f"M-{n}")
        ids.append(int(case_id))
    await ctx.db.run(_seed, ids)
    token = await admin_token(api, ctx)
    status, page = await api("GET", "/admin/api/messages?limit=2", token=token)
    assert status == 200 and len(page["items"]) == 2 and page["next_cursor"]
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        status, page = await api(
            "GET", f"/admin/api/messages?limit=2&cursor={page['next_cursor']}", token=token
        )
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == 5 and seen == sorted(seen, key=int, reverse=True)
    status, errors = await api("GET", "/admin/api/messages?status=config_error", token=token)
    assert {i["errcode"] for i in errors["items"]} == {"47003"} and len(errors["items"]) == 2
    # another center's admin sees none of these (the cases are in 440103-HL)
    from models.catalog import Center

    await ctx.db.run(lambda: Center.create(code="440104-XY", name="另一中心", area_code="440104"))
    other = await admin_token(api, ctx, "other-admin", "center_admin", "440104-XY")
    status, page = await api("GET", "/admin/api/messages", token=other)
    assert status == 200 and page["items"] == []
