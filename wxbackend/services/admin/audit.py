"""Writes and reads the audit log. Callers pass no secrets or personal data in ``detail``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from models.audit import AuditEntry


@dataclass(frozen=True)
class Actor:
    """Who acts: an administrator (or the command line / the system) and from where."""

    admin_id: int | None
    username: str
    client_ip: str = ""


def record(
    actor: Actor,
    action: str,
    target_type: str = "",
    target_id: str | int = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry (call it inside the transaction of the change it records)."""
    return AuditEntry.create(
        admin_id=actor.admin_id,
        username=actor.username,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
        client_ip=actor.client_ip,
    )
