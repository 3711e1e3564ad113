"""The rating writer's rollup deltas are written once per table at the end of its
transaction (``rollups.batched``): deltas of one key are summed first (PostgreSQL refuses an
upsert that touches one row twice), a block that fails writes nothing, and the counts equal
those of the same bumps made one by one."""

from __future__ import annotations

from datetime import date

import pytest

from models.rollup import RollupCenter, RollupMonth
from tests.support.databases import both_databases
from wxbackend.db import database
from wxbackend.services.public import rollups

KEY = {"day": date(2026, 5, 4), "center": 1, "item": 2, "department": 3}
OTHER = {**KEY, "day": date(2026, 5, 5)}


def _centers() -> dict[tuple[str, int], tuple[int, int, int]]:
    return {
        (str(r.day), r.center): (r.finished, r.l1, r.a1)
        for r in RollupCenter.select().order_by(RollupCenter.day)
    }


def _bumps() -> None:
    keyed = {**KEY, "window_staff": 0, "approver": 0, "upheld": 0}
    other = {**OTHER, "window_staff": 0, "approver": 0, "upheld": 0}
    rollups.bump_figures(keyed, {"finished": 1})
    rollups.bump_figures(keyed, {"l1": 1, "a1": 1})  # the same key again: summed
    rollups.bump_figures(other, {"l1": 1})
    rollups.bump_figures(other, {"l1": -1})  # cancels: no row for it


@both_databases
@pytest.mark.asyncio
async def test_batched_deltas_sum_per_key_and_fail_together(ctx) -> None:
    def run() -> tuple[dict, dict, dict, int]:
        with database.atomic(), rollups.batched():
            _bumps()
        batched = _centers()
        with pytest.raises(RuntimeError), database.atomic(), rollups.batched():
            _bumps()
            raise RuntimeError("the rating failed")
        after_failure = _centers()
        _bumps()  # one by one, outside a batch: the same counts again
        months = RollupMonth.select().count()
        return batched, after_failure, _centers(), months

    batched, after_failure, one_by_one, months = await ctx.db.run(run)
    assert batched == {("2026-05-04", 1): (1, 1, 1)}
    assert after_failure == batched
    assert one_by_one[("2026-05-04", 1)] == (2, 2, 2)
    assert one_by_one[("2026-05-05", 1)] == (0, 0, 0)  # made by the one-by-one +1 then -1
    assert months == 1
