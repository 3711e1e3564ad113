"""Reading the audit log (审计日志): ``GET /admin/api/audit-log``, newest first.

Filters: ``action`` (exact, e.g. ``admin.update``; or a prefix ending in ``.`` such as
``staff.``), ``username`` (exact), ``from`` / ``to`` (ISO 8601 with offset; ``from``
inclusive, ``to`` exclusive), ``cursor`` (the ``next_cursor`` of the previous page) and
``limit`` (1–200, default 50). Keyset pagination on the entry id, which grows with time, so a
page never repeats or skips an entry while new ones arrive.

Reach (``audit.read``): a reader bound to a center sees the entries written by the
administrators of that center; an unbound one every entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.access import Admin
from models.audit import AuditEntry
from wxbackend import errors
from wxbackend.services.admin import scope
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import query_args
from wxbackend.timefmt import iso

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CURSOR = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True)
class AuditQuery:
    """The parsed filters of one audit-log page."""

    action: str | None = None
    username: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    before_id: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_limit(text: str | None, default: int, maximum: int) -> int:
    """``limit`` as an int in 1..maximum (400 ``invalid_query``, the parameter named under
    ``field``); the catalogue listing uses it too."""
    return query_args.limit(text, default, maximum, key="field")


def parse_query(arg: Callable[[str], str | None]) -> AuditQuery:
    """The query from the request's arguments (``arg(name)`` → value or None)."""
    cursor = arg("cursor") or None
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise errors.InvalidQuery("cursor is not one this server gave.", field="cursor")
    return AuditQuery(
        action=arg("action") or None,
        username=arg("username") or None,
        start=query_args.instant(arg("from"), "from", key="field"),
        end=query_args.instant(arg("to"), "to", key="field"),
        before_id=int(cursor) if cursor else None,
        limit=parse_limit(arg("limit"), DEFAULT_LIMIT, MAX_LIMIT),
    )


def entry_view(entry: AuditEntry) -> dict[str, Any]:
    """One entry as the API shows it; ``detail`` decoded to an object."""
    try:
        detail = json.loads(entry.detail or "{}")
    except ValueError:
        detail = {}
    return {
        "id": str(entry.id),
        "at": iso(entry.at),
        "username": entry.username,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "detail": detail,
        "client_ip": entry.client_ip,
    }


def search(principal: Principal, q: AuditQuery) -> dict[str, Any]:
    """One page of the entries within the principal's reach, newest first: ``{items,
    next_cursor}`` (next_cursor None on the last page). Synchronous: run it on the database
    thread."""
    query = AuditEntry.select()
    center_id = scope.center_filter(principal, "audit.read")
    if center_id is not None:
        authors = Admin.select(Admin.id).where(Admin.center == center_id)
        query = query.where(AuditEntry.admin_id.in_(authors))
    if q.action:
        if q.action.endswith("."):
            query = query.where(AuditEntry.action.startswith(q.action))
        else:
            query = query.where(AuditEntry.action == q.action)
    if q.username:
        query = query.where(AuditEntry.username == q.username)
    if q.start is not None:
        query = query.where(AuditEntry.at >= q.start)
    if q.end is not None:
        query = query.where(AuditEntry.at < q.end)
    rows, more = query_args.newest_first(query, AuditEntry.id, q.before_id, q.limit)
    return {
        "items": [entry_view(r) for r in rows],
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }
