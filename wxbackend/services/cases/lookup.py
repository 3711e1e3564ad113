"""The one lookup of a scanned code (扫码): the token a scene names, its case, the case's
catalogue rows and its staff — read by the scan (``POST /scan``), the code image and the
rating (``POST /evaluations`` with a scene).

One compiled query (the scan and the rating are the hot paths). The catalogue joins are
outer, so a missing row shows as None instead of hiding the token: the caller answers the
token's own state (404/410) first, then decides what a missing row means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import JOIN, Field, Query

from models.case import Case, QrToken
from models.catalog import Center, Department, ServiceItem, Staff
from wxbackend.db import compiled_rows, param
from wxbackend.security import token_digest
from wxbackend.services.cases.tokens import valid_scene


@dataclass(frozen=True)
class CodeAndName:
    """A catalogue row as the case summary shows it."""

    code: str
    name: str


@dataclass(frozen=True)
class StaffRow:
    """A staff member of the case: what the summary shows and the keyed ID hash that tells
    a clerk rating their own case (``self_evaluation_forbidden``)."""

    name: str
    staff_no: str
    photo_url: str | None
    id_hash: str | None


@dataclass(frozen=True)
class ScannedCode:
    """A scene's token and its case, as :func:`find_code` read them.

    ``token`` and ``case`` are partial rows (the columns below only). A catalogue row or a
    staff row the case names but the database lacks is None (see ``dangling_staff``).
    """

    token: QrToken
    case: Case
    item: CodeAndName | None
    center: CodeAndName | None
    department: CodeAndName | None
    window_staff: StaffRow | None
    approver: StaffRow | None

    @property
    def catalogue_complete(self) -> bool:
        """The case's item, center and department rows all exist."""
        return None not in (self.item, self.center, self.department)

    @property
    def dangling_staff(self) -> bool:
        """The case names a staff member whose row is missing."""
        return (self.case.window_staff_id is not None and self.window_staff is None) or (
            self.case.approver_id is not None and self.approver is None
        )

    def staff_id_hashes(self) -> tuple[str | None, str | None]:
        """The keyed ID hashes of the case's window staff and approver (None when unknown)."""
        return (
            self.window_staff.id_hash if self.window_staff is not None else None,
            self.approver.id_hash if self.approver is not None else None,
        )


_TOKEN = (QrToken.id, QrToken.status, QrToken.expires_at, QrToken.token_hash)
_CASE = (
    Case.id,
    Case.case_no,
    Case.first_rated_at,
    Case.completed_at,
    Case.applicant_id_hash,
    Case.window_staff,
    Case.approver,
)


def _code_query() -> tuple[Query, Sequence[Field]]:
    window_staff = Staff.alias("window_staff_row")
    approver = Staff.alias("approver_row")
    fields = (
        *_TOKEN,
        *_CASE,
        ServiceItem.id,
        ServiceItem.code,
        ServiceItem.name,
        Center.id,
        Center.code,
        Center.name,
        Department.id,
        Department.code,
        Department.name,
        window_staff.id,
        window_staff.name,
        window_staff.staff_no,
        window_staff.photo_url,
        window_staff.id_hash,
        approver.id,
        approver.name,
        approver.staff_no,
        approver.photo_url,
        approver.id_hash,
    )
    query = (
        QrToken.select(*fields)
        .join_from(QrToken, Case, on=(QrToken.case == Case.id))
        .join_from(Case, ServiceItem, JOIN.LEFT_OUTER, on=(Case.item == ServiceItem.id))
        .join_from(Case, Center, JOIN.LEFT_OUTER, on=(Case.center == Center.id))
        .join_from(Case, Department, JOIN.LEFT_OUTER, on=(Case.department == Department.id))
        .join_from(Case, window_staff, JOIN.LEFT_OUTER, on=(Case.window_staff == window_staff.id))
        .join_from(Case, approver, JOIN.LEFT_OUTER, on=(Case.approver == approver.id))
        .where(QrToken.token_hash == param(0))
        .limit(1)
    )
    return query, fields


def _named(row_id: Any, code: str, name: str) -> CodeAndName | None:
    return None if row_id is None else CodeAndName(code, name)


def _staff(
    row_id: Any, name: str, staff_no: str, photo: str | None, id_hash: str | None
) -> StaffRow | None:
    return None if row_id is None else StaffRow(name, staff_no, photo, id_hash)


def find_code(scene: Any) -> ScannedCode | None:
    """The token ``scene`` names with its case, catalogue and staff rows (one compiled
    query), or None for an unknown or malformed scene. Sync: run via ``ctx.db.run``."""
    if not valid_scene(scene):
        return None
    rows = compiled_rows("cases.scanned_code", _code_query, (token_digest(scene),))
    if not rows:
        return None
    row = rows[0]
    t, c = len(_TOKEN), len(_TOKEN) + len(_CASE)
    token_id, status, expires_at, token_hash = row[:t]
    case_id, case_no, first_rated_at, completed_at, applicant, staff_id, approver_id = row[t:c]
    rest = row[c:]
    return ScannedCode(
        token=QrToken(id=token_id, status=status, expires_at=expires_at, token_hash=token_hash),
        case=Case(
            id=case_id,
            case_no=case_no,
            first_rated_at=first_rated_at,
            completed_at=completed_at,
            applicant_id_hash=applicant,
            window_staff=staff_id,
            approver=approver_id,
        ),
        item=_named(*rest[0:3]),
        center=_named(*rest[3:6]),
        department=_named(*rest[6:9]),
        window_staff=_staff(*rest[9:14]),
        approver=_staff(*rest[14:19]),
    )


def token_state(scene: Any) -> tuple[QrToken | None, Case | None]:
    """The token a scene names and its case (partial rows), or ``(None, None)``; then
    :func:`wxbackend.services.cases.tokens.check_token_usable`. Sync: run via ``ctx.db.run``."""
    found = find_code(scene)
    return (None, None) if found is None else (found.token, found.case)
