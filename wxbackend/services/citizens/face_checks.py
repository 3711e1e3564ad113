"""What face verification (人脸核身) sends and gets back, as pure rules: the name and the
resident ID number a citizen types, WeChat's ``cert_hash`` and ``out_seq_no``, and what each
``verify_ret`` means for the citizen (../shared/docs/wechat.md). No I/O here: the flow is in
:mod:`wxbackend.services.citizens.identity`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from wxbackend import errors
from wxbackend.security import normalize_id_number
from wxbackend.services.citizens import id_numbers

#: The certificate type WeChat's face verification documents (mainland resident ID).
CERT_TYPE = "IDENTITY_CARD"

NAME_MIN_CHARS, NAME_MAX_CHARS = 2, 32
_MIDDLE_DOT = "\u00b7"
# Look-alikes of the middle dot that Chinese input methods produce (・ • ‧ ∙ ．).
_DOT_VARIANTS = str.maketrans(dict.fromkeys("\u30fb\u2022\u2027\u2219\uff0e", _MIDDLE_DOT))
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_NAME_RE = re.compile(rf"[{_CJK}]+(?:{_MIDDLE_DOT}[{_CJK}]+)*")
#: The same rule for /openapi.json: a name as sent, look-alike dots included, untrimmed.
_DOTS = _MIDDLE_DOT + "\u30fb\u2022\u2027\u2219\uff0e"
NAME_PATTERN = rf"^[{_CJK}]+(?:[{_DOTS}][{_CJK}]+)*$"


def normalize_name(name: str) -> str:
    """The name as WeChat should see it: trimmed, middle-dot look-alikes made ``·``.

    Raises :class:`~wxbackend.errors.InvalidName` unless it is 2–32 CJK characters, with
    single middle dots between parts (迪丽热巴·迪力木拉提). The message never repeats the name.
    """
    cleaned = name.strip().translate(_DOT_VARIANTS)
    if not NAME_MIN_CHARS <= len(cleaned) <= NAME_MAX_CHARS:
        raise errors.InvalidName(
            f"The name must be {NAME_MIN_CHARS}–{NAME_MAX_CHARS} characters (姓名须为2–32个字符)."
        )
    if not _NAME_RE.fullmatch(cleaned):
        raise errors.InvalidName(
            "The name must be Chinese characters, parts joined by a middle dot "
            "(姓名须为汉字，少数民族姓名用“·”分隔)."
        )
    return cleaned


def normalize_resident_id(id_number: str) -> str:
    """The canonical 18-character resident ID (GB 11643), or :class:`InvalidIdNumber`."""
    number = normalize_id_number(id_number)
    kind = id_numbers.id_kind(number)
    if kind is None:
        raise errors.InvalidIdNumber(
            "The ID number is not a valid 18-character resident ID (身份证号码校验不通过)."
        )
    if kind != id_numbers.RESIDENT:
        raise errors.InvalidIdNumber(
            "WeChat's face verification takes a mainland resident ID only; holders of a "
            "residence permit or a permanent residence ID rate through a phone or SMS "
            "follow-up (人脸核身仅支持居民身份证，其他证件请通过电话或短信回访评价)."
        )
    return number


def cert_hash(cert_name: str, cert_no: str, cert_type: str = CERT_TYPE) -> str:
    """WeChat's ``cert_hash``: lowercase hex SHA-256 of
    ``cert_type=<b64>&cert_name=<b64>&cert_no=<b64>`` (standard base64 of UTF-8)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    plain = f"cert_type={b64(cert_type)}&cert_name={b64(cert_name)}&cert_no={b64(cert_no)}"
    return hashlib.sha256(plain.encode("ascii")).hexdigest()


def new_out_seq_no() -> str:
    """A fresh ``out_seq_no``: 32 characters of ``[A-Za-z0-9_-]`` (192 random bits)."""
    return secrets.token_urlsafe(24)


# verify_ret as the official page lists it (both versions of its table,
# https://developers.weixin.qq.com/miniprogram/dev/server/API/face/api_queryverifyinfo.html).
_CLIENT_CANCELLED = frozenset({90002, 90003, 90004, 90005, 90006, 90024})
_CLIENT_PERMISSION = frozenset({90008, 90009, 90010})
_CLIENT_TIMEOUT = frozenset({90017, 90107})  # 识别过程超时, 用户检测超时
_CLIENT_UNSUPPORTED = frozenset({90001, 90109})  # 设备不支持人脸检测 (both)
_CLIENT_NETWORK = frozenset({90007, 90012, 90019, 90020, 90021})
#: 90018 系统错误 and 90199 用户系统错误: WeChat's own system errors during the check (the
#: official verify_ret table, https://developers.weixin.qq.com/miniprogram/dev/server/API/face/api_queryverifyinfo.html).
#: WeChat documents no "not finished yet" value: never read one of these as "in progress".
_WECHAT_SYSTEM = frozenset({90018, 90199})

_MESSAGES: dict[int, tuple[str, str]] = {
    10001: (
        "bad_parameters",
        "核身参数有误，请重新发起实名认证 (WeChat rejected the verification parameters).",
    ),
    10002: (
        "face_not_detected",
        "未能检测到清晰的人脸，请在光线充足处正对镜头重试 (no usable face was detected).",
    ),
    10003: (
        "id_mismatch",
        "姓名与身份证号码不一致，请核对后重新发起 (the name does not match the ID number).",
    ),
    10004: (
        "face_mismatch",
        "人脸与身份证照片不一致 (the face does not match the ID card photo).",
    ),
}


def failure_reason(verify_ret: int) -> tuple[str, str]:
    """``(reason, message)`` for a failing ``verify_ret``: a short code and a clear text."""
    if verify_ret in _MESSAGES:
        return _MESSAGES[verify_ret]
    if verify_ret in _WECHAT_SYSTEM:
        return (
            "wechat_system_error",
            "微信人脸核身系统错误，请稍后重新刷脸 (WeChat's face verification had a system error).",
        )
    if verify_ret in _CLIENT_CANCELLED:
        return "cancelled", "人脸核身已取消，请重新刷脸 (the face check was cancelled)."
    if verify_ret in _CLIENT_PERMISSION:
        return (
            "camera_permission",
            "请允许微信使用摄像头后重试 (camera or microphone permission was not granted).",
        )
    if verify_ret in _CLIENT_TIMEOUT:
        return "timeout", "人脸核身超时，请重试 (the face check timed out)."
    if verify_ret in _CLIENT_UNSUPPORTED:
        return (
            "device_unsupported",
            "当前设备不支持人脸核身，请换一台手机 (this device cannot do face checks).",
        )
    if verify_ret in _CLIENT_NETWORK:
        return "network", "网络异常，请检查网络后重试 (a network error interrupted the check)."
    if 90000 <= verify_ret <= 90199:
        return (
            "client_failed",
            "人脸核身未在手机上完成，请重试 (the face check did not complete on the phone).",
        )
    return "failed", "人脸核身未通过 (the face verification did not pass)."
