"""Reaching the citizen (product rule 22): ``POST /admin/api/tickets/{id}/contact {reason}``.

A handler within reach gets the applicant's phone while the ticket is open, giving a reason;
the view is audited (who, when, why) and the phone is never in the audit or the log. The role
table (tests/test_admin_roles_ratings.py) has the row per role; here: the answer, the audit,
the reason's rule, the ended states, a case with no phone and a center-bound superadmin.
"""

from __future__ import annotations

import json
import logging
from itertools import count

import pytest

from models.audit import AuditEntry
from models.base import utcnow
from models.case import Case
from models.evaluation import Evaluation
from models.ticket import Ticket
from tests.support.admins import PASSWORD
from tests.support.cases import make_case, make_id_number
from wxbackend.clients.admin import AdminClient
from wxbackend.db import database
from wxbackend.services.admin.accounts import create_admin
from wxbackend.services.cases.reports import PHONE_CONTEXT
from wxbackend.services.tickets.opening import open_ticket

T = "/admin/api/tickets"
PHONE = "13800138000"
WHY = {"reason": "回访核实整改情况"}
_seeds = count(7100)


async def bad_rating(ctx, phone: str | None = PHONE) -> str:
    """A finished case of center 440103-HL (department HL-LABOR) with ``phone``, rated 1 (a
    差评): its ticket id."""
    case_id, _ = await make_case(ctx, "黎明", make_id_number(next(_seeds)), with_token=False)

    def store() -> str:
        with database.atomic():
            sealed = ctx.cipher.encrypt(phone, PHONE_CONTEXT) if phone else None
            Case.update(applicant_phone_enc=sealed).where(Case.id == int(case_id)).execute()
            case = Case.get_by_id(int(case_id))
            evaluation = Evaluation.create(
                case=case.id,
                assess_number=1,
                channel="qr",
                name_masked="黎**",
                overall=1,
                created_at=utcnow(),
                center=case.center_id,
                item=case.item_id,
                department=case.department_id,
                window_staff=case.window_staff_id,
                approver=case.approver_id,
            )
            return str(open_ticket(evaluation.id, case, utcnow(), ctx.settings))

    return await ctx.db.run(store)


async def token(api, ctx, username: str, role: str, center=None, department=None) -> str:
    def make() -> None:
        with database.atomic():
            create_admin(username, PASSWORD, role, center, department)

    await ctx.db.run(make)
    return (await AdminClient.login(api, username, PASSWORD)).token


async def contact_audits(ctx) -> list[AuditEntry]:
    query = AuditEntry.select().where(AuditEntry.action == "ticket.contact")
    return await ctx.db.run(lambda: list(query.order_by(AuditEntry.id)))


@pytest.mark.asyncio
async def test_handler_gets_the_phone_audited_with_the_reason(api, ctx, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    ticket = await bad_rating(ctx)
    clerk = await token(api, ctx, "labor_clerk", "handler", None, "HL-LABOR")
    before = utcnow()
    status, answer = await api("POST", f"{T}/{ticket}/contact", WHY, token=clerk)
    assert (status, answer) == (200, {"phone": PHONE})

    (entry,) = await contact_audits(ctx)
    assert entry.username == "labor_clerk" and entry.target_id == ticket
    assert entry.at >= before.replace(microsecond=0)
    detail = json.loads(entry.detail)
    assert detail["reason"] == WHY["reason"]
    assert PHONE not in entry.detail and "138" not in entry.detail
    assert PHONE not in caplog.text

    # the ticket's history is untouched: seeing the phone is not a step
    status, view = await api("GET", f"{T}/{ticket}", token=clerk)
    assert status == 200 and view["status"] == "open" and len(view["history"]) == 1


@pytest.mark.asyncio
async def test_the_reason_is_required(api, ctx, sandbox):
    ticket = await bad_rating(ctx)
    boss = await token(api, ctx, "boss", "superadmin")
    for body in (None, {}, {"reason": ""}, {"reason": " \n "}, {"reason": "因" * 501}):
        status, answer = await api("POST", f"{T}/{ticket}/contact", body, token=boss)
        assert (status, answer["error"]["code"]) == (400, "invalid_body"), body
    status, answer = await api("POST", f"{T}/{ticket}/contact", {"reason": "因" * 500}, token=boss)
    assert (status, answer) == (200, {"phone": PHONE})
    assert len(await contact_audits(ctx)) == 1  # the refused attempts left no entry


@pytest.mark.asyncio
@pytest.mark.parametrize("ended", ["closed", "invalid"])
async def test_not_once_the_ticket_has_ended(api, ctx, sandbox, ended):
    ticket = await bad_rating(ctx)
    await ctx.db.run(lambda: Ticket.update(status=ended).where(Ticket.id == int(ticket)).execute())
    boss = await token(api, ctx, "boss", "superadmin")
    status, answer = await api("POST", f"{T}/{ticket}/contact", WHY, token=boss)
    assert (status, answer["error"]["code"]) == (409, "invalid_transition")
    assert PHONE not in json.dumps(answer)
    assert await contact_audits(ctx) == []


@pytest.mark.asyncio
async def test_every_open_state_and_a_case_without_phone(api, ctx, sandbox):
    boss = await token(api, ctx, "boss", "superadmin")
    for status_ in ("open", "verified", "rectified", "called_back"):
        ticket = await bad_rating(ctx)
        await ctx.db.run(
            lambda t=ticket, s=status_: Ticket.update(status=s).where(Ticket.id == int(t)).execute()
        )
        answer = await api("POST", f"{T}/{ticket}/contact", WHY, token=boss)
        assert answer == (200, {"phone": PHONE}), status_
    silent = await bad_rating(ctx, phone=None)
    assert await api("POST", f"{T}/{silent}/contact", WHY, token=boss) == (200, {"phone": None})
    entry = (await contact_audits(ctx))[-1]
    assert json.loads(entry.detail)["phone_known"] is False


@pytest.mark.asyncio
async def test_a_center_bound_superadmin_only_within_its_center(api, ctx, sandbox):
    ticket = await bad_rating(ctx)  # center 440103-HL
    own = await token(api, ctx, "super_hl", "superadmin", "440103-HL")
    assert await api("POST", f"{T}/{ticket}/contact", WHY, token=own) == (200, {"phone": PHONE})
    # a superadmin bound to another center does not even see the ticket
    from wxbackend.services.catalogue.importer import import_catalog

    other = {
        "centers": [{"code": "440104-XY", "name": "越秀某街政务服务中心", "area_code": "440104"}],
        "departments": [],
        "items": [],
        "staff": [],
        "windows": [],
    }
    await ctx.db.run(import_catalog, other, ctx.hasher)
    foreign = await token(api, ctx, "super_xy", "superadmin", "440104-XY")
    status, answer = await api("POST", f"{T}/{ticket}/contact", WHY, token=foreign)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    handler_elsewhere = await token(api, ctx, "civil_clerk", "handler", None, "HL-CIVIL")
    status, _ = await api("POST", f"{T}/{ticket}/contact", WHY, token=handler_elsewhere)
    assert status == 404
    viewer = await token(api, ctx, "watcher", "viewer")
    status, answer = await api("POST", f"{T}/{ticket}/contact", WHY, token=viewer)
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert [e.username for e in await contact_audits(ctx)] == ["super_hl"]
