"""The sandbox's two kinds of error answer, and small helpers every API group uses.

WeChat endpoints answer errors as WeChat does: HTTP 200 with ``{"errcode": N, "errmsg":
"<text> rid: <request id>"}`` (`WeChatError`). The control API answers HTTP 400/404/409 with
``{"error": {"code", "message"}}`` (`ControlError`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

JSONDict = dict[str, Any]

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


class WeChatError(Exception):
    """A WeChat error answer: HTTP 200 with ``{errcode, errmsg}``."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = detail or ERRMSGS.get(errcode, "sandbox error")
        super().__init__(f"{errcode} {self.errmsg}")

    def as_dict(self) -> JSONDict:
        """The JSON body WeChat would answer, with a fresh ``rid`` suffix."""
        return {"errcode": self.errcode, "errmsg": f"{self.errmsg} rid: {rid()}"}


class ControlError(Exception):
    """A control-API error: HTTP ``status`` with ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


def rid() -> str:
    """A WeChat-looking request id (three groups of 8 hex digits)."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


def bad_args(detail: str) -> WeChatError:
    """``40097`` with a specific errmsg."""
    return WeChatError(40097, f"invalid args: {detail}")


def iso(timestamp: float) -> str:
    """ISO 8601 UTC time for a Unix timestamp."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
