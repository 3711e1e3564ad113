"""The application's clock: "now" for every rule decided by time (jobs falling due, leases,
reminders, default ratings, deadlines). ``models.base.utcnow`` reads it.

It is the wall clock plus an offset that only tests move (``clock.advance(seconds)``, the
``clock`` fixture), so a test lets a lease or a delay run out without sleeping through it.
Production never moves it. Intervals the code *waits* (polls, Redis TTLs) stay real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """The wall clock, movable forward."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def utcnow(self) -> datetime:
        """Now, as the naive UTC datetime every model stores."""
        return datetime.now(UTC).replace(tzinfo=None) + self._offset

    def advance(self, seconds: float) -> None:
        """Move now forward by ``seconds`` (tests)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        """Back to the wall clock (tests, after each test)."""
        self._offset = timedelta(0)


#: This process's clock.
clock = Clock()
