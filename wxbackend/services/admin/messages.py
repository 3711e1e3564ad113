"""Subscribe messages as administrators see them: what was sent, what failed and why.

A message that WeChat refused as a configuration error (47003 template data, 40037 template
id, 41030 page) is not retried; it is shown here, and counted on the WeChat configuration
page (:func:`config_problems`), so an admin can fix the template or the page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import peewee

from models.base import utcnow
from models.case import Case
from models.messaging import Message, MessageAttempt
from wxbackend.services.admin import scope
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import query_args
from wxbackend.timefmt import iso

STATUSES = ("pending", "sending", "sent", "no_quota", "config_error", "failed", "skipped")
KINDS = ("reminder", "rectified")


def list_messages(principal: Principal, arg: Callable[[str], str | None]) -> dict[str, Any]:
    """``GET /admin/api/messages?status=&kind=&cursor=&limit=`` — newest first, scoped by
    the case's center and department."""
    status = query_args.choice(arg("status"), STATUSES, "status", key="field")
    kind = query_args.choice(arg("kind"), KINDS, "kind", key="field")
    limit = query_args.limit(arg("limit"), 50, 200, key="field")
    query = (
        Message.select(Message, Case.case_no.alias("case_no"))
        .join(Case, peewee.JOIN.LEFT_OUTER)
        .objects()  # case_no lands on the Message row
    )
    query = scoped_messages(query, principal)
    if status:
        query = query.where(Message.status == status)
    if kind:
        query = query.where(Message.kind == kind)
    page, more = query_args.newest_first(
        query, Message.id, query_args.cursor_id(arg("cursor")), limit
    )
    counts = _attempt_counts([m.id for m in page])
    return {
        "items": [_shape(m, counts.get(m.id, 0)) for m in page],
        "next_cursor": query_args.encode_cursor(page[-1].id) if more else None,
    }


def scoped_messages(query: peewee.Select, principal: Principal) -> peewee.Select:
    """Messages of the cases in the principal's scope (unconfined admins also see messages
    without a case)."""
    return scope.scoped(
        query, principal, "messages.read", center=Case.center, department=Case.department
    )


def _attempt_counts(ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = (
        MessageAttempt.select(MessageAttempt.message, peewee.fn.COUNT(MessageAttempt.id))
        .where(MessageAttempt.message.in_(ids))
        .group_by(MessageAttempt.message)
        .tuples()
    )
    return {message_id: n for message_id, n in rows}


def _shape(m: Message, attempts: int) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "kind": m.kind,
        "status": m.status,
        "errcode": m.errcode,
        "template_id": m.template_id,
        "case_no": getattr(m, "case_no", None),
        "created_at": iso(m.created_at),
        "sent_at": iso(m.sent_at),
        "attempts": attempts,
    }


def config_problems(hours: int = 24) -> dict[str, Any]:
    """Configuration errors of the last ``hours``: how many, and the newest errcode."""
    since = utcnow() - timedelta(hours=hours)
    recent = Message.select().where(
        (Message.status == "config_error") & (Message.created_at >= since)
    )
    newest = recent.order_by(Message.id.desc()).first()
    return {
        "config_errors_24h": recent.count(),
        "last_errcode": newest.errcode if newest else None,
        "last_at": iso(newest.created_at) if newest else None,
    }
