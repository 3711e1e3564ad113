"""The partner API (``/api/v1/partner``): window/case systems report cases and get QR codes.

Every request is signed (``wxbackend.services.cases.partners``); :class:`PartnerHandler` checks it
in ``prepare`` before any method runs.
"""

from __future__ import annotations

from typing import Any

from handlers.base import BaseHandler, Field, route
from handlers.openapi import errors_of, json_body
from wxbackend import errors
from wxbackend.services.cases import images
from wxbackend.services.cases import partners as partner_auth
from wxbackend.services.cases import reports as cases
from wxbackend.timefmt import iso


def signed() -> dict[str, Any]:
    """OpenAPI: the operation needs the partner signature headers."""
    return {
        "security": [{"partner": []}],
        "description": "Signed: X-Partner-Key, X-Timestamp, X-Nonce, X-Signature "
        "(HMAC-SHA256, see the API conventions). Any signature failure is 401 bad_signature.",
    }


class PartnerHandler(BaseHandler):
    """A handler of the partner API: every request must carry a valid signature."""

    async def prepare(self) -> None:  # type: ignore[override]
        super().prepare()
        self.partner = await partner_auth.authenticate(
            self.ctx,
            self.request.method or "",
            self.request.uri or "",
            self.request.headers,
            self.request.body or b"",
        )


_TEXT = {"type": "string"}
#: What services.cases.reports checks (422 invalid_field otherwise), said in the document too.
_CODE = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}
_OPTIONAL_CODE = {"type": ["string", "null"], "pattern": "^([A-Za-z0-9_.-]{1,64})?$"}
_TIME = {"type": "string", "format": "date-time"}


def _words(most: int) -> dict[str, Any]:
    """Trimmed, then 1–``most`` characters without a control character."""
    return {"type": "string", "maxLength": most, "pattern": r"^(?=.*\S)[^\x00-\x1f\x7f]*$"}


_CHECKED = {
    "case_no": _CODE,
    "window_code": _OPTIONAL_CODE,
    "window_staff_no": _OPTIONAL_CODE,
    "approver_staff_no": _OPTIONAL_CODE,
    "accepted_at": _TIME,
    "completed_at": _TIME,
}
_CASE_FIELDS = {
    "case_no": Field(str, required=True),
    "item_code": Field(str, required=True),
    "center_code": Field(str, required=True),
    "department_code": Field(str, required=True),
    "window_code": Field(str, nullable=True),
    "window_staff_no": Field(str, nullable=True),
    "approver_staff_no": Field(str, nullable=True),
    "applicant": Field(dict, required=True),
    "accepted_at": Field(str, required=True),
    "completed_at": Field(str, required=True),
}


class CasesHandler(PartnerHandler):
    openapi = {
        "post": {
            "summary": "Report a finished case (办件); the answer carries its first QR scene",
            **signed(),
            "requestBody": json_body(
                {
                    **{
                        name: _CHECKED.get(name, _TEXT)
                        for name in _CASE_FIELDS
                        if name != "applicant"
                    },
                    "applicant": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "id_number"],
                        "properties": {
                            "name": _words(64),
                            "id_number": _TEXT,
                            "phone": {
                                "type": ["string", "null"],
                                "pattern": "^[ \t\n\r]*([0-9+-]{5,20})?[ \t\n\r]*$",
                            },
                            "enterprise": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name", "credit_code"],
                                "properties": {"name": _words(200), "credit_code": _TEXT},
                            },
                        },
                    },
                },
                required=[n for n, f in _CASE_FIELDS.items() if f.required],
            ),
            "responses": {
                "201": {"description": "{case_id, scene, expires_at}"},
                **errors_of(400, 401, 409, 413, 422),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(_CASE_FIELDS)
        issued = await cases.report_case(self.ctx, self.partner.id, body)
        self.send(
            {
                "case_id": str(issued.case_id),
                "scene": issued.scene,
                "expires_at": iso(issued.expires_at),
            },
            201,
        )


class CaseQrcodeHandler(PartnerHandler):
    openapi = {
        "post": {
            "summary": "A fresh one-time QR scene for a case; earlier QR tokens are revoked",
            **signed(),
            "responses": {
                "200": {"description": "{scene, expires_at}"},
                **errors_of(401, 404, 409),
            },
        }
    }

    async def post(self, case_no: str) -> None:
        self.json_body({})
        issued = await cases.renew_token(self.ctx, self.partner.id, case_no)
        self.send({"scene": issued.scene, "expires_at": iso(issued.expires_at)})


class QrcodePngHandler(PartnerHandler):
    openapi = {
        "get": {
            "summary": "The mini-program code image of a usable scene (cached for its life)",
            **signed(),
            "parameters": [
                {"name": "scene", "in": "query", "required": True, "schema": _TEXT},
            ],
            "responses": {
                "200": {
                    "description": "the image",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                },
                **errors_of(400, 401, 404, 410, 503),
            },
        }
    }

    async def get(self) -> None:
        scene = self.get_query_argument("scene", "")
        if not scene:
            raise errors.ContractError("The scene query parameter is required.")
        image = await images.qrcode_image(self.ctx, scene)
        self.set_header("Content-Type", images.image_type(image))
        self.finish(image)


default_handlers = [
    route("/api/v1/partner/cases", CasesHandler),
    route("/api/v1/partner/cases/{case_no}/qrcode", CaseQrcodeHandler),
    route("/api/v1/partner/qrcode.png", QrcodePngHandler),
]
