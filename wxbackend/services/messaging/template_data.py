"""The data of a subscribe message (模板数据): ``reminders.template_fields`` filled from the case.

Each template field (``thing1``, ``time2`` …) names a case attribute (:data:`ATTRIBUTES`); its
value is formatted for the field type and cut to WeChat's length limit (../shared/docs/wechat.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

ATTRIBUTES = ("item_name", "completed_at", "center_name", "case_no", "department_name")
#: Longest value per template field type (../shared/docs/wechat.md); longer values are cut.
FIELD_LIMITS = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "character_string": 32,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "phone_number": 17,
    "car_number": 8,
    "amount": 13,
}
_FIELD_RE = re.compile(r"([a-z_]+?)(\d+)")


class TemplateFieldsError(ValueError):
    """``reminders.template_fields`` names an unknown attribute or a malformed field."""


def field_type(name: str) -> str:
    """``thing1`` → ``thing``; ``character_string2`` → ``character_string``."""
    match = _FIELD_RE.fullmatch(name)
    if not match:
        raise TemplateFieldsError(f"template field {name!r} is not <type><n>")
    return match[1]


def cut(value: str, kind: str) -> str:
    """``value`` cut to what the field type allows (a cut thing ends with ``…``)."""
    value = " ".join(value.split()) or "-"
    limit = FIELD_LIMITS.get(kind)
    if kind == "name" and value.isascii():
        limit = 20
    if limit is None or len(value) <= limit:
        return value
    if kind == "thing":
        return value[: limit - 1] + "…"
    return value[:limit]


def format_value(value: Any, kind: str, tz: ZoneInfo) -> str:
    """One attribute as the field type wants it (times local: ``YYYY-MM-DD HH:MM``)."""
    if isinstance(value, datetime):
        local = value.replace(tzinfo=UTC).astimezone(tz)
        text = local.strftime("%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M")
        return text if kind in ("time", "date") else cut(text, kind)
    return cut(str(value if value is not None else ""), kind)


def render_data(
    fields: Mapping[str, str], values: Mapping[str, Any], tz_name: str
) -> dict[str, dict[str, str]]:
    """``{"thing1": {"value": ...}, ...}`` from ``reminders.template_fields`` and the case."""
    tz = ZoneInfo(tz_name)
    data = {}
    for name, attribute in fields.items():
        if attribute not in ATTRIBUTES:
            raise TemplateFieldsError(f"template field {name}: unknown attribute {attribute!r}")
        data[name] = {"value": format_value(values.get(attribute), field_type(name), tz)}
    return data


def page_for(page: str, case_id: int) -> str:
    """The mini-program page that rates the case: ``<page>?case_id=<id>`` (never a scene)."""
    return f"{page.lstrip('/')}?case_id={case_id}"
