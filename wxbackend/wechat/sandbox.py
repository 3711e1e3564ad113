"""WeChat sandbox: a local HTTP server that behaves like WeChat's server API.

Tests, the demo and developers point ``wechat.api_base`` at it (``http://127.0.0.1:8900/``)
instead of ``https://api.weixin.qq.com/``. All state lives in memory in a `SandboxState`.
Like WeChat, every WeChat endpoint answers errors with HTTP 200 and
``{"errcode": N, "errmsg": "<text> rid: <request id>"}`` (a ``rid`` suffix, as WeChat adds one:
compare ``errcode``, never the whole ``errmsg``). JSON bodies are read whatever the
Content-Type (wechatpy sends none). A body that is not a JSON object answers ``47001``.

Errcodes: those named in docs/wechat.md are used as documented. Where it names none the
sandbox answers ``40097`` ("invalid args"), and ``47001`` ("data format error") for a body that
is not JSON; the exceptions are listed per endpoint below.

WeChat endpoints (paths relative to the base URL)
-------------------------------------------------
Every call except ``cgi-bin/token``, ``cgi-bin/stable_token`` and ``sns/jscode2session`` needs
``?access_token=``: missing ``41001``; unknown, invalidated, or replaced more than 300 s ago
``40001``; past its lifetime ``42001``.

``GET cgi-bin/token?grant_type=client_credential&appid=&secret=``
    ``{access_token, expires_in: 7200}``. Each fetch issues a new token; the previous one stays
    valid 300 s more. ``40002`` grant_type not client_credential, ``40013`` wrong (or missing)
    appid, ``40125`` wrong (or missing) secret.
``POST cgi-bin/stable_token`` ``{grant_type, appid, secret, force_refresh?}``
    A token chain separate from ``cgi-bin/token`` (as on WeChat). Returns the same token (with
    its remaining ``expires_in``) until 5 min before its expiry, then a new one.
    ``force_refresh: true`` issues a new one (the previous stays valid 300 s), at most 20 per
    day (UTC+8 calendar day) and 30 s apart, else ``45009``. Errors as for ``cgi-bin/token``;
    ``force_refresh`` not a boolean: ``40097``.
``GET sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code``
    ``{openid, session_key, unionid?}`` (``unionid`` only if the code has one). Codes come
    from the control API only. ``40029`` unknown, missing or older than 5 min, ``40163`` already
    used; ``40013``/``40125`` credentials, ``40002`` grant_type not authorization_code.
``POST cityservice/face/identify/getverifyid``
    ``{out_seq_no, cert_info: {cert_type, cert_name, cert_no}, openid}`` →
    ``{errcode: 0, errmsg: "ok", verify_id, expires_in: 3600}``. ``40097``: out_seq_no not
    5–32 of ``[0-9A-Za-z_-]`` or already used (unique per appid), cert_type not
    IDENTITY_CARD, empty cert_name/cert_no, cert_info not an object. ``40003``: openid never
    issued through a login code. Only `cert_hash` of the certificate is kept.
``POST cityservice/face/identify/queryverifyinfo`` ``{verify_id, out_seq_no, cert_hash, openid}``
    → ``{errcode: 0, errmsg: "ok", verify_ret}``. Before the citizen finishes (control API
    ``face/finish``) ``verify_ret`` is ``90199`` (`UNFINISHED_VERIFY_RET`, WeChat's catch-all
    client-side failure: not finished); afterwards the value set there (10000 = passed).
    All ``40097``, told apart by errmsg: ``invalid verify_id`` (unknown), ``verify_id
    expired`` (older than ``expires_in``), ``out_seq_no not match``, ``openid not match``,
    ``cert_hash not match``.
``POST wxa/getwxacodeunlimit`` ``{scene, page?, check_path? (true), env_version? (release),
width? (430)}``
    A PNG (``image/png``, ``width`` px square, see `wxbackend.wechat.png`). ``40169`` scene
    empty, longer than 32 or not a string; ``40129`` scene characters outside
    ``[0-9A-Za-z!#$&'()*+,/:;=?@-._~]``; ``41030`` page with a leading ``/`` or a ``?``, or
    (check_path true) not a published page; ``40097`` env_version not release|trial|develop,
    width not an integer 280–1280, page/check_path of the wrong type. An empty page is the
    home page.
``POST cgi-bin/message/subscribe/send``
    ``{touser, template_id, page?, data: {key: {value}}, miniprogram_state?, lang?}`` →
    ``{errcode: 0, errmsg: "ok", msgid}``. Checked in this order: ``40003`` touser unknown;
    ``40037`` template unknown; ``41030`` page with a leading ``/``; ``40097``
    miniprogram_state not developer|trial|formal, lang not zh_CN|en_US|zh_HK|zh_TW;
    ``47003`` data not the template's exact keys or a value that does not fit its type
    (errmsg ``argument invalid! data.<key>.value is empty|exceeds limit|invalid`` or
    ``argument invalid! data.<key> not in template``); ``43101`` no quota left for
    (touser, template) (nothing recorded). Success uses one one-time quota (a long-term
    subscription is unlimited) and records the message. Value rules: thing ≤20 chars;
    phrase ≤5 CJK chars; name ≤10 CJK (``·`` allowed) or ≤20 ASCII letters/space/``.'-``;
    character_string ≤32 printable ASCII; number ≤32 chars, ``-?digits(.digits)?``; letter
    ≤32 ASCII letters; symbol ≤5 punctuation; amount optional ``¥$€£``, ≤10 digits, 2
    decimals, optional ``元``; phone_number ≤17 of digits/``+``/``-``/space; car_number ≤8,
    letters/digits with a CJK char allowed first and last; date ``YYYY-MM-DD``,
    ``YYYY/MM/DD``, ``YYYY.MM.DD`` or ``YYYY年M月D日``, optionally followed by ``HH:MM[:SS]``;
    time ``HH:MM[:SS]`` optionally preceded by such a date. date/time may be a range
    ``A~B``. Every value must be a non-empty string.
``POST wxa/msg_sec_check`` ``{version: 2, openid, scene: 1–4, content}``
    → ``{errcode: 0, errmsg: "ok", result: {suggest, label}, detail: [{strategy:
    "content_model", errcode: 0, suggest, label, prob}, ({strategy: "keyword", ...,
    keyword})], trace_id}``. ``40097`` version not 2, bad scene, content not a string or
    over 2500 chars; ``40003`` openid unknown. suggest ``risky`` (label 20006) when the content
    contains a risky word, else ``review`` (label 20001) for a review word, else ``pass``
    (label 100). Matching ignores case. Default words: risky 违禁, RISKY; review 待审, REVIEW.

Control API (JSON, no auth; errors: HTTP 400/404/409 ``{"error": {"code", "message"}}``)
-------------------------------------------------------------------------------------
``GET /_sandbox/``
    An HTML page listing this API.
``POST /_sandbox/login-code {openid?, unionid?}``, ``GET /_sandbox/login-code?openid=&unionid=``
    → ``{code, openid, unionid}``: a login code as ``wx.login`` gives (openid generated as
    ``"o"`` + 27 URL-safe characters when absent; unionid may be null). The openid becomes
    known to every endpoint.
``POST /_sandbox/face/finish {verify_id, verify_ret? (10000)}`` → ``{ok: true}``
    The citizen finished the face check with that result. 404 unknown verify_id, 409 expired.
``GET /_sandbox/face/attempts`` → ``{items: [{verify_id, out_seq_no, openid, cert_hash, status:
pending|finished|expired, verify_ret, created_at, expires_at}]}``
``POST /_sandbox/templates {template_id, fields}`` → ``{template_id, fields}``
    ``fields`` is ``{"thing1": "thing", ...}`` or a list of names whose type is the prefix
    (``["thing1", "time2"]``). Re-registering replaces. ``GET /_sandbox/templates`` lists them.
``POST /_sandbox/quota {openid, template_id, count?, long_term?}`` → ``{count, long_term}``
    Sets the one-time count and/or the long-term flag; with neither given, adds one one-time
    quota (one "accept"). ``GET /_sandbox/quota?openid=&template_id=`` → ``{count, long_term}``.
``POST /_sandbox/quota/bulk {template_id, openids: [...], count? (1)}`` → ``{users, count}``
    Load tests: every openid becomes known (as after a login code) and gets ``count``
    one-time quota for the template.
``GET /_sandbox/messages?openid=&template_id=`` → ``{items: [{msgid, touser, template_id, page,
data, miniprogram_state, lang, at}]}``; ``DELETE /_sandbox/messages`` → ``{ok: true}``.
``POST /_sandbox/faults {path, errcode?, http_status?, hang_seconds?, times?}`` → ``{ok: true}``
    For calls to the WeChat ``path`` (``"sns/jscode2session"``..., or ``"*"`` for every WeChat
    endpoint; never the control API): first hang ``hang_seconds`` (asynchronous; ends early
    when the client disconnects or the sandbox stops), then answer ``errcode`` (with WeChat's
    errmsg) or HTTP ``http_status`` with a text body; a hang alone then answers normally.
    With none of the three the call hangs 3600 s. ``times``: how many calls it affects
    (default: until cleared). An exact path wins over ``"*"``; older faults first.
    ``GET /_sandbox/faults`` lists them; ``DELETE /_sandbox/faults`` clears them.
``POST /_sandbox/tokens/invalidate`` / ``POST /_sandbox/tokens/expire`` → ``{ok: true}``
    Every issued access token becomes invalid (40001) / expired (42001); the next token fetch
    issues a new one.
``POST /_sandbox/sec-words {risky?: [...], review?: [...]}`` → ``{risky, review}``
    (``GET`` shows them).
``GET /_sandbox/stats`` → ``{calls: {path: n}, token_fetches: {"cgi-bin/token": n,
"cgi-bin/stable_token": n}, codes_made: n, messages_sent: n, connections: n}``
    ``calls`` counts every call to a WeChat endpoint (errors and faults included);
    ``token_fetches`` counts answers carrying a token; ``connections`` counts the distinct
    TCP connections those calls came on (a client keeping connections alive makes few).
``POST /_sandbox/reset`` → ``{ok: true}``
    Clears everything (tokens, codes, openids, attempts, templates, quotas, messages, faults,
    words back to defaults, counters; hanging calls are released) except appid, secret and
    published pages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import tornado.httpserver
import tornado.netutil
import tornado.web

from wxbackend.wechat.png import code_png

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

DEFAULT_APPID = "wx00000000000000a1"
DEFAULT_SECRET = "00000000000000000000000000000001"  # noqa: S105 - public dev default
DEFAULT_PAGES: tuple[str, ...] = ("pages/evaluate/index",)
DEFAULT_RISKY_WORDS: tuple[str, ...] = ("违禁", "RISKY")
DEFAULT_REVIEW_WORDS: tuple[str, ...] = ("待审", "REVIEW")

TOKEN_PATH = "cgi-bin/token"  # noqa: S105 - a URL path
STABLE_TOKEN_PATH = "cgi-bin/stable_token"  # noqa: S105 - a URL path
CODE2SESSION_PATH = "sns/jscode2session"
GETVERIFYID_PATH = "cityservice/face/identify/getverifyid"
QUERYVERIFYINFO_PATH = "cityservice/face/identify/queryverifyinfo"
WXACODE_PATH = "wxa/getwxacodeunlimit"
SUBSCRIBE_SEND_PATH = "cgi-bin/message/subscribe/send"
MSG_SEC_CHECK_PATH = "wxa/msg_sec_check"
WECHAT_PATHS: tuple[str, ...] = (
    TOKEN_PATH,
    STABLE_TOKEN_PATH,
    CODE2SESSION_PATH,
    GETVERIFYID_PATH,
    QUERYVERIFYINFO_PATH,
    WXACODE_PATH,
    SUBSCRIBE_SEND_PATH,
    MSG_SEC_CHECK_PATH,
)

TOKEN_TTL = 7200
TOKEN_OVERLAP = 300
STABLE_RENEW_BEFORE = 300
FORCE_REFRESH_PER_DAY = 20
FORCE_REFRESH_INTERVAL = 30
LOGIN_CODE_TTL = 300
VERIFY_ID_TTL = 3600
UNFINISHED_VERIFY_RET = 90199
VERIFY_RET_OK = 10000
DEFAULT_HANG_SECONDS = 3600.0
MAX_SEC_CHECK_CHARS = 2500
LABEL_PASS, LABEL_REVIEW, LABEL_RISKY = 100, 20001, 20006

ERRMSGS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    40129: "invalid scene",
    40163: "code been used",
    40169: "invalid length for scene, or the data is not json string",
    40226: "high risk user, login blocked",
    41001: "access_token missing",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit, must slower, retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
}

_CHINA_TZ = timezone(timedelta(hours=8))
_OUT_SEQ_NO_RE = re.compile(r"[0-9A-Za-z_-]{5,32}")
_SCENE_CHARS_RE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+")
_ENV_VERSIONS = ("release", "trial", "develop")
_MINIPROGRAM_STATES = ("developer", "trial", "formal")
_LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")


class WeChatError(Exception):
    """A WeChat error answer: HTTP 200 with ``{errcode, errmsg}``."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = detail or ERRMSGS.get(errcode, "sandbox error")
        super().__init__(f"{errcode} {self.errmsg}")

    def as_dict(self) -> JSONDict:
        """The JSON body WeChat would answer, with a fresh ``rid`` suffix."""
        return {"errcode": self.errcode, "errmsg": f"{self.errmsg} rid: {_rid()}"}


class ControlError(Exception):
    """A control-API error: HTTP ``status`` with ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


def _rid() -> str:
    """A WeChat-looking request id (three groups of 8 hex digits)."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


def _bad_args(detail: str) -> WeChatError:
    """``40097`` with a specific errmsg."""
    return WeChatError(40097, f"invalid args: {detail}")


def cert_hash(cert_type: str, cert_name: str, cert_no: str) -> str:
    """WeChat's ``cert_hash``: hex SHA-256 of ``cert_type=b64&cert_name=b64&cert_no=b64``."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    plain = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(plain.encode("ascii")).hexdigest()


def _new_openid() -> str:
    """An openid shaped like WeChat's: ``"o"`` + 27 URL-safe characters."""
    return "o" + secrets.token_urlsafe(21)[:27]


def _iso(timestamp: float) -> str:
    """ISO 8601 UTC time for a Unix timestamp."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# Subscribe-message value rules
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass
class AccessToken:
    """An issued access token."""

    value: str
    endpoint: str
    issued_at: float
    expires_at: float
    replaced_until: float | None = None
    invalidated: bool = False


@dataclass
class LoginCode:
    """A ``wx.login`` code made through the control API."""

    code: str
    openid: str
    unionid: str | None
    created_at: float
    used: bool = False


@dataclass
class FaceAttempt:
    """A face verification session; the certificate is kept only as its hash."""

    verify_id: str
    out_seq_no: str
    openid: str
    cert_hash: str
    created_at: float
    expires_at: float
    verify_ret: int | None = None

    def status(self, now: float) -> str:
        """``finished``, ``expired`` or ``pending``."""
        if self.verify_ret is not None:
            return "finished"
        return "expired" if now >= self.expires_at else "pending"


@dataclass
class Quota:
    """Subscription quota of one (openid, template)."""

    count: int = 0
    long_term: bool = False

    def as_dict(self) -> JSONDict:
        return {"count": self.count, "long_term": self.long_term}


@dataclass
class Fault:
    """An injected failure for calls to one WeChat path (or ``"*"``)."""

    path: str
    errcode: int | None = None
    http_status: int | None = None
    hang_seconds: float | None = None
    times: int | None = None

    def as_dict(self) -> JSONDict:
        return {
            "path": self.path,
            "errcode": self.errcode,
            "http_status": self.http_status,
            "hang_seconds": self.hang_seconds,
            "times": self.times,
        }


@dataclass
class _Data:
    """Everything `SandboxState.reset` clears."""

    tokens: dict[str, AccessToken] = field(default_factory=dict)
    current_token: dict[str, str] = field(default_factory=dict)
    force_refreshes: list[float] = field(default_factory=list)
    codes: dict[str, LoginCode] = field(default_factory=dict)
    openids: set[str] = field(default_factory=set)
    attempts: dict[str, FaceAttempt] = field(default_factory=dict)
    out_seq_nos: set[str] = field(default_factory=set)
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    quotas: dict[tuple[str, str], Quota] = field(default_factory=dict)
    messages: list[JSONDict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    risky_words: list[str] = field(default_factory=lambda: list(DEFAULT_RISKY_WORDS))
    review_words: list[str] = field(default_factory=lambda: list(DEFAULT_REVIEW_WORDS))
    calls: dict[str, int] = field(default_factory=dict)
    token_fetches: dict[str, int] = field(
        default_factory=lambda: {TOKEN_PATH: 0, STABLE_TOKEN_PATH: 0}
    )
    codes_made: int = 0
    next_msgid: int = 1_700_000_000_000_001
    connections: int = 0


class SandboxState:
    """All sandbox state, in memory, plain Python.

    WeChat-side methods raise `WeChatError`; control-side methods raise `ControlError`.
    ``clock`` (default `time.time`) may be replaced to test expiries.
    """

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        published_pages: tuple[str, ...] = DEFAULT_PAGES,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.published_pages = tuple(published_pages)
        self.clock: Callable[[], float] = clock or time.time
        self.address = "127.0.0.1"
        self.port: int | None = None
        self.data = _Data()
        self.hang_waiters: set[asyncio.Future[None]] = set()
        self._streams_seen: weakref.WeakSet[object] = weakref.WeakSet()

    @property
    def base_url(self) -> str:
        """The API base to configure as ``wechat.api_base`` (ends with ``/``)."""
        return f"http://{self.address}:{self.port}/"

    def now(self) -> float:
        return self.clock()

    # --- bookkeeping ------------------------------------------------------------------------

    def count_call(self, path: str) -> None:
        """Count one call to a WeChat endpoint."""
        self.data.calls[path] = self.data.calls.get(path, 0) + 1

    def count_connection(self, stream: object | None) -> None:
        """Count the TCP connection (its stream) a call came on, once per connection."""
        if stream is not None and stream not in self._streams_seen:
            self._streams_seen.add(stream)
            self.data.connections += 1

    def take_fault(self, path: str) -> Fault | None:
        """The fault that applies to this call (using up one of its ``times``), if any."""
        for wanted in (path, "*"):
            for fault in self.data.faults:
                if fault.path != wanted:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.data.faults.remove(fault)
                return fault
        return None

    def release_hangs(self) -> None:
        """End every hanging call now (they answer ``-1`` system error)."""
        for waiter in list(self.hang_waiters):
            if not waiter.done():
                waiter.set_result(None)

    # --- access tokens ----------------------------------------------------------------------

    def _check_app(self, appid: Any, secret: Any) -> None:
        if appid != self.appid:
            raise WeChatError(40013)
        if secret != self.secret:
            raise WeChatError(40125)

    def _issue_token(self, endpoint: str) -> AccessToken:
        """A new token for ``endpoint``'s chain; the previous one stays valid 300 s more."""
        now = self.now()
        previous = self.data.tokens.get(self.data.current_token.get(endpoint, ""))
        if previous is not None and previous.replaced_until is None:
            previous.replaced_until = min(previous.expires_at, now + TOKEN_OVERLAP)
        token = AccessToken(secrets.token_urlsafe(96), endpoint, now, now + TOKEN_TTL)
        self.data.tokens[token.value] = token
        self.data.current_token[endpoint] = token.value
        return token

    def _token_answer(self, endpoint: str, token: AccessToken) -> JSONDict:
        self.data.token_fetches[endpoint] += 1
        expires_in = max(0, round(token.expires_at - self.now()))
        return {"access_token": token.value, "expires_in": expires_in}

    def fetch_token(self, grant_type: str, appid: str, secret: str) -> JSONDict:
        """``GET cgi-bin/token``."""
        if grant_type != "client_credential":
            raise WeChatError(40002)
        self._check_app(appid, secret)
        return self._token_answer(TOKEN_PATH, self._issue_token(TOKEN_PATH))

    def fetch_stable_token(self, body: JSONDict) -> JSONDict:
        """``POST cgi-bin/stable_token``."""
        if body.get("grant_type") != "client_credential":
            raise WeChatError(40002)
        self._check_app(body.get("appid"), body.get("secret"))
        force = body.get("force_refresh", False)
        if not isinstance(force, bool):
            raise _bad_args("force_refresh must be a boolean")
        if force:
            self._use_force_refresh()
            return self._token_answer(STABLE_TOKEN_PATH, self._issue_token(STABLE_TOKEN_PATH))
        current = self.data.tokens.get(self.data.current_token.get(STABLE_TOKEN_PATH, ""))
        usable = (
            current is not None
            and not current.invalidated
            and self.now() < current.expires_at - STABLE_RENEW_BEFORE
        )
        if current is None or not usable:
            current = self._issue_token(STABLE_TOKEN_PATH)
        return self._token_answer(STABLE_TOKEN_PATH, current)

    def _use_force_refresh(self) -> None:
        """Enforce 20 forced refreshes per day, 30 s apart (``45009``)."""
        now = self.now()
        today = datetime.fromtimestamp(now, _CHINA_TZ).date()
        history = self.data.force_refreshes
        if history and now - history[-1] < FORCE_REFRESH_INTERVAL:
            raise WeChatError(45009, "reach max api daily quota limit: force_refresh too often")
        done_today = [t for t in history if datetime.fromtimestamp(t, _CHINA_TZ).date() == today]
        if len(done_today) >= FORCE_REFRESH_PER_DAY:
            raise WeChatError(45009)
        self.data.force_refreshes = [*done_today, now]

    def check_access_token(self, value: str | None) -> None:
        """``41001`` missing, ``40001`` unknown/invalid/replaced, ``42001`` expired."""
        if not value:
            raise WeChatError(41001)
        token = self.data.tokens.get(value)
        if token is None or token.invalidated:
            raise WeChatError(40001)
        now = self.now()
        if now >= token.expires_at:
            raise WeChatError(42001)
        if token.replaced_until is not None and now >= token.replaced_until:
            raise WeChatError(40001)

    def invalidate_tokens(self) -> None:
        """Every issued token becomes invalid (``40001``)."""
        for token in self.data.tokens.values():
            token.invalidated = True
        self.data.current_token.clear()

    def expire_tokens(self) -> None:
        """Every issued token becomes expired (``42001``)."""
        now = self.now()
        for token in self.data.tokens.values():
            token.expires_at = min(token.expires_at, now)
        self.data.current_token.clear()

    # --- login ------------------------------------------------------------------------------

    def issue_login_code(self, openid: str | None = None, unionid: str | None = None) -> JSONDict:
        """A ``wx.login`` code for ``openid`` (generated when None)."""
        openid = openid or _new_openid()
        code = secrets.token_urlsafe(24)
        self.data.codes[code] = LoginCode(code, openid, unionid, self.now())
        self.data.openids.add(openid)
        return {"code": code, "openid": openid, "unionid": unionid}

    def code_to_session(self, appid: str, secret: str, js_code: str, grant_type: str) -> JSONDict:
        """``GET sns/jscode2session``."""
        self._check_app(appid, secret)
        if grant_type != "authorization_code":
            raise WeChatError(40002)
        login = self.data.codes.get(js_code)
        if login is None:
            raise WeChatError(40029)
        if login.used:
            raise WeChatError(40163)
        if self.now() - login.created_at > LOGIN_CODE_TTL:
            raise WeChatError(40029, "invalid code: expired")
        login.used = True
        answer: JSONDict = {
            "openid": login.openid,
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
        }
        if login.unionid:
            answer["unionid"] = login.unionid
        return answer

    def _known_openid(self, openid: Any) -> str:
        if not isinstance(openid, str) or openid not in self.data.openids:
            raise WeChatError(40003)
        return openid

    # --- face verification ------------------------------------------------------------------

    def get_verify_id(self, body: JSONDict) -> JSONDict:
        """``POST cityservice/face/identify/getverifyid``."""
        out_seq_no = body.get("out_seq_no")
        if not isinstance(out_seq_no, str) or not _OUT_SEQ_NO_RE.fullmatch(out_seq_no):
            raise _bad_args("out_seq_no must be 5-32 of [0-9A-Za-z_-]")
        cert = body.get("cert_info")
        if not isinstance(cert, dict):
            raise _bad_args("cert_info")
        if cert.get("cert_type") != "IDENTITY_CARD":
            raise _bad_args("cert_info.cert_type")
        name, number = cert.get("cert_name"), cert.get("cert_no")
        if not isinstance(name, str) or not name or not isinstance(number, str) or not number:
            raise _bad_args("cert_info.cert_name/cert_no empty")
        openid = self._known_openid(body.get("openid"))
        if out_seq_no in self.data.out_seq_nos:
            raise _bad_args("out_seq_no already used")
        now = self.now()
        attempt = FaceAttempt(
            verify_id=secrets.token_urlsafe(48),
            out_seq_no=out_seq_no,
            openid=openid,
            cert_hash=cert_hash("IDENTITY_CARD", name, number),
            created_at=now,
            expires_at=now + VERIFY_ID_TTL,
        )
        self.data.attempts[attempt.verify_id] = attempt
        self.data.out_seq_nos.add(out_seq_no)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "verify_id": attempt.verify_id,
            "expires_in": VERIFY_ID_TTL,
        }

    def query_verify_info(self, body: JSONDict) -> JSONDict:
        """``POST cityservice/face/identify/queryverifyinfo``."""
        verify_id = body.get("verify_id")
        attempt = self.data.attempts.get(verify_id) if isinstance(verify_id, str) else None
        if attempt is None:
            raise _bad_args("invalid verify_id")
        if self.now() >= attempt.expires_at:
            raise _bad_args("verify_id expired")
        if body.get("out_seq_no") != attempt.out_seq_no:
            raise _bad_args("out_seq_no not match")
        if body.get("openid") != attempt.openid:
            raise _bad_args("openid not match")
        if body.get("cert_hash") != attempt.cert_hash:
            raise _bad_args("cert_hash not match")
        ret = UNFINISHED_VERIFY_RET if attempt.verify_ret is None else attempt.verify_ret
        return {"errcode": 0, "errmsg": "ok", "verify_ret": ret}

    def finish_face(self, verify_id: str, verify_ret: int = VERIFY_RET_OK) -> None:
        """The citizen finished the face check of ``verify_id`` with ``verify_ret``."""
        attempt = self.data.attempts.get(verify_id)
        if attempt is None:
            raise ControlError(404, "unknown_verify_id", "no such verify_id")
        if attempt.status(self.now()) == "expired":
            raise ControlError(409, "verify_id_expired", "the verify_id has expired")
        attempt.verify_ret = verify_ret

    def face_attempts(self) -> list[JSONDict]:
        """Every face attempt, oldest first (no certificate data but its hash)."""
        now = self.now()
        return [
            {
                "verify_id": a.verify_id,
                "out_seq_no": a.out_seq_no,
                "openid": a.openid,
                "cert_hash": a.cert_hash,
                "status": a.status(now),
                "verify_ret": a.verify_ret,
                "created_at": _iso(a.created_at),
                "expires_at": _iso(a.expires_at),
            }
            for a in self.data.attempts.values()
        ]

    # --- mini-program code ------------------------------------------------------------------

    def make_code(self, body: JSONDict) -> bytes:
        """``POST wxa/getwxacodeunlimit``: the PNG bytes."""
        scene = body.get("scene")
        if not isinstance(scene, str) or not 0 < len(scene) <= 32:
            raise WeChatError(40169)
        if not _SCENE_CHARS_RE.fullmatch(scene):
            raise WeChatError(40129)
        page, check_path = body.get("page", ""), body.get("check_path", True)
        if not isinstance(page, str) or not isinstance(check_path, bool):
            raise _bad_args("page must be a string and check_path a boolean")
        if page.startswith("/") or "?" in page:
            raise WeChatError(41030, "invalid page: no leading / and no query")
        if check_path and page and page not in self.published_pages:
            raise WeChatError(41030, "invalid page: not a published page")
        if body.get("env_version", "release") not in _ENV_VERSIONS:
            raise _bad_args("env_version")
        width = body.get("width", 430)
        if isinstance(width, bool) or not isinstance(width, int) or not 280 <= width <= 1280:
            raise _bad_args("width must be 280-1280")
        self.data.codes_made += 1
        return code_png(scene, width)

    # --- subscribe messages -----------------------------------------------------------------

    def add_template(self, template_id: str, fields: Any) -> JSONDict:
        """Register (or replace) a subscribe-message template."""
        if not isinstance(template_id, str) or not template_id:
            raise ControlError(400, "invalid_body", "template_id must be a non-empty string")
        try:
            parsed = parse_template_fields(fields)
        except ValueError as exc:
            raise ControlError(400, "invalid_body", str(exc)) from None
        self.data.templates[template_id] = parsed
        return {"template_id": template_id, "fields": parsed}

    def set_quota(
        self,
        openid: str,
        template_id: str,
        count: int | None = None,
        long_term: bool | None = None,
    ) -> JSONDict:
        """Set the quota (neither given: one more one-time quota)."""
        quota = self.data.quotas.setdefault((openid, template_id), Quota())
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
            self.data.openids.add(openid)
            self.data.quotas[(openid, template_id)] = Quota(count=count)
        return {"users": len(openids), "count": count}

    def get_quota(self, openid: str, template_id: str) -> JSONDict:
        return self.data.quotas.get((openid, template_id), Quota()).as_dict()

    def send_subscribe(self, body: JSONDict) -> JSONDict:
        """``POST cgi-bin/message/subscribe/send``."""
        touser = self._known_openid(body.get("touser"))
        template_id = body.get("template_id")
        fields = self.data.templates.get(template_id) if isinstance(template_id, str) else None
        if fields is None:
            raise WeChatError(40037)
        page = body.get("page", "")
        if not isinstance(page, str) or page.startswith("/"):
            raise WeChatError(41030)
        state = body.get("miniprogram_state", "formal")
        if state not in _MINIPROGRAM_STATES:
            raise _bad_args("miniprogram_state")
        lang = body.get("lang", "zh_CN")
        if lang not in _LANGS:
            raise _bad_args("lang")
        data = _check_message_data(body.get("data"), fields)
        quota = self.data.quotas.get((touser, template_id))
        if quota is None or not (quota.long_term or quota.count > 0):
            raise WeChatError(43101)
        if not quota.long_term:
            quota.count -= 1
        msgid = self.data.next_msgid
        self.data.next_msgid += 1
        self.data.messages.append(
            {
                "msgid": msgid,
                "touser": touser,
                "template_id": template_id,
                "page": page,
                "data": data,
                "miniprogram_state": state,
                "lang": lang,
                "at": _iso(self.now()),
            }
        )
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def messages(self, openid: str | None = None, template_id: str | None = None) -> list[JSONDict]:
        """Sent messages, oldest first, optionally filtered."""
        return [
            m
            for m in self.data.messages
            if (not openid or m["touser"] == openid)
            and (not template_id or m["template_id"] == template_id)
        ]

    def clear_messages(self) -> None:
        self.data.messages.clear()

    # --- text security ----------------------------------------------------------------------

    def set_sec_words(
        self, risky: list[str] | None = None, review: list[str] | None = None
    ) -> JSONDict:
        """Replace the risky and/or review word lists."""
        if risky is not None:
            self.data.risky_words = list(risky)
        if review is not None:
            self.data.review_words = list(review)
        return {"risky": self.data.risky_words, "review": self.data.review_words}

    def msg_sec_check(self, body: JSONDict) -> JSONDict:
        """``POST wxa/msg_sec_check`` (version 2)."""
        if body.get("version") != 2 or isinstance(body.get("version"), bool):
            raise _bad_args("version must be 2")
        self._known_openid(body.get("openid"))
        scene = body.get("scene")
        if isinstance(scene, bool) or scene not in (1, 2, 3, 4):
            raise _bad_args("scene must be 1-4")
        content = body.get("content")
        if not isinstance(content, str) or len(content) > MAX_SEC_CHECK_CHARS:
            raise _bad_args("content must be a string of at most 2500 characters")
        folded = content.casefold()
        suggest, label, keyword = "pass", LABEL_PASS, None
        for words, verdict, verdict_label in (
            (self.data.risky_words, "risky", LABEL_RISKY),
            (self.data.review_words, "review", LABEL_REVIEW),
        ):
            keyword = next((w for w in words if w and w.casefold() in folded), None)
            if keyword is not None:
                suggest, label = verdict, verdict_label
                break
        verdict_fields = {"errcode": 0, "suggest": suggest, "label": label}
        detail: list[JSONDict] = [
            {"strategy": "content_model", **verdict_fields, "prob": 90 if keyword else 0}
        ]
        if keyword is not None:
            detail.append(
                {"strategy": "keyword", **verdict_fields, "level": 20, "keyword": keyword}
            )
        return {
            "errcode": 0,
            "errmsg": "ok",
            "result": {"suggest": suggest, "label": label},
            "detail": detail,
            "trace_id": f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}",
        }

    # --- faults, stats, reset ---------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.data.faults.append(fault)

    def clear_faults(self) -> None:
        self.data.faults.clear()

    def stats(self) -> JSONDict:
        return {
            "calls": dict(self.data.calls),
            "token_fetches": dict(self.data.token_fetches),
            "codes_made": self.data.codes_made,
            "messages_sent": len(self.data.messages),
            "connections": self.data.connections,
        }

    def reset(self) -> None:
        """Clear everything but appid, secret and published pages; release hanging calls."""
        self.release_hangs()
        self.data = _Data()
        self._streams_seen = weakref.WeakSet()


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


# ---------------------------------------------------------------------------------------------
# HTTP handlers
# ---------------------------------------------------------------------------------------------


class _SandboxHandler(tornado.web.RequestHandler):
    """Shared helpers: the state and JSON answers."""

    @property
    def state(self) -> SandboxState:
        return self.settings["sandbox_state"]

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(payload, ensure_ascii=False))


class WeChatHandler(_SandboxHandler):
    """Base of the WeChat endpoints: call counting, faults, the access token, JSON errors."""

    wechat_path: ClassVar[str] = ""
    needs_access_token: ClassVar[bool] = True

    def initialize(self) -> None:
        self._hang_waiter: asyncio.Future[None] | None = None
        self._client_gone = False

    async def prepare(self) -> None:
        self.state.count_call(self.wechat_path)
        self.state.count_connection(getattr(self.request.connection, "stream", None))
        fault = self.state.take_fault(self.wechat_path)
        if fault is not None and await self._apply_fault(fault):
            return
        if self.needs_access_token:
            try:
                self.state.check_access_token(self.get_query_argument("access_token", None))
            except WeChatError as exc:
                self.write_json(exc.as_dict())

    async def _apply_fault(self, fault: Fault) -> bool:
        """Hang, then answer the fault's errcode or HTTP status; True if answered."""
        hang = fault.hang_seconds
        if hang is None and fault.errcode is None and fault.http_status is None:
            hang = DEFAULT_HANG_SECONDS
        if hang:
            released = await self._hang(hang)
            if self._client_gone:
                self.finish()  # nothing can be written; just end the request
                return True
            if released:
                self.write_json(WeChatError(-1).as_dict())
                return True
        if fault.http_status is not None:
            self.set_status(fault.http_status)
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(f"sandbox fault: HTTP {fault.http_status}\n")
            return True
        if fault.errcode is not None:
            self.write_json(WeChatError(fault.errcode).as_dict())
            return True
        return False

    async def _hang(self, seconds: float) -> bool:
        """Wait ``seconds`` without blocking; True if ended early (client gone or release)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hang_waiter = waiter
        self.state.hang_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            return False
        finally:
            self.state.hang_waiters.discard(waiter)
            self._hang_waiter = None
        return True

    def on_connection_close(self) -> None:
        self._client_gone = True
        if self._hang_waiter is not None and not self._hang_waiter.done():
            self._hang_waiter.set_result(None)
        super().on_connection_close()

    def answer(self, action: Callable[[], JSONDict]) -> None:
        """Run ``action`` and answer its result, or WeChat's error JSON."""
        try:
            result = action()
        except WeChatError as exc:
            result = exc.as_dict()
        self.write_json(result)

    def json_body(self) -> JSONDict:
        """The request body as a JSON object (``47001`` otherwise)."""
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            raise WeChatError(47001) from None
        if not isinstance(body, dict):
            raise WeChatError(47001)
        return body

    def arg(self, name: str) -> str:
        return self.get_query_argument(name, "") or ""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.write_json(WeChatError(-1).as_dict(), status=status_code)


class TokenHandler(WeChatHandler):
    """``GET cgi-bin/token``."""

    wechat_path = TOKEN_PATH
    needs_access_token = False

    def get(self) -> None:
        self.answer(
            lambda: self.state.fetch_token(
                self.arg("grant_type"), self.arg("appid"), self.arg("secret")
            )
        )


class StableTokenHandler(WeChatHandler):
    """``POST cgi-bin/stable_token``."""

    wechat_path = STABLE_TOKEN_PATH
    needs_access_token = False

    def post(self) -> None:
        self.answer(lambda: self.state.fetch_stable_token(self.json_body()))


class CodeToSessionHandler(WeChatHandler):
    """``GET sns/jscode2session``."""

    wechat_path = CODE2SESSION_PATH
    needs_access_token = False

    def get(self) -> None:
        self.answer(
            lambda: self.state.code_to_session(
                self.arg("appid"), self.arg("secret"), self.arg("js_code"), self.arg("grant_type")
            )
        )


class GetVerifyIdHandler(WeChatHandler):
    """``POST cityservice/face/identify/getverifyid``."""

    wechat_path = GETVERIFYID_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.get_verify_id(self.json_body()))


class QueryVerifyInfoHandler(WeChatHandler):
    """``POST cityservice/face/identify/queryverifyinfo``."""

    wechat_path = QUERYVERIFYINFO_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.query_verify_info(self.json_body()))


class WxaCodeHandler(WeChatHandler):
    """``POST wxa/getwxacodeunlimit``: PNG bytes, or WeChat's error JSON."""

    wechat_path = WXACODE_PATH

    def post(self) -> None:
        try:
            image = self.state.make_code(self.json_body())
        except WeChatError as exc:
            self.write_json(exc.as_dict())
            return
        self.set_header("Content-Type", "image/png")
        self.finish(image)


class SubscribeSendHandler(WeChatHandler):
    """``POST cgi-bin/message/subscribe/send``."""

    wechat_path = SUBSCRIBE_SEND_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.send_subscribe(self.json_body()))


class MsgSecCheckHandler(WeChatHandler):
    """``POST wxa/msg_sec_check``."""

    wechat_path = MSG_SEC_CHECK_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.msg_sec_check(self.json_body()))


# --- control API ------------------------------------------------------------------------------


def _opt(body: JSONDict, name: str, kind: type | tuple[type, ...]) -> Any:
    """Optional field ``name`` of type ``kind`` (None when absent or null)."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ControlError(400, "invalid_body", f"{name} has the wrong type")
    if not isinstance(value, kind):
        raise ControlError(400, "invalid_body", f"{name} has the wrong type")
    return value


def _req(body: JSONDict, name: str, kind: type | tuple[type, ...]) -> Any:
    """Required field ``name`` of type ``kind``."""
    value = _opt(body, name, kind)
    if value is None or value == "":
        raise ControlError(400, "invalid_body", f"{name} is required")
    return value


def _word_list(body: JSONDict, name: str) -> list[str] | None:
    words = _opt(body, name, list)
    if words is not None and not all(isinstance(w, str) and w for w in words):
        raise ControlError(400, "invalid_body", f"{name} must be a list of non-empty strings")
    return words


class ControlHandler(_SandboxHandler):
    """Base of the control API: JSON bodies, ``{"error": {...}}`` errors."""

    def body(self) -> JSONDict:
        """The JSON object body (an empty body is ``{}``)."""
        if not self.request.body.strip():
            return {}
        try:
            body = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError):
            raise ControlError(400, "invalid_body", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ControlError(400, "invalid_body", "the body must be a JSON object")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ControlError):
            self.write_json({"error": {"code": exc.code, "message": exc.message}}, exc.status)
            return
        message = self._reason if status_code < 500 else "internal error"
        self.write_json({"error": {"code": f"http_{status_code}", "message": message}}, status_code)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, ControlError):
            super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ControlError):
            status_code = exc.status
        super().send_error(status_code, **kwargs)

    def ok(self) -> None:
        self.write_json({"ok": True})


class IndexHandler(ControlHandler):
    """``GET /_sandbox/``: a short HTML guide."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(
            _INDEX_HTML.replace("{base}", f"{self.request.protocol}://{self.request.host}/")
        )


class LoginCodeHandler(ControlHandler):
    """``/_sandbox/login-code``: make a ``wx.login`` code."""

    def get(self) -> None:
        openid = self.get_query_argument("openid", None) or None
        unionid = self.get_query_argument("unionid", None) or None
        self.write_json(self.state.issue_login_code(openid, unionid))

    def post(self) -> None:
        body = self.body()
        openid, unionid = _opt(body, "openid", str), _opt(body, "unionid", str)
        self.write_json(self.state.issue_login_code(openid or None, unionid or None))


class FaceFinishHandler(ControlHandler):
    """``POST /_sandbox/face/finish``."""

    def post(self) -> None:
        body = self.body()
        verify_ret = _opt(body, "verify_ret", int)
        self.state.finish_face(
            _req(body, "verify_id", str), VERIFY_RET_OK if verify_ret is None else verify_ret
        )
        self.ok()


class FaceAttemptsHandler(ControlHandler):
    """``GET /_sandbox/face/attempts``."""

    def get(self) -> None:
        self.write_json({"items": self.state.face_attempts()})


class TemplatesHandler(ControlHandler):
    """``/_sandbox/templates``: register and list templates."""

    def get(self) -> None:
        items = [{"template_id": k, "fields": v} for k, v in self.state.data.templates.items()]
        self.write_json({"items": items})

    def post(self) -> None:
        body = self.body()
        self.write_json(self.state.add_template(body.get("template_id"), body.get("fields")))


class QuotaHandler(ControlHandler):
    """``/_sandbox/quota``: set and read subscription quotas."""

    def get(self) -> None:
        openid = self.get_query_argument("openid", "")
        template_id = self.get_query_argument("template_id", "")
        if not openid or not template_id:
            raise ControlError(400, "invalid_query", "openid and template_id are required")
        self.write_json(self.state.get_quota(openid, template_id))

    def post(self) -> None:
        body = self.body()
        count = _opt(body, "count", int)
        if count is not None and count < 0:
            raise ControlError(400, "invalid_body", "count must be >= 0")
        self.write_json(
            self.state.set_quota(
                _req(body, "openid", str),
                _req(body, "template_id", str),
                count,
                _opt(body, "long_term", bool),
            )
        )


class QuotaBulkHandler(ControlHandler):
    """``POST /_sandbox/quota/bulk``: many users' quotas at once (load tests)."""

    def post(self) -> None:
        body = self.body()
        openids = _req(body, "openids", list)
        if not all(isinstance(o, str) and o for o in openids):
            raise ControlError(400, "invalid_body", "openids must be non-empty strings")
        count = _opt(body, "count", int)
        if count is not None and count < 0:
            raise ControlError(400, "invalid_body", "count must be >= 0")
        template_id = _req(body, "template_id", str)
        self.write_json(self.state.set_quotas(template_id, openids, 1 if count is None else count))


class MessagesHandler(ControlHandler):
    """``/_sandbox/messages``: sent subscribe messages."""

    def get(self) -> None:
        items = self.state.messages(
            self.get_query_argument("openid", None), self.get_query_argument("template_id", None)
        )
        self.write_json({"items": items})

    def delete(self) -> None:
        self.state.clear_messages()
        self.ok()


class FaultsHandler(ControlHandler):
    """``/_sandbox/faults``: inject failures into WeChat endpoints."""

    def get(self) -> None:
        self.write_json({"items": [f.as_dict() for f in self.state.data.faults]})

    def post(self) -> None:
        self.state.add_fault(self._fault(self.body()))
        self.ok()

    def delete(self) -> None:
        self.state.clear_faults()
        self.ok()

    @staticmethod
    def _fault(body: JSONDict) -> Fault:
        path = _req(body, "path", str).lstrip("/")
        if path != "*" and path not in WECHAT_PATHS:
            raise ControlError(400, "invalid_body", f"path must be '*' or one of {WECHAT_PATHS}")
        http_status = _opt(body, "http_status", int)
        if http_status is not None and not 200 <= http_status <= 599:
            raise ControlError(400, "invalid_body", "http_status must be 200-599")
        hang = _opt(body, "hang_seconds", (int, float))
        if hang is not None and hang < 0:
            raise ControlError(400, "invalid_body", "hang_seconds must be >= 0")
        if hang is None and body.get("hang") is True:
            hang = DEFAULT_HANG_SECONDS
        times = _opt(body, "times", int)
        if times is not None and times < 1:
            raise ControlError(400, "invalid_body", "times must be >= 1")
        errcode = _opt(body, "errcode", int)
        return Fault(path, errcode, http_status, None if hang is None else float(hang), times)


class TokensHandler(ControlHandler):
    """``POST /_sandbox/tokens/(invalidate|expire)``."""

    def post(self, action: str) -> None:
        if action == "invalidate":
            self.state.invalidate_tokens()
        else:
            self.state.expire_tokens()
        self.ok()


class SecWordsHandler(ControlHandler):
    """``/_sandbox/sec-words``: the words ``msg_sec_check`` reacts to."""

    def get(self) -> None:
        self.write_json(self.state.set_sec_words())

    def post(self) -> None:
        body = self.body()
        risky, review = _word_list(body, "risky"), _word_list(body, "review")
        self.write_json(self.state.set_sec_words(risky, review))


class StatsHandler(ControlHandler):
    """``GET /_sandbox/stats``."""

    def get(self) -> None:
        self.write_json(self.state.stats())


class ResetHandler(ControlHandler):
    """``POST /_sandbox/reset``."""

    def post(self) -> None:
        self.state.reset()
        self.ok()


class NotFoundHandler(ControlHandler):
    """Anything else: 404 JSON."""

    def prepare(self) -> None:
        raise ControlError(404, "not_found", f"no sandbox endpoint at {self.request.path}")


_INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WeChat sandbox</title>
<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}
code,pre{background:#f3f3f3;padding:0 .2em}pre{padding:.5em}</style></head>
<body>
<h1>WeChat sandbox</h1>
<p>A local stand-in for <code>https://api.weixin.qq.com/</code>. Set
<code>wechat.api_base = "{base}"</code>. State is in memory; JSON in and out.</p>
<h2>Simulating the mini-program</h2>
<ol>
<li><b>wx.login</b>: <code>curl -X POST {base}_sandbox/login-code -d '{}'</code> gives
<code>{code, openid}</code>; send <code>code</code> to the backend's login.</li>
<li><b>Face check</b>: after the backend started one, list
<code>GET {base}_sandbox/face/attempts</code>, then finish it:
<code>curl -X POST {base}_sandbox/face/finish
-d '{"verify_id":"...","verify_ret":10000}'</code>.</li>
<li><b>Subscribe</b> (wx.requestSubscribeMessage "accept"): register the template once
<code>POST {base}_sandbox/templates {"template_id":"T","fields":["thing1","time2"]}</code>, then
<code>POST {base}_sandbox/quota {"openid":"...","template_id":"T"}</code>.
Read what was sent: <code>GET {base}_sandbox/messages?openid=</code>.</li>
</ol>
<h2>Control API</h2>
<ul>
<li><code>POST|GET /_sandbox/login-code</code> {openid?, unionid?}</li>
<li><code>POST /_sandbox/face/finish</code> {verify_id, verify_ret?=10000};
<code>GET /_sandbox/face/attempts</code></li>
<li><code>POST|GET /_sandbox/templates</code> {template_id, fields}</li>
<li><code>POST /_sandbox/quota</code> {openid, template_id, count?, long_term?};
<code>GET /_sandbox/quota?openid=&amp;template_id=</code>;
<code>POST /_sandbox/quota/bulk</code> {template_id, openids, count?}</li>
<li><code>GET|DELETE /_sandbox/messages</code> ?openid=&amp;template_id=</li>
<li><code>POST|GET|DELETE /_sandbox/faults</code>
{path ("*" or e.g. "sns/jscode2session"), errcode?, http_status?, hang_seconds?, times?}</li>
<li><code>POST /_sandbox/tokens/invalidate</code>, <code>POST /_sandbox/tokens/expire</code></li>
<li><code>POST|GET /_sandbox/sec-words</code> {risky?, review?}</li>
<li><code>GET /_sandbox/stats</code>, <code>POST /_sandbox/reset</code></li>
</ul>
<h2>WeChat endpoints</h2>
<ul>
<li><code>GET cgi-bin/token</code>, <code>POST cgi-bin/stable_token</code></li>
<li><code>GET sns/jscode2session</code></li>
<li><code>POST cityservice/face/identify/getverifyid</code>,
<code>POST cityservice/face/identify/queryverifyinfo</code></li>
<li><code>POST wxa/getwxacodeunlimit</code> (PNG)</li>
<li><code>POST cgi-bin/message/subscribe/send</code></li>
<li><code>POST wxa/msg_sec_check</code> (version 2)</li>
</ul>
</body></html>
"""


# ---------------------------------------------------------------------------------------------
# Application and server
# ---------------------------------------------------------------------------------------------

_WECHAT_HANDLERS: tuple[type[WeChatHandler], ...] = (
    TokenHandler,
    StableTokenHandler,
    CodeToSessionHandler,
    GetVerifyIdHandler,
    QueryVerifyInfoHandler,
    WxaCodeHandler,
    SubscribeSendHandler,
    MsgSecCheckHandler,
)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Request log at DEBUG: the sandbox stays quiet unless asked."""
    request = handler.request
    log.debug(
        "%d %s %s %.1fms",
        handler.get_status(),
        request.method,
        request.path,
        1000 * request.request_time(),
    )


def make_sandbox_app(state: SandboxState | None = None) -> tornado.web.Application:
    """The sandbox's Tornado application; ``app.settings["sandbox_state"]`` is the state."""
    state = state or SandboxState()
    routes: list[tornado.web.URLSpec] = [
        tornado.web.url(f"/{handler.wechat_path}", handler) for handler in _WECHAT_HANDLERS
    ]
    routes += [
        tornado.web.url(r"/_sandbox/?", IndexHandler),
        tornado.web.url(r"/_sandbox/login-code", LoginCodeHandler),
        tornado.web.url(r"/_sandbox/face/finish", FaceFinishHandler),
        tornado.web.url(r"/_sandbox/face/attempts", FaceAttemptsHandler),
        tornado.web.url(r"/_sandbox/templates", TemplatesHandler),
        tornado.web.url(r"/_sandbox/quota", QuotaHandler),
        tornado.web.url(r"/_sandbox/quota/bulk", QuotaBulkHandler),
        tornado.web.url(r"/_sandbox/messages", MessagesHandler),
        tornado.web.url(r"/_sandbox/faults", FaultsHandler),
        tornado.web.url(r"/_sandbox/tokens/(invalidate|expire)", TokensHandler),
        tornado.web.url(r"/_sandbox/sec-words", SecWordsHandler),
        tornado.web.url(r"/_sandbox/stats", StatsHandler),
        tornado.web.url(r"/_sandbox/reset", ResetHandler),
    ]
    return tornado.web.Application(
        routes,
        sandbox_state=state,
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
    )


async def start_sandbox(
    address: str = "127.0.0.1", port: int = 8900, state: SandboxState | None = None
) -> tuple[tornado.httpserver.HTTPServer, SandboxState]:
    """Bind and start serving on the running loop; port 0 picks a free port (``state.port``)."""
    state = state or SandboxState()
    sockets = tornado.netutil.bind_sockets(port, address=address)
    server = tornado.httpserver.HTTPServer(make_sandbox_app(state))
    server.add_sockets(sockets)
    state.address = address
    state.port = sockets[0].getsockname()[1]
    return server, state


async def stop_sandbox(server: tornado.httpserver.HTTPServer, state: SandboxState) -> None:
    """Stop listening, end hanging calls and close every open connection."""
    server.stop()
    state.release_hangs()
    deadline = time.monotonic() + 1.0
    while state.hang_waiters and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # let released handlers answer before closing
    await server.close_all_connections()


def run_sandbox_forever(
    address: str = "127.0.0.1",
    port: int = 8900,
    appid: str = DEFAULT_APPID,
    secret: str = DEFAULT_SECRET,
    *,
    published_pages: tuple[str, ...] = DEFAULT_PAGES,
) -> None:
    """Run the sandbox until interrupted (``wxbackend sandbox`` and forked child processes)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    async def serve() -> None:
        state = SandboxState(appid, secret, published_pages)
        await start_sandbox(address, port, state)
        log.info("WeChat sandbox listening on %s", state.base_url)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


__all__ = [
    "ControlError",
    "Fault",
    "SandboxState",
    "UNFINISHED_VERIFY_RET",
    "WECHAT_PATHS",
    "WeChatError",
    "cert_hash",
    "make_sandbox_app",
    "run_sandbox_forever",
    "start_sandbox",
    "stop_sandbox",
]
