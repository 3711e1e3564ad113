"""Errors of the contract (../shared/docs/api.md): one exception type per error code.

Services raise these; the base handler turns them into
``{"error": {"code": ..., "message": ..., "message_zh": ...}}`` with the right HTTP status.
Each code has one Chinese message (``message_zh``), given beside its English one below.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ContractError(Exception):
    """An error the API answers with; ``code`` and ``status`` are part of the contract."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    default_message: ClassVar[str] = "The request cannot be served."
    message_zh: ClassVar[str] = "无法处理此请求。"

    def __init__(self, message: str | None = None, **extra: Any):
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return {"error": error}


#: Chinese messages of the codes the server answers without a ContractError of this module
#: (tornado's own 404/405, an unexpected failure, an error defined beside its handler); the
#: others come from the table below. An answer's ``message_zh`` is looked up by its code here.
_PLAIN_ZH = {
    "bad_request": ContractError.message_zh,
    "method_not_allowed": "不支持此请求方法。",
    "internal_error": "服务器内部错误，请稍后再试。",
    "too_many_streams": "实时连接过多，请稍后再试。",  # handlers.live.TooManyStreams
}
_ZH: dict[str, str] = dict(_PLAIN_ZH)


def _error(name: str, status: int, code: str, message: str, zh: str) -> type[ContractError]:
    _ZH.setdefault(code, zh)
    return type(
        name,
        (ContractError,),
        {"status": status, "code": code, "default_message": message, "message_zh": zh},
    )


def message_zh(code: str) -> str:
    """The Chinese message of an error code (the generic one for a code not in the table)."""
    return _ZH.get(code, ContractError.message_zh)


def all_codes() -> dict[str, str]:
    """Every error code the server answers with → its Chinese message."""
    return dict(_ZH)


# Generic
InvalidBody = _error(
    "InvalidBody", 400, "invalid_body", "The request body is not valid.", "请求内容无效。"
)
InvalidQuery = _error(
    "InvalidQuery", 400, "invalid_query", "The query parameters are not valid.", "查询参数无效。"
)
BodyTooLarge = _error(
    "BodyTooLarge", 413, "body_too_large", "The request body is too large.", "请求内容过大。"
)
Unauthenticated = _error("Unauthenticated", 401, "unauthenticated", "Log in first.", "请先登录。")
Forbidden = _error(
    "Forbidden", 403, "forbidden", "Your role does not allow this.", "您的角色无权进行此操作。"
)
NotFound = _error("NotFound", 404, "not_found", "Not found.", "未找到。")
BeyondReach = _error(
    "BeyondReach",
    403,
    "beyond_reach",
    "That lies beyond your own role and reach.",
    "超出您的角色和管辖范围。",
)
RateLimited = _error(
    "RateLimited",
    429,
    "rate_limited",
    "Too many requests; try again later.",
    "请求过于频繁，请稍后再试。",
)
Unavailable = _error(
    "Unavailable",
    503,
    "unavailable",
    "A service this needs is unavailable.",
    "所需服务暂不可用，请稍后再试。",
)

# WeChat
WeChatCodeInvalid = _error(
    "WeChatCodeInvalid",
    401,
    "wechat_code_invalid",
    "The WeChat login code is invalid or used.",
    "微信登录凭证无效或已使用。",
)
WeChatUserBlocked = _error(
    "WeChatUserBlocked",
    403,
    "wechat_user_blocked",
    "WeChat has blocked this account (40226).",
    "该微信账号已被微信限制（40226）。",
)
WeChatUnavailable = _error(
    "WeChatUnavailable",
    503,
    "wechat_unavailable",
    "WeChat is not answering; try again shortly.",
    "微信暂无响应，请稍后再试。",
)
WeChatMisconfigured = _error(
    "WeChatMisconfigured",
    503,
    "wechat_misconfigured",
    "WeChat refused the configured credentials (AppID or AppSecret); an administrator must "
    "correct the WeChat configuration.",
    "微信拒绝了所配置的凭证（AppID 或 AppSecret），请管理员更正微信配置。",
)

# Identity (实名核身)
InvalidIdNumber = _error(
    "InvalidIdNumber",
    400,
    "invalid_id_number",
    "The ID number is not a valid resident ID.",
    "身份证号码无效。",
)
InvalidName = _error("InvalidName", 400, "invalid_name", "The name is not valid.", "姓名无效。")
FaceVerifyFailed = _error(
    "FaceVerifyFailed",
    403,
    "face_verify_failed",
    "The face verification did not pass.",
    "人脸核身未通过。",
)
UnknownVerifyId = _error(
    "UnknownVerifyId", 404, "unknown_verify_id", "No such verification.", "没有此核身记录。"
)
VerifyIdUsed = _error(
    "VerifyIdUsed",
    409,
    "verify_id_used",
    "This verification was already used.",
    "此核身记录已使用。",
)
VerifyIdExpired = _error(
    "VerifyIdExpired",
    410,
    "verify_id_expired",
    "This verification has expired; start again.",
    "此核身已过期，请重新开始。",
)
IdentityRequired = _error(
    "IdentityRequired",
    403,
    "identity_required",
    "Verify your real name first.",
    "请先完成实名核身。",
)
IdentityBoundElsewhere = _error(
    "IdentityBoundElsewhere",
    409,
    "identity_bound_elsewhere",
    "This identity is already bound to another WeChat user.",
    "此身份已绑定另一微信用户。",
)

# Partners
BadSignature = _error(
    "BadSignature", 401, "bad_signature", "The request signature is not valid.", "请求签名无效。"
)

# Cases and one-time QR tokens (办件, 一次性二维码)
CaseExists = _error(
    "CaseExists",
    409,
    "case_exists",
    "A case with this case_no already exists.",
    "已存在相同办件编号的办件。",
)
UnknownItem = _error(
    "UnknownItem",
    422,
    "unknown_item",
    "Unknown service item for this department.",
    "该部门没有此服务事项。",
)
UnknownCenter = _error(
    "UnknownCenter", 422, "unknown_center", "Unknown service center.", "没有此政务服务中心。"
)
UnknownDepartment = _error(
    "UnknownDepartment",
    422,
    "unknown_department",
    "Unknown department for this center.",
    "该中心没有此部门。",
)
UnknownStaff = _error(
    "UnknownStaff",
    422,
    "unknown_staff",
    "Unknown staff member for this center.",
    "该中心没有此工作人员。",
)
InvalidField = _error(
    "InvalidField", 422, "invalid_field", "A field has an invalid value.", "字段取值无效。"
)
#: The applicant's ID number in a partner's case report (422 there; the citizen's own is 400).
InvalidApplicantIdNumber = _error(
    "InvalidApplicantIdNumber",
    422,
    "invalid_id_number",
    "The applicant's ID number is not a valid resident ID.",
    "申请人身份证号码无效。",
)
AlreadyEvaluated = _error(
    "AlreadyEvaluated",
    409,
    "already_evaluated",
    "This case has already been rated.",
    "此办件已评价。",
)
TokenNotFound = _error(
    "TokenNotFound", 404, "token_not_found", "No such QR code.", "没有此二维码。"
)
TokenExpired = _error(
    "TokenExpired", 410, "token_expired", "This QR code has expired.", "此二维码已过期。"
)
TokenUsed = _error(
    "TokenUsed", 410, "token_used", "This QR code has already been used.", "此二维码已使用。"
)
TokenRevoked = _error(
    "TokenRevoked",
    410,
    "token_revoked",
    "This QR code was replaced by a newer one.",
    "此二维码已被新的二维码取代。",
)

# Ratings (好差评, 追评)
NotApplicant = _error(
    "NotApplicant",
    403,
    "not_applicant",
    "Only the applicant of this case may rate it.",
    "只有此办件的申请人可以评价。",
)
SelfEvaluationForbidden = _error(
    "SelfEvaluationForbidden",
    403,
    "self_evaluation_forbidden",
    "Staff may not rate a case they handled.",
    "工作人员不能评价自己经办的办件。",
)
InvalidRating = _error(
    "InvalidRating",
    422,
    "invalid_rating",
    "Every level must be an integer from 1 to 5.",
    "每项评价等级须为 1 至 5 的整数。",
)
ReasonRequired = _error(
    "ReasonRequired",
    422,
    "reason_required",
    "A rating of 1 or 2 needs a reason: choose an indicator or write a comment.",
    "1 星或 2 星评价须说明原因：选择评价指标或填写意见。",
)
CommentRejected = _error(
    "CommentRejected",
    422,
    "comment_rejected",
    "The comment did not pass the content check.",
    "评价内容未通过内容安全检查。",
)
CommentTooLong = _error(
    "CommentTooLong", 422, "comment_too_long", "The comment is too long.", "评价内容过长。"
)
UnknownIndicator = _error(
    "UnknownIndicator", 422, "unknown_indicator", "Unknown indicator code.", "未知的评价指标代码。"
)
NotOwner = _error(
    "NotOwner",
    403,
    "not_owner",
    "Only the author of this rating may do this.",
    "只有此评价的作者可以进行此操作。",
)
FollowUpExists = _error(
    "FollowUpExists",
    409,
    "follow_up_exists",
    "This rating already has its follow-up.",
    "此评价已有追评。",
)

# Administration
BadCredentials = _error(
    "BadCredentials", 401, "bad_credentials", "Wrong username or password.", "用户名或密码错误。"
)
Locked = _error(
    "Locked",
    429,
    "locked",
    "Too many failed logins from here; try again in 15 minutes.",
    "登录失败次数过多，请 15 分钟后再试。",
)
InvalidConfig = _error(
    "InvalidConfig", 400, "invalid_config", "A configuration value is not valid.", "配置值无效。"
)

# Catalogue and accounts (admin API)
Exists = _error(
    "Exists", 409, "exists", "A row with this code already exists.", "已存在此代码的记录。"
)
InUse = _error(
    "InUse",
    409,
    "in_use",
    "This row is still referenced; it cannot be deleted.",
    "此记录仍被引用，不能删除。",
)
LastSuperadmin = _error(
    "LastSuperadmin",
    409,
    "last_superadmin",
    "This is the last active superadmin; it cannot be disabled or demoted.",
    "这是最后一个有效的超级管理员，不能停用或降级。",
)

# Tickets (差评整改)
InvalidTransition = _error(
    "InvalidTransition",
    409,
    "invalid_transition",
    "This step is not allowed in the ticket's current state.",
    "工单当前状态不允许此操作。",
)

# Callback ratings (回访评价, product rule 18)
OwnCase = _error(
    "OwnCase",
    403,
    "own_case",
    "The case's own window staff or approver cannot record its rating.",
    "办件的窗口人员或审批人员不能录入该办件的回访评价。",
)
TooEarly = _error(
    "TooEarly",
    422,
    "too_early",
    "Too soon after the case was completed for a callback rating.",
    "办件办结后时间过短，暂不能录入回访评价。",
)

# The rating window, follow-ups and likes (product rules 14–16)
RatingClosed = _error(
    "RatingClosed",
    410,
    "rating_closed",
    "This case's rating window is over; it can no longer be rated.",
    "此办件的评价期已结束，不能再评价。",
)
TicketOpen = _error(
    "TicketOpen",
    409,
    "ticket_open",
    "A follow-up of a 差评 waits until its rectification ticket is closed or invalid.",
    "差评的追评须等整改工单办结或认定无效后进行。",
)
FollowUpClosed = _error(
    "FollowUpClosed",
    410,
    "follow_up_closed",
    "The time for a follow-up of this rating is over.",
    "此评价的追评期已结束。",
)
OwnRating = _error(
    "OwnRating", 403, "own_rating", "Nobody likes their own rating.", "不能给自己的评价点赞。"
)

# Reliability (issue 13)
RatingInProgress = _error(
    "RatingInProgress",
    409,
    "rating_in_progress",
    "Another request is storing a rating of this case; retry shortly to learn its outcome.",
    "另一请求正在保存此办件的评价，请稍后重试以获知结果。",
)
IdempotencyMismatch = _error(
    "IdempotencyMismatch",
    422,
    "idempotency_mismatch",
    "This Idempotency-Key was used with another body.",
    "此 Idempotency-Key 已用于另一请求内容。",
)
