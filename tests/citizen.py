"""Reusable test helpers for the citizen side: verified users, cases with a QR token, ratings.

    from tests.citizen import make_case, make_id_number, verified_user, rate

    async def test_something(api, sandbox, ctx):
        id_number = make_id_number(1)                       # a valid 18-character resident ID
        case_id, scene = await make_case(ctx, "黎明", id_number)  # a finished case + active token
        token = await verified_user(api, sandbox, "黎明", id_number)  # login + face verification
        status, answer = await rate(api, token, scene=scene, overall=5)
        assert status == 201                                 # answer["evaluation"]

* :func:`verified_user` — a fresh WeChat user (the sandbox makes the openid), logged in and
  verified by face through the real HTTP flow; returns the bearer token.
* :func:`make_id_number` — a valid resident ID from a small integer seed (distinct seeds give
  distinct IDs; the GB 11643 check character via ``stdnum.cn.ric``).
* :func:`make_case` — inserts a :class:`~models.case.Case` (applicant encrypted + keyed hash,
  as the partner API stores it) and one active :class:`~models.case.QrToken` straight
  through the models, importing ``conf/catalog.example.json`` first when the catalogue is
  empty. Returns ``(case_id, scene)``. Keyword arguments choose the catalogue rows, times
  and token state (see its docstring). Staff HL002 of the example catalogue has the ID
  number :data:`STAFF_HL002_ID` (for self-evaluation tests).
* :func:`rate` — ``POST /api/v1/evaluations`` with a body built from keywords.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stdnum.cn import ric

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from wxbackend.context import Context
from wxbackend.security import normalize_id_number, token_digest
from wxbackend.services.cases import reports as cases
from wxbackend.services.cases.tokens import new_scene
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file

CATALOG_FILE = Path(__file__).resolve().parent.parent / "conf" / "catalog.example.json"
#: The ID number of staff HL002 (window, HL-CIVIL) in the example catalogue.
STAFF_HL002_ID = "440100198001011232"
#: Catalogue codes of a default case (item → department → center fit together).
DEFAULT_CODES = {
    "item_code": "440103-SY-001",
    "center_code": "440103-HL",
    "department_code": "HL-LABOR",
    "window_code": "HL-W01",
    "window_staff_no": "HL001",
    "approver_staff_no": "HL101",
}

_case_numbers = itertools.count(1)


def make_id_number(seed: int) -> str:
    """A valid 18-character resident ID (GB 11643) for ``seed`` (0 ≤ seed < 10000).

    Born 1990-01-01 in 110105 (Beijing Chaoyang); the sequence part is the seed, so distinct
    seeds give distinct numbers.
    """
    if not 0 <= seed < 10000:
        raise ValueError("seed must be 0–9999")
    first17 = f"11010519900101{seed:03d}" if seed < 1000 else f"1101051990010{seed:04d}"
    return first17 + ric.calc_check_digit(first17 + "?")


async def verified_user(
    api: Any, sandbox: Any, name: str, id_number: str, openid: str | None = None
) -> str:
    """Log a fresh user in and verify their identity by face, through HTTP; the bearer token.

    login → ``POST /api/v1/identity/face/start`` → sandbox ``POST /_sandbox/face/finish``
    (verify_ret 10000) → ``POST /api/v1/identity/face/finish``.
    """
    token, _ = await api.login(sandbox, openid)
    status, started = await api(
        "POST", "/api/v1/identity/face/start", {"name": name, "id_number": id_number}, token=token
    )
    assert status == 200, started
    done = await sandbox.control(
        "POST", "face/finish", {"verify_id": started["verify_id"], "verify_ret": 10000}
    )
    assert done == {"ok": True}, done
    status, finished = await api(
        "POST", "/api/v1/identity/face/finish", {"verify_id": started["verify_id"]}, token=token
    )
    assert status == 200, finished
    return token


def ensure_catalog(ctx: Context) -> None:
    """Import ``conf/catalog.example.json`` unless its center is there (sync: ``ctx.db.run``)."""
    if Center.get_or_none(Center.code == DEFAULT_CODES["center_code"]) is None:
        import_catalog(load_catalog_file(str(CATALOG_FILE)), ctx.hasher)


def _insert_case(
    ctx: Context,
    applicant_name: str,
    applicant_id_number: str,
    codes: dict[str, Any],
    case_no: str,
    completed_at: datetime,
    token_expires_at: datetime | None,
    token_status: str,
    with_token: bool,
) -> tuple[int, str | None]:
    ensure_catalog(ctx)

    def staff(staff_no: str | None) -> int | None:
        return Staff.get(Staff.staff_no == staff_no).id if staff_no else None

    window_code = codes.get("window_code")
    case = Case.create(
        case_no=case_no,
        item=ServiceItem.get(ServiceItem.code == codes["item_code"]).id,
        center=Center.get(Center.code == codes["center_code"]).id,
        department=Department.get(Department.code == codes["department_code"]).id,
        window=Window.get(Window.code == window_code).id if window_code else None,
        window_staff=staff(codes.get("window_staff_no")),
        approver=staff(codes.get("approver_staff_no")),
        applicant_name_enc=ctx.cipher.encrypt(applicant_name, cases.NAME_CONTEXT),
        applicant_id_enc=ctx.cipher.encrypt(applicant_id_number, cases.ID_CONTEXT),
        applicant_id_hash=ctx.hasher.hash(normalize_id_number(applicant_id_number), "id_number"),
        accepted_at=completed_at - timedelta(hours=1),
        completed_at=completed_at,
    )
    if not with_token:
        return case.id, None
    scene = new_scene()
    QrToken.create(
        case=case.id,
        token_hash=token_digest(scene),
        status=token_status,
        expires_at=token_expires_at or utcnow() + timedelta(days=ctx.settings.qr.ttl_days),
    )
    return case.id, scene


async def make_case(
    ctx: Context,
    applicant_name: str,
    applicant_id_number: str,
    *,
    case_no: str | None = None,
    completed_at: datetime | None = None,
    token_expires_at: datetime | None = None,
    token_status: str = "active",
    with_token: bool = True,
    **codes: str | None,
) -> tuple[str, str | None]:
    """Insert a finished case of ``applicant_*`` and one QR token; ``(case_id, scene)``.

    ``codes`` override :data:`DEFAULT_CODES` (``item_code``, ``center_code``,
    ``department_code``, ``window_code``, ``window_staff_no``, ``approver_staff_no``; None
    leaves a window, staff or approver out). ``completed_at`` (naive UTC) defaults to an hour
    ago; the token expires ``qr.ttl_days`` from now unless ``token_expires_at`` is given and
    starts as ``token_status``; ``with_token=False`` makes no token (scene None).
    The case id is returned as a string, as the API shows ids.
    """
    unknown = set(codes) - set(DEFAULT_CODES)
    if unknown:
        raise TypeError(f"make_case: unknown arguments {sorted(unknown)}")
    merged = {**DEFAULT_CODES, **codes}
    number = case_no or f"T{next(_case_numbers):06d}-{utcnow().timestamp():.0f}"
    case_id, scene = await ctx.db.run(
        _insert_case,
        ctx,
        applicant_name,
        applicant_id_number,
        merged,
        number,
        completed_at or utcnow() - timedelta(hours=1),
        token_expires_at,
        token_status,
        with_token,
    )
    return str(case_id), scene


async def rate(api: Any, token: str | None, **body: Any) -> tuple[int, Any]:
    """``POST /api/v1/evaluations`` with ``body`` (e.g. ``scene=..., overall=5``)."""
    return await api("POST", "/api/v1/evaluations", body, token=token)
