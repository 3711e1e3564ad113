"""Test data for the public record: cases and ratings inserted straight through the models.

Synchronous helpers: call them through ``ctx.db.run`` (or inside one ``ctx.db.run`` call).
The example catalogue (conf/catalog.example.json) is imported first, plus a second center
(:data:`OTHER_CENTER`) with one department, item and clerk, so filters have something to tell
apart.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from models.base import utcnow
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff
from models.evaluation import Evaluation, EvaluationIndicator, Indicator, Like, Reply
from models.ticket import Ticket
from tests.support.cases import CATALOG_FILE
from wxbackend.context import Context
from wxbackend.services.cases import reports as cases
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
from wxbackend.services.public import rollups
from wxbackend.services.public.rollup_rebuild import rebuild as rebuild_rollups
from wxbackend.timefmt import SHANGHAI

CENTER = "440103-HL"
OTHER_CENTER = "440104-XX"
#: item code → (department code, center code)
ITEMS = {
    "440103-SY-001": ("HL-LABOR", CENTER),
    "440103-MZ-001": ("HL-CIVIL", CENTER),
    "440104-XX-001": ("XX-GENERAL", OTHER_CENTER),
}
#: the clerk of each item's cases
CLERKS = {"440103-SY-001": "HL001", "440103-MZ-001": "HL002", "440104-XX-001": "XX001"}
APPLICANT_NAME = "黎明辉"
APPLICANT_ID = "110105199001010012"
APPLICANT_PHONE = "13800138000"

_numbers = itertools.count(1)

#: Settings for tests that compare public figures before and after a write (no stats cache).
UNCACHED = {"public": {"stats_cache_seconds": 0}}


def seed_catalog(ctx: Context) -> None:
    """The example catalogue plus :data:`OTHER_CENTER` (idempotent)."""
    if Center.get_or_none(Center.code == CENTER) is None:
        import_catalog(load_catalog_file(str(CATALOG_FILE)), ctx.hasher)
    if Center.get_or_none(Center.code == OTHER_CENTER) is None:
        center = Center.create(
            code=OTHER_CENTER, name="荔湾区西村街政务服务中心", area_code="440104"
        )
        department = Department.create(code="XX-GENERAL", name="综合受理", center=center)
        ServiceItem.create(code="440104-XX-001", name="居住证办理", department=department)
        Staff.create(
            staff_no="XX001", name="周丽娟", role="window", department=department, center=center
        )


def insert_case(
    ctx: Context,
    item_code: str = "440103-SY-001",
    completed_at: datetime | None = None,
    with_clerk: bool = True,
) -> int:
    """A finished, unrated case of :data:`ITEMS` ``item_code``; its id."""
    department_code, center_code = ITEMS[item_code]
    clerk = Staff.get(Staff.staff_no == CLERKS[item_code]).id if with_clerk else None
    done = completed_at or utcnow() - timedelta(hours=1)
    case = Case.create(
        case_no=f"P{next(_numbers):07d}",
        item=ServiceItem.get(ServiceItem.code == item_code).id,
        center=Center.get(Center.code == center_code).id,
        department=Department.get(Department.code == department_code).id,
        window_staff=clerk,
        applicant_name_enc=ctx.cipher.encrypt(APPLICANT_NAME, cases.NAME_CONTEXT),
        applicant_id_enc=ctx.cipher.encrypt(APPLICANT_ID, cases.ID_CONTEXT),
        applicant_id_hash=ctx.hasher.hash(APPLICANT_ID, "id_number"),
        applicant_phone_enc=ctx.cipher.encrypt(APPLICANT_PHONE, cases.PHONE_CONTEXT),
        accepted_at=done - timedelta(hours=1),
        completed_at=done,
    )
    rollups.case_reported(case)
    return case.id


def staff_id(staff_no: str | None) -> int | None:
    """The id of the clerk ``staff_no`` (None for None)."""
    return Staff.get(Staff.staff_no == staff_no).id if staff_no else None


def insert_staffed_case(
    ctx: Context, item: str, completed: datetime, clerk: str | None, approver: str | None = None
) -> int:
    """A finished case of ``item`` handled by ``clerk`` and signed by ``approver``."""
    case_id = insert_case(ctx, item, completed)
    Case.update(window_staff=staff_id(clerk), approver=staff_id(approver)).where(
        Case.id == case_id
    ).execute()
    rebuild_rollups()  # the case's staff changed after it was counted
    return case_id


def shanghai_day(value: datetime) -> date:
    """The Shanghai calendar day of a naive UTC moment."""
    return value.replace(tzinfo=UTC).astimezone(SHANGHAI).date()


def insert_rating(
    case_id: int,
    overall: int,
    *,
    channel: str = "qr",
    name_masked: str | None = "黎**",
    comment: str | None = None,
    comment_status: str = "visible",
    assess_number: int = 1,
    created_at: datetime | None = None,
    indicators: tuple[str, ...] = (),
    **levels: Any,
) -> int:
    """A rating of the case (copying its catalogue references); its id.

    ``levels``: ``stage_appointment=5``, ``target_window_staff=4`` …. A first rating sets
    the case's ``first_rated_at``.
    """
    case = Case.get_by_id(case_id)
    created = created_at or utcnow()
    evaluation = Evaluation.create(
        case=case_id,
        assess_number=assess_number,
        channel=channel,
        name_masked=None if channel == "default" else name_masked,
        rater_id_hash=None if channel == "default" else case.applicant_id_hash,
        overall=overall,
        comment=comment,
        comment_status=comment_status,
        created_at=created,
        center=case.center_id,
        item=case.item_id,
        department=case.department_id,
        window_staff=case.window_staff_id,
        approver=case.approver_id,
        **levels,
    )
    for code in indicators:
        EvaluationIndicator.create(evaluation=evaluation, indicator=Indicator.get(code=code))
    if assess_number == 1:
        Case.update(first_rated_at=created).where(Case.id == case_id).execute()
        targets = {name: value for name, value in levels.items() if name.startswith("target_")}
        rollups.first_rating(case, channel, overall, targets, created)
    else:
        rollups.follow_up(case_id)
    return evaluation.id


def rated_case(ctx: Context, overall: int = 5, item_code: str = "440103-SY-001", **kw: Any) -> int:
    """A new case and its first rating; the rating's id."""
    return insert_rating(insert_case(ctx, item_code), overall, **kw)


def add_like(evaluation_id: int, n: int, name_masked: str) -> None:
    Like.create(evaluation=evaluation_id, liker_id_hash=f"h{n:062d}", name_masked=name_masked)
    count = Like.select().where(Like.evaluation == evaluation_id).count()
    Evaluation.update(like_count=count).where(Evaluation.id == evaluation_id).execute()


def add_reply(evaluation_id: int, text: str, created_at: datetime | None = None) -> None:
    Reply.create(evaluation=evaluation_id, text=text, created_at=created_at or utcnow())


def open_ticket(evaluation_id: int, status: str = "open") -> None:
    evaluation = Evaluation.get_by_id(evaluation_id)
    now = utcnow()
    ticket = Ticket.create(
        evaluation=evaluation_id,
        case=evaluation.case_id,
        center=evaluation.center_id,
        department=evaluation.department_id,
        status=status,
        verify_due=now + timedelta(days=1),
        rectify_due=now + timedelta(days=15),
    )
    rollups.ticket_changed(Case.get_by_id(evaluation.case_id), None, ticket.__data__)
