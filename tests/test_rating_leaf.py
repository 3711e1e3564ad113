"""The rating writer builds a first rating's transparency leaf from the values it has just
stored (no read-back inside the write lock): the leaf must be exactly the one the log would
build by reading the committed rows (``events.rating``), for every channel and shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from models.evaluation import Indicator
from models.transparency import LogLeaf
from models.user import User
from tests.support.cases import make_case, make_id_number
from wxbackend.services.ratings import writer
from wxbackend.services.ratings.rules import Rating, check_indicators
from wxbackend.services.ratings.writer import FirstRating
from wxbackend.services.transparency import events
from wxbackend.services.transparency.canonical import canonical_json
from wxbackend.services.transparency.log import commitment


def _reread_leaf(evaluation_id: int, stored: dict[str, Any], salt: str | None) -> str:
    """The leaf the log builds from the committed rows, with the stored leaf's time and salt."""
    _, public, committed = events.BUILDERS["rating"]({"evaluation_id": evaluation_id})
    leaf: dict[str, Any] = {"kind": "rating", "at": stored["at"], **public}
    if committed is not None:
        assert salt is not None
        leaf["commitment"] = commitment(salt, committed)
    return canonical_json(leaf)


def _write_and_compare(first: FirstRating, settings: Any, **kwargs: Any) -> dict[str, Any]:
    written = writer.write(first, settings, **kwargs)
    row = (
        LogLeaf.select()
        .where((LogLeaf.evaluation_id == written.evaluation_id) & (LogLeaf.kind == "rating"))
        .order_by(LogLeaf.index.desc())
        .first()
    )
    stored = json.loads(row.leaf)
    assert row.leaf == _reread_leaf(written.evaluation_id, stored, row.salt)
    assert written.receipt is not None and written.receipt.leaf_index == row.index
    return stored


@pytest.mark.asyncio
async def test_the_writers_leaf_is_the_leaf_of_the_committed_rows(ctx) -> None:
    cases = [int((await make_case(ctx, "黎明", make_id_number(600 + i)))[0]) for i in range(5)]
    settings = ctx.settings

    def run() -> list[dict[str, Any]]:
        codes = [c for (c,) in Indicator.select(Indicator.code).order_by(-Indicator.id).tuples()]
        rating = Rating(
            overall=2,
            stages={"handling": 2, "delivery": 4},
            targets={"window_staff": 1},
            indicators=tuple(codes[:2]),
            comment="窗口人员态度差",
        )
        citizen = {
            "user_id": User.create(openid="o-leaf").id,
            "rater_id_hash": "h" * 64,
            "name_masked": "黎*",
        }
        leaves = [
            _write_and_compare(  # a citizen's 差评 with stages, a target, reasons and a comment
                FirstRating.of(
                    rating,
                    check_indicators(rating.indicators),
                    case_id=cases[0],
                    channel="qr",
                    **citizen,
                ),
                settings,
            ),
            _write_and_compare(  # a comment held for review, no levels beyond overall
                FirstRating(
                    case_id=cases[1],
                    channel="miniprogram",
                    overall=5,
                    comment="很好",
                    comment_status="pending_review",
                    **citizen,
                ),
                settings,
            ),
            _write_and_compare(  # the system's default rating (no rater, no commitment)
                FirstRating(case_id=cases[2], channel="default", overall=4), settings
            ),
        ]
        callback = FirstRating(
            case_id=cases[2],
            channel="phone",
            overall=3,
            targets={"approver": 5},
            contact_reference="call-1",
        )
        leaves.append(_write_and_compare(callback, settings, supersede_default=True))
        return leaves

    leaves = await ctx.db.run(run)
    assert [leaf["channel"] for leaf in leaves] == ["qr", "miniprogram", "default", "phone"]
    assert leaves[0]["indicators"] and leaves[0]["stages"] == {"handling": 2, "delivery": 4}
    assert "commitment" in leaves[0] and "commitment" not in leaves[2]
