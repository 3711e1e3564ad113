"""WeChat sandbox: a local HTTP server that behaves like WeChat's server API.

Tests, the demo and developers point ``wechat.api_base`` at it (``http://127.0.0.1:8900/``)
instead of ``https://api.weixin.qq.com/``. All state lives in memory (`SandboxState`). Errors
are WeChat's ``{"errcode", "errmsg"}`` with HTTP 200 and a ``rid`` suffix on ``errmsg`` (compare
``errcode``, never the whole ``errmsg``). Errcodes named in docs/wechat.md are used as
documented; where it names none the sandbox answers ``40097`` ("invalid args"), and ``47001``
for a body that is not a JSON object.

One module per WeChat API group, each with its state (plain Python) and its handlers, and the
contract of its endpoints in its docstring:

=================  ============================================================================
`token`            ``cgi-bin/token``, ``cgi-bin/stable_token``; the access-token rules
`login`            ``sns/jscode2session``; login codes and the openids WeChat knows
`face`             ``cityservice/face/identify/getverifyid``, ``.../queryverifyinfo``
`wxacode`          ``wxa/getwxacodeunlimit`` (the PNG from `png`)
`subscribe`        ``cgi-bin/message/subscribe/send``; templates, value rules, quotas
`security`         ``wxa/msg_sec_check``
`control`          the control API under ``/_sandbox/`` (codes, face results, quotas, faults…)
`faults`           injected failures; `base` applies them to every WeChat call
`state`            `SandboxState`: the groups' states, traffic counters, reset
`app`              the application; `start_sandbox`, `stop_sandbox`, `run_sandbox_forever`
=================  ============================================================================

A new WeChat call: a module with its state class and handler (subclass of
`base.WeChatHandler`), its path in `paths`, its state on `SandboxState`, its handlers in
`app.WECHAT_HANDLERS`.
"""

from __future__ import annotations

from wxbackend.sandbox.app import make_sandbox_app, run_sandbox_forever, start_sandbox, stop_sandbox
from wxbackend.sandbox.errors import ControlError, WeChatError
from wxbackend.sandbox.face import UNFINISHED_VERIFY_RET, cert_hash
from wxbackend.sandbox.faults import Fault
from wxbackend.sandbox.paths import WECHAT_PATHS
from wxbackend.sandbox.state import DEFAULT_APPID, DEFAULT_SECRET, SandboxState
from wxbackend.sandbox.subscribe import check_template_value

__all__ = [
    "DEFAULT_APPID",
    "DEFAULT_SECRET",
    "ControlError",
    "Fault",
    "SandboxState",
    "UNFINISHED_VERIFY_RET",
    "WECHAT_PATHS",
    "WeChatError",
    "cert_hash",
    "check_template_value",
    "make_sandbox_app",
    "run_sandbox_forever",
    "start_sandbox",
    "stop_sandbox",
]
