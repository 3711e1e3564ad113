"""Reaching the citizen (product rule 22): the applicant's phone for the callback (回访).

``POST /admin/api/tickets/{id}/contact {reason}`` → ``{phone}``: a handler (or center_admin,
superadmin) with ``tickets.contact`` on the ticket's center and department gets the case
applicant's phone, decrypted, while the ticket is still being worked on (not ``closed`` nor
``invalid``: 409 ``invalid_transition``). Every view is audited as ``ticket.contact`` with who
(the audit entry's actor), when and why (the reason) — never the phone itself.

:func:`clean_reason` is also the rule for the reason of ``evaluations/{id}/reveal``.
"""

from __future__ import annotations

from typing import Any

from models.case import Case
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.security import FieldCipher
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.permissions import Target, authorize
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.cases.reports import PHONE_CONTEXT
from wxbackend.services.tickets.views import visible_ticket

#: A reason for seeing personal data: 1–500 characters once trimmed.
REASON_MAX_CHARS = 500
#: The ticket states in which the citizen is no longer called (the loop is over).
ENDED = ("closed", "invalid")
CONTACT_PERMISSION = "tickets.contact"


def clean_reason(value: Any) -> str:
    """The trimmed reason, 1–:data:`REASON_MAX_CHARS` characters (400 ``invalid_body``
    otherwise: the reason is part of the request's shape)."""
    if not isinstance(value, str):
        raise errors.InvalidBody("Field reason must be a string.", field="reason")
    text = value.strip()
    if not text or len(text) > REASON_MAX_CHARS:
        raise errors.InvalidBody(
            f"Field reason must have 1–{REASON_MAX_CHARS} characters.", field="reason"
        )
    return text


def contact_phone(
    principal: Principal, actor: Actor, ticket_id: Any, reason: Any, cipher: FieldCipher
) -> str | None:
    """The applicant's phone of the ticket's case (None when the partner sent none), audited
    with the reason. 404 beyond ``tickets.read``, 403 without ``tickets.contact`` there, 409
    when the ticket has ended."""
    text = clean_reason(reason)
    with database.atomic():
        ticket = visible_ticket(principal, ticket_id)
        authorize(principal, CONTACT_PERMISSION, Target(ticket.center_id, ticket.department_id))
        if ticket.status in ENDED:
            raise errors.InvalidTransition(
                f"The ticket is {ticket.status}: the citizen is no longer called.",
                status=ticket.status,
            )
        sealed = Case.select(Case.applicant_phone_enc).where(Case.id == ticket.case_id).scalar()
        detail = {"case_id": str(ticket.case_id), "reason": text, "phone_known": bool(sealed)}
        record(actor, "ticket.contact", "ticket", ticket.id, detail)
    return cipher.decrypt(sealed, PHONE_CONTEXT) if sealed else None


async def contact(
    ctx: Context, principal: Principal, actor: Actor, ticket_id: str, reason: Any
) -> dict[str, str | None]:
    """``POST /tickets/{id}/contact`` → ``{phone}``."""
    phone = await ctx.db.run(contact_phone, principal, actor, ticket_id, reason, ctx.cipher)
    return {"phone": phone}
