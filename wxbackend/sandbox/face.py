"""Face verification (城市服务 实名核身): ``getverifyid`` and ``queryverifyinfo``.

``POST cityservice/face/identify/getverifyid``
    ``{out_seq_no, cert_info: {cert_type, cert_name, cert_no}, openid}`` →
    ``{errcode: 0, errmsg: "ok", verify_id, expires_in: 3600}``. ``40097``: out_seq_no not
    5–32 of ``[0-9A-Za-z_-]`` or already used (unique per appid), cert_type not
    IDENTITY_CARD, empty cert_name/cert_no, cert_info not an object. ``40003``: openid never
    issued through a login code. Only `cert_hash` of the certificate is kept.
``POST cityservice/face/identify/queryverifyinfo`` ``{verify_id, out_seq_no, cert_hash, openid}``
    → ``{errcode: 0, errmsg: "ok", verify_ret}``. Before the citizen finishes (control API
    ``face/finish``) ``verify_ret`` is ``90199`` (`UNFINISHED_VERIFY_RET`: WeChat documents no
    "not finished" value; 90199 is its 用户系统错误, what a check that never completed
    reports); afterwards the value set there (10000 = passed). ``84001`` unknown verify_id
    (非法 identify id), ``84002`` verify_id older than ``expires_in`` (用户信息过期): WeChat's
    errcodes of the face API family (see ``wxbackend/wechat/errors.py``); ``40097`` told
    apart by errmsg: ``out_seq_no not match``, ``openid not match``, ``cert_hash not match``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.errors import ControlError, JSONDict, WeChatError, bad_args, iso
from wxbackend.sandbox.login import LoginState
from wxbackend.sandbox.paths import GETVERIFYID_PATH, QUERYVERIFYINFO_PATH

VERIFY_ID_TTL = 3600
UNFINISHED_VERIFY_RET = 90199
VERIFY_RET_OK = 10000
_OUT_SEQ_NO_RE = re.compile(r"[0-9A-Za-z_-]{5,32}")


def cert_hash(cert_type: str, cert_name: str, cert_no: str) -> str:
    """WeChat's ``cert_hash``: hex SHA-256 of ``cert_type=b64&cert_name=b64&cert_no=b64``."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    plain = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(plain.encode("ascii")).hexdigest()


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


class FaceState:
    """Face verification attempts and the ``out_seq_no`` values used."""

    def __init__(self, logins: LoginState, now: Callable[[], float]) -> None:
        self.logins = logins
        self.now = now
        self.attempts: dict[str, FaceAttempt] = {}
        self.out_seq_nos: set[str] = set()

    def get_verify_id(self, body: JSONDict) -> JSONDict:
        """``POST cityservice/face/identify/getverifyid``."""
        out_seq_no = body.get("out_seq_no")
        if not isinstance(out_seq_no, str) or not _OUT_SEQ_NO_RE.fullmatch(out_seq_no):
            raise bad_args("out_seq_no must be 5-32 of [0-9A-Za-z_-]")
        cert = body.get("cert_info")
        if not isinstance(cert, dict):
            raise bad_args("cert_info")
        if cert.get("cert_type") != "IDENTITY_CARD":
            raise bad_args("cert_info.cert_type")
        name, number = cert.get("cert_name"), cert.get("cert_no")
        if not isinstance(name, str) or not name or not isinstance(number, str) or not number:
            raise bad_args("cert_info.cert_name/cert_no empty")
        openid = self.logins.known_openid(body.get("openid"))
        if out_seq_no in self.out_seq_nos:
            raise bad_args("out_seq_no already used")
        now = self.now()
        attempt = FaceAttempt(
            verify_id=secrets.token_urlsafe(48),
            out_seq_no=out_seq_no,
            openid=openid,
            cert_hash=cert_hash("IDENTITY_CARD", name, number),
            created_at=now,
            expires_at=now + VERIFY_ID_TTL,
        )
        self.attempts[attempt.verify_id] = attempt
        self.out_seq_nos.add(out_seq_no)
        return {
            "errcode": 0,
            "errmsg": "ok",
            "verify_id": attempt.verify_id,
            "expires_in": VERIFY_ID_TTL,
        }

    def query_verify_info(self, body: JSONDict) -> JSONDict:
        """``POST cityservice/face/identify/queryverifyinfo``."""
        verify_id = body.get("verify_id")
        attempt = self.attempts.get(verify_id) if isinstance(verify_id, str) else None
        if attempt is None:
            raise WeChatError(84001, "invalid identify id")
        if self.now() >= attempt.expires_at:
            raise WeChatError(84002, "user info expired")
        if body.get("out_seq_no") != attempt.out_seq_no:
            raise bad_args("out_seq_no not match")
        if body.get("openid") != attempt.openid:
            raise bad_args("openid not match")
        if body.get("cert_hash") != attempt.cert_hash:
            raise bad_args("cert_hash not match")
        ret = UNFINISHED_VERIFY_RET if attempt.verify_ret is None else attempt.verify_ret
        return {"errcode": 0, "errmsg": "ok", "verify_ret": ret}

    def finish(self, verify_id: str, verify_ret: int = VERIFY_RET_OK) -> None:
        """The citizen finished the face check of ``verify_id`` with ``verify_ret``."""
        attempt = self.attempts.get(verify_id)
        if attempt is None:
            raise ControlError(404, "unknown_verify_id", "no such verify_id")
        if attempt.status(self.now()) == "expired":
            raise ControlError(409, "verify_id_expired", "the verify_id has expired")
        attempt.verify_ret = verify_ret

    def listing(self) -> list[JSONDict]:
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
                "created_at": iso(a.created_at),
                "expires_at": iso(a.expires_at),
            }
            for a in self.attempts.values()
        ]


# --- HTTP -------------------------------------------------------------------------------------


class GetVerifyIdHandler(WeChatHandler):
    """``POST cityservice/face/identify/getverifyid``."""

    wechat_path = GETVERIFYID_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.face.get_verify_id(self.json_body()))


class QueryVerifyInfoHandler(WeChatHandler):
    """``POST cityservice/face/identify/queryverifyinfo``."""

    wechat_path = QUERYVERIFYINFO_PATH

    def post(self) -> None:
        self.answer(lambda: self.state.face.query_verify_info(self.json_body()))


HANDLERS: tuple[type[WeChatHandler], ...] = (GetVerifyIdHandler, QueryVerifyInfoHandler)
