"""The end of the quiet hours spreads held reminders over ``reminders.spread_seconds``
instead of making them all due at its first second (issue 14, item 5)."""

from __future__ import annotations

from datetime import datetime, timedelta

from wxbackend.services.messaging import quiet_hours, schedule
from wxbackend.settings import load_settings

SPREAD = 3600
#: 23:30 in Shanghai (15:30 UTC): inside "22:00-08:00", which ends at 00:00 UTC next day.
NIGHT = datetime(2026, 3, 1, 15, 30)
END = datetime(2026, 3, 2, 0, 0)


def _settings(spread: int):
    return load_settings(
        env={}, overrides={"reminders": {"quiet_hours": "22:00-08:00", "spread_seconds": spread}}
    )


def test_reminders_held_by_the_night_are_spread_over_the_setting():
    settings = _settings(SPREAD)
    # A case completed at night: its first reminder (2 h later) falls in the quiet hours.
    dues = [
        schedule.plan_reminders(NIGHT, settings, NIGHT, catch_up=False, case_id=case_id)[0][1]
        for case_id in range(1, 401)
    ]
    assert all(END <= due < END + timedelta(seconds=SPREAD) for due in dues)
    # Spread, not bunched: every quarter of the hour gets a fair share of the 400.
    quarters = [sum(1 for d in dues if (d - END).seconds // 900 == q) for q in range(4)]
    assert min(quarters) > 60, quarters
    # The same key always lands at the same place (a rescheduled reminder keeps it).
    again = schedule.plan_reminders(NIGHT, settings, NIGHT, catch_up=False, case_id=7)[0][1]
    assert again == dues[6]


def test_a_deferred_job_is_spread_and_daytime_is_untouched():
    settings = _settings(SPREAD)
    keys = [schedule.reminder_key(n, 1) for n in range(50)]
    moved = {quiet_hours.defer_quiet(NIGHT, settings, key) for key in keys}
    assert len(moved) > 40 and min(moved) >= END and max(moved) < END + timedelta(hours=1)
    noon = datetime(2026, 3, 2, 4, 0)  # 12:00 in Shanghai
    assert quiet_hours.defer_quiet(noon, settings, keys[0]) == noon


def test_no_spread_keeps_the_end_of_the_quiet_hours():
    settings = _settings(0)
    assert {quiet_hours.defer_quiet(NIGHT, settings, f"reminder:{n}:1") for n in range(20)} == {END}
