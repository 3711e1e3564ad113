"""Catalogue CRUD of the admin API (目录管理): centers, departments, items, staff, windows.

How each section's rows are queried, shown and validated is ``admin_rows``; partner keys are
``admin_partners``. Reach comes from the permission table: a row beyond ``catalogue.read`` is
404, a write beyond ``catalogue.write`` (``centers.write`` for centers) is 403.

* A staff member's ID number is kept only as its keyed hash (``hasher.hash(normalize_id_number
  (n), "id_number")``); answers show ``has_id_number`` and never the number or its hash.
* ``PUT`` changes any subset of the fields (the key may be repeated but not changed); an
  optional field sent as null or "" is cleared. For staff, ``id_number`` left out keeps the
  stored hash; ``active`` (bool) deactivates or reactivates.
* ``DELETE`` refuses a row still referenced (409 ``in_use``: departments, staff, windows,
  admins, cases, evaluations or tickets point at it). Staff are never deleted — cases and
  ratings name them — so ``DELETE /staff/{staff_no}`` *deactivates* them (``active=false``)
  and frees the windows they staffed; ``PUT {active: true}`` brings them back.
* A center's ``wecom_webhook_key`` (its WeCom robot) is write-only: encrypted with the
  ``cipher``, answered only masked (``admin_rows.robot_key_values``).
* Every write is audited in its transaction (``<singular>.create|update|delete``,
  ``staff.deactivate``), with changed values but never an ID number (shown as ``"set"`` /
  ``"cleared"``).

All functions are synchronous: run them on the database thread (``ctx.db.run``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import peewee

from models.access import Admin
from models.base import utcnow
from models.catalog import Center, Department, Staff, Window
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import FieldCipher, LookupHasher
from wxbackend.services.admin import scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.permissions import Target, authorize
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.catalogue import admin_rows
from wxbackend.services.catalogue.rows import key_field

SECTIONS = ("centers", "departments", "items", "staff", "windows")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
#: The permission whose reach bounds what an admin sees of the catalogue.
READ = "catalogue.read"


@dataclass(frozen=True)
class ListQuery:
    """Filters of a catalogue listing (codes), keyset paginated by the row's key."""

    center: str | None = None
    department: str | None = None
    active: bool | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


# --------------------------------------------------------------------------- reads


def list_rows(section: str, principal: Principal, q: ListQuery) -> dict[str, Any]:
    """The rows of ``section`` in the principal's scope, by key, one page:
    ``{items, next_cursor}``."""
    spec = admin_rows.SPECS[section]
    query = scope.scoped(spec.query(), principal, READ, center=spec.center_column)
    if q.center is not None and section != "centers":
        query = query.where(Center.code == q.center)
    if q.department is not None and section in ("items", "staff"):
        query = query.where(Department.code == q.department)
    if q.active is not None and section == "staff":
        query = query.where(Staff.active == q.active)
    if q.cursor is not None:
        query = query.where(spec.key > q.cursor)
    rows = list(query.order_by(spec.key).limit(q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return {
        "items": [spec.view(r) for r in rows],
        "next_cursor": getattr(rows[-1], spec.key.name) if more else None,
    }


def _fetch(section: str, key: str) -> Any:
    spec = admin_rows.SPECS[section]
    row = spec.query().where(spec.key == key).first()
    if row is None:
        raise errors.NotFound(f"No {spec.singular} {key!r}.")
    return row


def _visible(section: str, principal: Principal, key: str) -> Any:
    row = _fetch(section, key)
    try:
        scope.ensure_visible(principal, READ, admin_rows.row_center_id(section, row))
    except errors.NotFound:
        raise errors.NotFound(f"No {admin_rows.SPECS[section].singular} {key!r}.") from None
    return row


def get_row(section: str, principal: Principal, key: str) -> dict[str, Any]:
    """One row (404 when missing or outside the principal's scope)."""
    return admin_rows.SPECS[section].view(_visible(section, principal, key))


# --------------------------------------------------------------------------- writes


def create_row(
    section: str,
    actor: Actor,
    principal: Principal,
    body: dict[str, Any],
    hasher: LookupHasher,
    cipher: FieldCipher | None = None,
) -> dict[str, Any]:
    """``POST``: a new row (201). 409 ``exists`` when its key is taken, 422 ``invalid_field``
    for a bad value or an unknown reference, 403 for a center the admin may not change."""
    spec = admin_rows.SPECS[section]
    raw, extra = admin_rows.split_body(section, body)
    checked = admin_rows.check(section, raw, hasher)
    extra = _model_extras(section, extra, cipher)
    key = checked[key_field(section)]
    taken = errors.Exists(
        f"This {key_field(section)} is taken: choose another (codes are unique everywhere).",
        field=key_field(section),
    )
    with database.atomic():
        # The caller's reach first, then the key: the answer about a taken key is the same
        # whether the row holding it is the caller's or lies beyond their reach, and says
        # nothing about where it is (issue 12: no probing of other centers' codes).
        if section == "centers":
            authorize(principal, "centers.write", Target())  # of every center
        values = admin_rows.values_of(section, principal, checked)
        values.update(extra)
        if spec.model.select().where(spec.key == key).exists():
            raise taken
        try:
            spec.model.create(**{spec.key.name: key}, **values, updated_at=utcnow())
        except peewee.IntegrityError:
            raise taken from None
        view = spec.view(_fetch(section, key))
        detail = {"values": admin_rows.audit_values(view)}
        detail["values"].update(admin_rows.robot_key_note(extra))
        if section == "staff" and values["id_hash"]:
            detail["values"]["id_number"] = "set"
        record(actor, f"{spec.singular}.create", spec.singular, key, detail)
        if section == "staff" and values["id_hash"]:
            _record_id_link(actor, key, values["id_hash"])
    return view


def _model_extras(
    section: str, extra: dict[str, Any], cipher: FieldCipher | None
) -> dict[str, Any]:
    """The body's extra fields as model values (a center's robot key encrypted)."""
    if section != "centers":
        return extra
    return admin_rows.robot_key_values(extra, cipher)


def _record_id_link(actor: Actor, staff_no: str, id_hash: str | None) -> None:
    """Its own audit entry (``staff.id_number``) each time a staff member's ID number is set
    or cleared: linking a citizen's ID to a clerk refuses that citizen on the clerk's cases,
    so who linked which staff member, when and from where must be easy to find. The entry
    carries a short fingerprint (equal for equal numbers, never the number or its hash)."""
    detail: dict[str, Any] = {"change": admin_rows.id_number_note(id_hash)}
    if id_hash:
        detail["fingerprint"] = hashlib.sha256(f"audit\x00{id_hash}".encode()).hexdigest()[:10]
    record(actor, "staff.id_number", "staff", staff_no, detail)


def update_row(
    section: str,
    actor: Actor,
    principal: Principal,
    key: str,
    body: dict[str, Any],
    hasher: LookupHasher,
    cipher: FieldCipher | None = None,
) -> dict[str, Any]:
    """``PUT``: change any subset of the row's fields (see the module notes)."""
    spec = admin_rows.SPECS[section]
    key_name = key_field(section)
    raw_body, extra = admin_rows.split_body(section, body)
    extra = _model_extras(section, extra, cipher)
    if key_name in raw_body and raw_body[key_name] != key:
        raise errors.InvalidField(f"{key_name} cannot change; create a new row.", field=key_name)
    with database.atomic():
        row = _visible(section, principal, key)
        target = Target(admin_rows.row_center_id(section, row))
        authorize(principal, admin_rows.write_action(section), target)
        before = spec.view(row)
        raw = spec.raw(row)
        raw.update(raw_body)
        checked = admin_rows.check(section, raw, hasher)
        values = admin_rows.values_of(section, principal, checked)
        if section == "staff" and "id_number" not in raw_body:
            values["id_hash"] = row.id_hash
        values.update(extra)
        changed = {k: v for k, v in values.items() if row.__data__.get(k) != v}
        if not changed:
            return before
        _check_move(section, row, changed)
        spec.model.update(**changed, updated_at=utcnow()).where(
            spec.model._meta.primary_key == row.get_id()
        ).execute()
        after = spec.view(_fetch(section, key))
        detail = {k: v for k, v in admin_rows.audit_values(after).items() if before.get(k) != v}
        if "id_hash" in changed:
            detail["id_number"] = admin_rows.id_number_note(changed["id_hash"])
        detail.update(admin_rows.robot_key_note(changed))
        record(actor, f"{spec.singular}.update", spec.singular, key, {"changed": detail})
        if section == "staff" and "id_hash" in changed:
            _record_id_link(actor, key, changed["id_hash"])
    return after


def _check_move(section: str, row: Any, changed: dict[str, Any]) -> None:
    """A department moving to another center must not strand its staff or handlers; a clerk
    moving to another center must not stay on windows of the old one (409 ``in_use``)."""
    if section == "departments" and "center" in changed:
        if Staff.select().where(Staff.department == row.id).exists():
            raise errors.InUse("Move or reassign the department's staff first.", field="center")
        if Admin.select().where(Admin.department == row.id).exists():
            raise errors.InUse("Reassign the department's handlers first.", field="center")
    if section == "staff" and "center" in changed:
        windows = Window.select().where(
            (Window.staff == row.id) & (Window.center != changed["center"])
        )
        if windows.exists():
            raise errors.InUse("Take the clerk off their windows first.", field="center")


def delete_row(section: str, actor: Actor, principal: Principal, key: str) -> None:
    """``DELETE``: remove an unreferenced row (409 ``in_use`` otherwise); staff are
    deactivated instead (see the module notes)."""
    spec = admin_rows.SPECS[section]
    with database.atomic():
        row = _visible(section, principal, key)
        target = Target(admin_rows.row_center_id(section, row))
        authorize(principal, admin_rows.write_action(section), target)
        if section == "staff":
            _deactivate(actor, row)
            return
        users = [name for name, column in spec.used_by if _referenced(column, row.get_id())]
        if users:
            raise errors.InUse(
                f"The {spec.singular} {key!r} is still used by: {', '.join(users)}.",
                used_by=users,
            )
        try:
            with database.atomic():
                row.delete_instance()
        except peewee.IntegrityError:
            raise errors.InUse(f"The {spec.singular} {key!r} is still in use.") from None
        record(actor, f"{spec.singular}.delete", spec.singular, key, {})


def _referenced(column: peewee.Field, row_id: int) -> bool:
    return column.model.select().where(column == row_id).exists()


def _deactivate(actor: Actor, staff: Staff) -> None:
    if not staff.active:
        return
    windows = [w.code for w in Window.select(Window.code).where(Window.staff == staff.id)]
    Window.update(staff=None, updated_at=utcnow()).where(Window.staff == staff.id).execute()
    Staff.update(active=False, updated_at=utcnow()).where(Staff.id == staff.id).execute()
    record(actor, "staff.deactivate", "staff", staff.staff_no, {"windows_cleared": windows})
