"""The window/case system's side: the signed partner API (api.md's HMAC signature).

    partner = PartnerClient(api, key_id, secret)
    status, answer = await partner.report_case()            # a valid, unique case
    assert status == 201                                     # {case_id, scene, expires_at}
    status, answer = await partner.report_case(case_no="X1", window_staff_no="HL002")
    status, answer = await partner.report_case(applicant={"id_number": "x"})  # merged
    case = await partner.new_case()                          # ApiError unless 201; + "case_no"
    status, answer = await partner.qrcode(case["case_no"])   # {scene, expires_at}
    status, image = await partner.png(case["scene"])         # bytes (PNG) or error JSON

Lower level: ``await partner.request(method, target, body)`` signs anything, and its keyword
arguments forge every part (``secret=``, ``key_id=``, ``timestamp=``, ``nonce=``,
``sign_target=``, ``sign_body=``, ``omit=("X-Nonce",)``, ``raw=``) for the signature tests.

Module helpers: :func:`sign` (the contract's signature, written here from api.md rather than
imported from the server, so that the tests check the server against the contract),
:func:`resident_id` (a valid GB 11643 ID number), :func:`case_payload` (a valid report body),
:data:`DEFAULT_CASE`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from stdnum.cn import ric

from wxbackend.clients.http import ApiClient, ApiError

#: Codes of conf/catalog.example.json that fit together (item → department → center).
DEFAULT_CASE = {
    "item_code": "440103-SY-001",
    "center_code": "440103-HL",
    "department_code": "HL-LABOR",
    "window_code": "HL-W01",
    "window_staff_no": "HL001",
    "approver_staff_no": "HL101",
}
DEFAULT_APPLICANT_NAME = "黎明"

_serial = itertools.count(1)


def sign(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The contract's signature: hex(HMAC-SHA256(secret, METHOD\\nPATH_WITH_QUERY\\n
    TIMESTAMP\\nNONCE\\nhex(sha256(body)))), keyed by the secret's UTF-8 bytes."""
    text = "\n".join(
        (method.upper(), target, str(timestamp), nonce, hashlib.sha256(body or b"").hexdigest())
    )
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def resident_id(area: str = "440103", birth: str = "19900101", seq: int | None = None) -> str:
    """A valid 18-character resident ID number (check digit from ``stdnum.cn.ric``).

    ``seq`` (0–999) picks the 3-digit sequence; random when None. Any birth date from
    1900 on is valid with any area (product rule 13: the area is the issuing office's).
    """
    seq = secrets.randbelow(1000) if seq is None else seq
    first17 = f"{area}{birth}{seq:03d}"
    # calc_check_digit ignores the last character: it wants the number with a placeholder.
    return first17 + ric.calc_check_digit(first17 + "0")


def iso_ago(**delta: float) -> str:
    """An ISO 8601 time (with offset) ``delta`` ago, e.g. ``iso_ago(hours=1)``."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="seconds")


def new_case_no() -> str:
    """A case number unique within this process."""
    return f"T{int(time.time() * 1000)}-{next(_serial)}-{secrets.token_hex(3)}"


def case_payload(**overrides: Any) -> dict[str, Any]:
    """A valid ``POST /partner/cases`` body; ``overrides`` replace top-level fields.

    ``applicant`` given as a dict is merged into the default applicant (a key set to ``None``
    there removes it); pass ``applicant=...`` of another type to send it as is. A top-level
    value of :data:`OMIT` removes the field.
    """
    body: dict[str, Any] = {
        "case_no": new_case_no(),
        **DEFAULT_CASE,
        "applicant": {"name": DEFAULT_APPLICANT_NAME, "id_number": resident_id()},
        "accepted_at": iso_ago(hours=2),
        "completed_at": iso_ago(minutes=5),
    }
    for key, value in overrides.items():
        if key == "applicant" and isinstance(value, dict):
            merged = {**body["applicant"], **value}
            body["applicant"] = {k: v for k, v in merged.items() if v is not None}
        elif value is OMIT:
            body.pop(key, None)
        else:
            body[key] = value
    return body


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


#: Marker for :func:`case_payload`: leave this field out of the body.
OMIT: Any = _Omit()


class PartnerClient:
    """Sends signed partner requests through an `ApiClient`.

    ``key_id`` / ``secret`` are the partner's credentials (``partner_id`` its database id,
    when known). Every call returns ``(status, answer)``: decoded JSON, or the raw bytes for
    non-JSON answers (the PNG).
    """

    def __init__(
        self, api: ApiClient, key_id: str, secret: str, partner_id: int | None = None
    ) -> None:
        self.api = api
        self.key_id = key_id
        self.secret = secret
        self.partner_id = partner_id

    def headers(
        self,
        method: str,
        target: str,
        body: bytes,
        *,
        secret: str | None = None,
        key_id: str | None = None,
        timestamp: int | str | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The four signature headers for a request (forgeable through the keywords)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
        return {
            "X-Partner-Key": key_id if key_id is not None else self.key_id,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": sign(secret or self.secret, method, target, ts, nonce, body),
        }

    async def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        secret: str | None = None,
        key_id: str | None = None,
        timestamp: int | str | None = None,
        nonce: str | None = None,
        sign_target: str | None = None,
        sign_body: bytes | None = None,
        omit: tuple[str, ...] = (),
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """A signed request to ``target`` (path plus query, as sent).

        ``body`` is JSON-encoded (``raw`` sends bytes as they are). To forge: ``sign_target`` /
        ``sign_body`` sign something other than what is sent; ``secret``, ``key_id``,
        ``timestamp``, ``nonce`` replace the real ones; ``omit`` drops headers by name.
        """
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = self.headers(
            method,
            target if sign_target is None else sign_target,
            payload if sign_body is None else sign_body,
            secret=secret,
            key_id=key_id,
            timestamp=timestamp,
            nonce=nonce,
        )
        for name in omit:
            headers.pop(name, None)
        headers.update(extra_headers or {})
        if method in ("GET", "DELETE") and not payload:
            return await self.api(method, target, headers=headers)
        return await self.api(method, target, headers=headers, raw=payload)

    async def report_case(self, **overrides: Any) -> tuple[int, Any]:
        """``POST /api/v1/partner/cases`` with :func:`case_payload` ``(**overrides)``."""
        return await self.request("POST", "/api/v1/partner/cases", case_payload(**overrides))

    async def new_case(self, **overrides: Any) -> dict[str, Any]:
        """Report a valid case (`ApiError` unless 201); the answer plus ``case_no`` and
        ``body``."""
        body = case_payload(**overrides)
        answer = await self.expect("POST", "/api/v1/partner/cases", body, status=201)
        return {**answer, "case_no": body["case_no"], "body": body}

    async def expect(self, method: str, target: str, body: Any = None, *, status: int = 200) -> Any:
        """The answer of a signed request that must answer ``status`` (`ApiError` otherwise)."""
        got, answer = await self.request(method, target, body)
        if got != status:
            raise ApiError(method, target, got, answer)
        return answer

    async def qrcode(self, case_no: str, **kwargs: Any) -> tuple[int, Any]:
        """``POST /api/v1/partner/cases/{case_no}/qrcode`` → ``{scene, expires_at}``."""
        path = f"/api/v1/partner/cases/{urllib.parse.quote(case_no, safe='')}/qrcode"
        return await self.request("POST", path, **kwargs)

    async def png(self, scene: str, **kwargs: Any) -> tuple[int, Any]:
        """``GET /api/v1/partner/qrcode.png?scene=`` → image bytes (or the error JSON)."""
        target = "/api/v1/partner/qrcode.png?" + urllib.parse.urlencode({"scene": scene})
        return await self.request("GET", target, **kwargs)
