"""Rollups of the figures: counts per Asia/Shanghai day and group, kept in the transaction
of the row they count (``wxbackend.services.public.rollups``), so the figures read
O(days × groups) rows, never the ratings.

Three shapes of the same counters over the **cases by completion day** (the cohort of
``wxbackend.services.public.figures``) and the **tickets by rectification deadline**, from
the coarsest to the finest; a reader takes the coarsest shape whose key holds every column
it filters or groups by:

- :class:`RollupCenter` — day × center (the public page's default question);
- :class:`RollupItem` — day × center × item × department;
- :class:`RollupStaff` — day × center × item × department × clerk × approver × upheld
  (``upheld``: the case's 差评 appeal was upheld, staff figures leave it out; the coarser
  shapes are sums of this one).

And :class:`RollupMonth` — month × center: the sums of :class:`RollupCenter` over each
Asia/Shanghai month, so a long range reads its whole months there and only the days at its
ends from the day shapes.

And :class:`RollupRanking` — day of the **rating** × role × person × center × department:
the sums of the monthly staff ranking. A missing clerk/approver/person is 0 (a NULL would
defeat the unique key of the upserts).
"""

from __future__ import annotations

import peewee

from models.base import BaseModel
from models.evaluation import LEVELS

#: The counters of the figure shapes. Of the cases completed that day: finished cases, first
#: ratings per level (every channel: ``l1``…``l5``; the citizens' own: ``a1``…``a5``),
#: callback and default ones, follow-ups. Of the 差评 tickets (not invalid) whose
#: rectification falls due that day: rectified, rectified on time, not rectified (``pending``:
#: due once the deadline has passed).
FIGURE_COUNTERS = (
    "finished",
    *(f"l{level}" for level in LEVELS),
    *(f"a{level}" for level in LEVELS),
    "callback",
    "dflt",
    "follow_ups",
    "rectified",
    "on_time",
    "pending",
)
#: The counters of the ranking: first ratings, sum of the ranked level, 差评, target rated.
RANKING_COUNTERS = ("n", "stars", "bad", "target_rated")


def _counters(names: tuple[str, ...]) -> dict[str, peewee.Field]:
    return {name: peewee.IntegerField(default=0) for name in names}


class _FigureRollup(BaseModel):
    day = peewee.DateField()
    center = peewee.IntegerField()
    locals().update(_counters(FIGURE_COUNTERS))


class RollupCenter(_FigureRollup):
    """Figures per day × center."""

    class Meta:
        indexes = ((("day", "center"), True),)


class RollupItem(_FigureRollup):
    """Figures per day × center × item × department."""

    item = peewee.IntegerField()
    department = peewee.IntegerField()

    class Meta:
        # by day (a period); by item (the public page's item filter over all time)
        indexes = ((("day", "center", "item", "department"), True), (("item", "day"), False))


class RollupStaff(_FigureRollup):
    """Figures per day × center × item × department × clerk × approver × upheld."""

    item = peewee.IntegerField()
    department = peewee.IntegerField()
    window_staff = peewee.IntegerField()
    approver = peewee.IntegerField()
    upheld = peewee.SmallIntegerField()

    class Meta:
        indexes = (
            (
                ("day", "center", "item", "department", "window_staff", "approver", "upheld"),
                True,
            ),
            (("center", "day"), False),  # a center's admin over all time
        )


class RollupMonth(_FigureRollup):
    """Figures per month × center; ``day`` is the month's first (Asia/Shanghai) day."""

    class Meta:
        indexes = ((("day", "center"), True),)


class RollupRanking(BaseModel):
    """The ranking's sums per rating day × role × person × center × department (citizen and
    callback first ratings without an upheld appeal)."""

    day = peewee.DateField()
    role = peewee.CharField(max_length=16)
    staff = peewee.IntegerField()
    center = peewee.IntegerField()
    department = peewee.IntegerField()
    locals().update(_counters(RANKING_COUNTERS))

    class Meta:
        indexes = ((("day", "role", "staff", "center", "department"), True),)


#: The figure shapes, coarsest first, with the columns of their key (after ``day``).
FIGURE_SHAPES: tuple[tuple[type[BaseModel], tuple[str, ...]], ...] = (
    (RollupCenter, ("center",)),
    (RollupItem, ("center", "item", "department")),
    (RollupStaff, ("center", "item", "department", "window_staff", "approver", "upheld")),
)
#: The month shape: the same key as the coarsest day shape, by month.
MONTH_SHAPE: tuple[type[BaseModel], tuple[str, ...]] = (RollupMonth, ("center",))
ROLLUP_MODELS = (RollupCenter, RollupItem, RollupStaff, RollupRanking, RollupMonth)
