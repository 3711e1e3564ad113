"""WeCom (企业微信) group robots: ``POST cgi-bin/webhook/send?key=KEY``.

As WeCom's "群机器人配置说明" (developer.work.weixin.qq.com/document/path/91770) describes:
``{"msgtype": "markdown", "markdown": {"content"}}`` (content at most 4096 bytes of UTF-8)
or ``{"msgtype": "text", "text": {"content"}}`` (at most 2048 bytes) → ``{"errcode": 0,
"errmsg": "ok"}``. Checked in this order: ``93000`` "invalid webhook url" for a key no robot
has (robots are made through the control API, like adding one to a group chat; WeCom
answers 93000 for an unknown key, as its users report, e.g. wes-lin/Cloud189Checkin#175);
``45009`` over 20 messages in the robot's current minute (document 91770: "每个机器人发送的
消息不能超过20条/分钟"); ``40008`` an unknown msgtype; ``40058`` content missing or too
long. The call needs no access token (the key is the credential).

Control API: ``POST /_sandbox/wecom/robots {key?}`` → ``{key}`` (a new robot; key generated
when absent); ``GET /_sandbox/wecom/messages?key=`` → ``{items: [{key, msgtype, content,
at}]}`` (every message a robot took, oldest first); ``DELETE /_sandbox/wecom/messages``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import tornado.web

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.control import ControlHandler, _opt
from wxbackend.sandbox.errors import JSONDict, WeChatError, iso
from wxbackend.sandbox.paths import WECOM_WEBHOOK_PATH

PER_MINUTE = 20
LIMITS = {"markdown": 4096, "text": 2048}
ERRMSGS = {
    93000: "invalid webhook url",
    45009: "api freq out of limit",
    40008: "invalid message type",
    40058: "invalid parameter, content exceed max length or empty",
}


class WeComState:
    """Robots by key, the messages they took, and each robot's count per minute."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.robots: set[str] = set()
        self.messages: list[JSONDict] = []
        self._minutes: dict[tuple[str, int], int] = {}

    def add_robot(self, key: str | None = None) -> str:
        """A robot with ``key`` (a UUID when None), as adding one to a group chat makes."""
        key = key or str(uuid.uuid4())
        self.robots.add(key)
        return key

    def send(self, key: str, body: JSONDict) -> JSONDict:
        """``cgi-bin/webhook/send`` (see the module notes)."""
        if key not in self.robots:
            raise WeChatError(93000, ERRMSGS[93000])
        minute = (key, int(self.now() // 60))
        if self._minutes.get(minute, 0) >= PER_MINUTE:
            raise WeChatError(45009, ERRMSGS[45009])
        msgtype = body.get("msgtype")
        if msgtype not in LIMITS:
            raise WeChatError(40008, ERRMSGS[40008])
        part = body.get(msgtype)
        text = part.get("content") if isinstance(part, dict) else None
        if not isinstance(text, str) or not text or len(text.encode()) > LIMITS[msgtype]:
            raise WeChatError(40058, ERRMSGS[40058])
        self._minutes[minute] = self._minutes.get(minute, 0) + 1
        at = iso(self.now())
        self.messages.append({"key": key, "msgtype": msgtype, "content": text, "at": at})
        return {"errcode": 0, "errmsg": "ok"}

    def sent(self, key: str | None) -> list[JSONDict]:
        """The messages robots took (of ``key`` only when given)."""
        return [dict(m) for m in self.messages if key is None or m["key"] == key]


class WebhookSendHandler(WeChatHandler):
    """``POST cgi-bin/webhook/send?key=``."""

    wechat_path = WECOM_WEBHOOK_PATH
    needs_access_token = False

    def post(self) -> None:
        def action() -> JSONDict:
            return self.state.wecom.send(self.arg("key"), self.json_body())

        self.answer(action)


class RobotsHandler(ControlHandler):
    """``/_sandbox/wecom/robots``: make a robot."""

    def post(self) -> None:
        key = _opt(self.body(), "key", str)
        self.write_json({"key": self.state.wecom.add_robot(key or None)})


class RobotMessagesHandler(ControlHandler):
    """``/_sandbox/wecom/messages``: what the robots took."""

    def get(self) -> None:
        self.write_json({"items": self.state.wecom.sent(self.get_query_argument("key", None))})

    def delete(self) -> None:
        self.state.wecom.messages.clear()
        self.ok()


HANDLERS: tuple[type[WeChatHandler], ...] = (WebhookSendHandler,)
ROUTES: list[tornado.web.URLSpec] = [
    tornado.web.url(r"/_sandbox/wecom/robots", RobotsHandler),
    tornado.web.url(r"/_sandbox/wecom/messages", RobotMessagesHandler),
]
