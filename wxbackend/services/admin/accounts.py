"""Administrators and partner keys, as the command line and the admin API create them.

The command line uses :func:`create_admin` and :func:`create_partner` (raising
:class:`AccountError`). The admin API (``/admin/api/admins``) uses :func:`list_admins`,
:func:`add_admin`, :func:`update_admin` and :func:`disable_admin`, which also keep to the
acting admin's reach (``admins.manage`` of the permission table: an account bound to a center
beyond it is 404, binding one there 403), write the audit log in the same transaction and
raise contract errors. Both check a role and its binding with :func:`resolve_scope`, from the
permission table's roles. They run on the database thread; the caller ends the admin's
sessions (``admin_auth.revoke_all``) after they return.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from models.access import Admin, Partner, PartnerCenter
from models.catalog import Center, Department, Staff
from wxbackend import errors
from wxbackend.db import database
from wxbackend.security import FieldCipher, hash_password
from wxbackend.services.admin import passwords, permissions, scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.permissions import Binding, Target
from wxbackend.services.admin.sessions import Principal
from wxbackend.timefmt import iso

MANAGE = "admins.manage"
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")


class AccountError(ValueError):
    """A bad username, password, role or center; the message says which.

    Messages start with the field at fault (``"password: at least 10 characters"``), also
    available as ``field``.
    """

    def __init__(self, message: str):
        super().__init__(message)
        name, sep, _ = message.partition(":")
        self.field: str | None = name if sep and name.isidentifier() else None


def create_admin(
    username: str,
    password: str,
    role: str,
    center_code: str | None = None,
    department_code: str | None = None,
) -> Admin:
    """A new administrator with an scrypt password hash, bound as :func:`resolve_scope` says
    (a department also sets the center to the department's; a center given as well must be
    that one)."""
    if not USERNAME.match(username):
        raise AccountError("username: 3–64 letters, digits or _.@-")
    _check_password(password)
    center, department = resolve_scope(role, center_code, department_code)
    if Admin.select().where(Admin.username == username).exists():
        raise AccountError(f"username: {username!r} exists")
    return Admin.create(
        username=username,
        password_hash=hash_password(password),
        role=role,
        center=center,
        department=department,
    )


def _check_password(password: str) -> None:
    found = passwords.problem(password)
    if found is not None:
        raise AccountError(f"password: {found}")


def _department_in(code: str, center: Center | None) -> Department:
    department = Department.get_or_none(Department.code == code)
    if department is None:
        raise AccountError(f"department: unknown department {code!r}")
    if center is not None and department.center_id != center.id:
        raise AccountError(f"department: {code!r} is not a department of center {center.code!r}")
    return department


@dataclass(frozen=True)
class PartnerKey:
    key_id: str
    secret: str


def create_partner(name: str, cipher: FieldCipher, center_codes: Sequence[str] = ()) -> PartnerKey:
    """A new partner key; the secret is returned once and stored encrypted. ``center_codes``:
    the centers it serves (none: every center)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("name: 1–200 characters")
    centers = []
    for code in dict.fromkeys(center_codes):
        center = Center.get_or_none(Center.code == code) if isinstance(code, str) else None
        if center is None:
            raise AccountError(f"centers: unknown center {code!r}")
        centers.append(center)
    key_id = "pk_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    partner = Partner.create(
        key_id=key_id, name=name, secret_enc=cipher.encrypt(secret, "partner.secret")
    )
    for center in centers:
        PartnerCenter.create(partner=partner, center=center)
    return PartnerKey(key_id, secret)


# --------------------------------------------------------------------------- admin API


def resolve_scope(
    role: str, center_code: str | None, department_code: str | None
) -> tuple[Center | None, Department | None]:
    """The (center, department) of an admin of ``role``, by the role's binding in the
    permission table: bound to a department (a handler: their center is the department's; a
    center given too must match), to exactly one center (a center_admin), or optionally to a
    center (then they see only it); only a department-bound role has a department.
    AccountError otherwise."""
    spec = permissions.ROLES.get(role)
    if spec is None:
        raise AccountError(f"role: one of {', '.join(permissions.ROLES)}")
    center = None
    if center_code:
        center = Center.get_or_none(Center.code == center_code)
        if center is None:
            raise AccountError(f"center: unknown center {center_code!r}")
    if spec.binding is Binding.DEPARTMENT:
        if not department_code:
            raise AccountError(f"department: a {role} needs a department")
        department = _department_in(department_code, center)
        return department.center, department
    if department_code:
        raise AccountError(f"department: a {role} has no department")
    if spec.binding is Binding.CENTER and center is None:
        raise AccountError(f"center: a {role} needs a center")
    return center, None


def admin_view(admin: Admin) -> dict[str, Any]:
    """An admin as the API shows it (never the password hash)."""
    return {
        "username": admin.username,
        "role": admin.role,
        "center": admin.center.code if admin.center_id else None,
        "department": admin.department.code if admin.department_id else None,
        "staff_no": admin.staff_no,
        "disabled": admin.disabled,
        "created_at": iso(admin.created_at),
    }


def me_view(principal: Principal) -> dict[str, Any]:
    """``GET /me``: the caller, their reach and the permissions the console shows."""
    admin = Admin.get_by_id(principal.admin_id)
    role = permissions.ROLES.get(principal.role)
    return {
        "id": str(admin.id),
        "username": admin.username,
        "role": admin.role,
        "role_label": role.label if role is not None else admin.role,
        "center": _code(admin.center),
        "department": _code(admin.department),
        "center_id": str(admin.center_id) if admin.center_id else None,
        "department_id": str(admin.department_id) if admin.department_id else None,
        "staff_no": admin.staff_no,
        "permissions": permissions.granted(principal),
        "roles": permissions.role_labels(),
    }


def list_admins(principal: Principal) -> list[dict[str, Any]]:
    """Every administrator within the principal's reach, disabled ones included, by
    username."""
    query = (
        Admin.select(Admin, Center, Department)
        .join(Center, peewee.JOIN.LEFT_OUTER, on=Admin.center == Center.id)
        .switch(Admin)
        .join(Department, peewee.JOIN.LEFT_OUTER, on=Admin.department == Department.id)
        .order_by(Admin.username)
    )
    return [admin_view(a) for a in scope.scoped(query, principal, MANAGE, center=Admin.center)]


def get_admin(principal: Principal, username: str) -> dict[str, Any]:
    """One administrator (404 when missing or beyond the principal's reach)."""
    return admin_view(_admin(principal, username))


def _admin(principal: Principal, username: str) -> Admin:
    admin = Admin.get_or_none(Admin.username == username)
    if admin is None or not permissions.allows(principal, MANAGE, Target(admin.center_id)):
        raise errors.NotFound(f"No administrator {username!r}.")
    return admin


def _may_bind(principal: Principal, center: Center | None, role: str) -> None:
    """403 ``beyond_reach`` unless an account of ``role`` bound to ``center`` (None: every
    center) lies within the principal's reach and role (product rule 20)."""
    permissions.authorize(principal, MANAGE, Target(center.id if center else None))
    if not permissions.may_grant(principal, role):
        raise errors.BeyondReach(f"You cannot give the role {role}: it is beyond your own.")


def _staff_no(value: Any, center: Center | None) -> str | None:
    """A staff member the account belongs to (product rule 18): an existing ``staff_no`` of
    the account's center (any center for an unbound account); None clears it."""
    if value is None or value == "":
        return None
    staff = Staff.get_or_none(Staff.staff_no == value) if isinstance(value, str) else None
    if staff is None or (center is not None and staff.center_id != center.id):
        raise errors.InvalidField(
            "staff_no: no such staff member of the account's center.", field="staff_no"
        )
    return staff.staff_no


def _not_on_oneself(principal: Principal, admin: Admin, changes: dict[str, Any]) -> None:
    """Nobody changes their own role or reach, or disables themselves (their password they
    may change)."""
    if admin.id != principal.admin_id:
        return
    reach = ("role", "center", "department", "disabled", "staff_no")
    if any(key in changes for key in reach):
        raise errors.BeyondReach("You cannot change your own role, reach or account state.")


def _invalid(exc: AccountError) -> errors.ContractError:
    return errors.InvalidField(str(exc), field=exc.field)


def add_admin(principal: Principal, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /admins``: a new admin (audited ``admin.create``); 409 ``exists`` when the
    username is taken, 422 ``invalid_field`` for a bad value."""
    with database.atomic():
        if Admin.select().where(Admin.username == body["username"]).exists():
            raise errors.Exists(f"An administrator {body['username']!r} exists.", field="username")
        try:
            center, department = resolve_scope(
                body["role"], body.get("center"), body.get("department")
            )
            _may_bind(principal, center, body["role"])
            admin = create_admin(
                body["username"],
                body["password"],
                body["role"],
                center.code if center else None,
                department.code if department else None,
            )
        except AccountError as exc:
            raise _invalid(exc) from None
        staff_no = _staff_no(body.get("staff_no"), center)
        if staff_no is not None:
            Admin.update(staff_no=staff_no).where(Admin.id == admin.id).execute()
            admin = Admin.get_by_id(admin.id)
        view = admin_view(admin)
        record(
            actor,
            "admin.create",
            "admin",
            admin.username,
            {k: view[k] for k in ("role", "center", "department", "staff_no")},
        )
    return view


def _unrestricted_superadmins_besides(admin: Admin) -> int:
    """Active superadmins bound to no center, other than ``admin``."""
    query = Admin.select(Admin.id).where(
        (Admin.role == "superadmin")
        & (Admin.disabled == False)  # noqa: E712 - SQL
        & Admin.center.is_null()
    )
    if database.for_update:  # PostgreSQL: serialise concurrent demotions
        query = query.for_update()
    return sum(1 for a in query if a.id != admin.id)


def _guard_last_superadmin(
    admin: Admin, role: str, disabled: bool, center: Center | None = None
) -> None:
    """409 ``last_superadmin`` when the change would leave no active superadmin bound to no
    center (demoted, disabled or bound to one center): someone must reach everything."""
    if admin.role != "superadmin" or admin.disabled or admin.center_id is not None:
        return
    if role == "superadmin" and not disabled and center is None:
        return
    if _unrestricted_superadmins_besides(admin) == 0:
        raise errors.LastSuperadmin()


def update_admin(
    principal: Principal, actor: Actor, username: str, changes: dict[str, Any]
) -> tuple[dict, int]:
    """``PUT /admins/{username}``: change role, center, department, disabled and/or password
    (null clears center or department). Returns (the admin's view, their id) — the caller ends
    their sessions. Leaving the handler role drops the department. 409 ``last_superadmin``
    when this would leave no active superadmin. Audited ``admin.update`` with the names of
    the changed fields (never the password)."""
    with database.atomic():
        admin = _admin(principal, username)
        _not_on_oneself(principal, admin, changes)
        role = changes.get("role", admin.role)
        center_code = changes["center"] if "center" in changes else _code(admin.center)
        if "department" in changes:
            department_code = changes["department"]
        elif role == "handler":
            department_code = _code(admin.department)
        else:
            department_code = None
        if role == "handler" and "center" not in changes:
            center_code = None  # follows the department
        try:
            center, department = resolve_scope(role, center_code, department_code)
            if "password" in changes:
                _check_password(changes["password"])
        except AccountError as exc:
            raise _invalid(exc) from None
        _may_bind(principal, center, role)
        disabled = changes.get("disabled", admin.disabled)
        _guard_last_superadmin(admin, role, disabled, center)
        staff_no = (
            _staff_no(changes["staff_no"], center) if "staff_no" in changes else admin.staff_no
        )
        new = {
            "role": role,
            "center": center.id if center else None,
            "department": department.id if department else None,
            "disabled": disabled,
            "staff_no": staff_no,
        }
        old = {
            "role": admin.role,
            "center": admin.center_id,
            "department": admin.department_id,
            "disabled": admin.disabled,
            "staff_no": admin.staff_no,
        }
        changed = sorted(k for k in new if new[k] != old[k])
        values: dict[str, Any] = {k: new[k] for k in changed}
        if "password" in changes:
            values["password_hash"] = hash_password(changes["password"])
            changed.append("password")
        if values:
            Admin.update(**values).where(Admin.id == admin.id).execute()
        admin = Admin.get_by_id(admin.id)
        view = admin_view(admin)
        if changed:
            detail = {"changed": changed}
            detail.update({k: view[k] for k in changed if k != "password"})
            record(actor, "admin.update", "admin", admin.username, detail)
    return view, admin.id


def disable_admin(principal: Principal, actor: Actor, username: str) -> int:
    """``DELETE /admins/{username}``: disable the account (the row stays for the audit log);
    returns its id. Idempotent; 409 ``last_superadmin`` for the last active superadmin."""
    with database.atomic():
        admin = _admin(principal, username)
        _not_on_oneself(principal, admin, {"disabled": True})
        if not admin.disabled:
            _guard_last_superadmin(admin, admin.role, True)
            Admin.update(disabled=True).where(Admin.id == admin.id).execute()
            record(actor, "admin.disable", "admin", admin.username, {})
    return admin.id


def _code(row: Center | Department | None) -> str | None:
    return row.code if row is not None else None
