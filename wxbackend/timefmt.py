"""Times: stored as naive UTC, shown as ISO 8601 in Asia/Shanghai with the offset."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time with offset → naive UTC. Raises ValueError without an offset."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("time needs an offset")
    return value.astimezone(UTC).replace(tzinfo=None)
