"""The one lookup of a case as the citizen side reads it: the case, its catalogue rows and its
staff — with the token a scene names (:func:`find_code`: ``POST /scan``, the code image, a
rating with a scene) or by the case's id (:func:`find_case`: ``GET /cases/{id}``, a rating
with a case id).

Both are one compiled query over the same columns (the scan and the rating are the hot
paths). The catalogue joins are outer, so a missing row shows as None instead of hiding the
token: the caller answers the token's own state (404/410) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peewee import JOIN, Field, Query, Value

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
class CaseRows:
    """A case as the lookup read it: ``case`` is a partial row (the columns of ``_CASE``);
    a catalogue row the database lacks is None."""

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

    def is_staff(self, id_hash: str | None) -> bool:
        """True when ``id_hash`` is the keyed ID hash of the case's window staff or approver."""
        hashes = [s.id_hash for s in (self.window_staff, self.approver) if s is not None]
        return id_hash is not None and id_hash in hashes


@dataclass(frozen=True)
class ScannedCode:
    """A scene's token (a partial row) and its case."""

    token: QrToken
    rows: CaseRows

    @property
    def case(self) -> Case:
        """The token's case (partial row)."""
        return self.rows.case


_TOKEN = (QrToken.id, QrToken.status, QrToken.expires_at, QrToken.token_hash)
_CASE = (
    Case.id,
    Case.case_no,
    Case.first_rated_at,
    Case.completed_at,
    Case.reported_at,
    Case.applicant_id_hash,
    Case.window_staff,
    Case.approver,
)


def _case_query(by_token: bool) -> tuple[Query, Sequence[Field]]:
    """The case, its catalogue and staff rows — by token digest (the token's columns first)
    or by case id: ``param(0)``."""
    window_staff = Staff.alias("window_staff_row")
    approver = Staff.alias("approver_row")
    key = Value(param(0), converter=False)
    fields = (
        *(_TOKEN if by_token else ()),
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
        *(window_staff.id, window_staff.name, window_staff.staff_no),
        *(window_staff.photo_url, window_staff.id_hash),
        *(approver.id, approver.name, approver.staff_no, approver.photo_url, approver.id_hash),
    )
    if by_token:
        query = (
            QrToken.select(*fields)
            .join_from(QrToken, Case, on=(QrToken.case == Case.id))
            .where(QrToken.token_hash == key)
        )
    else:
        query = Case.select(*fields).where(Case.id == key)
    query = (
        query.join_from(Case, ServiceItem, JOIN.LEFT_OUTER, on=(Case.item == ServiceItem.id))
        .join_from(Case, Center, JOIN.LEFT_OUTER, on=(Case.center == Center.id))
        .join_from(Case, Department, JOIN.LEFT_OUTER, on=(Case.department == Department.id))
        .join_from(Case, window_staff, JOIN.LEFT_OUTER, on=(Case.window_staff == window_staff.id))
        .join_from(Case, approver, JOIN.LEFT_OUTER, on=(Case.approver == approver.id))
        .limit(1)
    )
    return query, fields


def _named(row_id: Any, code: str, name: str) -> CodeAndName | None:
    return None if row_id is None else CodeAndName(code, name)


def _staff(
    row_id: Any, name: str, staff_no: str, photo: str | None, id_hash: str | None
) -> StaffRow | None:
    return None if row_id is None else StaffRow(name, staff_no, photo, id_hash)


def _case_rows(row: Sequence[Any]) -> CaseRows:
    case_id, case_no, first_rated_at, completed_at, reported_at = row[:5]
    applicant, staff_id, approver_id = row[5:8]
    rest = row[8:]
    return CaseRows(
        case=Case(
            id=case_id,
            case_no=case_no,
            first_rated_at=first_rated_at,
            completed_at=completed_at,
            reported_at=reported_at,
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


def find_code(scene: Any) -> ScannedCode | None:
    """The token ``scene`` names with its case rows (one compiled query), or None for an
    unknown or malformed scene. Sync: run via ``ctx.db.run``."""
    if not valid_scene(scene):
        return None
    digest = token_digest(scene)
    rows = compiled_rows("cases.case_by_token", lambda: _case_query(True), (digest,))
    if not rows:
        return None
    token_id, status, expires_at, token_hash = rows[0][: len(_TOKEN)]
    token = QrToken(id=token_id, status=status, expires_at=expires_at, token_hash=token_hash)
    return ScannedCode(token, _case_rows(rows[0][len(_TOKEN) :]))


def find_case(case_id: int) -> CaseRows | None:
    """The case ``case_id`` with its rows (one compiled query), or None. Sync."""
    rows = compiled_rows("cases.case_by_id", lambda: _case_query(False), (case_id,))
    return _case_rows(rows[0]) if rows else None


def token_state(scene: Any) -> tuple[QrToken | None, Case | None]:
    """The token a scene names and its case (partial rows), or ``(None, None)``; then
    :func:`wxbackend.services.cases.tokens.check_token_usable`. Sync: run via ``ctx.db.run``."""
    found = find_code(scene)
    return (None, None) if found is None else (found.token, found.case)
