"""Catalogue CRUD of the admin API (目录管理): centers, departments, items, staff, windows,
and partner keys (合作方密钥).

Rows are validated exactly like rows of the catalogue file (``catalog.validate_row``: codes,
names, area codes, 统一社会信用代码, staff role ``window``/``approver``, photo URL, the ID
number's GB 11643 checksum); references are codes, checked against the database and against
the acting admin's scope (``wxbackend.services.admin.scope``): a row of another center is 404, a
reference to a center the admin may not change is 403.

* A staff member's ID number is kept only as its keyed hash (``hasher.hash(normalize_id_number
  (n), "id_number")``); answers show ``has_id_number`` and never the number or its hash.
* ``PUT`` changes any subset of the fields (the key may be repeated but not changed); an
  optional field sent as null or "" is cleared. For staff, ``id_number`` left out keeps the
  stored hash; ``active`` (bool) deactivates or reactivates.
* ``DELETE`` refuses a row still referenced (409 ``in_use``: departments, staff, windows,
  admins, cases, evaluations or tickets point at it). Staff are never deleted — cases and
  ratings name them — so ``DELETE /staff/{staff_no}`` *deactivates* them (``active=false``)
  and frees the windows they staffed; ``PUT {active: true}`` brings them back.
* Every write is audited in its transaction (``<singular>.create|update|delete``,
  ``staff.deactivate``, ``partner.create|revoke``), with changed values but never an ID number
  (shown as ``"set"`` / ``"cleared"``) or a secret.

All functions are synchronous: run them on the database thread (``ctx.db.run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from models.access import Admin, Partner
from models.base import BaseModel, utcnow
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff, Window
from models.evaluation import Evaluation
from models.ticket import Ticket
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import FieldCipher, LookupHasher
from wxbackend.services.admin import scope
from wxbackend.services.admin.accounts import AccountError, create_partner
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.catalogue.rows import CatalogError, key_field, row_fields, validate_row
from wxbackend.timefmt import iso

SECTIONS = ("centers", "departments", "items", "staff", "windows")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500


@dataclass(frozen=True)
class ListQuery:
    """Filters of a catalogue listing (codes), keyset paginated by the row's key."""

    center: str | None = None
    department: str | None = None
    active: bool | None = None
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class _Spec:
    """How the CRUD handles one section."""

    singular: str
    model: type[BaseModel]
    key: peewee.Field
    center_column: peewee.Field
    query: Callable[[], peewee.Select]
    view: Callable[[Any], dict[str, Any]]
    raw: Callable[[Any], dict[str, Any]]
    used_by: tuple[tuple[str, peewee.Field], ...] = ()


# --------------------------------------------------------------------------- views


def _center_view(c: Center) -> dict[str, Any]:
    return {
        "code": c.code,
        "name": c.name,
        "area_code": c.area_code,
        "updated_at": iso(c.updated_at),
    }


def _department_view(d: Department) -> dict[str, Any]:
    return {
        "code": d.code,
        "name": d.name,
        "center": d.center.code,
        "credit_code": d.credit_code or None,
        "updated_at": iso(d.updated_at),
    }


def _item_view(i: ServiceItem) -> dict[str, Any]:
    return {
        "code": i.code,
        "name": i.name,
        "department": i.department.code,
        "center": i.department.center.code,
        "updated_at": iso(i.updated_at),
    }


def _staff_view(s: Staff) -> dict[str, Any]:
    return {
        "staff_no": s.staff_no,
        "name": s.name,
        "role": s.role,
        "department": s.department.code,
        "center": s.center.code,
        "photo_url": s.photo_url or None,
        "has_id_number": s.id_hash is not None,
        "active": s.active,
        "updated_at": iso(s.updated_at),
    }


def _window_view(w: Window) -> dict[str, Any]:
    return {
        "code": w.code,
        "name": w.name,
        "center": w.center.code,
        "staff_no": w.staff.staff_no if w.staff_id else None,
        "updated_at": iso(w.updated_at),
    }


# --------------------------------------------------------------------------- queries


def _departments() -> peewee.Select:
    return Department.select(Department, Center).join(Center)


def _items() -> peewee.Select:
    return (
        ServiceItem.select(ServiceItem, Department, Center)
        .join(Department)
        .join(Center, on=Department.center == Center.id)
    )


def _staff() -> peewee.Select:
    return (
        Staff.select(Staff, Department, Center)
        .join(Department, on=Staff.department == Department.id)
        .switch(Staff)
        .join(Center, on=Staff.center == Center.id)
    )


def _windows() -> peewee.Select:
    return (
        Window.select(Window, Center, Staff)
        .join(Center, on=Window.center == Center.id)
        .switch(Window)
        .join(Staff, peewee.JOIN.LEFT_OUTER, on=Window.staff == Staff.id)
    )


_SPECS: dict[str, _Spec] = {
    "centers": _Spec(
        "center",
        Center,
        Center.code,
        Center.id,
        Center.select,
        _center_view,
        lambda c: {"code": c.code, "name": c.name, "area_code": c.area_code},
        (
            ("departments", Department.center),
            ("staff", Staff.center),
            ("windows", Window.center),
            ("admins", Admin.center),
            ("cases", Case.center),
            ("evaluations", Evaluation.center),
            ("tickets", Ticket.center),
        ),
    ),
    "departments": _Spec(
        "department",
        Department,
        Department.code,
        Department.center,
        _departments,
        _department_view,
        lambda d: {
            "code": d.code,
            "name": d.name,
            "center": d.center.code,
            "credit_code": d.credit_code,
        },
        (
            ("items", ServiceItem.department),
            ("staff", Staff.department),
            ("admins", Admin.department),
            ("cases", Case.department),
            ("evaluations", Evaluation.department),
            ("tickets", Ticket.department),
        ),
    ),
    "items": _Spec(
        "item",
        ServiceItem,
        ServiceItem.code,
        Department.center,
        _items,
        _item_view,
        lambda i: {"code": i.code, "name": i.name, "department": i.department.code},
        (("cases", Case.item), ("evaluations", Evaluation.item)),
    ),
    "staff": _Spec(
        "staff",
        Staff,
        Staff.staff_no,
        Staff.center,
        _staff,
        _staff_view,
        lambda s: {
            "staff_no": s.staff_no,
            "name": s.name,
            "role": s.role,
            "department": s.department.code,
            "center": s.center.code,
            "photo_url": s.photo_url,
        },
    ),
    "windows": _Spec(
        "window",
        Window,
        Window.code,
        Window.center,
        _windows,
        _window_view,
        lambda w: {
            "code": w.code,
            "name": w.name,
            "center": w.center.code,
            "staff_no": w.staff.staff_no if w.staff_id else None,
        },
        (("cases", Case.window),),
    ),
}

#: Body fields of POST/PUT per section besides the catalogue file's (staff: ``active``).
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {"staff": ("active",)}


def body_fields(section: str) -> tuple[str, ...]:
    """The fields a POST/PUT body of ``section`` may carry."""
    return row_fields(section) + EXTRA_FIELDS.get(section, ())


def _row_center_id(section: str, row: Any) -> int:
    if section == "centers":
        return row.id
    if section == "items":
        return row.department.center_id
    return row.center_id


# --------------------------------------------------------------------------- reads


def list_rows(section: str, principal: Principal, q: ListQuery) -> dict[str, Any]:
    """The rows of ``section`` in the principal's scope, by key, one page:
    ``{items, next_cursor}``."""
    spec = _SPECS[section]
    query = scope.scoped(spec.query(), principal, center=spec.center_column)
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
    spec = _SPECS[section]
    row = spec.query().where(spec.key == key).first()
    if row is None:
        raise errors.NotFound(f"No {spec.singular} {key!r}.")
    return row


def _visible(section: str, principal: Principal, key: str) -> Any:
    row = _fetch(section, key)
    try:
        scope.ensure_visible(principal, _row_center_id(section, row))
    except errors.NotFound:
        raise errors.NotFound(f"No {_SPECS[section].singular} {key!r}.") from None
    return row


def get_row(section: str, principal: Principal, key: str) -> dict[str, Any]:
    """One row (404 when missing or outside the principal's scope)."""
    return _SPECS[section].view(_visible(section, principal, key))


# --------------------------------------------------------------------------- validation


def _check(section: str, raw: dict[str, Any], hasher: LookupHasher) -> dict[str, Any]:
    try:
        return validate_row(section, raw, hasher)
    except CatalogError as exc:
        raise errors.InvalidField(exc.reason, field=exc.field) from None


def _center_ref(principal: Principal, code: str, field: str = "center") -> Center:
    center = Center.get_or_none(Center.code == code)
    if center is None:
        raise errors.InvalidField(f"Unknown center {code!r}.", field=field)
    scope.ensure_writable(principal, center.id)
    return center


def _department_ref(principal: Principal, code: str) -> Department:
    department = Department.get_or_none(Department.code == code)
    if department is None:
        raise errors.InvalidField(f"Unknown department {code!r}.", field="department")
    scope.ensure_writable(principal, department.center_id)
    return department


def _values(section: str, principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """The model values of a checked row: references resolved to ids, each one checked
    to exist and to lie within what the principal may change."""
    if section == "centers":
        return {"name": row["name"], "area_code": row["area"]}
    if section == "departments":
        center = _center_ref(principal, row["center"])
        return {"name": row["name"], "center": center.id, "credit_code": row["credit_code"]}
    if section == "items":
        return {"name": row["name"], "department": _department_ref(principal, row["department"]).id}
    if section == "staff":
        center = _center_ref(principal, row["center"])
        department = _department_ref(principal, row["department"])
        if department.center_id != center.id:
            raise errors.InvalidField(
                f"Department {department.code!r} is not a department of center {center.code!r}.",
                field="department",
            )
        return {
            "name": row["name"],
            "role": row["role"],
            "department": department.id,
            "center": center.id,
            "photo_url": row["photo_url"],
            "id_hash": row["id_hash"],
        }
    # windows
    center = _center_ref(principal, row["center"])
    staff_id = None
    if row["staff_no"]:
        staff = Staff.get_or_none(Staff.staff_no == row["staff_no"])
        if staff is None or staff.center_id != center.id:
            raise errors.InvalidField(
                f"Unknown staff {row['staff_no']!r} in center {center.code!r}.", field="staff_no"
            )
        if not staff.active:
            raise errors.InvalidField(f"Staff {row['staff_no']!r} is inactive.", field="staff_no")
        staff_id = staff.id
    return {"name": row["name"], "center": center.id, "staff": staff_id}


def _split_body(section: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(catalogue-file fields, extra fields such as staff ``active``)."""
    extra_names = EXTRA_FIELDS.get(section, ())
    raw = {k: v for k, v in body.items() if k not in extra_names}
    extra = {k: v for k, v in body.items() if k in extra_names}
    return raw, extra


# --------------------------------------------------------------------------- audit detail


def _audit_values(view: dict[str, Any]) -> dict[str, Any]:
    """A view as audit detail: the values, without timestamps or flags."""
    return {k: v for k, v in view.items() if k not in ("updated_at", "has_id_number")}


def _id_number_note(id_hash: str | None) -> str:
    return "set" if id_hash else "cleared"


# --------------------------------------------------------------------------- writes


def create_row(
    section: str, actor: Actor, principal: Principal, body: dict[str, Any], hasher: LookupHasher
) -> dict[str, Any]:
    """``POST``: a new row (201). 409 ``exists`` when its key is taken, 422 ``invalid_field``
    for a bad value or an unknown reference, 403 for a center the admin may not change."""
    spec = _SPECS[section]
    raw, extra = _split_body(section, body)
    checked = _check(section, raw, hasher)
    key = checked[key_field(section)]
    with database.atomic():
        if spec.model.select().where(spec.key == key).exists():
            raise errors.Exists(f"A {spec.singular} {key!r} exists.", field=key_field(section))
        if section == "centers":
            scope.ensure_writable(principal, None)  # a superadmin confined to a center: 403
        values = _values(section, principal, checked)
        values.update(extra)
        try:
            spec.model.create(**{spec.key.name: key}, **values, updated_at=utcnow())
        except peewee.IntegrityError:
            raise errors.Exists(f"A {spec.singular} {key!r} exists.") from None
        view = spec.view(_fetch(section, key))
        detail = {"values": _audit_values(view)}
        if section == "staff" and values["id_hash"]:
            detail["values"]["id_number"] = "set"
        record(actor, f"{spec.singular}.create", spec.singular, key, detail)
    return view


def update_row(
    section: str,
    actor: Actor,
    principal: Principal,
    key: str,
    body: dict[str, Any],
    hasher: LookupHasher,
) -> dict[str, Any]:
    """``PUT``: change any subset of the row's fields (see the module notes)."""
    spec = _SPECS[section]
    key_name = key_field(section)
    raw_body, extra = _split_body(section, body)
    if key_name in raw_body and raw_body[key_name] != key:
        raise errors.InvalidField(f"{key_name} cannot change; create a new row.", field=key_name)
    with database.atomic():
        row = _visible(section, principal, key)
        scope.ensure_writable(principal, _row_center_id(section, row))
        before = spec.view(row)
        raw = spec.raw(row)
        raw.update(raw_body)
        checked = _check(section, raw, hasher)
        values = _values(section, principal, checked)
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
        detail = {k: v for k, v in _audit_values(after).items() if before.get(k) != v}
        if "id_hash" in changed:
            detail["id_number"] = _id_number_note(changed["id_hash"])
        record(actor, f"{spec.singular}.update", spec.singular, key, {"changed": detail})
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
    spec = _SPECS[section]
    with database.atomic():
        row = _visible(section, principal, key)
        scope.ensure_writable(principal, _row_center_id(section, row))
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


# --------------------------------------------------------------------------- partners


def _partner_view(p: Partner) -> dict[str, Any]:
    return {
        "key_id": p.key_id,
        "name": p.name,
        "created_at": iso(p.created_at),
        "revoked_at": iso(p.revoked_at),
    }


def list_partners() -> list[dict[str, Any]]:
    """Every partner key, newest first (never a secret)."""
    return [_partner_view(p) for p in Partner.select().order_by(Partner.id.desc())]


def add_partner(actor: Actor, name: str, cipher: FieldCipher) -> dict[str, Any]:
    """A new partner key: its view plus ``secret``, shown this once (stored encrypted).
    Audited ``partner.create`` (name and key id only)."""
    with database.atomic():
        try:
            key = create_partner(name, cipher)
        except AccountError as exc:
            raise errors.InvalidField(str(exc), field=exc.field) from None
        view = _partner_view(Partner.get(Partner.key_id == key.key_id))
        record(actor, "partner.create", "partner", key.key_id, {"name": view["name"]})
    return {**view, "secret": key.secret}


def revoke_partner(actor: Actor, key_id: str) -> dict[str, Any]:
    """Revoke a key (idempotent; audited ``partner.revoke`` the first time). Its signed
    requests fail from then on once the caller runs ``partner_auth.announce_key_change``
    (other processes: within about a second, see ``partner_auth``)."""
    with database.atomic():
        partner = Partner.get_or_none(Partner.key_id == key_id)
        if partner is None:
            raise errors.NotFound(f"No partner key {key_id!r}.")
        if partner.revoked_at is None:
            Partner.update(revoked_at=utcnow()).where(Partner.id == partner.id).execute()
            record(actor, "partner.revoke", "partner", key_id, {"name": partner.name})
            partner = Partner.get_by_id(partner.id)
    return _partner_view(partner)
