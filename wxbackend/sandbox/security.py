"""Text security: ``POST wxa/msg_sec_check`` (version 2).

``POST wxa/msg_sec_check`` ``{version: 2, openid, scene: 1–4, content}``
    → ``{errcode: 0, errmsg: "ok", result: {suggest, label}, detail: [{strategy:
    "content_model", errcode: 0, suggest, label, prob}, ({strategy: "keyword", ...,
    keyword})], trace_id}``. ``40097`` version not 2, bad scene, content not a string or
    over 2500 chars; ``40003`` openid unknown. suggest ``risky`` (label 20006) when the content
    contains a risky word, else ``review`` (label 20001) for a review word, else ``pass``
    (label 100). Matching ignores case. Default words: risky 违禁, RISKY; review 待审, REVIEW
    (the control API's ``/_sandbox/sec-words`` changes them).
"""

from __future__ import annotations

import secrets

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import JSONDict, bad_args
from wxbackend.sandbox.login import LoginState
from wxbackend.sandbox.paths import MSG_SEC_CHECK_PATH

DEFAULT_RISKY_WORDS: tuple[str, ...] = ("违禁", "RISKY")
DEFAULT_REVIEW_WORDS: tuple[str, ...] = ("待审", "REVIEW")
MAX_SEC_CHECK_CHARS = 2500
LABEL_PASS, LABEL_REVIEW, LABEL_RISKY = 100, 20001, 20006


class SecurityState:
    """The words ``msg_sec_check`` reacts to."""

    def __init__(self, logins: LoginState) -> None:
        self.logins = logins
        self.risky_words = list(DEFAULT_RISKY_WORDS)
        self.review_words = list(DEFAULT_REVIEW_WORDS)

    def set_words(
        self, risky: list[str] | None = None, review: list[str] | None = None
    ) -> JSONDict:
        """Replace the risky and/or review word lists; both lists as they now are."""
        if risky is not None:
            self.risky_words = list(risky)
        if review is not None:
            self.review_words = list(review)
        return {"risky": self.risky_words, "review": self.review_words}

    def check(self, body: JSONDict) -> JSONDict:
        """``POST wxa/msg_sec_check`` (version 2)."""
        if body.get("version") != 2 or isinstance(body.get("version"), bool):
            raise bad_args("version must be 2")
        self.logins.known_openid(body.get("openid"))
        scene = body.get("scene")
        if isinstance(scene, bool) or scene not in (1, 2, 3, 4):
            raise bad_args("scene must be 1-4")
        content = body.get("content")
        if not isinstance(content, str) or len(content) > MAX_SEC_CHECK_CHARS:
            raise bad_args("content must be a string of at most 2500 characters")
        folded = content.casefold()
        suggest, label, keyword = "pass", LABEL_PASS, None
        for words, verdict, verdict_label in (
            (self.risky_words, "risky", LABEL_RISKY),
            (self.review_words, "review", LABEL_REVIEW),
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


# --- HTTP -------------------------------------------------------------------------------------


class MsgSecCheckHandler(WeChatHandler):
    """``POST wxa/msg_sec_check``."""

    wechat_path = MSG_SEC_CHECK_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.security.check(self.json_body()))


HANDLERS: tuple[type[WeChatHandler], ...] = (MsgSecCheckHandler,)
