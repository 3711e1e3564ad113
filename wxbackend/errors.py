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
InvalidQuery = _error("InvalidQuery", 400, "invalid_query", "The query parameters are not valid.")
BodyTooLarge = _error("BodyTooLarge", 413, "body_too_large", "The request body is too large.")
Unauthenticated = _error("Unauthenticated", 401, "unauthenticated", "Log in first.")
Forbidden = _error("Forbidden", 403, "forbidden", "Your role does not allow this.")
NotFound = _error("NotFound", 404, "not_found", "Not found.")
BeyondReach = _error(
    "BeyondReach", 403, "beyond_reach", "That lies beyond your own role and reach."
)
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
WeChatMisconfigured = _error(
    "WeChatMisconfigured",
    503,
    "wechat_misconfigured",
    "WeChat refused the configured credentials (AppID or AppSecret); an administrator must "
    "correct the WeChat configuration.",
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
IdentityBoundElsewhere = _error(
    "IdentityBoundElsewhere",
    409,
    "identity_bound_elsewhere",
    "This identity is already bound to another WeChat user.",
)

# Partners
BadSignature = _error("BadSignature", 401, "bad_signature", "The request signature is not valid.")

# Cases and one-time QR tokens (办件, 一次性二维码)
CaseExists = _error("CaseExists", 409, "case_exists", "A case with this case_no already exists.")
UnknownItem = _error(
    "UnknownItem", 422, "unknown_item", "Unknown service item for this department."
)
UnknownCenter = _error("UnknownCenter", 422, "unknown_center", "Unknown service center.")
UnknownDepartment = _error(
    "UnknownDepartment", 422, "unknown_department", "Unknown department for this center."
)
UnknownStaff = _error("UnknownStaff", 422, "unknown_staff", "Unknown staff member for this center.")
InvalidField = _error("InvalidField", 422, "invalid_field", "A field has an invalid value.")
#: The applicant's ID number in a partner's case report (422 there; the citizen's own is 400).
InvalidApplicantIdNumber = _error(
    "InvalidApplicantIdNumber",
    422,
    "invalid_id_number",
    "The applicant's ID number is not a valid resident ID.",
)
AlreadyEvaluated = _error(
    "AlreadyEvaluated", 409, "already_evaluated", "This case has already been rated."
)
TokenNotFound = _error("TokenNotFound", 404, "token_not_found", "No such QR code.")
TokenExpired = _error("TokenExpired", 410, "token_expired", "This QR code has expired.")
TokenUsed = _error("TokenUsed", 410, "token_used", "This QR code has already been used.")
TokenRevoked = _error(
    "TokenRevoked", 410, "token_revoked", "This QR code was replaced by a newer one."
)

# Ratings (好差评, 追评)
NotApplicant = _error(
    "NotApplicant", 403, "not_applicant", "Only the applicant of this case may rate it."
)
SelfEvaluationForbidden = _error(
    "SelfEvaluationForbidden",
    403,
    "self_evaluation_forbidden",
    "Staff may not rate a case they handled.",
)
InvalidRating = _error(
    "InvalidRating", 422, "invalid_rating", "Every level must be an integer from 1 to 5."
)
ReasonRequired = _error(
    "ReasonRequired",
    422,
    "reason_required",
    "A rating of 1 or 2 needs a reason: choose an indicator or write a comment.",
)
CommentRejected = _error(
    "CommentRejected", 422, "comment_rejected", "The comment did not pass the content check."
)
CommentTooLong = _error("CommentTooLong", 422, "comment_too_long", "The comment is too long.")
UnknownIndicator = _error("UnknownIndicator", 422, "unknown_indicator", "Unknown indicator code.")
NotOwner = _error("NotOwner", 403, "not_owner", "Only the author of this rating may do this.")
FollowUpExists = _error(
    "FollowUpExists", 409, "follow_up_exists", "This rating already has its follow-up."
)

# Administration
BadCredentials = _error("BadCredentials", 401, "bad_credentials", "Wrong username or password.")
Locked = _error(
    "Locked", 429, "locked", "Too many failed logins from here; try again in 15 minutes."
)
InvalidConfig = _error(
    "InvalidConfig", 400, "invalid_config", "A configuration value is not valid."
)

# Catalogue and accounts (admin API)
Exists = _error("Exists", 409, "exists", "A row with this code already exists.")
InUse = _error("InUse", 409, "in_use", "This row is still referenced; it cannot be deleted.")
LastSuperadmin = _error(
    "LastSuperadmin",
    409,
    "last_superadmin",
    "This is the last active superadmin; it cannot be disabled or demoted.",
)

# Tickets (差评整改)
InvalidTransition = _error(
    "InvalidTransition",
    409,
    "invalid_transition",
    "This step is not allowed in the ticket's current state.",
)

# Callback ratings (回访评价, product rule 18)
OwnCase = _error(
    "OwnCase", 403, "own_case", "The case's own window staff or approver cannot record its rating."
)
TooEarly = _error(
    "TooEarly", 422, "too_early", "Too soon after the case was completed for a callback rating."
)

# The rating window, follow-ups and likes (product rules 14–16)
RatingClosed = _error(
    "RatingClosed",
    410,
    "rating_closed",
    "This case's rating window is over; it can no longer be rated.",
)
TicketOpen = _error(
    "TicketOpen",
    409,
    "ticket_open",
    "A follow-up of a 差评 waits until its rectification ticket is closed or invalid.",
)
FollowUpClosed = _error(
    "FollowUpClosed", 410, "follow_up_closed", "The time for a follow-up of this rating is over."
)
OwnRating = _error("OwnRating", 403, "own_rating", "Nobody likes their own rating.")

# Reliability (issue 13)
RatingInProgress = _error(
    "RatingInProgress",
    409,
    "rating_in_progress",
    "Another request is storing a rating of this case; retry shortly to learn its outcome.",
)
IdempotencyMismatch = _error(
    "IdempotencyMismatch",
    422,
    "idempotency_mismatch",
    "This Idempotency-Key was used with another body.",
)
