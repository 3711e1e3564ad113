"""The 差评 tickets of the admin API (``/admin/api/tickets``): the queue and its steps.

Thin handlers over ``wxbackend.services.tickets.workflow`` (states, deadlines, reach, audit).
Who: the permission table (``services/admin/permissions.py``): GET ``tickets.read`` (beyond
its reach: 404); each step the permission of ``workflow.STEP_PERMISSIONS`` (``tickets.work``,
``tickets.appeal``, ``tickets.decide_appeal``; never the appeal's own author).

``POST …/contact {reason}`` (``tickets.contact``) → ``{phone}``: the applicant's phone for the
callback while the ticket is open, audited with the reason (product rule 22).

Invalid steps answer 409 ``invalid_transition``; every answer is the ticket with
``verify_due``, ``rectify_due``, ``overdue``, its history and its ``rating`` (item, stars,
reasons, comment, staff: what the console's list shows).
"""

from __future__ import annotations

from typing import Any

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import Field, route
from handlers.openapi import NOT_BLANK, choice, errors_of, json_body
from models.ticket import TICKET_STATUSES
from wxbackend.services.tickets import contact, views
from wxbackend.services.tickets import workflow as tickets

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NOTE = {"type": "string", "maxLength": tickets.NOTE_MAX_CHARS}
_TICKET = (
    "{id, evaluation_id, case_no, status, opened_at, verify_due, rectify_due, verified_at, "
    "rectified_at, closed_at, overdue, appeal_status, excluded_from_staff_figures, "
    "history:[{status, action, by, note, at}], rating:{overall, indicators:[{code, label}], "
    "comment, comment_status, item:{code, name}, window_staff:{staff_no, name}|null, "
    "approver:{staff_no, name}|null}}"
)

_PAGED = ("overdue", "cursor", "limit")


class TicketsHandler(AdminHandler):
    """``GET /admin/api/tickets?status=&overdue=&cursor=&limit=``."""

    permissions = {"get": "tickets.read"}

    openapi = {
        "get": {
            "summary": "差评 tickets in your scope, newest first (keyset pagination)",
            **admin_security(),
            "parameters": [
                {"name": "status", "in": "query", "schema": choice(TICKET_STATUSES)},
                *({"name": n, "in": "query", "schema": _STR} for n in _PAGED),
            ],
            "responses": {
                "200": {"description": f"{{items:[{_TICKET}], next_cursor}}"},
                **errors_of(400, 401),
            },
        }
    }

    async def get(self) -> None:
        query = views.parse_ticket_query(lambda name: self.get_query_argument(name, None))
        self.send(await tickets.list_for(self.ctx, self.admin, query))


class TicketHandler(AdminHandler):
    """``GET /admin/api/tickets/{ticket_id}``."""

    permissions = {"get": "tickets.read"}

    openapi = {
        "get": {
            "summary": "One ticket with its history",
            **admin_security(),
            "responses": {"200": {"description": _TICKET}, **errors_of(401, 404)},
        }
    }

    async def get(self, ticket_id: str) -> None:
        self.send(await tickets.one_for(self.ctx, self.admin, ticket_id))


class StepHandler(AdminHandler):
    """Base of the step handlers: ``step`` names the service step, ``fields`` the body."""

    step = "verify"
    permissions = {"post": tickets.STEP_PERMISSIONS["verify"]}
    fields: dict[str, Field] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        cls.permissions = {"post": tickets.STEP_PERMISSIONS[cls.step]}
        super().__init_subclass__(**kwargs)

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        """The service's keyword arguments from the checked body."""
        return body

    async def post(self, ticket_id: str) -> None:
        body = self.json_body(self.fields)
        view = await tickets.act(
            self.ctx, self.step, self.admin, self.actor, ticket_id, **self.arguments(body)
        )
        self.send(view)


def _step_openapi(summary: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "post": {
            "summary": summary,
            **admin_security(),
            "requestBody": json_body(properties, required=required),
            "responses": {
                "200": {"description": _TICKET},
                **errors_of(400, 401, 403, 404, 409, 422),
            },
        }
    }


class VerifyHandler(StepHandler):
    step = "verify"
    fields = {"valid": Field(bool, required=True), "note": Field(str)}
    openapi = _step_openapi(
        "核实: open → verified (valid); not valid (note required) proposes invalid: the "
        "ticket stays open with pending_invalidation until a second admin decides",
        {"valid": _BOOL, "note": _NOTE},
        ["valid"],
    )

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"valid": body["valid"], "note": body.get("note")}


class RectifyHandler(StepHandler):
    step = "rectify"
    fields = {"note": Field(str, required=True)}
    openapi = _step_openapi(
        "整改: verified → rectified (note required)",
        {"note": {**_NOTE, "pattern": NOT_BLANK}},
        ["note"],
    )


class CallbackHandler(StepHandler):
    step = "callback"
    fields = {
        "channel": Field(str, required=True),
        "satisfied": Field(bool, required=True),
        "note": Field(str),
    }
    openapi = _step_openapi(
        "回访: rectified → called_back (satisfied) or back to verified (not satisfied)",
        {
            "channel": {"type": "string", "enum": ["phone", "sms", "wechat"]},
            "satisfied": _BOOL,
            "note": _NOTE,
        },
        ["channel", "satisfied"],
    )

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "channel": body["channel"],
            "satisfied": body["satisfied"],
            "note": body.get("note"),
        }


class CloseHandler(StepHandler):
    step = "close"
    fields = {"note": Field(str)}
    openapi = _step_openapi(
        "办结: called_back → closed (not while an appeal is pending); the body may be empty",
        {"note": _NOTE},
        [],
    )

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"note": body.get("note")}


class AppealHandler(StepHandler):
    step = "appeal"
    fields = {"reason": Field(str, required=True)}
    openapi = _step_openapi(
        "申诉: staff appeal a 差评 while the ticket is open or verified (one per ticket)",
        {"reason": _NOTE},
        ["reason"],
    )


class AppealDecideHandler(StepHandler):
    step = "appeal_decide"
    fields = {"upheld": Field(bool, required=True), "note": Field(str)}
    openapi = _step_openapi(
        "Decide a pending appeal: upheld → invalid (excluded from staff figures, still public)",
        {"upheld": _BOOL, "note": _NOTE},
        ["upheld"],
    )

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"upheld": body["upheld"], "note": body.get("note")}


class InvalidationDecideHandler(StepHandler):
    step = "invalidation_decide"
    fields = {"confirm": Field(bool, required=True), "note": Field(str)}
    openapi = _step_openapi(
        "Confirm (→ invalid) or reject a proposal to declare the 差评 invalid: a center_admin "
        "or superadmin within reach, never the proposer (two people)",
        {"confirm": _BOOL, "note": _NOTE},
        ["confirm"],
    )

    def arguments(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"confirm": body["confirm"], "note": body.get("note")}


class ContactHandler(AdminHandler):
    """``POST /admin/api/tickets/{ticket_id}/contact {reason}`` → ``{phone}``."""

    permissions = {"post": contact.CONTACT_PERMISSION}
    openapi = {
        "post": {
            "summary": "联系群众: the applicant's phone for the callback while the ticket is not "
            "closed or invalid; the reason (1–500 characters) is audited, the phone never",
            **admin_security(),
            "requestBody": json_body(
                {
                    "reason": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": contact.REASON_MAX_CHARS,
                        "pattern": NOT_BLANK,
                    }
                },
                required=["reason"],
            ),
            "responses": {
                "200": {"description": "{phone} (null when the case carries no phone)"},
                **errors_of(400, 401, 403, 404, 409),
            },
        }
    }

    async def post(self, ticket_id: str) -> None:
        body = self.json_body({"reason": Field(str, required=True)})
        self.send(
            await contact.contact(self.ctx, self.admin, self.actor, ticket_id, body["reason"])
        )


_T = "/admin/api/tickets/{ticket_id}"
default_handlers = [
    route("/admin/api/tickets", TicketsHandler),
    route(_T, TicketHandler),
    route(f"{_T}/verify", VerifyHandler),
    route(f"{_T}/rectify", RectifyHandler),
    route(f"{_T}/callback", CallbackHandler),
    route(f"{_T}/close", CloseHandler),
    route(f"{_T}/appeal", AppealHandler),
    route(f"{_T}/appeal/decide", AppealDecideHandler),
    route(f"{_T}/invalidation/decide", InvalidationDecideHandler),
    route(f"{_T}/contact", ContactHandler),
]
