"""The rows of a catalogue file (目录文件), checked: fields, formats and references.

The file format is the "Catalogue file" of ``docs/api.md``; :mod:`.importer` writes what
:func:`validate_catalog` accepts. The file describes each row completely: an optional field
left out (or null / "") clears the stored value. A staff member's ID number is never kept:
only its keyed hash (purpose ``"id_number"``, the same hash identities use), and it never
appears in an error message. The console's one-row edits use :func:`validate_row`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import peewee
from stdnum.cn import uscc

from models.catalog import STAFF_ROLES, Center, Department, ServiceItem, Staff, Window
from wxbackend.security import LookupHasher, normalize_id_number
from wxbackend.services.citizens import id_numbers

SECTIONS = ("centers", "departments", "items", "staff", "windows")
ID_HASH_PURPOSE = "id_number"

_CODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_AREA_RE = re.compile(r"[0-9]{6,12}")

# section -> (key field, required fields, optional fields)
_FIELDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "centers": ("code", ("code", "name", "area_code"), ()),
    "departments": ("code", ("code", "name", "center"), ("credit_code",)),
    "items": ("code", ("code", "name", "department"), ()),
    "staff": (
        "staff_no",
        ("staff_no", "name", "role", "department", "center"),
        ("photo_url", "id_number"),
    ),
    "windows": ("code", ("code", "name", "center"), ("staff_no",)),
}


class CatalogError(ValueError):
    """The catalogue file is wrong; nothing was imported.

    ``section`` is the file's section (``"centers"`` … ``"windows"``, or ``"catalog"`` for the
    file as a whole) and ``index`` the 0-based row in it (None when no row is at fault). The
    message names both, and the row's code when it has one:
    ``staff[3] (HL009): unknown department "X"``. ``field`` names the faulty field when one
    is at fault (the admin API answers it as 422 ``invalid_field`` with that ``field``).
    """

    def __init__(
        self,
        section: str,
        index: int | None,
        message: str,
        key: str | None = None,
        field: str | None = None,
    ):
        self.section = section
        self.index = index
        self.key = key
        self.field = field
        self.reason = message
        where = section if index is None else f"{section}[{index}]"
        if key:
            where += f" ({key})"
        super().__init__(f"{where}: {message}")


@dataclass
class CatalogRows:
    """The file's rows, checked and normalised; references are still codes. Staff rows carry
    ``id_hash`` (never the ID number)."""

    centers: list[dict[str, Any]] = field(default_factory=list)
    departments: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    staff: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)


def _quote(value: str, limit: int = 80) -> str:
    shown = value if len(value) <= limit else value[:limit] + "…"
    return json.dumps(shown, ensure_ascii=False)


class _Row:
    """One raw row being checked: reads fields and raises CatalogError naming the row."""

    def __init__(self, section: str, index: int | None, raw: Any):
        self.section, self.index = section, index
        key_field, required, optional = _FIELDS[section]
        self.key: str | None = None
        if not isinstance(raw, dict):
            self.fail("must be an object")
        key = raw.get(key_field)
        if isinstance(key, str) and _CODE_RE.fullmatch(key.strip()):
            self.key = key.strip()
        for name in raw:
            if name not in required and name not in optional:
                self.fail(f"unknown field {_quote(str(name))}", str(name))
        self.raw: dict[str, Any] = raw

    def fail(self, message: str, field: str | None = None) -> None:
        raise CatalogError(self.section, self.index, message, self.key, field)

    def text(self, name: str, max_length: int, optional: bool = False) -> str:
        """A trimmed, non-empty string without control characters (optional: "" if absent)."""
        value = self.raw.get(name)
        if value is None or (optional and isinstance(value, str) and not value.strip()):
            if optional:
                return ""
            self.fail(f"missing field {name}", name)
        if not isinstance(value, str):
            self.fail(f"{name} must be a string", name)
        value = value.strip()
        if not value:
            self.fail(f"{name} must not be empty", name)
        if len(value) > max_length:
            self.fail(f"{name} is longer than {max_length} characters", name)
        if any(unicodedata.category(c) == "Cc" for c in value):
            self.fail(f"{name} contains control characters", name)
        return value

    def code(self, name: str, optional: bool = False) -> str:
        value = self.text(name, 64, optional)
        if value and not _CODE_RE.fullmatch(value):
            self.fail(f"{name} {_quote(value)} is not a code (letters, digits, _ . -)", name)
        return value


def _max(model_field: peewee.Field) -> int:
    return model_field.max_length


def _check_center(row: _Row) -> dict[str, Any]:
    area = row.text("area_code", _max(Center.area_code))
    if not _AREA_RE.fullmatch(area):
        row.fail(f"area_code {_quote(area)} must be 6 to 12 digits", "area_code")
    return {"code": row.code("code"), "name": row.text("name", _max(Center.name)), "area": area}


def _check_department(row: _Row) -> dict[str, Any]:
    credit = row.text("credit_code", 64, optional=True)
    if credit:
        credit = uscc.compact(credit)
        if not uscc.is_valid(credit):
            row.fail(f"invalid credit_code {_quote(credit)} (统一社会信用代码)", "credit_code")
    return {
        "code": row.code("code"),
        "name": row.text("name", _max(Department.name)),
        "center": row.code("center"),
        "credit_code": credit,
    }


def _check_item(row: _Row) -> dict[str, Any]:
    return {
        "code": row.code("code"),
        "name": row.text("name", _max(ServiceItem.name)),
        "department": row.code("department"),
    }


def _check_staff(row: _Row, hasher: LookupHasher) -> dict[str, Any]:
    role = row.text("role", _max(Staff.role))
    if role not in STAFF_ROLES:
        row.fail(f"role {_quote(role)} must be one of {', '.join(STAFF_ROLES)}", "role")
    photo = row.text("photo_url", _max(Staff.photo_url), optional=True)
    if photo:
        parts = urlsplit(photo)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in photo:
            row.fail("photo_url must be an http(s) URL", "photo_url")
    id_hash = None
    raw_id = row.raw.get("id_number")
    if raw_id is not None and not (isinstance(raw_id, str) and not raw_id.strip()):
        number = normalize_id_number(raw_id) if isinstance(raw_id, str) else ""
        if not id_numbers.is_valid(number):
            row.fail("invalid id_number", "id_number")  # never echo the number
        id_hash = hasher.hash(number, ID_HASH_PURPOSE)
    return {
        "staff_no": row.code("staff_no"),
        "name": row.text("name", _max(Staff.name)),
        "role": role,
        "department": row.code("department"),
        "center": row.code("center"),
        "photo_url": photo,
        "id_hash": id_hash,
    }


def _check_window(row: _Row) -> dict[str, Any]:
    return {
        "code": row.code("code"),
        "name": row.text("name", _max(Window.name)),
        "center": row.code("center"),
        "staff_no": row.code("staff_no", optional=True) or None,
    }


def _check_rows(data: Any, hasher: LookupHasher) -> CatalogRows:
    """Shape and format of every row, and no code twice in a section."""
    if not isinstance(data, dict):
        raise CatalogError("catalog", None, "the file must hold a JSON object")
    for name in data:
        if name not in SECTIONS:
            raise CatalogError(
                "catalog",
                None,
                f"unknown section {_quote(str(name))} (known: {', '.join(SECTIONS)})",
            )
    rows = CatalogRows()
    for section in SECTIONS:
        raw_rows = data.get(section)
        if raw_rows is None:
            continue
        if not isinstance(raw_rows, list):
            raise CatalogError(section, None, "must be a list of rows")
        key_field = _FIELDS[section][0]
        seen: dict[str, int] = {}
        out: list[dict[str, Any]] = getattr(rows, section)
        for index, raw in enumerate(raw_rows):
            row = _Row(section, index, raw)
            checked = _check_staff(row, hasher) if section == "staff" else _CHECKERS[section](row)
            key = checked[key_field]
            if key in seen:
                row.fail(f"duplicate {key_field} {_quote(key)} (also {section}[{seen[key]}])")
            seen[key] = index
            checked["_index"] = index
            out.append(checked)
    return rows


_CHECKERS = {
    "centers": _check_center,
    "departments": _check_department,
    "items": _check_item,
    "windows": _check_window,
}


def validate_row(section: str, raw: Any, hasher: LookupHasher) -> dict[str, Any]:
    """Check one row of ``section`` exactly as the import checks a row of the file (fields,
    formats, the ID number's checksum; not references) and return it normalised as the import
    does: references stay codes, a center's area code is under ``"area"``, a staff row carries
    ``id_hash`` (None without an ID number) and never the number.

    Raises :class:`CatalogError` (index None) whose ``field`` names the faulty field. Needs no
    database. The admin API's catalogue CRUD validates through this.
    """
    if section not in _FIELDS:
        raise ValueError(f"unknown catalogue section {section!r}")
    row = _Row(section, None, raw)
    return _check_staff(row, hasher) if section == "staff" else _CHECKERS[section](row)


def key_field(section: str) -> str:
    """The field that identifies a row of ``section``: ``staff_no`` for staff, else ``code``."""
    return _FIELDS[section][0]


# --------------------------------------------------------------------------- references


def _fail_ref(section: str, row: dict[str, Any], message: str) -> None:
    key = row["staff_no"] if section == "staff" else row["code"]
    raise CatalogError(section, row["_index"], message, key)


def _check_references(rows: CatalogRows) -> None:
    """Every code referred to exists in the file or, failing that, in the database; staff
    work in a department of their own center; a window's clerk belongs to its center."""
    centers = {c.code for c in Center.select(Center.code)}
    centers.update(r["code"] for r in rows.centers)

    dept_center = {
        d.code: d.center.code for d in Department.select(Department.code, Center.code).join(Center)
    }
    for r in rows.departments:
        if r["center"] not in centers:
            _fail_ref("departments", r, f"unknown center {_quote(r['center'])}")
        dept_center[r["code"]] = r["center"]

    for r in rows.items:
        if r["department"] not in dept_center:
            _fail_ref("items", r, f"unknown department {_quote(r['department'])}")

    staff_center = {
        s.staff_no: s.center.code for s in Staff.select(Staff.staff_no, Center.code).join(Center)
    }
    for r in rows.staff:
        if r["center"] not in centers:
            _fail_ref("staff", r, f"unknown center {_quote(r['center'])}")
        if r["department"] not in dept_center:
            _fail_ref("staff", r, f"unknown department {_quote(r['department'])}")
        if dept_center[r["department"]] != r["center"]:
            _fail_ref(
                "staff",
                r,
                f"department {_quote(r['department'])} belongs to center "
                f"{_quote(dept_center[r['department']])}, not {_quote(r['center'])}",
            )
        staff_center[r["staff_no"]] = r["center"]

    for r in rows.windows:
        if r["center"] not in centers:
            _fail_ref("windows", r, f"unknown center {_quote(r['center'])}")
        no = r["staff_no"]
        if no is not None and no not in staff_center:
            _fail_ref("windows", r, f"unknown staff_no {_quote(no)}")
        if no is not None and staff_center[no] != r["center"]:
            _fail_ref("windows", r, f"staff {_quote(no)} works in another center")

    _check_stored_dependents(rows, dept_center, staff_center)


def _check_stored_dependents(
    rows: CatalogRows, dept_center: dict[str, str], staff_center: dict[str, str]
) -> None:
    """A move of a department or a clerk to another center must not strand stored staff or
    windows that the file does not mention."""
    file_staff = {r["staff_no"] for r in rows.staff}
    moved_depts = {r["code"]: r for r in rows.departments}
    if moved_depts:
        query = (
            Staff.select(Staff.staff_no, Department.code, Center.code)
            .join(Department, on=Staff.department == Department.id)
            .switch(Staff)
            .join(Center, on=Staff.center == Center.id)
            .where(Department.code.in_(list(moved_depts)))
        )
        for s in query:
            r = moved_depts[s.department.code]
            if s.staff_no not in file_staff and s.center.code != r["center"]:
                _fail_ref(
                    "departments",
                    r,
                    f"moving to center {_quote(r['center'])} would leave staff "
                    f"{_quote(s.staff_no)} in a department of another center",
                )
    file_windows = {r["code"] for r in rows.windows}
    moved_staff = {r["staff_no"]: r for r in rows.staff}
    if moved_staff:
        query = (
            Window.select(Window.code, Staff.staff_no, Center.code)
            .join(Staff, on=Window.staff == Staff.id)
            .switch(Window)
            .join(Center, on=Window.center == Center.id)
            .where(Staff.staff_no.in_(list(moved_staff)))
        )
        for w in query:
            r = moved_staff[w.staff.staff_no]
            if w.code not in file_windows and w.center.code != r["center"]:
                _fail_ref(
                    "staff",
                    r,
                    f"moving to center {_quote(r['center'])} would leave window "
                    f"{_quote(w.code)} of another center staffed by them",
                )


def validate_catalog(data: Any, hasher: LookupHasher) -> CatalogRows:
    """Check the whole catalogue (parsed JSON) and return its normalised rows. References are
    resolved against the file first, then the database (which must be bound). Raises
    CatalogError naming the first faulty row. Writes nothing."""
    rows = _check_rows(data, hasher)
    _check_references(rows)
    return rows
