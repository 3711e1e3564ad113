"""What a rating may say (好差评的规则): its levels, stages and targets, its indicators (reasons)
and its comment, checked the same way for a citizen's rating, a follow-up and a callback.

Levels are integers 1–5 (not a bool, not ``"5"``, not 4.5); stage and target keys are known;
indicator codes are active ones; a 差评 (:func:`wxbackend.services.ratings.levels.is_bad`)
says why (an indicator or a comment); the comment is cleaned of control and format characters
(product.md rule 17), trimmed and not too long.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from models.evaluation import STAGES, TARGETS, EvaluationIndicator, Indicator
from wxbackend import errors
from wxbackend.services.ratings import levels


@dataclass(frozen=True)
class Rating:
    """A validated rating: levels 1–5, indicator codes (unique, in order), a trimmed comment."""

    overall: int
    stages: Mapping[str, int]
    targets: Mapping[str, int]
    indicators: tuple[str, ...]
    comment: str | None

    @property
    def is_bad(self) -> bool:
        """A 差评 (see :func:`levels.is_bad`)."""
        return levels.is_bad(self.overall)


def check_level(value: Any, name: str = "overall") -> int:
    """``value`` if it is an integer 1–5 (not a bool, not ``"5"``, not 4.5), else 422
    ``invalid_rating`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in levels.LEVELS:
        raise errors.InvalidRating(f"{name} must be an integer from 1 to 5.", field=name)
    return value


def _levels(value: Any, allowed: tuple[str, ...], group: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidRating(f"{group} must be an object of levels.", field=group)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise errors.InvalidRating(f"Unknown {group} key: {unknown[0]}.", field=group)
    return {key: check_level(value[key], f"{group}.{key}") for key in allowed if key in value}


def parse_rating(
    overall: Any,
    *,
    stages: Any = None,
    targets: Any = None,
    indicators: Any = None,
    comment: Any = None,
    comment_max_chars: int = 500,
) -> Rating:
    """Check a rating as it was sent (pure: indicator codes are checked against the database
    by :func:`check_indicators`).

    Levels (overall, each given stage and target) must be integers 1–5 and stage/target keys
    known (422 ``invalid_rating``); ``indicators`` is a list of code strings (anything else is
    422 ``unknown_indicator``; repeats are dropped); the comment is trimmed (blank → None) and
    at most ``comment_max_chars`` characters (422 ``comment_too_long``); a 差评 needs an
    indicator or a comment (422 ``reason_required``).
    """
    level = check_level(overall)
    stage_levels = _levels(stages, STAGES, "stages")
    target_levels = _levels(targets, TARGETS, "targets")
    codes = _indicator_codes(indicators)
    text = clean_comment(comment, comment_max_chars)
    if levels.is_bad(level) and not codes and text is None:
        raise errors.ReasonRequired()
    return Rating(level, stage_levels, target_levels, codes, text)


def _indicator_codes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise errors.UnknownIndicator("indicators must be a list of indicator codes.")
    return tuple(dict.fromkeys(value))


#: Unicode categories removed from comments: controls (C0/C1), format characters (bidi
#: overrides and isolates, zero-width space/joiners, BOM, soft hyphen…) and lone surrogates
#: (not text at all; a database would refuse to encode them).
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def strip_invisible(text: str) -> str:
    """``text`` without its control and format characters (categories Cc, Cf — and lone
    surrogates, Cs), except the newline ``"\\n"`` (product.md rule 17)."""
    return "".join(
        ch for ch in text if ch == "\n" or unicodedata.category(ch) not in _REMOVED_CATEGORIES
    )


def clean_comment(value: Any, max_chars: int) -> str | None:
    """The comment without control and format characters (:func:`strip_invisible`), then
    trimmed; nothing left → None (no comment). Not a string → 400 ``invalid_body``; longer
    than ``max_chars`` once cleaned → 422 ``comment_too_long``. The cleaning comes before the
    length check and before WeChat's text check, which therefore see what is stored."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidBody("comment must be a string.", field="comment")
    text = strip_invisible(value).strip()
    if not text:
        return None
    if len(text) > max_chars:
        raise errors.CommentTooLong(
            f"The comment has {len(text)} characters; at most {max_chars} are allowed.",
            max_chars=max_chars,
        )
    return text


def check_indicators(codes: Iterable[str]) -> dict[str, int]:
    """``{code: indicator id}`` for ``codes``, in the indicators' display order; any code not
    active → 422 ``unknown_indicator``."""
    wanted = list(codes)
    if not wanted:
        return {}
    found = {
        row.code: row.id
        for row in Indicator.select(Indicator.id, Indicator.code)
        .where(Indicator.code.in_(wanted) & (Indicator.active == True))  # noqa: E712
        .order_by(Indicator.sort_order, Indicator.id)
    }
    for code in wanted:
        if code not in found:
            raise errors.UnknownIndicator(
                f"Unknown indicator code: {code[:32]}.", indicator=code[:32]
            )
    return found


def insert_indicators(
    evaluation_id: int, codes: Iterable[str], indicator_ids: Mapping[str, int]
) -> None:
    """Store the reasons chosen in an evaluation (inside the transaction that stores it)."""
    rows = [{"evaluation": evaluation_id, "indicator": indicator_ids[code]} for code in codes]
    if rows:
        EvaluationIndicator.insert_many(rows).execute()
