"""The WeChat endpoints the sandbox serves (paths relative to the API base)."""

from __future__ import annotations

TOKEN_PATH = "cgi-bin/token"  # noqa: S105 - a URL path  # nosec B105
STABLE_TOKEN_PATH = "cgi-bin/stable_token"  # noqa: S105 - a URL path  # nosec B105
CODE2SESSION_PATH = "sns/jscode2session"
GETVERIFYID_PATH = "cityservice/face/identify/getverifyid"
QUERYVERIFYINFO_PATH = "cityservice/face/identify/queryverifyinfo"
WXACODE_PATH = "wxa/getwxacodeunlimit"
SUBSCRIBE_SEND_PATH = "cgi-bin/message/subscribe/send"
MSG_SEC_CHECK_PATH = "wxa/msg_sec_check"
WECOM_WEBHOOK_PATH = "cgi-bin/webhook/send"  # WeCom's group robots (sandbox/wecom.py)
WECHAT_PATHS: tuple[str, ...] = (
    TOKEN_PATH,
    STABLE_TOKEN_PATH,
    CODE2SESSION_PATH,
    GETVERIFYID_PATH,
    QUERYVERIFYINFO_PATH,
    WXACODE_PATH,
    SUBSCRIBE_SEND_PATH,
    MSG_SEC_CHECK_PATH,
    WECOM_WEBHOOK_PATH,
)
