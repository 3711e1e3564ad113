"""The role table's rows for ratings and tickets: ``/admin/api/tickets…``,
``/admin/api/evaluations…`` and ``/admin/api/callback-evaluations`` (see test_admin_roles.py).

Every attempt gets a fresh target (a ticket in the status the step needs, a rating, an
unrated case) in center A's department ``HL-LABOR`` (the handler's), in center A's
``HL-CIVIL`` (not the handler's) or in center B, so one role's success never changes the next
role's answer.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.base import utcnow
from models.case import Case
from models.ticket import Ticket
from tests.support.cases import make_case, make_id_number
from tests.support.roles import (
    CENTER_B,
    DEPT_B,
    RoleEnv,
    Setup,
    everyone,
    expect,
    role_env,
    run_table,
    superadmin_only,
)
from tests.support.roles import (
    Case as Row,
)
from tests.support.tickets import seed_rating
from wxbackend.timefmt import iso

#: make_case codes per place.
PLACES: dict[str, dict[str, str | None]] = {
    "a": {},  # 440103-HL / HL-LABOR (handler_a's department)
    "civil": {
        "item_code": "440103-MZ-001",
        "department_code": "HL-CIVIL",
        "window_code": "HL-W02",
        "window_staff_no": "HL002",
        "approver_staff_no": "HL102",
    },
    "b": {
        "center_code": CENTER_B,
        "item_code": "440104-ZH-001",
        "department_code": DEPT_B,
        "window_code": "XY-W01",
        "window_staff_no": "XY001",
        "approver_staff_no": None,
    },
}


def ticket_in(
    place: str, status: str = "open", appeal: str | None = None, proposed: bool = False
) -> Setup:
    """A fresh 差评 ticket of ``place`` put straight into ``status`` (and appeal state; with
    ``proposed``, a pending proposal by another admin to declare it invalid)."""

    async def setup(env: RoleEnv, _: dict[str, str]) -> dict[str, str]:
        seeded = await seed_rating(env.ctx, overall=1, **PLACES[place])
        proposal = {"invalid_proposed_by": "another_admin" if proposed else None}
        await env.db(
            lambda: (
                Ticket.update(status=status, appeal_status=appeal, **proposal)
                .where(Ticket.id == int(seeded.ticket_id))
                .execute()
            )
        )
        return {"target": seeded.ticket_id}

    return setup


def rating_in(place: str) -> Setup:
    """A fresh rating with a comment in ``place``."""

    async def setup(env: RoleEnv, _: dict[str, str]) -> dict[str, str]:
        seeded = await seed_rating(env.ctx, overall=4, comment="还不错", **PLACES[place])
        return {"target": seeded.evaluation_id}

    return setup


def unrated_case_in(place: str) -> Setup:
    """A fresh finished case with no rating in ``place``: its case_no."""

    async def setup(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
        case_id, _ = await make_case(
            env.ctx,
            "黎明",
            make_id_number(int(v["uid"]) % 1000),
            completed_at=utcnow() - timedelta(hours=30),  # callbacks wait 24 h (rule 18)
            **PLACES[place],
        )
        case_no = await env.db(lambda: Case.get_by_id(int(case_id)).case_no)
        return {"target": case_no}

    return setup


def read_b() -> dict[str, int]:
    """A ticket or rating of center B: out of reach of A's admins and of A's auditor."""
    return expect(200, center_admin_a=404, handler_a=404, auditor_a=404)


def staff_of_a(status: int) -> dict[str, int]:
    """A ticket step in HL-LABOR: superadmin, A's center_admin, the handler; B's admin 404."""
    return expect(
        403, superadmin=status, center_admin_a=status, handler_a=status, center_admin_b=404
    )


def staff_of_b(status: int) -> dict[str, int]:
    return expect(403, superadmin=status, center_admin_b=status, center_admin_a=404, handler_a=404)


def admins_of_civil(status: int) -> dict[str, int]:
    """A ticket step in HL-CIVIL: the HL-LABOR handler cannot see it."""
    return expect(403, superadmin=status, center_admin_a=status, center_admin_b=404, handler_a=404)


def center_writers_of_a(status: int) -> dict[str, int]:
    return expect(403, superadmin=status, center_admin_a=status, center_admin_b=404)


def center_writers_of_b(status: int) -> dict[str, int]:
    return expect(403, superadmin=status, center_admin_b=status, center_admin_a=404)


T = "/admin/api/tickets/{target}"
E = "/admin/api/evaluations/{target}"
CB = "/admin/api/callback-evaluations"
_VERIFY = {"valid": True, "note": "属实"}
_REASON = {"reason": "回访核实办理情况"}
_CALLBACK = {
    "case_no": "{target}",
    "channel": "phone",
    "overall": 2,
    "indicators": ["overdue"],
    "contact_at": iso(utcnow() - timedelta(hours=1)),
    "reference": "SMS-0001",
}

CASES: list[Row] = [
    # -- tickets: reading
    Row("GET", "/admin/api/tickets", expected=everyone(200)),
    Row("GET", "/admin/api/tickets?status=open&overdue=false", expected=everyone(200)),
    Row("GET", T, expected=expect(200, center_admin_b=404), setup=ticket_in("a")),
    Row(
        "GET", T, expected=expect(200, center_admin_b=404, handler_a=404), setup=ticket_in("civil")
    ),
    Row("GET", T, expected=read_b(), setup=ticket_in("b")),
    # -- tickets: steps
    Row("POST", f"{T}/verify", _VERIFY, staff_of_a(200), ticket_in("a")),
    Row("POST", f"{T}/verify", _VERIFY, admins_of_civil(200), ticket_in("civil")),
    Row("POST", f"{T}/verify", _VERIFY, staff_of_b(200), ticket_in("b")),
    Row("POST", f"{T}/rectify", {"note": "已整改"}, staff_of_a(200), ticket_in("a", "verified")),
    Row(
        "POST",
        f"{T}/callback",
        {"channel": "sms", "satisfied": True},
        staff_of_a(200),
        ticket_in("a", "rectified"),
    ),
    Row("POST", f"{T}/close", None, staff_of_a(200), ticket_in("a", "called_back")),
    Row(
        "POST",
        f"{T}/appeal",
        {"reason": "恶意差评"},
        expect(403, center_admin_a=200, handler_a=200, center_admin_b=404),
        ticket_in("a"),
    ),
    Row(
        "POST",
        f"{T}/appeal/decide",
        {"upheld": True, "note": "成立"},
        center_writers_of_a(200),
        ticket_in("a", "open", "pending"),
    ),
    Row(
        "POST",
        f"{T}/appeal/decide",
        {"upheld": False},
        center_writers_of_b(200),
        ticket_in("b", "verified", "pending"),
    ),
    Row(
        "POST",
        f"{T}/invalidation/decide",
        {"confirm": True, "note": "核实无效"},
        center_writers_of_a(200),
        ticket_in("a", "open", proposed=True),
    ),
    Row(
        "POST",
        f"{T}/invalidation/decide",
        {"confirm": False},
        center_writers_of_b(200),
        ticket_in("b", "open", proposed=True),
    ),
    # -- tickets: the applicant's phone (product rule 22)
    Row("POST", f"{T}/contact", _REASON, staff_of_a(200), ticket_in("a")),
    Row("POST", f"{T}/contact", _REASON, staff_of_a(200), ticket_in("a", "rectified")),
    Row("POST", f"{T}/contact", _REASON, admins_of_civil(200), ticket_in("civil")),
    Row("POST", f"{T}/contact", _REASON, staff_of_b(200), ticket_in("b", "verified")),
    Row("POST", f"{T}/contact", _REASON, staff_of_a(409), ticket_in("a", "closed")),
    Row("POST", f"{T}/contact", _REASON, staff_of_a(409), ticket_in("a", "invalid")),
    Row(
        "POST",
        f"{T}/contact",
        {},  # the reason is required: checked before the ticket is even looked up
        expect(403, superadmin=400, center_admin_a=400, center_admin_b=400, handler_a=400),
        ticket_in("a"),
    ),
    # -- evaluations
    Row("GET", "/admin/api/evaluations", expected=everyone(200)),
    Row("GET", "/admin/api/evaluations?level=1&channel=qr", expected=everyone(200)),
    Row("GET", E, expected=expect(200, center_admin_b=404), setup=rating_in("a")),
    Row(
        "GET", E, expected=expect(200, center_admin_b=404, handler_a=404), setup=rating_in("civil")
    ),
    Row("GET", E, expected=read_b(), setup=rating_in("b")),
    Row("POST", f"{E}/reply", {"text": "感谢您的反馈"}, center_writers_of_a(201), rating_in("a")),
    Row("POST", f"{E}/reply", {"text": "感谢您的反馈"}, center_writers_of_b(201), rating_in("b")),
    Row(
        "POST",
        f"{E}/moderate",
        {"visible": False, "reason": "含个人信息"},
        center_writers_of_a(200),
        rating_in("a"),
    ),
    Row("POST", f"{E}/moderate", {"visible": True}, center_writers_of_b(200), rating_in("b")),
    Row("POST", f"{E}/reveal", _REASON, superadmin_only(200), rating_in("a")),
    Row("POST", f"{E}/reveal", _REASON, superadmin_only(200), rating_in("b")),
    Row("POST", f"{E}/reveal", None, superadmin_only(400), rating_in("a")),  # no reason
    # -- callback ratings
    Row("POST", CB, _CALLBACK, staff_of_a(201), unrated_case_in("a")),
    Row("POST", CB, _CALLBACK, admins_of_civil(201), unrated_case_in("civil")),
    Row("POST", CB, _CALLBACK, staff_of_b(201), unrated_case_in("b")),
]


@pytest.mark.asyncio
async def test_rating_role_table(api, ctx, sandbox):
    await run_table(await role_env(api, ctx), CASES)
