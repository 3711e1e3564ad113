"""Who gets a subscribe message and what it says, found inside the prepare transaction.

- :func:`reminder_targets`: the case is unrated and in its rating window, its applicant's
  identity bound to a WeChat user.
- :func:`rectified_targets`: the 差评 ticket is closed and its rating has a WeChat user.

A job that cannot go is answered with the reason it is skipped (``rated``, ``no_identity`` …);
a reason starting with :data:`CONFIG_PREFIX` is a configuration error (the job fails).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from models.case import Case
from models.catalog import Center, Department, ServiceItem
from models.evaluation import Evaluation
from models.identity import Identity
from models.job import Job
from models.ticket import Ticket
from models.user import User
from wxbackend.services.messaging.schedule import rating_window_end
from wxbackend.services.messaging.template_data import (
    ATTRIBUTES,
    OUTCOME,
    OUTCOME_TEXT,
    RECTIFIED_ATTRIBUTES,
    TemplateFieldsError,
    render_data,
)
from wxbackend.settings import Settings

log = logging.getLogger("wxbackend.reminders")


@dataclass(frozen=True)
class Target:
    """Who gets a message and what it says (found in the prepare transaction)."""

    user_id: int
    openid: str
    case_id: int
    data: dict[str, dict[str, str]]


#: ``(jobs, now) -> {job.id: Target | skip reason}``, run inside the prepare transaction. A
#: reason starting with ``config:`` is a configuration error (the job fails).
Targets = Callable[[list[Job], datetime], dict[int, "Target | str"]]
CONFIG_PREFIX = "config:"


def _case_values(case_ids: list[int]) -> dict[int, tuple[Any, dict[str, Any]]]:
    """``{case_id: (row, template values)}`` in one query."""
    rows = (
        Case.select(
            Case.id,
            Case.case_no,
            Case.completed_at,
            Case.reported_at,
            Case.first_rated_at,
            Case.applicant_id_hash,
            ServiceItem.name.alias("item_name"),
            Center.name.alias("center_name"),
            Department.name.alias("department_name"),
        )
        .join_from(Case, ServiceItem, on=(Case.item == ServiceItem.id))
        .join_from(Case, Center, on=(Case.center == Center.id))
        .join_from(Case, Department, on=(Case.department == Department.id))
        .where(Case.id.in_(case_ids))
        .objects()
    )
    return {row.id: (row, {name: getattr(row, name) for name in ATTRIBUTES}) for row in rows}


def reminder_fields(settings: Settings) -> dict[str, str]:
    """The reminder's field map: ``templates.reminder_fields``, else
    ``reminders.template_fields``."""
    return dict(settings.templates.reminder_fields or settings.reminders.template_fields)


def _data(
    fields: dict[str, str],
    values: dict[str, Any],
    settings: Settings,
    setting: str,
    attributes: tuple[str, ...] = ATTRIBUTES,
) -> dict[str, dict[str, str]] | str:
    """The message data, or a ``config:`` reason when a field map or a value cannot fit
    WeChat's rules (the message becomes ``config_error``; WeChat is never called)."""
    try:
        return render_data(fields, values, settings.reminders.timezone, attributes)
    except TemplateFieldsError as exc:
        log.warning("%s does not fit the template: %s", setting, exc)
        return CONFIG_PREFIX + str(exc)


def reminder_targets(settings: Settings, fields: dict[str, str] | None = None) -> Targets:
    """Reminders: the case unrated and in its window, its applicant's identity bound.
    ``fields``: the field map in force (the WeChat configuration), else the settings'."""
    fields = dict(fields) if fields else reminder_fields(settings)

    def find(batch: list[Job], now: datetime) -> dict[int, Target | str]:
        wanted = {job.id: int(json.loads(job.payload)["case_id"]) for job in batch}
        cases = _case_values(sorted(set(wanted.values())))
        hashes = sorted({row.applicant_id_hash for row, _ in cases.values()})
        users = {
            r["id_hash"]: (r["user_id"], r["openid"])
            for r in Identity.select(Identity.id_hash, Identity.user.alias("user_id"), User.openid)
            .join(User)
            .where(Identity.id_hash.in_(hashes) & (Identity.expires_at > now))
            .dicts()
        }
        found: dict[int, Target | str] = {}
        for job_id, case_id in wanted.items():
            if case_id not in cases:
                found[job_id] = "no_case"
                continue
            case, values = cases[case_id]
            user = users.get(case.applicant_id_hash)
            if case.first_rated_at is not None:
                found[job_id] = "rated"
            elif now >= rating_window_end(case, settings):
                found[job_id] = "window"
            elif user is None or not user[1]:
                found[job_id] = "no_identity"
            else:
                data = _data(fields, values, settings, "templates.reminder_fields")
                found[job_id] = data if isinstance(data, str) else Target(*user, case_id, data)
        return found

    return find


def rectified_targets(settings: Settings, fields: dict[str, str] | None = None) -> Targets:
    """Rectified notices: a closed ticket whose rating has a WeChat user. The notice says
    the outcome, through its own field map (``templates.rectified_fields``)."""
    fields = dict(fields) if fields else dict(settings.templates.rectified_fields)
    attributes = ATTRIBUTES + RECTIFIED_ATTRIBUTES

    def one(ticket_id: int) -> Target | str:
        row = (
            Ticket.select(
                Ticket.status,
                Ticket.closed_at,
                Ticket.case.alias("case_id"),
                Evaluation.user.alias("user_id"),
                User.openid,
            )
            .join(Evaluation)
            .join(User, peewee.JOIN.LEFT_OUTER, on=(Evaluation.user == User.id))
            .where(Ticket.id == ticket_id)
            .dicts()
            .first()
        )
        if row is None:
            return "no_ticket"
        if row["status"] != "closed":
            return "not_closed"
        if row["user_id"] is None or not row["openid"]:
            return "no_user"
        found = _case_values([row["case_id"]]).get(row["case_id"])
        if found is None:
            return "no_case"
        values = {
            **found[1],
            "outcome": OUTCOME,
            "outcome_text": OUTCOME_TEXT,
            "closed_at": row["closed_at"],
        }
        data = _data(fields, values, settings, "templates.rectified_fields", attributes)
        return (
            data
            if isinstance(data, str)
            else Target(row["user_id"], row["openid"], row["case_id"], data)
        )

    def find(batch: list[Job], now: datetime) -> dict[int, Target | str]:
        return {job.id: one(int(json.loads(job.payload)["ticket_id"])) for job in batch}

    return find
