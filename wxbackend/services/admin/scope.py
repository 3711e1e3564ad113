"""Who sees and changes what in the admin API: the scoping rules of every admin endpoint.

The role gate (which roles may call a method at all) is ``AdminHandler.read_roles`` /
``write_roles`` (403 ``forbidden``). These helpers add the *scope* gate: which rows a
:class:`~wxbackend.services.admin.sessions.Principal` may see or change. Services take the
principal and apply them; handlers never filter by hand.

Rules
-----
* **Reading.** An admin with a center sees only that center's rows. A ``center_admin``
  always has a center; a ``viewer`` or ``superadmin`` may have one and, without one, sees
  every center. A ``handler`` sees the catalogue of their department's center, and only their
  department's tickets and evaluations (:func:`department_filter`). A handler without a
  department (the command line cannot give one) sees nothing.
* **Writing.** ``superadmin`` (within their center, if they have one) or the ``center_admin``
  of the row's center. Handlers and viewers never write the catalogue (their role gate
  stops them first); handlers act on tickets of their department.
* **Out of scope answers 404.** A row outside the admin's scope answers 404 ``not_found``
  exactly like a missing one (:func:`ensure_visible`), so codes of other centers are not
  confirmed. A write that *names* a center the admin may not change (creating or moving a row
  there) answers 403 ``forbidden`` (:func:`ensure_writable`).
* **Global endpoints** (the audit log) need an unconfined reader: a superadmin, or a viewer
  without a center (:func:`ensure_unconfined`).

Typical use in a service (synchronous, on the database thread)::

    query = scope.scoped(Ticket.select(), principal, center=Ticket.center,
                         department=Ticket.department)
    ticket = Ticket.get_or_none(Ticket.id == ticket_id)
    if ticket is None:
        raise errors.NotFound()
    scope.ensure_visible(principal, ticket.center_id, ticket.department_id)
    scope.ensure_writable(principal, ticket.center_id)   # for center_admin/superadmin writes
"""

from __future__ import annotations

from typing import TypeVar

import peewee

from wxbackend import errors
from wxbackend.services.admin.sessions import Principal

#: A filter id that matches no row (ids start at 1): the scope of a handler without a
#: department. ``Model.center == NOWHERE`` selects nothing.
NOWHERE = 0

Q = TypeVar("Q", bound=peewee.Select)


def center_filter(principal: Principal) -> int | None:
    """The center id the principal is confined to; None for every center; :data:`NOWHERE`
    for a handler without a center (nothing)."""
    if principal.role == "handler" and principal.center_id is None:
        return NOWHERE
    return principal.center_id


def department_filter(principal: Principal) -> int | None:
    """The department id a handler is confined to (:data:`NOWHERE` without one); None (no
    department restriction) for every other role. Use it for tickets and evaluations, not for
    the catalogue (a handler reads their whole center's catalogue)."""
    if principal.role != "handler":
        return None
    return principal.department_id or NOWHERE


def sees_everything(principal: Principal) -> bool:
    """True for an admin confined to no center and no department."""
    return center_filter(principal) is None and department_filter(principal) is None


def can_see(principal: Principal, center_id: int | None, department_id: int | None = None) -> bool:
    """May the principal see a row of this center (and department, when given)?"""
    center = center_filter(principal)
    if center is not None and center != center_id:
        return False
    department = department_filter(principal)
    return department is None or department_id is None or department == department_id


def ensure_visible(
    principal: Principal, center_id: int | None, department_id: int | None = None
) -> None:
    """404 ``not_found`` unless :func:`can_see`: a row outside the scope does not exist."""
    if not can_see(principal, center_id, department_id):
        raise errors.NotFound()


def can_write(principal: Principal, center_id: int | None) -> bool:
    """May the principal change rows of this center? A superadmin (in their center, if they
    have one) or the center_admin of it."""
    if principal.role == "superadmin":
        return principal.center_id is None or principal.center_id == center_id
    return principal.role == "center_admin" and principal.center_id == center_id


def ensure_writable(principal: Principal, center_id: int | None) -> None:
    """403 ``forbidden`` unless :func:`can_write`."""
    if not can_write(principal, center_id):
        raise errors.Forbidden("You may not change rows of this center.")


def ensure_unconfined(principal: Principal) -> None:
    """403 ``forbidden`` unless the principal is a superadmin or a viewer with no center
    (the readers of global data such as the audit log)."""
    if principal.role == "superadmin":
        return
    if principal.role == "viewer" and principal.center_id is None:
        return
    raise errors.Forbidden("Only a superadmin or a viewer of every center may read this.")


def where_clauses(
    principal: Principal,
    center: peewee.Field | None = None,
    department: peewee.Field | None = None,
) -> list[peewee.Expression]:
    """The WHERE terms confining a query to the principal's scope, given the query's center
    column and (for tickets, evaluations) department column. Empty for an unconfined admin."""
    terms: list[peewee.Expression] = []
    center_id = center_filter(principal)
    if center is not None and center_id is not None:
        terms.append(center == center_id)
    department_id = department_filter(principal)
    if department is not None and department_id is not None:
        terms.append(department == department_id)
    return terms


def scoped(
    query: Q,
    principal: Principal,
    center: peewee.Field | None = None,
    department: peewee.Field | None = None,
) -> Q:
    """``query`` narrowed to the principal's scope (see :func:`where_clauses`)."""
    terms = where_clauses(principal, center, department)
    return query.where(*terms) if terms else query
