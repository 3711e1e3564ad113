"""The data of a subscribe message (模板数据): a template's field map filled from the case.

Each template has its own map (product rule 23): ``reminders.template_fields`` (or
``templates.reminder_fields`` when set) for the reminder, ``templates.rectified_fields`` for
the rectified notice. Each template field (``thing1``, ``phrase2`` …) names an attribute of
:data:`ATTRIBUTES` (the rectified notice also :data:`RECTIFIED_ATTRIBUTES`: the outcome).

**Every value is checked against WeChat's rule for its field type** (:data:`RULES`) before a
message is ever sent: a value that breaks it answers ``47003`` at WeChat. Where a shorter
value is still a value of the type (text: ``thing``, ``phrase``, ``name``, ``letter``,
``character_string``) it is cut to the limit (a cut ``thing`` ends with ``…``); anything else
that does not fit (a number, an amount, a date, a value outside the type's characters, an
empty value, a type WeChat has and we cannot fill such as ``enum``) raises
:class:`TemplateFieldsError`, which makes the message ``config_error`` without calling
WeChat.

The rules, as WeChat's subscribe-message send page lists them (订阅消息参数值内容限制说明):
https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
(also https://developers.weixin.qq.com/miniprogram/dev/api-backend/open-api/subscribe-message/subscribeMessage.send.html;
an unknown key or type, an empty or a non-conforming value → ``47003``, errmsg names the
field). The sandbox keeps its own table (``wxbackend/sandbox/subscribe.py``), on purpose not
this one, so each checks the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

ATTRIBUTES = ("item_name", "completed_at", "center_name", "case_no", "department_name")
#: What the rectified notice says besides the case: the outcome (a phrase that fits
#: ``phrase``, a sentence that fits ``thing``) and when the ticket was closed.
RECTIFIED_ATTRIBUTES = ("outcome", "outcome_text", "closed_at")
OUTCOME = "已整改"
OUTCOME_TEXT = "您反映的问题已整改办结"

_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_FIELD_RE = re.compile(r"([a-z_]+?)(\d+)")


class TemplateFieldsError(ValueError):
    """A field map names an unknown attribute or a malformed field, or a value breaks its
    field type's rule in a way that cannot be cut: the message is a configuration error."""


@dataclass(frozen=True)
class Rule:
    """WeChat's rule for one field type: the longest value, the characters it may have
    (the whole value must match ``pattern``), whether a too-long value may be cut, and how
    the length is counted (``limit_of``: a ``name`` of letters may be 20, of CJK 10)."""

    limit: int
    pattern: re.Pattern[str]
    cuttable: bool
    what: str
    limit_of: Callable[[str], int] | None = None


def _name_limit(value: str) -> int:
    # 10 pure CJK, 20 pure letters or symbols; mixed counts as Chinese (10).
    return 10 if re.search(f"[{_CJK}]", value) else 20


_DATE = r"\d{4}(?:-\d{1,2}-\d{1,2}|/\d{1,2}/\d{1,2}|年\d{1,2}月\d{1,2}日)"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
_TIME_POINT = rf"(?:{_DATE}\s*)?{_CLOCK}"
_DATE_POINT = rf"{_DATE}(?:\s*{_CLOCK})?"

#: THE server-side table: field type → WeChat's rule (see the module docstring's page).
RULES: Mapping[str, Rule] = {
    # 20个以内字符, 可汉字、数字、字母或符号组合 (no control or line-break characters)
    "thing": Rule(20, re.compile(r"[^\x00-\x1f\x7f]+"), True, "any characters"),
    # 5个以内纯汉字
    "phrase": Rule(5, re.compile(f"[{_CJK}]+"), True, "Chinese characters only"),
    # 10个以内纯汉字或20个以内纯字母或符号
    "name": Rule(
        20,
        re.compile(f"[{_CJK}·]+|[A-Za-z .'·-]+"),
        True,
        "Chinese characters, or letters and symbols",
        _name_limit,
    ),
    # 32位以内数字、字母或符号
    "character_string": Rule(32, re.compile(r"[\x21-\x7e]+"), True, "letters, digits, symbols"),
    # 32位以内数字, 只能数字, 可带小数
    "number": Rule(32, re.compile(r"-?\d+(?:\.\d+)?"), False, "digits, maybe a decimal point"),
    # 32位以内字母
    "letter": Rule(32, re.compile(r"[A-Za-z]+"), True, "letters only"),
    # 5位以内符号
    "symbol": Rule(5, re.compile(r"[^\w\s]+"), False, "symbols only"),
    # 1个币种符号+10位以内纯数字, 可带小数, 结尾可带"元"
    "amount": Rule(14, re.compile(r"[¥$€£]?\d{1,10}(?:\.\d{1,2})?元?"), False, "a currency amount"),
    # 17位以内, 数字、符号
    "phone_number": Rule(17, re.compile(r"(?=.*\d)[0-9+\-() ]+"), False, "digits and + - ( )"),
    # 8位以内, 第一位与最后一位可为汉字, 其余为字母或数字
    "car_number": Rule(8, re.compile(f"[{_CJK}]?[A-Za-z0-9]+[{_CJK}]?"), False, "a licence plate"),
    # 24小时制时间格式(支持+年月日), 时间段用"~"连接
    "time": Rule(
        41, re.compile(rf"{_TIME_POINT}(?:\s*[~～]\s*{_TIME_POINT})?"), False, "a 24-hour time"
    ),
    # 年月日格式(支持+24小时制时间), 时间段用"~"连接
    "date": Rule(41, re.compile(rf"{_DATE_POINT}(?:\s*[~～]\s*{_DATE_POINT})?"), False, "a date"),
}


def field_type(name: str) -> str:
    """``thing1`` → ``thing``; ``character_string2`` → ``character_string``."""
    match = _FIELD_RE.fullmatch(name)
    if not match:
        raise TemplateFieldsError(f"template field {name!r} is not <type><n>")
    return match[1]


def check_value(name: str, kind: str, value: str) -> str:
    """``value`` made to fit WeChat's rule for ``kind`` (cut where a prefix still fits), or
    :class:`TemplateFieldsError` naming the field (never the value: it may be personal)."""
    rule = RULES.get(kind)
    if rule is None:
        raise TemplateFieldsError(f"template field {name}: type {kind!r} cannot be filled")
    if not value:
        raise TemplateFieldsError(f"template field {name}: empty value")
    if not rule.pattern.fullmatch(value):
        raise TemplateFieldsError(f"template field {name}: {kind} takes {rule.what}")
    limit = rule.limit_of(value) if rule.limit_of else rule.limit
    if len(value) <= limit:
        return value
    if not rule.cuttable:
        raise TemplateFieldsError(f"template field {name}: longer than {limit} for {kind}")
    if kind == "thing":
        return value[: limit - 1] + "…"
    return value[:limit].rstrip()


def format_value(value: Any, kind: str, tz: ZoneInfo) -> str:
    """One attribute as the field type wants it (times local: ``YYYY-MM-DD HH:MM``)."""
    if isinstance(value, datetime):
        local = value.replace(tzinfo=UTC).astimezone(tz)
        return local.strftime("%Y-%m-%d" if kind == "date" else "%Y-%m-%d %H:%M")
    return " ".join(_CONTROL.sub(" ", str(value if value is not None else "")).split()) or "-"


def render_data(
    fields: Mapping[str, str],
    values: Mapping[str, Any],
    tz_name: str,
    attributes: tuple[str, ...] = ATTRIBUTES,
) -> dict[str, dict[str, str]]:
    """``{"thing1": {"value": ...}, ...}`` from a field map and the values, every value
    checked against its type's rule (:class:`TemplateFieldsError` when one cannot fit)."""
    tz = ZoneInfo(tz_name)
    if not fields:
        raise TemplateFieldsError("the template's field map is empty")
    data = {}
    for name, attribute in fields.items():
        if attribute not in attributes:
            raise TemplateFieldsError(f"template field {name}: unknown attribute {attribute!r}")
        kind = field_type(name)
        text = format_value(values.get(attribute), kind, tz)
        data[name] = {"value": check_value(name, kind, text)}
    return data


def check_field_map(fields: Any, attributes: tuple[str, ...]) -> dict[str, str]:
    """A field map an admin sets (``templates.<kind>_fields``): 1–20 fields, each
    ``<type><n>`` of a type we can fill, naming one of ``attributes``
    (:class:`TemplateFieldsError` otherwise). Values are checked again at each send."""
    if not isinstance(fields, dict) or not 0 < len(fields) <= 20:
        raise TemplateFieldsError('an object of 1–20 fields {"thing1": "item_name", …}')
    for name, attribute in fields.items():
        if field_type(name) not in RULES:
            raise TemplateFieldsError(f"template field {name}: type cannot be filled")
        if attribute not in attributes:
            raise TemplateFieldsError(f"template field {name}: unknown attribute {attribute!r}")
    return dict(fields)


def page_for(page: str, case_id: int) -> str:
    """The mini-program page that rates the case: ``<page>?case_id=<id>`` (never a scene)."""
    return f"{page.lstrip('/')}?case_id={case_id}"
