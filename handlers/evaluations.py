"""Scanning and rating (扫码评价): ``/api/v1/scan``, ``/api/v1/cases/{case_id}``,
``/api/v1/evaluations``, ``/api/v1/evaluations/{evaluation_id}/follow-up``,
``/api/v1/me/evaluations``.

Level fields accept any JSON type here: the service answers 422 ``invalid_rating`` for a
level that is not an integer 1–5 (``"5"``, ``4.5``, ``true``), as the contract says.
"""

from __future__ import annotations

from typing import Any

from handlers.base import CitizenHandler, Field, route
from handlers.openapi import bearer, errors_of, json_body
from wxbackend.services.cases import scan
from wxbackend.services.ratings import follow_ups, submit, views

_LEVEL = {"type": "integer", "minimum": 1, "maximum": 5}
_RATING_PROPERTIES: dict[str, Any] = {
    "overall": _LEVEL,
    "indicators": {"type": "array", "items": {"type": "string"}},
    "comment": {"type": "string", "maxLength": 500},
}
#: A rating's parts (api.md): the stages and targets it may rate, each 1–5.
RATING_PARTS: dict[str, Any] = {
    "stages": {
        "type": "object",
        "properties": {"appointment": _LEVEL, "handling": _LEVEL, "delivery": _LEVEL},
        "additionalProperties": False,
    },
    "targets": {
        "type": "object",
        "properties": {"window_staff": _LEVEL, "approver": _LEVEL, "department": _LEVEL},
        "additionalProperties": False,
    },
}
_RATING_FIELDS = {
    # Any JSON value (bool included): the service answers 422 invalid_rating, not 400.
    "overall": Field(object, bool, required=True, nullable=True),
    "indicators": Field(list, nullable=True),
    "comment": Field(str, nullable=True),
}


#: The optional retry key of a rating write (api.md "Reliability").
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "8–64 visible ASCII characters: the same key and body within 24 h answer "
    "the original 201 again; another body with the key is 422 idempotency_mismatch",
    "schema": {"type": "string", "pattern": "^[!-~]{8,64}$"},
}


class ScanHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Scan a one-time QR code: the case summary and the rating form",
            "description": (
                "404 token_not_found; 410 rating_closed (the case's rating window is over) /"
                " token_expired / token_used / token_revoked."
            ),
            **bearer(),
            "requestBody": json_body({"scene": {"type": "string"}}, required=["scene"]),
            "responses": {
                "200": {
                    "description": "{case, expires_at, form:{levels, stages, targets, indicators}}"
                },
                **errors_of(400, 401, 404, 410),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body({"scene": Field(str, required=True)})
        self.send(await scan.scan(self.ctx, body["scene"]))


class CaseHandler(CitizenHandler):
    openapi = {
        "get": {
            "summary": "The case summary and rating form, for the case's own applicant",
            **bearer(),
            "responses": {
                "200": {"description": "{case, expires_at, rated, form}"},
                **errors_of(401, 403, 404),
            },
        }
    }

    async def get(self, case_id: str) -> None:
        self.send(await scan.applicant_case(self.ctx, self.user_id, case_id))


class EvaluationsHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Rate a case (一事一评): by scene (channel qr) or case_id (miniprogram)",
            "description": (
                "403 identity_required / not_applicant / self_evaluation_forbidden; 404;"
                " 409 already_evaluated; 410 rating_closed (the case's rating window of"
                " rating.window_days from the later of completion and report is over, by scene"
                " or case id alike) / token_expired / token_used / token_revoked; 422"
                " invalid_rating / reason_required / comment_too_long / comment_rejected. Control"
                " and format characters are removed from the comment before any check."
            ),
            **bearer(),
            "requestBody": json_body(
                {
                    "scene": {"type": "string"},
                    "case_id": {"type": "string"},
                    **_RATING_PROPERTIES,
                    **RATING_PARTS,
                },
                required=["overall"],
                one_of=[["scene"], ["case_id"]],
            ),
            "parameters": [IDEMPOTENCY_KEY],
            "responses": {
                "201": {"description": "{evaluation} (as returned to its owner)"},
                **errors_of(400, 401, 403, 404, 409, 410, 422),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(
            {
                "scene": Field(str),
                "case_id": Field(str, int),
                "stages": Field(dict, nullable=True),
                "targets": Field(dict, nullable=True),
                **_RATING_FIELDS,
            }
        )
        key = self.request.headers.get("Idempotency-Key")
        evaluation = await submit.submit(self.ctx, self.user_id, idempotency_key=key, **body)
        self.send({"evaluation": evaluation}, status=201)


class FollowUpHandler(CitizenHandler):
    openapi = {
        "post": {
            "summary": "Add the one follow-up rating (追评) to your rating",
            "description": (
                "403 not_owner / identity_required (a verified identity is needed); 404;"
                " 409 follow_up_exists / ticket_open (a 差评's follow-up waits for its ticket to"
                " be closed or invalid); 410 follow_up_closed (other ratings: after"
                " rating.follow_up_days); 422 as for a rating."
            ),
            **bearer(),
            "requestBody": json_body(_RATING_PROPERTIES, required=["overall"]),
            "parameters": [IDEMPOTENCY_KEY],
            "responses": {
                "201": {"description": "{evaluation} with assess_number 2"},
                **errors_of(400, 401, 403, 404, 409, 410, 422),
            },
        }
    }

    async def post(self, evaluation_id: str) -> None:
        body = self.json_body(_RATING_FIELDS)
        key = self.request.headers.get("Idempotency-Key")
        evaluation = await follow_ups.follow_up(
            self.ctx, self.user_id, evaluation_id, idempotency_key=key, **body
        )
        self.send({"evaluation": evaluation}, status=201)


class MyEvaluationsHandler(CitizenHandler):
    openapi = {
        "get": {
            "summary": "The citizen's own ratings and follow-ups, newest first",
            **bearer(),
            "responses": {"200": {"description": "{items:[evaluation]}"}, **errors_of(401)},
        }
    }

    async def get(self) -> None:
        self.send({"items": await views.list_mine(self.ctx, self.user_id)})


default_handlers = [
    route("/api/v1/scan", ScanHandler),
    route("/api/v1/cases/{case_id}", CaseHandler),
    route("/api/v1/evaluations", EvaluationsHandler),
    route("/api/v1/evaluations/{evaluation_id}/follow-up", FollowUpHandler),
    route("/api/v1/me/evaluations", MyEvaluationsHandler),
]
