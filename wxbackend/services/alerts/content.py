"""What a staff alert says: the item, the level, the reasons, the deadline and a console link.

Never the citizen's name, phone, ID number or comment: the alert goes to a group chat. Only
catalogue names, level and indicator labels, times and the ticket number are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from models.case import Case
from models.catalog import Center, ServiceItem
from models.evaluation import Evaluation, EvaluationIndicator, Indicator
from models.ticket import Ticket
from wxbackend.services.alerts.robot import MARKDOWN_MAX_BYTES
from wxbackend.services.ratings.levels import LEVEL_LABELS
from wxbackend.settings import Settings

#: Alert kinds: a new 差评, the verify deadline near, the rectify deadline near.
BAD = "bad"
VERIFY_DUE = "verify_due"
RECTIFY_DUE = "rectify_due"
KINDS = (BAD, VERIFY_DUE, RECTIFY_DUE)
TITLES = {
    BAD: "新差评待核实",
    VERIFY_DUE: "差评核实期限临近",
    RECTIFY_DUE: "差评整改期限临近",
}


@dataclass(frozen=True)
class Facts:
    """What an alert may say about its ticket (nothing personal)."""

    ticket_id: int
    center: str
    item: str
    level: int
    reasons: tuple[str, ...]
    verify_due: datetime
    rectify_due: datetime


def facts_of(ticket_id: int) -> Facts | None:
    """The alert facts of a ticket (sync, database thread); None if it is gone."""
    row = (
        Ticket.select(Ticket, Evaluation, Case, ServiceItem, Center)
        .join(Evaluation, on=Ticket.evaluation == Evaluation.id)
        .switch(Ticket)
        .join(Case, on=Ticket.case == Case.id)
        .join(ServiceItem, on=Case.item == ServiceItem.id)
        .switch(Ticket)
        .join(Center, on=Ticket.center == Center.id)
        .where(Ticket.id == ticket_id)
        .first()
    )
    if row is None:
        return None
    reasons = tuple(
        r.indicator.label
        for r in EvaluationIndicator.select(EvaluationIndicator, Indicator)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation == row.evaluation_id)
        .order_by(Indicator.sort_order, Indicator.id)
    )
    return Facts(
        ticket_id=row.id,
        center=row.center.name,
        item=row.case.item.name,
        level=row.evaluation.overall,
        reasons=reasons,
        verify_due=row.verify_due,
        rectify_due=row.rectify_due,
    )


def _local(at: datetime, tz: ZoneInfo) -> str:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _plain(text: str, limit: int = 100) -> str:
    """A catalogue name as markdown text: one line, no markup characters, bounded."""
    cleaned = " ".join(text.split())
    for ch in "*`[]<>#":
        cleaned = cleaned.replace(ch, " ")
    return cleaned[:limit]


def console_link(settings: Settings) -> str | None:
    """The console's ticket list (``server.public_url`` + ``/admin/#tickets``), if known."""
    base = settings.server.public_url.rstrip("/")
    return f"{base}/admin/#tickets" if base else None


def markdown(kind: str, facts: Facts, settings: Settings) -> str:
    """The alert as WeCom markdown, within :data:`MARKDOWN_MAX_BYTES` of UTF-8."""
    tz = ZoneInfo(settings.reminders.timezone)
    level = LEVEL_LABELS.get(facts.level, str(facts.level))
    lines = [
        f"## {TITLES[kind]}",
        f"> 服务中心：{_plain(facts.center)}",
        f"> 办理事项：{_plain(facts.item)}",
        f'> 评价等级：<font color="warning">{level}</font>',
        f"> 差评原因：{'、'.join(_plain(r, 40) for r in facts.reasons) or '未选择'}",
    ]
    if kind in (BAD, VERIFY_DUE):
        lines.append(f"> 核实期限：{_local(facts.verify_due, tz)}")
    if kind in (BAD, RECTIFY_DUE):
        lines.append(f"> 整改期限：{_local(facts.rectify_due, tz)}")
    lines.append(f"> 工单号：{facts.ticket_id}")
    link = console_link(settings)
    lines.append(f"[在管理台处理]({link})" if link else "请在管理台「差评工单」中处理。")
    text = "\n".join(lines)
    encoded = text.encode("utf-8")
    if len(encoded) > MARKDOWN_MAX_BYTES:  # only absurd catalogue names get here
        text = encoded[:MARKDOWN_MAX_BYTES].decode("utf-8", errors="ignore")
    return text
