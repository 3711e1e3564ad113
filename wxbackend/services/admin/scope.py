"""Which rows an admin sees and changes: the filters of the permission table's reach.

The table (``services/admin/permissions.py``) says, per role and action, how far an admin
reaches; these helpers turn that reach into WHERE terms and row checks for a
:class:`~wxbackend.services.admin.sessions.Principal`. Services take the principal and the
action and apply them; handlers never filter by hand.

Rules
-----
* **Reading.** A query is narrowed to the action's reach (:func:`scoped`): a handler's
  tickets and ratings are their department's, their catalogue their center's; a
  center_admin's everything their center's; a superadmin, viewer or auditor bound to a center
  sees that center, unbound every center.
* **Out of reach answers 404.** A row outside the reach of the reading action answers 404
  ``not_found`` exactly like a missing one (:func:`ensure_visible`), so codes of other
  centers are not confirmed. A write that *names* a place beyond the writing action's reach
  (creating or moving a row there) answers 403 ``forbidden`` (``permissions.authorize``).

Typical use in a service (synchronous, on the database thread)::

    query = scope.scoped(Ticket.select(), principal, "tickets.read",
                         center=Ticket.center, department=Ticket.department)
    ticket = Ticket.get_or_none(Ticket.id == ticket_id)
    if ticket is None:
        raise errors.NotFound()
    scope.ensure_visible(principal, "tickets.read", ticket.center_id, ticket.department_id)
"""

from __future__ import annotations

from typing import TypeVar

import peewee

from wxbackend import errors
from wxbackend.services.admin import permissions
from wxbackend.services.admin.permissions import NOWHERE, Target
from wxbackend.services.admin.sessions import Principal

__all__ = [
    "NOWHERE",
    "center_filter",
    "department_filter",
    "ensure_visible",
    "scoped",
    "where_clauses",
]

Q = TypeVar("Q", bound=peewee.Select)


def center_filter(principal: Principal, action: str) -> int | None:
    """The center id ``action`` is confined to; None for every center; :data:`NOWHERE` for
    none."""
    return permissions.filter_of(principal, action).center_id


def department_filter(principal: Principal, action: str) -> int | None:
    """The department id ``action`` is confined to (a handler's tickets and ratings); None
    for no department restriction; :data:`NOWHERE` for none."""
    return permissions.filter_of(principal, action).department_id


def ensure_visible(
    principal: Principal, action: str, center_id: int | None, department_id: int | None = None
) -> None:
    """404 ``not_found`` unless the row (its center and, when given, department) lies within
    the reach of ``action``: a row out of reach does not exist."""
    if not permissions.allows(principal, action, Target(center_id, department_id)):
        raise errors.NotFound()


def where_clauses(
    principal: Principal,
    action: str,
    center: peewee.Field | None = None,
    department: peewee.Field | None = None,
) -> list[peewee.Expression]:
    """The WHERE terms confining a query to the reach of ``action``, given the query's
    center column and (for tickets, ratings) department column. Empty for every center."""
    within = permissions.filter_of(principal, action)
    terms: list[peewee.Expression] = []
    if center is not None and within.center_id is not None:
        terms.append(center == within.center_id)
    if department is not None and within.department_id is not None:
        terms.append(department == within.department_id)
    return terms


def scoped(
    query: Q,
    principal: Principal,
    action: str,
    center: peewee.Field | None = None,
    department: peewee.Field | None = None,
) -> Q:
    """``query`` narrowed to the reach of ``action`` (see :func:`where_clauses`)."""
    terms = where_clauses(principal, action, center, department)
    return query.where(*terms) if terms else query
