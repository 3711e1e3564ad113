"""The five levels of a rating (评价等级) and what counts as a 差评: the one place these rules live.

Product rule 1: 5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意; levels 1–2 are
差评 and levels 3–5 count as satisfied (满意) in the figures. Everything that needs the rule
(the rating's checks, the ticket it opens, the figures' SQL, the ranking, the pages and the
console) asks this module; the pages and the console get the labels from
``GET /api/v1/public/levels``. Changing the 差评 threshold is a change of :data:`BAD_MAX`.
"""

from __future__ import annotations

from typing import Any

import peewee

from models.evaluation import LEVELS  # every level, worst first: the column's domain

#: The highest level that is a 差评 (bad review): overall ≤ BAD_MAX.
BAD_MAX = 2
#: The level a case gets by default when it is not rated in time (基本满意, product rule 5).
DEFAULT_LEVEL = 3

LEVEL_LABELS: dict[int, str] = {
    5: "非常满意",
    4: "满意",
    3: "基本满意",
    2: "不满意",
    1: "非常不满意",
}
#: The stages of the process a citizen may rate (product rule 3), in display order.
STAGE_LABELS: tuple[tuple[str, str], ...] = (
    ("appointment", "预约叫号"),
    ("handling", "办件服务"),
    ("delivery", "结果送达"),
)
#: The targets a citizen may rate (product rule 3), in display order.
TARGET_LABELS: tuple[tuple[str, str], ...] = (
    ("window_staff", "窗口人员"),
    ("approver", "审批人员"),
    ("department", "部门"),
)
#: How each channel (product rule 7) is shown.
CHANNEL_LABELS: dict[str, str] = {
    "qr": "扫码评价",
    "miniprogram": "小程序评价",
    "phone": "电话回访",
    "sms": "短信回访",
    "default": "系统默认评价",
}


def is_bad(level: int) -> bool:
    """A 差评: the overall level is at most :data:`BAD_MAX`."""
    return level <= BAD_MAX


#: The 差评 levels.
BAD_LEVELS: tuple[int, ...] = tuple(level for level in LEVELS if is_bad(level))
#: The satisfied levels (满意, 基本满意 included).
GOOD_LEVELS: tuple[int, ...] = tuple(level for level in LEVELS if not is_bad(level))


def bad_sql(column: peewee.Node) -> peewee.Expression:
    """SQL for "this level is a 差评" (``column <= BAD_MAX``), for the figures and the ranking."""
    return column <= BAD_MAX


def good_sql(column: peewee.Node) -> peewee.Expression:
    """SQL for "this level is satisfied" (``column > BAD_MAX``)."""
    return column > BAD_MAX


def catalogue() -> dict[str, Any]:
    """The labels as the pages and the console read them (``GET /api/v1/public/levels``):
    levels best first, each saying whether it is a 差评; stages; targets; channels."""
    return {
        "levels": [
            {"value": level, "label": LEVEL_LABELS[level], "bad": is_bad(level)}
            for level in sorted(LEVELS, reverse=True)
        ],
        "bad_max": BAD_MAX,
        "stages": [{"code": code, "label": label} for code, label in STAGE_LABELS],
        "targets": [{"code": code, "label": label} for code, label in TARGET_LABELS],
        "channels": [{"code": code, "label": label} for code, label in CHANNEL_LABELS.items()],
    }
