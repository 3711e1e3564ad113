"""Subscribe messages: ``POST cgi-bin/message/subscribe/send``, its templates and quotas.

``POST cgi-bin/message/subscribe/send``
    ``{touser, template_id, page?, data: {key: {value}}, miniprogram_state?, lang?}`` →
    ``{errcode: 0, errmsg: "ok", msgid}``. Checked in this order: ``40003`` touser unknown;
    ``40037`` template unknown; ``41030`` page with a leading ``/``; ``40097``
    miniprogram_state not developer|trial|formal, lang not zh_CN|en_US|zh_HK|zh_TW;
    ``47003`` data not the template's exact keys or a value that does not fit its type
    (errmsg ``argument invalid! data.<key>.value is empty|exceeds limit|invalid`` or
    ``argument invalid! data.<key> not in template``); ``43101`` no quota left for
    (touser, template) (nothing recorded). Success uses one one-time quota (a long-term
    subscription is unlimited) and records the message. Value rules: thing ≤20 chars, no
    control characters (line breaks);
    phrase ≤5 CJK chars; name ≤10 CJK (``·`` allowed) or ≤20 ASCII letters/space/``.'-``;
    character_string ≤32 printable ASCII; number ≤32 chars, ``-?digits(.digits)?``; letter
    ≤32 ASCII letters; symbol ≤5 punctuation; amount optional ``¥$€£``, ≤10 digits, 2
    decimals, optional ``元``; phone_number ≤17 of digits/``+``/``-``/space; car_number ≤8,
    letters/digits with a CJK char allowed first and last; date ``YYYY-MM-DD``,
    ``YYYY/MM/DD``, ``YYYY.MM.DD`` or ``YYYY年M月D日``, optionally followed by ``HH:MM[:SS]``;
    time ``HH:MM[:SS]`` optionally preceded by such a date. date/time may be a range
    ``A~B``. Every value must be a non-empty string.

Templates and quotas are set through the control API (``/_sandbox/templates``,
``/_sandbox/quota``), as the mini-program's ``wx.requestSubscribeMessage`` would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import ControlError, JSONDict, WeChatError, bad_args, iso
from wxbackend.sandbox.login import LoginState
from wxbackend.sandbox.paths import SUBSCRIBE_SEND_PATH

_MINIPROGRAM_STATES = ("developer", "trial", "formal")
_LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")

# --- value rules ------------------------------------------------------------------------------
# WeChat's 订阅消息参数值内容限制说明 on the send page:
# https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
# The sandbox's own table, written apart from the server's (services/messaging/template_data.py)
# so that a mistake in one is caught by the other.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")
_TIME_FORMATS = ("%H:%M", "%H:%M:%S")
_VALUE_PATTERNS: dict[str, re.Pattern[str]] = {
    "phrase": re.compile(f"[{_CJK}]{{1,5}}"),
    "character_string": re.compile(r"[\x21-\x7e]{1,32}"),
    "number": re.compile(r"(?=.{1,32}$)-?\d+(?:\.\d+)?"),
    "letter": re.compile(r"[A-Za-z]{1,32}"),
    "symbol": re.compile(r"[^\w\s]{1,5}"),
    "amount": re.compile(r"[¥$€£]?\d{1,10}(?:\.\d{1,2})?元?"),
    "phone_number": re.compile(r"(?=.*\d)[0-9+\- ]{1,17}"),
    "car_number": re.compile(f"(?=.{{1,8}}$)[{_CJK}]?[A-Za-z0-9]+[{_CJK}]?"),
}
_NAME_CJK_RE = re.compile(f"[{_CJK}·]{{1,10}}")
_NAME_LATIN_RE = re.compile(r"[A-Za-z .'\-]{1,20}")
TEMPLATE_FIELD_TYPES: tuple[str, ...] = (
    "thing",
    "name",
    "time",
    "date",
    *_VALUE_PATTERNS,
)
_FIELD_NAME_RE = re.compile(r"([a-z_]+?)(\d+)")


def _parses(text: str, formats: Iterable[str]) -> bool:
    """Whether ``text`` matches one of the ``strptime`` formats."""
    for fmt in formats:
        try:
            datetime.strptime(text, fmt)  # only the shape matters: naive is fine
        except ValueError:
            continue
        return True
    return False


def _date_time_point(text: str, date_required: bool) -> bool:
    """One date/time point: a date, a time, or a date then a time (space optional)."""
    text = text.strip()
    if _parses(text, _DATE_FORMATS):
        return True
    if not date_required and _parses(text, _TIME_FORMATS):
        return True
    match = re.fullmatch(r"(.+?)\s*(\d{1,2}:\d{2}(?::\d{2})?)", text)
    return bool(match) and _parses(match[1], _DATE_FORMATS) and _parses(match[2], _TIME_FORMATS)


def _date_time_value(text: str, field_type: str) -> bool:
    """A ``time``/``date`` value: one point or a range ``A~B``."""
    parts = re.split("[~～]", text)
    if len(parts) > 2:
        return False
    if field_type == "time":
        # A time must carry a clock time, optionally preceded by a date.
        return all(
            _date_time_point(p, False) and not _parses(p.strip(), _DATE_FORMATS) for p in parts
        )
    return all(_date_time_point(p, True) for p in parts)


def check_template_value(field_type: str, value: str) -> str | None:
    """Why ``value`` does not fit ``field_type`` (``"exceeds limit"``/``"invalid"``), or None."""
    if field_type == "thing":
        if _CONTROL_RE.search(value):  # no line breaks or other control characters
            return "invalid"
        return None if len(value) <= 20 else "exceeds limit"
    if field_type == "name":
        fits = _NAME_CJK_RE.fullmatch(value) or _NAME_LATIN_RE.fullmatch(value)
        if fits:
            return None
        too_long = len(value) > 20 or (bool(re.search(f"[{_CJK}]", value)) and len(value) > 10)
        return "exceeds limit" if too_long else "invalid"
    if field_type in ("time", "date"):
        return None if _date_time_value(value, field_type) else "invalid"
    pattern = _VALUE_PATTERNS[field_type]
    if pattern.fullmatch(value):
        return None
    limit = {"phrase": 5, "symbol": 5, "amount": 13, "phone_number": 17, "car_number": 8}
    return "exceeds limit" if len(value) > limit.get(field_type, 32) else "invalid"


def parse_template_fields(fields: Any) -> dict[str, str]:
    """Template fields from ``{"thing1": "thing"}`` or ``["thing1", ...]``; ValueError if bad."""
    if isinstance(fields, list):
        pairs = []
        for name in fields:
            match = _FIELD_NAME_RE.fullmatch(name) if isinstance(name, str) else None
            if not match:
                raise ValueError(f"field name {name!r} is not <type><n>")
            pairs.append((name, match[1]))
    elif isinstance(fields, dict):
        pairs = list(fields.items())
    else:
        raise ValueError("fields must be an object or a list")
    if not pairs:
        raise ValueError("a template needs at least one field")
    for name, kind in pairs:
        if not isinstance(name, str) or not _FIELD_NAME_RE.fullmatch(name):
            raise ValueError(f"field name {name!r} is not <type><n>")
        if kind not in TEMPLATE_FIELD_TYPES:
            raise ValueError(f"field {name}: unknown type {kind!r}")
    return dict(pairs)


def _check_message_data(data: Any, fields: dict[str, str]) -> JSONDict:
    """Validate subscribe-message ``data`` against the template (``47003`` otherwise)."""
    if not isinstance(data, dict):
        raise WeChatError(47003, "argument invalid! data")
    for key in data:
        if key not in fields:
            raise WeChatError(47003, f"argument invalid! data.{key} not in template")
    for key, field_type in fields.items():
        entry = data.get(key)
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise WeChatError(47003, f"argument invalid! data.{key}.value is empty")
        problem = check_template_value(field_type, value)
        if problem:
            raise WeChatError(47003, f"argument invalid! data.{key}.value {problem}")
    return {key: {"value": data[key]["value"]} for key in fields}


# --- state ------------------------------------------------------------------------------------


@dataclass
class Quota:
    """Subscription quota of one (openid, template)."""

    count: int = 0
    long_term: bool = False

    def as_dict(self) -> JSONDict:
        """``{count, long_term}``."""
        return {"count": self.count, "long_term": self.long_term}


class SubscribeState:
    """Templates, quotas per (openid, template), and the messages sent."""

    def __init__(self, logins: LoginState, now: Callable[[], float]) -> None:
        self.logins = logins
        self.now = now
        self.templates: dict[str, dict[str, str]] = {}
        self.quotas: dict[tuple[str, str], Quota] = {}
        self.messages: list[JSONDict] = []
        self.next_msgid = 1_700_000_000_000_001

    def add_template(self, template_id: Any, fields: Any) -> JSONDict:
        """Register (or replace) a subscribe-message template."""
        if not isinstance(template_id, str) or not template_id:
            raise ControlError(400, "invalid_body", "template_id must be a non-empty string")
        try:
            parsed = parse_template_fields(fields)
        except ValueError as exc:
            raise ControlError(400, "invalid_body", str(exc)) from None
        self.templates[template_id] = parsed
        return {"template_id": template_id, "fields": parsed}

    def set_quota(
        self,
        openid: str,
        template_id: str,
        count: int | None = None,
        long_term: bool | None = None,
    ) -> JSONDict:
        """Set the quota (neither given: one more one-time quota)."""
        quota = self.quotas.setdefault((openid, template_id), Quota())
        if count is None and long_term is None:
            quota.count += 1
        if count is not None:
            quota.count = count
        if long_term is not None:
            quota.long_term = long_term
        return quota.as_dict()

    def set_quotas(self, template_id: str, openids: list[str], count: int = 1) -> JSONDict:
        """Bulk (load tests): each openid becomes known and gets ``count`` one-time quota."""
        for openid in openids:
            self.logins.openids.add(openid)
            self.quotas[(openid, template_id)] = Quota(count=count)
        return {"users": len(openids), "count": count}

    def get_quota(self, openid: str, template_id: str) -> JSONDict:
        """The quota of (openid, template) (zero when never set)."""
        return self.quotas.get((openid, template_id), Quota()).as_dict()

    def send(self, body: JSONDict) -> JSONDict:
        """``POST cgi-bin/message/subscribe/send``."""
        touser = self.logins.known_openid(body.get("touser"))
        template_id = body.get("template_id")
        fields = self.templates.get(template_id) if isinstance(template_id, str) else None
        if fields is None:
            raise WeChatError(40037)
        page = body.get("page", "")
        if not isinstance(page, str) or page.startswith("/"):
            raise WeChatError(41030)
        state = body.get("miniprogram_state", "formal")
        if state not in _MINIPROGRAM_STATES:
            raise bad_args("miniprogram_state")
        lang = body.get("lang", "zh_CN")
        if lang not in _LANGS:
            raise bad_args("lang")
        data = _check_message_data(body.get("data"), fields)
        quota = self.quotas.get((touser, template_id))
        if quota is None or not (quota.long_term or quota.count > 0):
            raise WeChatError(43101)
        if not quota.long_term:
            quota.count -= 1
        msgid = self.next_msgid
        self.next_msgid += 1
        self.messages.append(
            {
                "msgid": msgid,
                "touser": touser,
                "template_id": template_id,
                "page": page,
                "data": data,
                "miniprogram_state": state,
                "lang": lang,
                "at": iso(self.now()),
            }
        )
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def sent(self, openid: str | None = None, template_id: str | None = None) -> list[JSONDict]:
        """Sent messages, oldest first, optionally filtered."""
        return [
            m
            for m in self.messages
            if (not openid or m["touser"] == openid)
            and (not template_id or m["template_id"] == template_id)
        ]


# --- HTTP -------------------------------------------------------------------------------------


class SubscribeSendHandler(WeChatHandler):
    """``POST cgi-bin/message/subscribe/send``."""

    wechat_path = SUBSCRIBE_SEND_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.subscribe.send(self.json_body()))


HANDLERS: tuple[type[WeChatHandler], ...] = (SubscribeSendHandler,)
