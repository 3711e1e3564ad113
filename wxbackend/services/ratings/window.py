"""The rating window (评价期限, product.md rule 14): THE rule for when a case can be rated.

A case can be rated for ``rating.window_days`` natural days from the later of its completion
and its report to this server (``Case.reported_at``), so a case reported late still gets its
full window and never an instant default. At the window's end the default rating (基本满意)
applies once and citizen ratings are refused (410 ``rating_closed``), by scene and by case id
alike. Everything that depends on the window asks this module: the rating checks, ``/me``'s
pending cases and ``rate_until``, the case view's ``expires_at``, the QR token's expiry, and
the default rating's due time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from models.case import Case
from wxbackend import errors


class WindowCase(Protocol):
    """What the rule reads of a case (a :class:`Case` row or any row with these fields)."""

    completed_at: datetime
    reported_at: datetime | None


def window_start(completed_at: datetime, reported_at: datetime | None) -> datetime:
    """When the window opens: the later of completion and report."""
    return max(completed_at, reported_at or completed_at)


def window_end(completed_at: datetime, reported_at: datetime | None, window_days: int) -> datetime:
    """When the window closes (the first instant a case can no longer be rated by a citizen,
    and the default rating's due time)."""
    return window_start(completed_at, reported_at) + timedelta(days=window_days)


def case_window_end(case: WindowCase, window_days: int) -> datetime:
    """:func:`window_end` of a case row."""
    return window_end(case.completed_at, case.reported_at, window_days)


def is_open(case: WindowCase, window_days: int, now: datetime) -> bool:
    """True while the case is inside its rating window."""
    return now < case_window_end(case, window_days)


def check_open(case: Any, window_days: int, now: datetime) -> None:
    """410 ``rating_closed`` when a citizen can no longer rate ``case``: its window is over
    and it was not rated within it (a case rated in time keeps its own answers —
    ``already_evaluated`` / ``token_used`` — so the author of a rating hears about it)."""
    end = case_window_end(case, window_days)
    if now < end:
        return
    rated = case.first_rated_at
    if rated is None or rated >= end:
        raise errors.RatingClosed()


def open_sql(window_days: int, now: datetime) -> Any:
    """A peewee condition on :class:`Case`: its window is still open at ``now``."""
    cutoff = now - timedelta(days=window_days)
    return (Case.completed_at > cutoff) | (Case.reported_at > cutoff)


def closed_sql(window_days: int, now: datetime) -> Any:
    """A peewee condition on :class:`Case`: its window is over at ``now`` (the negation of
    :func:`open_sql`)."""
    cutoff = now - timedelta(days=window_days)
    return (Case.completed_at <= cutoff) & (Case.reported_at <= cutoff)
