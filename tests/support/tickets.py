"""Rated cases and ticket steps for the 差评 tests: a case rated straight through the models
(:func:`seed_rating`, a 差评 with its ticket), an admin logged in over HTTP
(:func:`staff_token`), a ticket step, the public item of a rating and the audit rows."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.access import Admin
from models.audit import AuditEntry
from models.base import utcnow
from models.case import Case
from models.evaluation import Evaluation
from tests.support.admins import PASSWORD
from tests.support.cases import make_case, make_id_number
from wxbackend.db import database
from wxbackend.services.admin.accounts import create_admin
from wxbackend.services.public import rollups
from wxbackend.services.ratings.levels import is_bad
from wxbackend.services.tickets.opening import open_ticket

T = "/admin/api/tickets"
PUBLIC = "/api/v1/public/evaluations"
_seeds = itertools.count(7000)


@dataclass(frozen=True)
class Seeded:
    """A case rated straight through the models (ids as the API shows them)."""

    case_id: str
    case_no: str
    evaluation_id: str
    ticket_id: str | None


async def seed_rating(
    ctx: Any,
    *,
    overall: int = 1,
    channel: str = "qr",
    comment: str | None = "窗口排队太久",
    comment_status: str = "visible",
    opened_at: datetime | None = None,
    name: str = "黎明",
    with_token: bool = False,
    **codes: str | None,
) -> Seeded:
    """A finished case (``tests.support.cases.make_case`` codes) and its first rating; a 差评 gets
    its ticket from ``tickets.opening.open_ticket`` opened at ``opened_at`` (default now)."""
    case_id, _ = await make_case(
        ctx, name, make_id_number(next(_seeds)), with_token=with_token, **codes
    )

    def store() -> Seeded:
        with database.atomic():
            case = Case.get_by_id(int(case_id))
            at = opened_at or utcnow()
            evaluation = Evaluation.create(
                case=case.id,
                assess_number=1,
                channel=channel,
                name_masked=None if channel == "default" else name[0] + "**",
                overall=overall,
                comment=comment,
                comment_status=comment_status,
                created_at=at,
                center=case.center_id,
                item=case.item_id,
                department=case.department_id,
                window_staff=case.window_staff_id,
                approver=case.approver_id,
            )
            Case.update(first_rated_at=at).where(Case.id == case.id).execute()
            rollups.first_rating(case, channel, overall, {}, at)
            ticket_id = (
                open_ticket(evaluation.id, case, at, ctx.settings) if is_bad(overall) else None
            )
            return Seeded(
                case_id,
                case.case_no,
                str(evaluation.id),
                str(ticket_id) if ticket_id else None,
            )

    return await ctx.db.run(store)


async def staff_token(
    api: Any,
    ctx: Any,
    username: str,
    role: str,
    center: str | None = None,
    department: str | None = None,
) -> str:
    """Create the admin (once; a handler by ``department``) and log in over HTTP."""

    def make() -> None:
        if not Admin.select().where(Admin.username == username).exists():
            with database.atomic():
                create_admin(username, PASSWORD, role, center, department)

    await ctx.db.run(make)
    status, answer = await api(
        "POST", "/admin/api/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, answer
    return answer["token"]


def code_of(answer: Any) -> str:
    return answer["error"]["code"]


async def step(api: Any, token: str, ticket_id: str, name: str, body: Any = None) -> Any:
    """POST a step; returns ``(status, answer)``."""
    return await api("POST", f"{T}/{ticket_id}/{name}", body, token=token)


async def public_item(api: Any, evaluation_id: str) -> dict[str, Any]:
    status, page = await api("GET", f"{PUBLIC}?limit=50")
    assert status == 200
    return next(i for i in page["items"] if i["id"] == evaluation_id)


async def audits(ctx: Any, prefix: str) -> list[AuditEntry]:
    return await ctx.db.run(
        lambda: list(
            AuditEntry.select().where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id)
        )
    )
