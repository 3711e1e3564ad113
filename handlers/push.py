"""WeChat message push (消息推送): ``GET|POST /wechat/push``.

``GET`` is the console's server verification (echo ``echostr`` when ``signature`` is right).
``POST`` carries events (plaintext or safe mode, JSON or XML; see
:mod:`wxbackend.wechat.push`); the reply is ``success`` (text/plain), also for a retry of a
delivery already applied and for events this server does not handle.

Refusals store nothing: 401 ``bad_signature`` when unsigned, a signature or
``msg_signature`` does not match, the timestamp is over 5 minutes off (a replay), a signature
already used with another body (:mod:`~wxbackend.services.messaging.push_guard`), a plaintext
delivery while an EncodingAESKey is configured (a downgrade), the decrypted message names
another appid, or push is not configured (no token); 400
``invalid_body`` when the body is neither JSON nor XML or does not decrypt. Message contents
and openids are never logged.
"""

from __future__ import annotations

from handlers.base import BaseHandler, route
from handlers.openapi import errors_of
from wxbackend import errors
from wxbackend.services.messaging import push_guard, subscriptions
from wxbackend.wechat import push

_SIGNED = [
    {"name": name, "in": "query", "required": required, "schema": {"type": "string"}}
    for name, required in (
        ("signature", True),
        ("timestamp", True),
        ("nonce", True),
        ("msg_signature", False),
    )
]
#: raw (plaintext, the default when empty) or aes (safe mode).
_ENCRYPT_TYPE = {"type": "string", "enum": ["", "raw", "aes"]}
_SIGNED.insert(3, {"name": "encrypt_type", "in": "query", "schema": _ENCRYPT_TYPE})
_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
QUERY_KEYS = ("signature", "timestamp", "nonce", "encrypt_type", "msg_signature")


class PushHandler(BaseHandler):
    """WeChat's message push: server verification and event deliveries."""

    #: WeChat adds fields to its messages over time: never reject unknown ones.
    strict_fields = False

    openapi = {
        "get": {
            "summary": "WeChat server verification: echoes echostr when the signature is right",
            "parameters": [
                *_SIGNED[:3],
                {"name": "echostr", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "echostr", **_TEXT}, **errors_of(401)},
        },
        "post": {
            "summary": "WeChat event delivery (plaintext or safe mode; JSON or XML)",
            "parameters": _SIGNED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/xml": {"schema": {"type": "string"}},
                },
            },
            "responses": {
                "200": {"description": "success", **_TEXT},
                **errors_of(400, 401, 413),
            },
        },
    }

    def get(self) -> None:
        token = self.ctx.wechat_config.config().push_token
        ok = push.signature_ok(
            self.get_query_argument("signature", ""),
            token,
            self.get_query_argument("timestamp", ""),
            self.get_query_argument("nonce", ""),
        )
        if not ok:
            raise errors.BadSignature("The push signature is not valid.")
        self._text(self.get_query_argument("echostr", ""))

    async def post(self) -> None:
        config = self.ctx.wechat_config.config()
        query = {key: self.get_query_argument(key, "") for key in QUERY_KEYS}
        try:
            delivery = push.open_delivery(
                query, self.request.body or b"", config.push_token, config.aes_key, config.appid
            )
        except push.PushError as exc:
            refusal = errors.BadSignature if exc.kind == "signature" else errors.InvalidBody
            raise refusal(str(exc)) from None
        signed = (query["msg_signature"] or query["signature"], query["timestamp"], query["nonce"])
        outcome = await push_guard.claim(self.ctx, *signed, delivery.receipt_key)
        if outcome == push_guard.REPLAY:
            raise errors.BadSignature("This signature was used already: refused as a replay.")
        if outcome == push_guard.FRESH:
            try:
                await self.ctx.db.run(
                    subscriptions.apply_push,
                    delivery.message,
                    delivery.receipt_key,
                    subscriptions.templates_of(self.ctx),
                )
            except BaseException:
                await push_guard.release(self.ctx, *signed)
                raise
        self._text("success")

    def _text(self, text: str) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(text)


default_handlers = [route("/wechat/push", PushHandler)]
