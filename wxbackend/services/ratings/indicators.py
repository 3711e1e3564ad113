"""The reasons (indicators) chosen with ratings, read for many ratings at once."""

from __future__ import annotations

from collections.abc import Iterable

from models.evaluation import EvaluationIndicator, Indicator


def indicator_labels_of(evaluation_ids: Iterable[int]) -> dict[int, list[dict[str, str]]]:
    """``{evaluation id: [{code, label}]}`` in the indicators' display order (one query); an
    evaluation without indicators is absent."""
    labels: dict[int, list[dict[str, str]]] = {}
    chosen = (
        EvaluationIndicator.select(EvaluationIndicator.evaluation, Indicator.code, Indicator.label)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation.in_(list(evaluation_ids)))
        .order_by(Indicator.sort_order, Indicator.id)
        .tuples()
    )
    for evaluation_id, code, label in chosen:
        labels.setdefault(evaluation_id, []).append({"code": code, "label": label})
    return labels
