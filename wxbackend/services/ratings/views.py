"""How a rating is shown to its owner (api.md): the owner view and ``GET /me/evaluations``.

The owner sees their own comment whatever its moderation status.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.evaluation import STAGES, TARGETS, Evaluation, EvaluationIndicator, Indicator
from wxbackend.context import Context
from wxbackend.services.transparency import log as transparency
from wxbackend.timefmt import iso


def stages_of(evaluation: Evaluation) -> dict[str, int]:
    """The stage levels the citizen gave (``{"appointment": 5, ...}``, given ones only)."""
    values = {key: getattr(evaluation, f"stage_{key}") for key in STAGES}
    return {key: value for key, value in values.items() if value is not None}


def targets_of(evaluation: Evaluation) -> dict[str, int]:
    """The target levels the citizen gave (``{"window_staff": 4, ...}``, given ones only)."""
    values = {key: getattr(evaluation, f"target_{key}") for key in TARGETS}
    return {key: value for key, value in values.items() if value is not None}


def indicator_codes_of(evaluation_ids: Iterable[int]) -> dict[int, list[str]]:
    """``{evaluation id: [indicator codes]}`` in the indicators' display order (one query)."""
    ids = list(evaluation_ids)
    codes: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return codes
    rows = (
        EvaluationIndicator.select(EvaluationIndicator.evaluation, Indicator.code)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation.in_(ids))
        .order_by(Indicator.sort_order, Indicator.id)
    )
    for row in rows:
        codes[row.evaluation_id].append(row.indicator.code)
    return codes


def owner_view(evaluation: Evaluation, indicators: list[str]) -> dict[str, Any]:
    """An evaluation as returned to its owner (api.md): ``{id, case_id, overall, stages,
    targets, indicators, comment, comment_status, channel, assess_number, like_count,
    created_at}``."""
    return {
        "id": str(evaluation.id),
        "case_id": str(evaluation.case_id),
        "overall": evaluation.overall,
        "stages": stages_of(evaluation),
        "targets": targets_of(evaluation),
        "indicators": indicators,
        "comment": evaluation.comment,
        "comment_status": evaluation.comment_status,
        "channel": evaluation.channel,
        "assess_number": evaluation.assess_number,
        "like_count": evaluation.like_count,
        "created_at": iso(evaluation.created_at),
    }


def owner_view_of(evaluation_id: int) -> dict[str, Any]:
    """:func:`owner_view` of one stored evaluation (by id)."""
    evaluation = Evaluation.get_by_id(evaluation_id)
    view = owner_view(evaluation, indicator_codes_of([evaluation_id])[evaluation_id])
    return {**view, "receipt": transparency.receipt_of(evaluation_id)}


def my_evaluations(user_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """``GET /me/evaluations``: the user's ratings and follow-ups, newest first."""
    rows = list(
        Evaluation.select()
        .where(Evaluation.user == user_id)
        .order_by(Evaluation.id.desc())
        .limit(limit)
    )
    codes = indicator_codes_of(row.id for row in rows)
    receipts = transparency.receipts_for(codes)
    return [{**owner_view(row, codes[row.id]), "receipt": receipts.get(row.id)} for row in rows]


async def list_mine(ctx: Context, user_id: int) -> list[dict[str, Any]]:
    """``GET /me/evaluations``: see :func:`my_evaluations`."""
    return await ctx.db.run(my_evaluations, user_id)
