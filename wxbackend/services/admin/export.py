"""Export of ratings for the provincial platform (上报, product.md rule 12), streamed.

``GET /admin/api/export?from=&to=&format=csv|jsonl``: one row per evaluation — first ratings
and follow-ups (追评) alike, told apart by ``assess_number`` — created in the range (dates in
Asia/Shanghai, both inclusive; either may be left out), within the admin's scope
(``wxbackend.services.admin.scope``: a center-bound admin exports their center, a handler their
department). The fields are :data:`FIELDS`:

* area and department codes (``area_code`` of the center, the center's code, the
  department's code and 统一社会信用代码 ``department_credit_code``), 事项编码 and name,
  办件编号 ``case_no``, ``channel``, ``level`` 1–5, ``indicator_codes``, the ``comment`` text,
  ``created_at`` (ISO 8601, +08:00), ``assess_number``, the window clerk and the back-office
  approver (staff number and name), plus the ``evaluation_id`` and ``comment_status``.
* how the row counts in the figures of product.md rule 10 (``services.public.figures``):
  ``case_completed_at`` (a period's figures take the cases completed in it) and ``counts_as``
  (``citizen`` 主动评价, ``callback`` 回访评价, ``default``: counted in 满意率 and 差评率, the
  case unrated).
* Comments are exported whatever their moderation status (``comment_status`` says which):
  moderation only withholds text from the public page; the platform receives every rating.
* No applicant data at all: no name (not even masked), ID number, phone, openid or enterprise.

CSV: UTF-8 with a byte-order mark (so Excel reads the Chinese), a header row, CRLF lines,
``indicator_codes`` joined with ``;``. Every text cell starting with ``= + - @``, tab or CR gets a
leading ``'`` in CSV only, so a spreadsheet never runs it as a formula (CSV injection).
JSON Lines: one object per line, ``indicator_codes`` a list, numbers as numbers.

Streaming, constant memory: rows are read in chunks of :data:`CHUNK_ROWS` by keyset
pagination on ``(created_at, id)`` (``created_at >= t AND (created_at > t OR id > i)``,
ordered, ``LIMIT``; the ``created_at`` index serves it, never OFFSET). Each chunk is read *and
encoded* on the database thread pool (``ctx.db.run``), so the IOLoop only writes bytes; the
handler flushes each chunk and waits for the socket before asking for the next, so a slow
client holds back the reading rather than filling memory. Every export is audited (who,
which range, which format, which scope) before the first byte.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import peewee

from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff
from models.evaluation import Evaluation, EvaluationIndicator, Indicator
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.db import database
from wxbackend.services.admin import scope
from wxbackend.services.admin.audit import Actor, record
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import db_share
from wxbackend.services.public import figures
from wxbackend.timefmt import iso

CHUNK_ROWS = 2000
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
PARAMETERS = ("from", "to", "format")
BOM = "\ufeff"
FIELDS = (
    "evaluation_id",
    "area_code",
    "center_code",
    "department_code",
    "department_credit_code",
    "item_code",
    "item_name",
    "case_no",
    "channel",
    "level",
    "indicator_codes",
    "comment",
    "comment_status",
    "created_at",
    "assess_number",
    "window_staff_no",
    "window_staff_name",
    "approver_staff_no",
    "approver_name",
    # how the row counts in the figures (product.md rule 10, ``figures``): the case's
    # completion (the period a figure puts it in) and citizen / callback / default
    "case_completed_at",
    "counts_as",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_OFFSET = timedelta(hours=8)
#: One encoder for every row (``json.dumps`` with options builds a new one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_FIXED_OFFSET_SINCE = 1992


@dataclass(frozen=True)
class ExportQuery:
    format: str
    first: str | None  # from / to as given (for the file name and the audit entry)
    last: str | None
    start: datetime | None  # naive UTC, [start, end)
    end: datetime | None


def parse_export_query(args: Mapping[str, str | None]) -> ExportQuery:
    """``format`` (``csv`` by default, or ``jsonl``), ``from``, ``to`` (400 ``invalid_query``)."""
    fmt = args.get("format") or "csv"
    if fmt not in FORMATS:
        raise errors.InvalidQuery("Parameter format must be csv or jsonl.", parameter="format")
    days = figures.parse_stats_query({"from": args.get("from"), "to": args.get("to")})
    return ExportQuery(
        format=fmt,
        first=args.get("from") or None,
        last=args.get("to") or None,
        start=days.start,
        end=days.end,
    )


def media_type(query: ExportQuery) -> str:
    return FORMATS[query.format]


def filename(query: ExportQuery) -> str:
    """``evaluations_<from>_<to>.<format>`` (``all`` for an open end)."""
    return f"evaluations_{query.first or 'all'}_{query.last or 'all'}.{query.format}"


def record_export(actor: Actor, principal: Principal, query: ExportQuery) -> None:
    """The audit entry of an export (who, range, format, scope), written before streaming."""
    detail = {
        "from": query.first,
        "to": query.last,
        "format": query.format,
        "center_id": scope.center_filter(principal, "export"),
        "department_id": scope.department_filter(principal, "export"),
    }
    with database.atomic():
        record(actor, "evaluations.export", "export", query.format, detail)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Chunk:
    """Encoded rows and where the next chunk starts (None: this was the last)."""

    data: bytes
    rows: int
    after: tuple[Any, int] | None  # (created_at as the database gave it, id)


def _select(principal: Principal, query: ExportQuery) -> peewee.Select:
    clerk = Staff.alias("clerk")
    approver = Staff.alias("approver")
    rows = (
        Evaluation.select(
            Evaluation.id,
            Center.area_code,
            Center.code,
            Department.code,
            Department.credit_code,
            ServiceItem.code,
            ServiceItem.name,
            Case.case_no,
            Evaluation.channel,
            Evaluation.overall,
            Evaluation.comment,
            Evaluation.comment_status,
            Evaluation.created_at,
            Evaluation.assess_number,
            clerk.staff_no,
            clerk.name,
            approver.staff_no,
            approver.name,
            Case.completed_at,
        )
        .join_from(Evaluation, Case, on=(Evaluation.case == Case.id))
        .join_from(Evaluation, Center, on=(Evaluation.center == Center.id))
        .join_from(Evaluation, Department, on=(Evaluation.department == Department.id))
        .join_from(Evaluation, ServiceItem, on=(Evaluation.item == ServiceItem.id))
        .join_from(
            Evaluation, clerk, peewee.JOIN.LEFT_OUTER, on=(Evaluation.window_staff == clerk.id)
        )
        .join_from(
            Evaluation, approver, peewee.JOIN.LEFT_OUTER, on=(Evaluation.approver == approver.id)
        )
    )
    where = scope.where_clauses(principal, "export", Evaluation.center, Evaluation.department)
    if query.start is not None:
        where.append(Evaluation.created_at >= query.start)
    if query.end is not None:
        where.append(Evaluation.created_at < query.end)
    return rows.where(*where) if where else rows


def _indicator_codes(chunk: peewee.Select) -> dict[int, list[str]]:
    """The indicator codes of the chunk's ratings; ``chunk`` (its ids) is a subquery, so
    the SQL stays small whatever the chunk size."""
    chosen: dict[int, list[str]] = {}
    found = (
        EvaluationIndicator.select(EvaluationIndicator.evaluation, Indicator.code)
        .join(Indicator)
        .where(EvaluationIndicator.evaluation.in_(chunk))
        .order_by(Indicator.sort_order, Indicator.id)
        .tuples()
    )
    for evaluation_id, code in found:
        chosen.setdefault(evaluation_id, []).append(code)
    return chosen


def read_chunk(
    principal: Principal,
    query: ExportQuery,
    after: tuple[Any, int] | None = None,
    size: int | None = None,
) -> Chunk:
    """Up to ``size`` rows after the keyset position ``after``, encoded (database thread)."""
    size = size or CHUNK_ROWS
    rows = _select(principal, query)
    if after is not None:
        created, last_id = after
        rows = rows.where(
            Evaluation.created_at >= created,
            (Evaluation.created_at > created) | (Evaluation.id > last_id),
        )
    rows = rows.order_by(Evaluation.created_at, Evaluation.id).limit(size)
    # The raw cursor: peewee's per-value conversion would double the cost of a big export.
    page = database.execute(rows).fetchall()
    if not page:
        return Chunk(b"", 0, None)
    codes = _indicator_codes(rows.select(Evaluation.id))
    encode = _encode_csv if query.format == "csv" else _encode_jsonl
    data = encode(page, codes)
    last = page[-1]
    # The keyset position as stored (SQLite's text as is), so equal times compare equal.
    return Chunk(data, len(page), (last[12], last[0]) if len(page) == size else None)


def _as_datetime(value: datetime | str) -> datetime:
    """A stored time as read raw: SQLite gives its text, PostgreSQL a datetime."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _shanghai_iso(value: datetime | str) -> str:
    """:func:`wxbackend.timefmt.iso` of a stored time, without the time-zone lookup per row
    (Asia/Shanghai has been UTC+8 without daylight saving since 1991)."""
    moment = _as_datetime(value)
    if moment.year < _FIXED_OFFSET_SINCE:
        return iso(moment) or ""
    return (moment + _OFFSET).isoformat(timespec="seconds") + "+08:00"


# --------------------------------------------------------------------------- encoding


def _values(row: tuple, codes: dict[int, list[str]]) -> list[Any]:
    """The :data:`FIELDS` of one selected row."""
    (
        evaluation_id,
        area_code,
        center_code,
        department_code,
        credit_code,
        item_code,
        item_name,
        case_no,
        channel,
        level,
        comment,
        comment_status,
        created_at,
        assess_number,
        clerk_no,
        clerk_name,
        approver_no,
        approver_name,
        completed_at,
    ) = row
    return [
        str(evaluation_id),
        area_code,
        center_code,
        department_code,
        credit_code or None,
        item_code,
        item_name,
        case_no,
        channel,
        level,
        codes.get(evaluation_id, []),
        comment,
        comment_status,
        _shanghai_iso(created_at),
        assess_number,
        clerk_no,
        clerk_name,
        approver_no,
        approver_name,
        _shanghai_iso(completed_at),
        figures.counts_as(channel),
    ]


_INDICATORS = FIELDS.index("indicator_codes")


def header(fmt: str) -> bytes:
    """What precedes the rows: the BOM and the header row for CSV, nothing for JSON Lines."""
    if fmt != "csv":
        return b""
    out = io.StringIO()
    out.write(BOM)
    csv.writer(out).writerow(FIELDS)
    return out.getvalue().encode("utf-8")


def _safe_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _encode_csv(page: list[tuple], codes: dict[int, list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in page:
        values = _values(row, codes)
        values[_INDICATORS] = ";".join(values[_INDICATORS])
        writer.writerow([_safe_cell(value) for value in values])  # every text cell
    return out.getvalue().encode("utf-8")


def _encode_jsonl(page: list[tuple], codes: dict[int, list[str]]) -> bytes:
    lines = [_JSON.encode(dict(zip(FIELDS, _values(row, codes), strict=True))) for row in page]
    lines.append("")
    return "\n".join(lines).encode("utf-8")


async def stream(
    ctx: Context, principal: Principal, query: ExportQuery, size: int | None = None
) -> AsyncIterator[bytes]:
    """The export's bytes, chunk by chunk (:data:`CHUNK_ROWS` rows unless ``size``); each
    chunk read and encoded on the admin reports' share of the database threads."""
    size = size or CHUNK_ROWS
    slots = db_share.report_slots(ctx)
    yield header(query.format)
    after = None
    while True:
        chunk = await db_share.run_in_share(ctx, slots, read_chunk, principal, query, after, size)
        if chunk.data:
            yield chunk.data
        if chunk.after is None:
            return
        after = chunk.after
