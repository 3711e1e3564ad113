"""A center's WeCom (企业微信) group robot: the call, its outcome, and the pace per robot.

WeCom's "群机器人配置说明" (developer.work.weixin.qq.com/document/path/91770):
``POST <wecom.api_base>cgi-bin/webhook/send?key=KEY`` with ``{"msgtype": "markdown",
"markdown": {"content": ...}}`` (content at most 4096 bytes of UTF-8), answered
``{"errcode": 0, "errmsg": "ok"}``; each robot takes at most 20 messages a minute (over that
WeCom answers 45009); an unknown or deleted robot answers 93000 "invalid webhook url".

The key in the URL is the robot's only credential: the URL is never logged, and errors are
recorded by errcode or exception type, never by their text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from wxbackend.context import Context

SEND_PATH = "cgi-bin/webhook/send"
#: Messages a robot takes per minute (document 91770).
PER_MINUTE = 20
MARKDOWN_MAX_BYTES = 4096
#: 45009: over the robot's 20 a minute; 93000: the key names no robot (deleted, mistyped).
RATE_LIMITED = 45009
INVALID_KEY = 93000


@dataclass(frozen=True)
class Answer:
    """How a call ended. ``sent``: WeCom took it. ``maybe_sent``: it may have (a timeout, a
    connection lost after the request went, an HTTP 5xx): never sent again. Otherwise it
    was refused (``errcode``) or never left (a refused connection)."""

    sent: bool
    maybe_sent: bool
    errcode: str | None


def api_base(ctx: Context) -> str:
    """``wecom.api_base``; ``"sandbox"``: the sandbox the WeChat gateway talks to (or the
    configured sandbox address when WeChat itself is real)."""
    base = ctx.settings.wecom.api_base
    if base != "sandbox":
        return base if base.endswith("/") else base + "/"
    if ctx.settings.sandbox_mode:
        return ctx.wechat.api_base
    sandbox = ctx.settings.sandbox
    return f"http://{sandbox.address}:{sandbox.port}/"


def _fingerprint(key: str) -> str:
    """A robot's name in Redis keys: a digest, never the key."""
    return hashlib.sha256(f"wecom\x00{key}".encode()).hexdigest()[:16]


async def take_slot(ctx: Context, key: str, now: datetime) -> datetime | None:
    """One of the robot's :data:`PER_MINUTE` slots of this minute (a Redis counter per robot
    per minute, shared by every worker): None when taken, else when the next minute starts
    (try again then)."""
    minute = now.replace(second=0, microsecond=0)
    counter = ctx.rkeys("wecom", "pace", _fingerprint(key), f"{minute:%Y%m%d%H%M}")
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count, _ = await pipe.execute()
    if int(count) <= PER_MINUTE:
        return None
    return minute + timedelta(minutes=1)


def payload(content: str) -> bytes:
    """The markdown message's JSON body (``content`` already within 4096 bytes)."""
    body = {"msgtype": "markdown", "markdown": {"content": content}}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


async def send(ctx: Context, key: str, content: str) -> Answer:
    """Send ``content`` (markdown) to the robot of ``key``; every ending is an
    :class:`Answer` (nothing raises, nothing logs the URL)."""
    url = f"{api_base(ctx)}{SEND_PATH}?key={quote(key, safe='')}"
    timeout = float(ctx.settings.wecom.timeout_seconds)
    request = HTTPRequest(
        url,
        method="POST",
        body=payload(content),
        headers={"Content-Type": "application/json; charset=utf-8"},
        connect_timeout=timeout,
        request_timeout=timeout,
    )
    # A client of its own per call: alerts are few, and a hanging robot never holds the
    # WeChat gateway's connections.
    http = SimpleAsyncHTTPClient(force_instance=True)
    try:
        response = await http.fetch(request, raise_error=False)
    except ConnectionRefusedError:
        return Answer(False, False, "refused")
    except OSError as exc:  # name resolution, unreachable network: nothing left
        return Answer(False, False, type(exc).__name__[:16])
    except HTTPClientError as exc:  # tornado's own errors (599)
        # A timeout while connecting or still queued never sent the request; any other
        # (a timeout during the request, a stream closed) may have been acted on.
        reason = str(exc.message or "")
        never_left = any(word in reason for word in ("connecting", "queue"))
        return Answer(False, not never_left, str(exc.code))
    finally:
        http.close()
    if response.code == 599 or response.code >= 500:
        return Answer(False, True, str(response.code))
    if response.code != 200:
        return Answer(False, False, f"http_{response.code}")
    try:
        answer = json.loads(response.body or b"")
        errcode = int(answer.get("errcode", -1))
    except (ValueError, AttributeError, TypeError):
        return Answer(False, True, "bad_answer")
    return Answer(errcode == 0, False, None if errcode == 0 else str(errcode))
