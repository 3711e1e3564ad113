"""Ratings in the admin API: ``/admin/api/evaluations`` (listing, reply, moderation, reveal)
and ``/admin/api/callback-evaluations`` (ratings taken by phone/SMS follow-up).

Thin handlers over ``wxbackend.services.admin.moderation``. Who: the permission table
(``services/admin/permissions.py``): ``evaluations.read`` (and its reach bounds what is seen),
``evaluations.reply``, ``evaluations.moderate``, ``evaluations.reveal`` (with a reason; audited as
``evaluation.reveal``), ``callback.record``.
"""

from __future__ import annotations

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import Field, route
from handlers.evaluations import RATING_PARTS
from handlers.openapi import NOT_BLANK, errors_of, json_body
from wxbackend.services.admin import callbacks
from wxbackend.services.admin import moderation as admin_evaluations

_STR = {"type": "string"}
_VIEW = (
    "{id, case_id, case_no, assess_number, channel, overall, stages, targets, "
    "indicators:[{code,label}], comment, comment_status, moderation_reason, name_masked, "
    "like_count, created_at, center, department, item, window_staff, approver, "
    "replies:[{id,text,created_at}], ticket:{id,status,appeal_status}, ticket_status, "
    "excluded_from_staff_figures}"
)
_FILTERS = (
    "center",
    "item",
    "staff",
    "level",
    "from",
    "to",
    "channel",
    "comment_status",
    "cursor",
    "limit",
)


class EvaluationsHandler(AdminHandler):
    """``GET /admin/api/evaluations``."""

    permissions = {"get": "evaluations.read"}

    openapi = {
        "get": {
            "summary": "Ratings in your scope with their full comment and moderation state, "
            "newest first (names masked; keyset pagination)",
            **admin_security(),
            "parameters": [
                {"name": n, "in": "query", "required": False, "schema": _STR} for n in _FILTERS
            ],
            "responses": {
                "200": {"description": f"{{items:[{_VIEW}], next_cursor}}"},
                **errors_of(400, 401),
            },
        }
    }

    async def get(self) -> None:
        query = admin_evaluations.parse_evaluation_query(
            lambda name: self.get_query_argument(name, None)
        )
        self.send(await admin_evaluations.list_for(self.ctx, self.admin, query))


class EvaluationHandler(AdminHandler):
    """``GET /admin/api/evaluations/{evaluation_id}``."""

    permissions = {"get": "evaluations.read"}

    openapi = {
        "get": {
            "summary": "One rating in the admin shape",
            **admin_security(),
            "responses": {"200": {"description": _VIEW}, **errors_of(401, 404)},
        }
    }

    async def get(self, evaluation_id: str) -> None:
        self.send(await admin_evaluations.one_for(self.ctx, self.admin, evaluation_id))


class ReplyHandler(AdminHandler):
    permissions = {"post": "evaluations.reply"}
    openapi = {
        "post": {
            "summary": "A public reply of the center (1–500 characters)",
            **admin_security(),
            "requestBody": json_body(
                {"text": {"type": "string", "maxLength": 500, "pattern": NOT_BLANK}},
                required=["text"],
            ),
            "responses": {
                "201": {"description": "{id, evaluation_id, text, created_at}"},
                **errors_of(400, 401, 403, 404, 422),
            },
        }
    }

    async def post(self, evaluation_id: str) -> None:
        body = self.json_body({"text": Field(str, required=True)})
        answer = await admin_evaluations.reply(
            self.ctx, self.admin, self.actor, evaluation_id, body["text"]
        )
        self.send(answer, status=201)


class ModerateHandler(AdminHandler):
    permissions = {"post": "evaluations.moderate"}
    openapi = {
        "post": {
            "summary": "Show or hide a comment (hiding needs a reason); the rating stays public",
            **admin_security(),
            "requestBody": json_body(
                {"visible": {"type": "boolean"}, "reason": {"type": ["string", "null"]}},
                required=["visible"],
            ),
            "responses": {
                "200": {"description": _VIEW},
                **errors_of(400, 401, 403, 404, 409, 422),
            },
        }
    }

    async def post(self, evaluation_id: str) -> None:
        body = self.json_body(
            {"visible": Field(bool, required=True), "reason": Field(str, nullable=True)}
        )
        view = await admin_evaluations.set_visibility(
            self.ctx, self.admin, self.actor, evaluation_id, body["visible"], body.get("reason")
        )
        self.send(view)


class RevealHandler(AdminHandler):
    permissions = {"post": "evaluations.reveal"}
    openapi = {
        "post": {
            "summary": "The applicant's real name (evaluations.reveal; the reason, 1–500 "
            "characters, is audited; the name is never logged)",
            **admin_security(),
            "requestBody": json_body(
                {"reason": {"type": "string", "maxLength": 500, "pattern": NOT_BLANK}},
                required=["reason"],
            ),
            "responses": {"200": {"description": "{name}"}, **errors_of(400, 401, 403, 404)},
        }
    }

    async def post(self, evaluation_id: str) -> None:
        body = self.json_body({"reason": Field(str, required=True)})
        name = await admin_evaluations.reveal(
            self.ctx, self.admin, self.actor, evaluation_id, body["reason"]
        )
        self.send(name)


class CallbackEvaluationsHandler(AdminHandler):
    permissions = {"post": "callback.record"}
    openapi = {
        "post": {
            "summary": "Record a rating taken by phone/SMS follow-up (回访评价); supersedes a "
            "default rating; a 差评 opens a ticket",
            **admin_security(),
            "requestBody": json_body(
                {
                    "case_no": _STR,
                    "channel": {"type": "string", "enum": ["phone", "sms"]},
                    "overall": {"type": "integer", "minimum": 1, "maximum": 5},
                    **RATING_PARTS,
                    "indicators": {"type": "array", "items": _STR},
                    "comment": {"type": ["string", "null"]},
                    "contact_at": {"type": "string", "format": "date-time"},
                    # trimmed, then 1–64 characters, no control character (admin.callbacks)
                    "reference": {
                        "type": "string",
                        "maxLength": 64,
                        "pattern": r"^(?=.*\S)[^\x00-\x1f\x7f]*$",
                    },
                },
                required=["case_no", "channel", "overall", "contact_at", "reference"],
            ),
            "responses": {
                "201": {"description": f"{{evaluation: {_VIEW}}}"},
                **errors_of(400, 401, 403, 404, 409, 422),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(
            {
                "case_no": Field(str, required=True),
                "channel": Field(str, required=True),
                # Any JSON value: the service answers 422 invalid_rating, not 400.
                "overall": Field(object, bool, required=True, nullable=True),
                "stages": Field(dict, nullable=True),
                "targets": Field(dict, nullable=True),
                "indicators": Field(list, nullable=True),
                "comment": Field(str, nullable=True),
                "contact_at": Field(str, required=True),
                "reference": Field(str, required=True),
            }
        )
        answer = await callbacks.record_callback(self.ctx, self.admin, self.actor, body)
        self.send(answer, status=201)


_E = "/admin/api/evaluations/{evaluation_id}"
default_handlers = [
    route("/admin/api/evaluations", EvaluationsHandler),
    route(_E, EvaluationHandler),
    route(f"{_E}/reply", ReplyHandler),
    route(f"{_E}/moderate", ModerateHandler),
    route(f"{_E}/reveal", RevealHandler),
    route("/admin/api/callback-evaluations", CallbackEvaluationsHandler),
]
