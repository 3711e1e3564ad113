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
                    **{name: _TEXT for name in _CASE_FIELDS if name != "applicant"},
                    "applicant": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "id_number"],
                        "properties": {
                            "name": _TEXT,
                            "id_number": _TEXT,
                            "phone": _TEXT,
                            "enterprise": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name", "credit_code"],
                                "properties": {"name": _TEXT, "credit_code": _TEXT},
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
