"""Errors of the contract (../shared/docs/api.md): one exception type per error code.

Services raise these; the base handler turns them into
``{"error": {"code": ..., "message": ...}}`` with the right HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ContractError(Exception):
    """An error the API answers with; ``code`` and ``status`` are part of the contract."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "The request cannot be served."

    def __init__(self, message: str | None = None, **extra: Any):
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return {"error": error}


def _error(name: str, status: int, code: str, message: str) -> type[ContractError]:
    return type(
        name, (ContractError,), {"status": status, "code": code, "default_message": message}
    )


# Generic
InvalidBody = _error("InvalidBody", 400, "invalid_body", "The request body is not valid.")
BodyTooLarge = _error("BodyTooLarge", 413, "body_too_large", "The request body is too large.")
Unauthenticated = _error("Unauthenticated", 401, "unauthenticated", "Log in first.")
Forbidden = _error("Forbidden", 403, "forbidden", "Your role does not allow this.")
NotFound = _error("NotFound", 404, "not_found", "Not found.")
RateLimited = _error("RateLimited", 429, "rate_limited", "Too many requests; try again later.")
Unavailable = _error("Unavailable", 503, "unavailable", "A service this needs is unavailable.")

# WeChat
WeChatCodeInvalid = _error(
    "WeChatCodeInvalid", 401, "wechat_code_invalid", "The WeChat login code is invalid or used."
)
WeChatUserBlocked = _error(
    "WeChatUserBlocked", 403, "wechat_user_blocked", "WeChat has blocked this account (40226)."
)
WeChatUnavailable = _error(
    "WeChatUnavailable", 503, "wechat_unavailable", "WeChat is not answering; try again shortly."
)

# Identity (实名核身)
InvalidIdNumber = _error(
    "InvalidIdNumber", 400, "invalid_id_number", "The ID number is not a valid resident ID."
)
InvalidName = _error("InvalidName", 400, "invalid_name", "The name is not valid.")
FaceVerifyFailed = _error(
    "FaceVerifyFailed", 403, "face_verify_failed", "The face verification did not pass."
)
UnknownVerifyId = _error("UnknownVerifyId", 404, "unknown_verify_id", "No such verification.")
VerifyIdUsed = _error("VerifyIdUsed", 409, "verify_id_used", "This verification was already used.")
VerifyIdExpired = _error(
    "VerifyIdExpired", 410, "verify_id_expired", "This verification has expired; start again."
)
IdentityRequired = _error(
    "IdentityRequired", 403, "identity_required", "Verify your real name first."
)

# Partners
BadSignature = _error("BadSignature", 401, "bad_signature", "The request signature is not valid.")
