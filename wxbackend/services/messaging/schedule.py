"""Scheduling the jobs of a case: reminders to rate (提醒评价), the default rating and the
rectification notice (整改反馈). The messages are sent by :mod:`.sending`, the default
rating given by ``wxbackend.services.ratings.defaults``.

Scheduling (sync, inside the transaction that makes the work due; the jobs are
``wxbackend.services.jobs.queue``'s):

- :func:`schedule_case_jobs` — a case was reported: its default rating and, when the
  applicant's identity is bound to a WeChat user, reminder 1 at ``base +
  reminders.first_after_seconds`` and reminder 2 at ``base + second_after_seconds``, where
  ``base = max(completed_at, reported_at)``. A reminder falling in ``reminders.quiet_hours``
  (Asia/Shanghai) moves to the end of the quiet period; one that would fall after the rating
  window (:func:`wxbackend.services.ratings.window.window_end`, ``rating.window_days`` from
  ``base``) is not scheduled. The default rating is due at the window's end.
- :func:`schedule_for_identity` — an identity was bound after its cases were reported: the
  same reminders for its unrated cases (of those already past due, only the latest, now).
- :func:`cancel_case_jobs` — the case was rated: its reminders and default rating go.
- :func:`schedule_rectified_notice` — a 差评 ticket closed: one ``rectified`` notice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import peewee

from models.base import utcnow
from models.case import Case
from models.identity import Identity
from models.job import Job
from models.messaging import Message
from wxbackend.services.jobs import queue as jobs
from wxbackend.services.messaging.quiet_hours import defer_quiet
from wxbackend.services.ratings import window
from wxbackend.services.ratings.window import WindowCase
from wxbackend.settings import Settings

REMINDER = "reminder"
RECTIFIED = "rectified"
DEFAULT_RATING = "default_rating"
REMINDER_NUMBERS = (1, 2)
#: Message statuses after which nothing more is sent.
FINAL_STATUSES = frozenset({"sent", "no_quota", "config_error", "failed"})


def reminder_key(case_id: int, n: int) -> str:
    """The job and message key of reminder ``n`` of a case."""
    return f"{REMINDER}:{case_id}:{n}"


def rectified_key(ticket_id: int) -> str:
    """The job and message key of a ticket's rectified notice."""
    return f"{RECTIFIED}:{ticket_id}"


def default_rating_key(case_id: int) -> str:
    """The job key of a case's default rating."""
    return f"{DEFAULT_RATING}:{case_id}"


def rating_window_end(case: WindowCase, settings: Settings) -> datetime:
    """When the case can no longer be rated and gets its default rating (:mod:`window`)."""
    return window.case_window_end(case, settings.rating.window_days)


def plan_reminders(
    base: datetime, settings: Settings, now: datetime, catch_up: bool, case_id: int | None = None
) -> list[tuple[int, datetime]]:
    """``[(n, due_at)]`` of the reminders of a case whose clock (and rating window) starts at
    ``base`` (:func:`window.window_start`).

    ``catch_up`` (an identity bound late): reminders already past due collapse into one
    (the latest), due now; sending two at once would only nag. With ``case_id``, a reminder
    moved out of the quiet hours is spread over ``reminders.spread_seconds`` by its key.
    """
    r = settings.reminders
    window_end = window.window_end(base, base, settings.rating.window_days)  # base: its start
    planned = []
    offsets = (r.first_after_seconds, r.second_after_seconds)
    for n, offset in zip(REMINDER_NUMBERS, offsets, strict=True):
        due = base + timedelta(seconds=offset)
        if catch_up and due < now:
            due = now
        key = reminder_key(case_id, n) if case_id is not None else ""
        due = defer_quiet(due, settings, key)
        if due < window_end:
            planned.append((n, due))
    if catch_up:
        past = [p for p in planned if p[1] <= now]
        planned = past[-1:] + [p for p in planned if p[1] > now]
    return planned


def _bound_user(id_hash: str, now: datetime) -> int | None:
    return (
        Identity.select(Identity.user)
        .where((Identity.id_hash == id_hash) & (Identity.expires_at > now))
        .scalar()
    )


def schedule_reminders(case: Case, settings: Settings, now: datetime, catch_up: bool) -> int:
    """Schedule the case's reminders (idempotent by key; a key already finished without a
    sent message — e.g. skipped for want of an identity — is scheduled again)."""
    base = window.window_start(case.completed_at, case.reported_at)
    count = 0
    for n, due in plan_reminders(base, settings, now, catch_up, case.id):
        key = reminder_key(case.id, n)
        payload = {"case_id": case.id, "n": n}
        if jobs.schedule(REMINDER, key, due, payload) or _reopen(key, due):
            count += 1
    return count


def _reopen(key: str, due: datetime) -> bool:
    """Put a finished job back when its message was never sent (nor is being sent)."""
    unsent = ~peewee.fn.EXISTS(
        Message.select(Message.id).where(
            (Message.key == key) & Message.status.in_(["sending", *FINAL_STATUSES])
        )
    )
    return bool(
        Job.update(status="pending", due_at=due, attempts=0, lease_owner=None, finished_at=None)
        .where((Job.key == key) & Job.status.in_(["done", "cancelled"]) & unsent)
        .execute()
    )


def schedule_case_jobs(case: Case, settings: Settings, now: datetime | None = None) -> None:
    """A case was reported (inside its transaction): its default rating, and its reminders
    when the applicant's identity is already bound to a WeChat user."""
    now = now or utcnow()
    jobs.schedule(
        DEFAULT_RATING,
        default_rating_key(case.id),
        rating_window_end(case, settings),
        {"case_id": case.id},
    )
    if _bound_user(case.applicant_id_hash, now) is not None:
        schedule_reminders(case, settings, now, catch_up=False)


def schedule_for_identity(id_hash: str, settings: Settings, now: datetime | None = None) -> int:
    """An identity was bound (inside that transaction): reminders of its unrated cases still
    in their rating window. Returns how many reminder jobs were (re)scheduled."""
    now = now or utcnow()
    cases = Case.select(Case.id, Case.completed_at, Case.reported_at).where(
        (Case.applicant_id_hash == id_hash)
        & Case.first_rated_at.is_null()
        & window.open_sql(settings.rating.window_days, now)
    )
    return sum(schedule_reminders(case, settings, now, catch_up=True) for case in cases)


def cancel_case_jobs(case_id: int, now: datetime | None = None) -> int:
    """The case was rated (inside that transaction): its pending reminders and default
    rating are cancelled. (The sender re-checks ``first_rated_at`` anyway.)"""
    keys = [reminder_key(case_id, n) for n in REMINDER_NUMBERS]
    return jobs.cancel([*keys, default_rating_key(case_id)], now)


def schedule_rectified_notice(ticket_id: int, now: datetime | None = None) -> bool:
    """A 差评 ticket closed (call inside that transaction): the ``rectified`` notice, due now
    (quiet hours are applied when it is sent)."""
    return jobs.schedule(
        RECTIFIED, rectified_key(ticket_id), now or utcnow(), {"ticket_id": ticket_id}
    )
