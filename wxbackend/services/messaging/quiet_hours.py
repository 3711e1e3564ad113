"""Quiet hours (免打扰时段): a daily local time range in which no subscribe message goes out.

``reminders.quiet_hours`` (``"22:00-08:00"``, Asia/Shanghai by ``reminders.timezone``): a
reminder due inside it is scheduled for its end; a message whose job comes due inside it is
deferred to its end. With ``reminders.spread_seconds`` each one lands at its own instant of
the ``spread_seconds`` after the end (fixed by its key), so the night's reminders do not all
fall due at 08:00 at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from wxbackend.settings import Settings


@dataclass(frozen=True)
class QuietHours:
    """A daily local time range without messages (``"22:00-08:00"``; may wrap midnight)."""

    start: time
    end: time
    tz: ZoneInfo

    def _local(self, at: datetime) -> datetime:
        return at.replace(tzinfo=UTC).astimezone(self.tz)

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` (naive UTC) falls inside the quiet period."""
        t = self._local(at).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def defer(self, at: datetime) -> datetime:
        """``at`` (naive UTC), or the end of the quiet period it falls in."""
        if not self.contains(at):
            return at
        local = self._local(at)
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)  # late evening: the period ends tomorrow morning
        end = datetime.combine(day, self.end, tzinfo=self.tz)
        return end.astimezone(UTC).replace(tzinfo=None)


@lru_cache(maxsize=16)
def quiet_hours(spec: str, tz_name: str) -> QuietHours | None:
    """Parse ``reminders.quiet_hours`` (``""`` or an empty range disables it)."""
    if not spec:
        return None
    first, _, second = spec.partition("-")
    start, end = time.fromisoformat(first.strip()), time.fromisoformat(second.strip())
    if start == end:
        return None
    return QuietHours(start, end, ZoneInfo(tz_name))


def spread_offset(key: str, spread_seconds: int) -> timedelta:
    """Where in ``[0, spread_seconds)`` the job ``key`` lands after a quiet period: the same
    for the same key (a rescheduled reminder keeps its place), uniform over keys."""
    if spread_seconds <= 0 or not key:
        return timedelta(0)
    digest = hashlib.sha256(key.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % spread_seconds)


def defer_quiet(at: datetime, settings: Settings, key: str = "") -> datetime:
    """``at`` moved out of the quiet hours (naive UTC); when it is moved and has a ``key``,
    spread over ``reminders.spread_seconds`` after the quiet period's end."""
    quiet = quiet_hours(settings.reminders.quiet_hours, settings.reminders.timezone)
    if quiet is None:
        return at
    moved = quiet.defer(at)
    if moved == at:
        return at
    return moved + spread_offset(key, settings.reminders.spread_seconds)
