"""Test data for the citizen side, written straight through the models: cases with a QR token.

    from tests.support.cases import make_case, make_id_number

    async def test_something(api, sandbox, ctx):
        id_number = make_id_number(1)                       # a valid 18-character resident ID
        case_id, scene = await make_case(ctx, "黎明", id_number)  # a finished case + active token
        token = await verified_user(api, sandbox, "黎明", id_number)  # wxbackend.clients.citizen
        status, answer = await rate(api, token, scene=scene, overall=5)

* :func:`make_id_number` — a valid resident ID from a small integer seed (distinct seeds give
  distinct IDs; the GB 11643 check character via ``stdnum.cn.ric``).
* :func:`make_case` — inserts a :class:`~models.case.Case` (applicant encrypted + keyed hash,
  as the partner API stores it) and one active :class:`~models.case.QrToken` straight
  through the models, importing ``conf/catalog.example.json`` first when the catalogue is
  empty. Returns ``(case_id, scene)``. Keyword arguments choose the catalogue rows, times
  and token state (see its docstring). Staff HL002 of the example catalogue has the ID
  number :data:`STAFF_HL002_ID` (for self-evaluation tests).

The HTTP side (login, face verification, rating) is `wxbackend.clients.citizen`.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from models.base import utcnow
from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff, Window
from wxbackend.clients.partner import DEFAULT_CASE, resident_id
from wxbackend.context import Context
from wxbackend.security import normalize_id_number, token_digest
from wxbackend.services.cases import reports as cases
from wxbackend.services.cases.tokens import new_scene
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
from wxbackend.services.public import rollups

CATALOG_FILE = Path(__file__).resolve().parents[2] / "conf" / "catalog.example.json"
#: The ID number of staff HL002 (window, HL-CIVIL) in the example catalogue.
STAFF_HL002_ID = "440100198001011232"
#: Catalogue codes of a default case (item → department → center fit together).
DEFAULT_CODES = DEFAULT_CASE

_case_numbers = itertools.count(1)


def make_id_number(seed: int) -> str:
    """A valid 18-character resident ID (GB 11643) for ``seed`` (0 ≤ seed < 10000).

    Born 1990-01-01 in 110105 (Beijing Chaoyang); the sequence part is the seed (a fourth
    digit moves the birth day), so distinct seeds below 1000 give distinct numbers.
    """
    if not 0 <= seed < 10000:
        raise ValueError("seed must be 0–9999")
    return resident_id(
        "110105", f"1990010{seed // 1000}" if seed >= 1000 else "19900101", seed % 1000
    )


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
    reported_at: datetime,
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
        reported_at=reported_at,
    )
    rollups.case_reported(case)
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
    reported_at: datetime | None = None,
    token_expires_at: datetime | None = None,
    token_status: str = "active",
    with_token: bool = True,
    **codes: str | None,
) -> tuple[str, str | None]:
    """Insert a finished case of ``applicant_*`` and one QR token; ``(case_id, scene)``.

    ``codes`` override :data:`DEFAULT_CODES` (``item_code``, ``center_code``,
    ``department_code``, ``window_code``, ``window_staff_no``, ``approver_staff_no``; None
    leaves a window, staff or approver out). ``completed_at`` (naive UTC) defaults to an hour
    ago; ``reported_at`` (when the case reached this server, which with completion opens
    its rating window) defaults to ``completed_at``; the token expires ``qr.ttl_days`` from
    now unless ``token_expires_at`` is given and starts as ``token_status``;
    ``with_token=False`` makes no token (scene None).
    The case id is returned as a string, as the API shows ids.
    """
    unknown = set(codes) - set(DEFAULT_CODES)
    if unknown:
        raise TypeError(f"make_case: unknown arguments {sorted(unknown)}")
    merged = {**DEFAULT_CODES, **codes}
    number = case_no or f"T{next(_case_numbers):06d}-{utcnow().timestamp():.0f}"
    completed = completed_at or utcnow() - timedelta(hours=1)
    case_id, scene = await ctx.db.run(
        _insert_case,
        ctx,
        applicant_name,
        applicant_id_number,
        merged,
        number,
        completed,
        reported_at or completed,
        token_expires_at,
        token_status,
        with_token,
    )
    return str(case_id), scene
