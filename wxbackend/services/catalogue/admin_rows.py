"""The rows of the admin API's catalogue (目录管理): how each section is queried, shown,
validated and audited; the CRUD itself is ``services/catalogue/admin.py``.

Rows are validated exactly like rows of the catalogue file (``rows.validate_row``: codes,
names, area codes, 统一社会信用代码, staff role ``window``/``approver``, photo URL, the ID
number's GB 11643 checksum); references are codes, checked against the database and against
the permission table (``catalogue.write``): a reference to a center beyond the admin's reach
is 403. A staff member's ID number is kept only as its keyed hash; views show
``has_id_number`` and never the number or its hash. A center's WeCom robot key
(``wecom_webhook_key``) is write-only: stored encrypted, shown masked ("****abcd") with
``has_wecom_webhook``, audited as "set" / "cleared".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from models.access import Admin
from models.base import BaseModel
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff, Window
from models.evaluation import Evaluation
from models.ticket import Ticket
from wxbackend import errors
from wxbackend.security import FieldCipher, LookupHasher, mask_secret
from wxbackend.services.admin.permissions import Target, authorize
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.catalogue.rows import CatalogError, validate_row
from wxbackend.timefmt import iso

#: The permission a write of a section needs.
WRITE = "catalogue.write"


def write_action(section: str) -> str:
    """The permission (services/admin/permissions.py) a write of ``section`` needs."""
    return "centers.write" if section == "centers" else WRITE


@dataclass(frozen=True)
class Spec:
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
        "wecom_webhook_key": c.wecom_key_mask,
        "has_wecom_webhook": c.wecom_key_enc is not None,
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


SPECS: dict[str, Spec] = {
    "centers": Spec(
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
    "departments": Spec(
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
    "items": Spec(
        "item",
        ServiceItem,
        ServiceItem.code,
        Department.center,
        _items,
        _item_view,
        lambda i: {"code": i.code, "name": i.name, "department": i.department.code},
        (("cases", Case.item), ("evaluations", Evaluation.item)),
    ),
    "staff": Spec(
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
    "windows": Spec(
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
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "staff": ("active",),
    "centers": ("wecom_webhook_key",),
}
#: The FieldCipher context of a center's robot key (services/alerts/sending.py decrypts it).
WECOM_KEY_CONTEXT = "center.wecom_webhook_key"
_WECOM_KEY_RE = re.compile(r"[A-Za-z0-9-]{8,64}")
#: The robot's whole webhook address, as WeCom shows it: its key is taken from it.
_WECOM_URL_KEY_RE = re.compile(r"https://qyapi\.weixin\.qq\.com/cgi-bin/webhook/send\?key=([^&#]+)")


def row_center_id(section: str, row: Any) -> int:
    """The id of the center a row of ``section`` belongs to (a center: its own)."""
    if section == "centers":
        return row.id
    if section == "items":
        return row.department.center_id
    return row.center_id


# --------------------------------------------------------------------------- validation


def check(section: str, raw: dict[str, Any], hasher: LookupHasher) -> dict[str, Any]:
    """The row checked like a row of the catalogue file (422 ``invalid_field`` otherwise)."""
    try:
        return validate_row(section, raw, hasher)
    except CatalogError as exc:
        raise errors.InvalidField(exc.reason, field=exc.field) from None


def _center_ref(principal: Principal, code: str, field: str = "center") -> Center:
    center = Center.get_or_none(Center.code == code)
    if center is None:
        raise errors.InvalidField(f"Unknown center {code!r}.", field=field)
    authorize(principal, WRITE, Target(center.id))
    return center


def _department_ref(principal: Principal, code: str) -> Department:
    department = Department.get_or_none(Department.code == code)
    if department is None:
        raise errors.InvalidField(f"Unknown department {code!r}.", field="department")
    authorize(principal, WRITE, Target(department.center_id))
    return department


def values_of(section: str, principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
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


def split_body(section: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(catalogue-file fields, extra fields such as staff ``active``)."""
    extra_names = EXTRA_FIELDS.get(section, ())
    raw = {k: v for k, v in body.items() if k not in extra_names}
    extra = {k: v for k, v in body.items() if k in extra_names}
    return raw, extra


def robot_key_values(extra: dict[str, Any], cipher: FieldCipher | None) -> dict[str, Any]:
    """A center body's extra fields as model values: ``wecom_webhook_key`` (the key, or the
    robot's whole webhook address as WeCom shows it; null or "" clears it) encrypted with
    its mask. 422 ``invalid_field`` for anything else."""
    if "wecom_webhook_key" not in extra:
        return {}
    value = (extra["wecom_webhook_key"] or "").strip()
    if not value:
        return {"wecom_key_enc": None, "wecom_key_mask": None}
    match = _WECOM_URL_KEY_RE.fullmatch(value)
    key = match.group(1) if match else value
    if not _WECOM_KEY_RE.fullmatch(key) or cipher is None:
        raise errors.InvalidField(
            "wecom_webhook_key is the key of the group robot's webhook address (8–64 letters, "
            "digits or '-').",
            field="wecom_webhook_key",
        )
    return {
        "wecom_key_enc": cipher.encrypt(key, WECOM_KEY_CONTEXT),
        "wecom_key_mask": mask_secret(key),
    }


# --------------------------------------------------------------------------- audit detail


def audit_values(view: dict[str, Any]) -> dict[str, Any]:
    """A view as audit detail: the values, without timestamps or flags."""
    hidden = ("updated_at", "has_id_number", "wecom_webhook_key", "has_wecom_webhook")
    return {k: v for k, v in view.items() if k not in hidden}


def id_number_note(id_hash: str | None) -> str:
    """How the audit log shows an ID number change: never the number or its hash."""
    return "set" if id_hash else "cleared"


def robot_key_note(values: dict[str, Any]) -> dict[str, str]:
    """How the audit log shows a robot key change (never the key, nor its mask)."""
    if "wecom_key_enc" not in values:
        return {}
    return {"wecom_webhook_key": "set" if values["wecom_key_enc"] else "cleared"}
