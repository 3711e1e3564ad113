"""Who may do what in the admin API: THE permission table (role → action → reach).

Every rule about roles lives here. The handlers name the action of each method
(``AdminHandler.permissions``) and :func:`authorize` it; the scope filters
(``services/admin/scope.py``) derive their WHERE terms from the action's reach; account
management (``services/admin/accounts.py``) validates a role and its binding with :data:`ROLES`;
``GET /admin/api/me`` lists :func:`granted` so the console shows only what the caller may do.
Adding a role is one entry in :data:`ROLES`.

**Reach** (where a permission applies, given the account's binding):

* :attr:`Reach.DEPARTMENT`: rows of the account's department (a handler's tickets);
* :attr:`Reach.CENTER`: rows of the account's center;
* :attr:`Reach.ALL`: every center when the account is bound to none, else its own center
  (a center-bound superadmin is that center's superadmin);
* :attr:`Reach.GLOBAL`: only an account bound to no center, for what belongs to no center
  (the WeChat configuration, partner keys, the whole audit log of a viewer); a bound
  account does not have the permission at all.

An account without the center or department its reach needs reaches nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from wxbackend import errors
from wxbackend.services.admin.sessions import Principal


class Reach(enum.Enum):
    DEPARTMENT = "department"
    CENTER = "center"
    ALL = "all"
    GLOBAL = "global"


class Binding(enum.Enum):
    """What an account of a role is bound to (checked when it is created or changed)."""

    OPTIONAL_CENTER = "optional_center"  # a center or none (none: every center)
    CENTER = "center"  # exactly one center
    DEPARTMENT = "department"  # one department (and so its center)


@dataclass(frozen=True)
class Role:
    """One role: its label in the console, its binding and its permissions."""

    label: str
    binding: Binding
    grants: Mapping[str, Reach]


#: Every action, in the domain's words, with what it covers.
ACTIONS: Mapping[str, str] = {
    "catalogue.read": "read centers, departments, items, staff and windows",
    "catalogue.write": "create, change, delete departments, items, staff and windows",
    "centers.write": "create, change, delete centers",
    "tickets.read": "read 差评 tickets and their history",
    "tickets.work": "verify, rectify, call back and close tickets",
    "tickets.appeal": "file a staff appeal (申诉) against a 差评",
    "tickets.decide_appeal": "decide an appeal (never one's own)",
    "tickets.decide_invalid": "confirm or reject declaring a 差评 invalid (never one's own)",
    "tickets.contact": "see the applicant's phone of an open ticket, giving a reason (audited)",
    "evaluations.read": "read ratings with their full comment and moderation state",
    "evaluations.reply": "publish the center's reply to a rating",
    "evaluations.moderate": "show or hide a comment",
    "evaluations.reveal": "see the applicant's real name (audited)",
    "callback.record": "record a rating taken by phone or SMS (回访评价)",
    "stats.read": "read the figures and the staff ranking",
    "export": "export ratings for the provincial platform (audited)",
    "messages.read": "read the subscribe messages sent to citizens",
    "wechat_config.read": "read the WeChat configuration (secrets masked)",
    "wechat_config.write": "change and test the WeChat configuration, read its versions",
    "partners.manage": "create, list and revoke partner keys",
    "admins.manage": "create, change and disable administrator accounts",
    "audit.read": "read the audit log",
}

_D, _C, _A, _G = Reach.DEPARTMENT, Reach.CENTER, Reach.ALL, Reach.GLOBAL

#: THE table. Order: from the widest role to the narrowest.
ROLES: Mapping[str, Role] = {
    "superadmin": Role(
        "超级管理员",
        Binding.OPTIONAL_CENTER,
        {
            **dict.fromkeys(("catalogue.read", "catalogue.write", "centers.write"), _A),
            **dict.fromkeys(
                (
                    "tickets.read",
                    "tickets.work",
                    "tickets.decide_appeal",
                    "tickets.decide_invalid",
                    "tickets.contact",
                ),
                _A,
            ),
            **dict.fromkeys(("evaluations.read", "evaluations.reply", "evaluations.moderate"), _A),
            "evaluations.reveal": _A,
            "callback.record": _A,
            **dict.fromkeys(("stats.read", "export", "messages.read"), _A),
            "wechat_config.read": _A,
            "wechat_config.write": _G,
            "partners.manage": _G,
            "admins.manage": _A,
            "audit.read": _A,
        },
    ),
    "center_admin": Role(
        "中心管理员",
        Binding.CENTER,
        {
            **dict.fromkeys(("catalogue.read", "catalogue.write"), _C),
            **dict.fromkeys(
                (
                    "tickets.read",
                    "tickets.work",
                    "tickets.appeal",
                    "tickets.decide_appeal",
                    "tickets.decide_invalid",
                    "tickets.contact",
                ),
                _C,
            ),
            **dict.fromkeys(("evaluations.read", "evaluations.reply", "evaluations.moderate"), _C),
            "callback.record": _C,
            **dict.fromkeys(("stats.read", "export", "messages.read"), _C),
            "wechat_config.read": _C,
        },
    ),
    "handler": Role(
        "处理人员",
        Binding.DEPARTMENT,
        {
            "catalogue.read": _C,
            **dict.fromkeys(
                ("tickets.read", "tickets.work", "tickets.appeal", "tickets.contact"), _D
            ),
            "evaluations.read": _D,
            "callback.record": _D,
            **dict.fromkeys(("stats.read", "export", "messages.read"), _D),
        },
    ),
    "viewer": Role(
        "查看人员",
        Binding.OPTIONAL_CENTER,
        {
            **dict.fromkeys(
                (
                    "catalogue.read",
                    "tickets.read",
                    "evaluations.read",
                    "stats.read",
                    "export",
                    "messages.read",
                    "wechat_config.read",
                ),
                _A,
            ),
            "audit.read": _G,
        },
    ),
    "auditor": Role(
        "纪检督查",
        Binding.OPTIONAL_CENTER,
        dict.fromkeys(("tickets.read", "evaluations.read", "audit.read"), _A),
    ),
}


@dataclass(frozen=True)
class Target:
    """Where a row lies: its center and, for tickets and ratings, its department. A
    ``Target()`` (no center) is something of every center: a new center, a global setting."""

    center_id: int | None = None
    department_id: int | None = None


#: A filter id that matches no row (ids start at 1). ``Model.center == NOWHERE`` selects
#: nothing.
NOWHERE = 0


@dataclass(frozen=True)
class Filter:
    """The rows an action reaches: a center id and a department id, each None for "any"
    (:data:`NOWHERE` for none)."""

    center_id: int | None
    department_id: int | None


_NOTHING = Filter(NOWHERE, NOWHERE)


def reach_of(principal: Principal, action: str) -> Reach | None:
    """The principal's reach for ``action``; None when they may not do it at all (a bound
    account has no :attr:`Reach.GLOBAL` permission)."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}")
    role = ROLES.get(principal.role)
    reach = role.grants.get(action) if role is not None else None
    if reach is Reach.GLOBAL and principal.center_id is not None:
        return None
    return reach


def filter_of(principal: Principal, action: str) -> Filter:
    """The center and department the principal's ``action`` is confined to."""
    reach = reach_of(principal, action)
    if reach is None:
        return _NOTHING
    if reach is Reach.DEPARTMENT:
        return Filter(principal.center_id or NOWHERE, principal.department_id or NOWHERE)
    if reach is Reach.CENTER:
        return Filter(principal.center_id or NOWHERE, None)
    return Filter(principal.center_id, None)  # ALL (None: every center), GLOBAL (unbound)


def allows(principal: Principal, action: str, target: Target | None = None) -> bool:
    """May the principal do ``action`` (on ``target``, when given)? Without a target: do
    they have the permission anywhere."""
    if reach_of(principal, action) is None:
        return False
    if target is None:
        return True
    within = filter_of(principal, action)
    if within.center_id is not None and within.center_id != target.center_id:
        return False
    return (
        within.department_id is None
        or target.department_id is None
        or within.department_id == target.department_id
    )


def authorize(principal: Principal, action: str, target: Target | None = None) -> None:
    """Nothing when :func:`allows`; else 403 ``beyond_reach`` when the role has the action
    but not there (another center, or something of every center for a center-bound
    account), 403 ``forbidden`` when the role does not have it at all."""
    if allows(principal, action, target):
        return
    role = ROLES.get(principal.role)
    if role is not None and action in role.grants:
        raise errors.BeyondReach()
    raise errors.Forbidden()


def may_grant(principal: Principal, role: str) -> bool:
    """Product rule 20: nobody empowers an account beyond their own role. :data:`ROLES` is
    ordered from the widest role to the narrowest: one may give one's own role or a role
    after it (where the account is bound is checked apart, as its target)."""
    order = list(ROLES)
    if role not in ROLES:
        return True  # an unknown role is refused by the account checks, as 422
    return principal.role in ROLES and order.index(role) >= order.index(principal.role)


def granted(principal: Principal) -> list[str]:
    """The actions the principal may do somewhere, in :data:`ACTIONS` order (``/me``)."""
    return [action for action in ACTIONS if reach_of(principal, action) is not None]


def role_labels() -> list[dict[str, str]]:
    """Every role with its label, for the console's account forms."""
    return [{"role": name, "label": role.label} for name, role in ROLES.items()]
