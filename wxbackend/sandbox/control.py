"""The sandbox's control API under ``/_sandbox/``: what the mini-program and tests do.

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
``POST /_sandbox/faults {path, errcode?, http_status?, hang_seconds?, times?, after?}``
→ ``{ok: true}``
    For calls to the WeChat ``path`` (``"sns/jscode2session"``..., or ``"*"`` for every WeChat
    endpoint; never the control API): first hang ``hang_seconds`` (asynchronous; ends early
    when the client disconnects or the sandbox stops), then answer ``errcode`` (with WeChat's
    errmsg) or HTTP ``http_status`` with a text body; a hang alone then answers normally.
    With none of the three the call hangs 3600 s. ``after``: how many matching calls it lets
    through first (arm a fault before a load, not racing it); ``times``: how many calls it
    affects after those (default: until cleared). An exact path wins over ``"*"``; older
    faults first.
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

import json
from typing import Any

import tornado.web

from wxbackend.sandbox.base import SandboxHandler
from wxbackend.sandbox.errors import ControlError, JSONDict
from wxbackend.sandbox.face import VERIFY_RET_OK
from wxbackend.sandbox.faults import DEFAULT_HANG_SECONDS, Fault
from wxbackend.sandbox.paths import WECHAT_PATHS


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


class ControlHandler(SandboxHandler):
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
        self.write_json(self.state.logins.issue_code(openid, unionid))

    def post(self) -> None:
        body = self.body()
        openid, unionid = _opt(body, "openid", str), _opt(body, "unionid", str)
        self.write_json(self.state.logins.issue_code(openid or None, unionid or None))


class FaceFinishHandler(ControlHandler):
    """``POST /_sandbox/face/finish``."""

    def post(self) -> None:
        body = self.body()
        verify_ret = _opt(body, "verify_ret", int)
        self.state.face.finish(
            _req(body, "verify_id", str), VERIFY_RET_OK if verify_ret is None else verify_ret
        )
        self.ok()


class FaceAttemptsHandler(ControlHandler):
    """``GET /_sandbox/face/attempts``."""

    def get(self) -> None:
        self.write_json({"items": self.state.face.listing()})


class TemplatesHandler(ControlHandler):
    """``/_sandbox/templates``: register and list templates."""

    def get(self) -> None:
        items = [{"template_id": k, "fields": v} for k, v in self.state.subscribe.templates.items()]
        self.write_json({"items": items})

    def post(self) -> None:
        body = self.body()
        self.write_json(
            self.state.subscribe.add_template(body.get("template_id"), body.get("fields"))
        )


class QuotaHandler(ControlHandler):
    """``/_sandbox/quota``: set and read subscription quotas."""

    def get(self) -> None:
        openid = self.get_query_argument("openid", "")
        template_id = self.get_query_argument("template_id", "")
        if not openid or not template_id:
            raise ControlError(400, "invalid_query", "openid and template_id are required")
        self.write_json(self.state.subscribe.get_quota(openid, template_id))

    def post(self) -> None:
        body = self.body()
        count = _opt(body, "count", int)
        if count is not None and count < 0:
            raise ControlError(400, "invalid_body", "count must be >= 0")
        self.write_json(
            self.state.subscribe.set_quota(
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
        self.write_json(
            self.state.subscribe.set_quotas(template_id, openids, 1 if count is None else count)
        )


class MessagesHandler(ControlHandler):
    """``/_sandbox/messages``: sent subscribe messages."""

    def get(self) -> None:
        items = self.state.subscribe.sent(
            self.get_query_argument("openid", None), self.get_query_argument("template_id", None)
        )
        self.write_json({"items": items})

    def delete(self) -> None:
        self.state.subscribe.messages.clear()
        self.ok()


class FaultsHandler(ControlHandler):
    """``/_sandbox/faults``: inject failures into WeChat endpoints."""

    def get(self) -> None:
        self.write_json({"items": [f.as_dict() for f in self.state.faults.items]})

    def post(self) -> None:
        self.state.faults.add(self._fault(self.body()))
        self.ok()

    def delete(self) -> None:
        self.state.faults.clear()
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
        after = _opt(body, "after", int)
        if after is not None and after < 0:
            raise ControlError(400, "invalid_body", "after must be >= 0")
        errcode = _opt(body, "errcode", int)
        hang = None if hang is None else float(hang)
        return Fault(path, errcode, http_status, hang, times, after or 0)


class TokensHandler(ControlHandler):
    """``POST /_sandbox/tokens/(invalidate|expire)``."""

    def post(self, action: str) -> None:
        if action == "invalidate":
            self.state.tokens.invalidate()
        else:
            self.state.tokens.expire()
        self.ok()


class SecWordsHandler(ControlHandler):
    """``/_sandbox/sec-words``: the words ``msg_sec_check`` reacts to."""

    def get(self) -> None:
        self.write_json(self.state.security.set_words())

    def post(self) -> None:
        body = self.body()
        risky, review = _word_list(body, "risky"), _word_list(body, "review")
        self.write_json(self.state.security.set_words(risky, review))


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
{path ("*" or e.g. "sns/jscode2session"), errcode?, http_status?, hang_seconds?, times?,
after?}</li>
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


ROUTES: list[tornado.web.URLSpec] = [
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
