"""The working-day calendar of ticket deadlines: China's statutory holidays and make-up
working days (the ``holidays`` package), plus local overrides from settings
(``tickets.extra_holidays``, ``tickets.extra_workdays``).
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta

import holidays

from wxbackend.timefmt import SHANGHAI


class WorkCalendar:
    def __init__(self, extra_holidays: list[str] = (), extra_workdays: list[str] = ()):  # type: ignore[assignment]
        self.extra_holidays = {date.fromisoformat(d) for d in extra_holidays}
        self.extra_workdays = {date.fromisoformat(d) for d in extra_workdays}

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one calendar per process, a few years
    def _china(self, year: int) -> holidays.HolidayBase:
        return holidays.China(years=[year])

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        return self._china(day.year).is_working_day(day)

    def due(self, opened_at: datetime, working_days: int) -> datetime:
        """The end (23:59:59 Asia/Shanghai) of the ``working_days``-th working day after the
        local day ``opened_at`` (naive UTC) falls on; returned as naive UTC."""
        day = opened_at.replace(tzinfo=UTC).astimezone(SHANGHAI).date()
        counted = 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        end = datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)
        return end.astimezone(UTC).replace(tzinfo=None)
