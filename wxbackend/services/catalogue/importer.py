"""Catalogue import (目录导入): centers, departments, items, staff and windows from one JSON file.

The file format is the "Catalogue file" of ``docs/api.md``. An import is all-or-nothing: every
row is checked (fields, formats, references) before anything is written, and the writes run in
one transaction, so an error anywhere leaves the database as it was. Rows are upserted by their
code (``staff_no`` for staff); importing the same file twice changes nothing the second time.

The file describes each row completely: an optional field left out (or null / "") clears the
stored value. A staff member's ID number is never stored: only its keyed hash (purpose
``"id_number"``, the same hash identities use), and it never appears in an error message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import peewee

from models.base import BaseModel, utcnow
from models.catalog import Center, Department, ServiceItem, Staff, Window
from wxbackend.db import database
from wxbackend.security import LookupHasher
from wxbackend.services.catalogue.rows import SECTIONS, CatalogError, CatalogRows, validate_catalog


@dataclass
class ImportReport:
    """What an import did, per section: ``{"centers": {"created": n, "updated": n,
    "unchanged": n}, ...}``."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: {"created": 0, "updated": 0, "unchanged": 0} for s in SECTIONS}
    )

    def count(self, section: str, outcome: str) -> None:
        self.counts[section][outcome] += 1

    def total(self, outcome: str) -> int:
        """Rows with ``outcome`` (created / updated / unchanged) over all sections."""
        return sum(c[outcome] for c in self.counts.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {s: dict(c) for s, c in self.counts.items()}

    def __str__(self) -> str:
        return "; ".join(
            f"{s}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged"
            for s, c in self.counts.items()
        )


def load_catalog_file(path: str) -> Any:
    """Read and parse the JSON file at ``path``; unreadable or invalid JSON → CatalogError
    (with line and column)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except OSError as exc:
        raise CatalogError("catalog", None, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError("catalog", None, f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            "catalog",
            None,
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None


def _upsert(
    model: type[BaseModel],
    key_field: peewee.Field,
    rows: list[tuple[str, dict[str, Any]]],
    report: ImportReport,
    section: str,
) -> dict[str, int]:
    """Create or update ``rows`` (key, values by field name; foreign keys as ids); return
    key → id for every row of the table."""
    existing = {getattr(obj, key_field.name): obj for obj in model.select()}
    now = utcnow()
    for key, values in rows:
        obj = existing.get(key)
        if obj is None:
            obj = model.create(**{key_field.name: key}, **values, updated_at=now)
            existing[key] = obj
            report.count(section, "created")
        elif all(obj.__data__.get(name) == value for name, value in values.items()):
            report.count(section, "unchanged")
        else:
            model.update(**values, updated_at=now).where(
                model._meta.primary_key == obj.get_id()
            ).execute()
            report.count(section, "updated")
    return {key: obj.get_id() for key, obj in existing.items()}


def _write(rows: CatalogRows, report: ImportReport) -> None:
    center_ids = _upsert(
        Center,
        Center.code,
        [(r["code"], {"name": r["name"], "area_code": r["area"]}) for r in rows.centers],
        report,
        "centers",
    )
    dept_ids = _upsert(
        Department,
        Department.code,
        [
            (
                r["code"],
                {
                    "name": r["name"],
                    "center": center_ids[r["center"]],
                    "credit_code": r["credit_code"],
                },
            )
            for r in rows.departments
        ],
        report,
        "departments",
    )
    _upsert(
        ServiceItem,
        ServiceItem.code,
        [
            (r["code"], {"name": r["name"], "department": dept_ids[r["department"]]})
            for r in rows.items
        ],
        report,
        "items",
    )
    staff_ids = _upsert(
        Staff,
        Staff.staff_no,
        [
            (
                r["staff_no"],
                {
                    "name": r["name"],
                    "role": r["role"],
                    "department": dept_ids[r["department"]],
                    "center": center_ids[r["center"]],
                    "photo_url": r["photo_url"],
                    "id_hash": r["id_hash"],
                },
            )
            for r in rows.staff
        ],
        report,
        "staff",
    )
    _upsert(
        Window,
        Window.code,
        [
            (
                r["code"],
                {
                    "name": r["name"],
                    "center": center_ids[r["center"]],
                    "staff": staff_ids[r["staff_no"]] if r["staff_no"] else None,
                },
            )
            for r in rows.windows
        ],
        report,
        "windows",
    )


def import_catalog(data: Any, hasher: LookupHasher) -> ImportReport:
    """Check and upsert the whole catalogue (parsed JSON) in one transaction, in the order
    centers, departments, items, staff, windows. Raises CatalogError (nothing written) on the
    first faulty row. Synchronous: run it on the database thread."""
    report = ImportReport()
    with database.atomic():
        rows = validate_catalog(data, hasher)
        _write(rows, report)
    return report
