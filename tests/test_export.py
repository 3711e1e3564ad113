"""The export for the provincial platform over HTTP: CSV (BOM, header) and JSON Lines parse
back to exactly the stored ratings with the fields of product.md rule 12, in keyset chunks,
scoped, audited, and without any applicant data."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from models.audit import AuditEntry
from models.case import Case
from models.catalog import Center, Department, ServiceItem, Staff
from models.evaluation import Evaluation, EvaluationIndicator, Indicator
from tests.support.admins import PASSWORD, admin_token
from tests.support.databases import both_databases
from tests.support.public_seed import (
    APPLICANT_ID,
    APPLICANT_NAME,
    APPLICANT_PHONE,
    OTHER_CENTER,
    insert_rating,
    insert_staffed_case,
    seed_catalog,
    shanghai_day,
)
from wxbackend.db import database
from wxbackend.services.admin import export
from wxbackend.services.admin.accounts import create_admin
from wxbackend.timefmt import iso

EXPORT = "/admin/api/export"
COMMENTS = [
    None,
    "办事很快，点赞",
    '窗口人员说"材料不全", 让我再跑一趟\n第二行',
    "=1+2",  # a spreadsheet formula: neutralised in CSV only
    "-5 分",
    "",
]


def url(**params: object) -> str:
    return f"{EXPORT}?{urlencode(params)}" if params else EXPORT


def seed(ctx) -> None:
    """40 cases in both centers over six days; many ratings share one created_at so chunk
    boundaries fall inside a run of equal times."""
    seed_catalog(ctx)
    base = datetime(2026, 3, 1, 15, 30, 0)  # UTC: 23:30 in Shanghai
    same_moment = base + timedelta(days=2)
    items = ["440103-SY-001", "440103-MZ-001", "440104-XX-001"]
    codes = ["not_told_at_once", "poor_attitude", "long_queue"]
    for n in range(40):
        item = items[n % 3]
        clerk = {0: "HL001", 1: "HL002", 2: "XX001"}[n % 3] if n % 7 else None
        approver = "HL101" if n % 3 == 0 and n % 2 else None
        created = same_moment if 10 <= n < 25 else base + timedelta(hours=7 * n)
        case_id = insert_staffed_case(ctx, item, created - timedelta(hours=2), clerk, approver)
        overall = 1 + n % 5
        insert_rating(
            case_id,
            overall,
            channel=["qr", "miniprogram", "phone", "sms", "default"][n % 5],
            comment=COMMENTS[n % len(COMMENTS)],
            comment_status=["visible", "hidden", "pending_review"][n % 3],
            created_at=created,
            indicators=tuple(codes[: n % 3]) if overall <= 2 else (),
        )
        if n % 4 == 0:
            insert_rating(
                case_id, 5, assess_number=2, comment="已解决", created_at=created + timedelta(1)
            )
    insert_staffed_case(ctx, "440103-SY-001", base, "HL001")  # unrated: not exported


def expected_rows(
    center: str | None = None, first: date | None = None, last: date | None = None
) -> list[dict[str, Any]]:
    """Every rating as the JSON Lines export must carry it, built here row by row."""
    out = []
    ordered = Evaluation.select().order_by(Evaluation.created_at, Evaluation.id)
    for e in ordered:
        day = shanghai_day(e.created_at)
        center_row = Center.get_by_id(e.center_id)
        if center and center_row.code != center:
            continue
        if (first and day < first) or (last and day > last):
            continue
        department = Department.get_by_id(e.department_id)
        item = ServiceItem.get_by_id(e.item_id)
        clerk = Staff.get_or_none(Staff.id == e.window_staff_id)
        approver = Staff.get_or_none(Staff.id == e.approver_id)
        chosen = (
            Indicator.select(Indicator.code)
            .join(EvaluationIndicator)
            .where(EvaluationIndicator.evaluation == e.id)
            .order_by(Indicator.sort_order, Indicator.id)
        )
        out.append(
            {
                "evaluation_id": str(e.id),
                "area_code": center_row.area_code,
                "center_code": center_row.code,
                "department_code": department.code,
                "department_credit_code": department.credit_code or None,
                "item_code": item.code,
                "item_name": item.name,
                "case_no": Case.get_by_id(e.case_id).case_no,
                "channel": e.channel,
                "level": e.overall,
                "indicator_codes": [i.code for i in chosen],
                "comment": e.comment,
                "comment_status": e.comment_status,
                "created_at": iso(e.created_at),
                "assess_number": e.assess_number,
                "window_staff_no": clerk.staff_no if clerk else None,
                "window_staff_name": clerk.name if clerk else None,
                "approver_staff_no": approver.staff_no if approver else None,
                "approver_name": approver.name if approver else None,
                "case_completed_at": iso(Case.get_by_id(e.case_id).completed_at),
                "counts_as": {"qr": "citizen", "miniprogram": "citizen", "default": "default"}.get(
                    e.channel, "callback"
                ),
            }
        )
    return out


def as_csv_row(row: dict[str, Any]) -> dict[str, str]:
    """What the CSV cell of each field reads back as (strings; empty for null)."""
    out = {}
    for name, value in row.items():
        if name == "indicator_codes":
            value = ";".join(value)
        elif name == "comment" and value and value[0] in "=+-@\t\r":
            value = "'" + value
        out[name] = "" if value is None else str(value)
    return out


async def fetch(http_client, base_url: str, token: str, **params: object):
    return await http_client.fetch(
        base_url + url(**params),
        headers={"Authorization": f"Bearer {token}"},
        raise_error=False,
        request_timeout=60,
    )


@both_databases
@pytest.mark.asyncio
async def test_csv_and_jsonl_parse_back_to_the_rows(api, ctx, http_client, base_url, monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 7)  # many chunks, boundaries in equal times
    await ctx.db.run(seed, ctx)
    expected = await ctx.db.run(expected_rows)
    assert len(expected) == 50 and any(r["assess_number"] == 2 for r in expected)
    assert any(r["approver_name"] for r in expected) and any(r["indicator_codes"] for r in expected)
    token = await admin_token(api, ctx)

    response = await fetch(http_client, base_url, token, format="csv")
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="evaluations_all_all.csv"'
    )
    body = response.body
    assert body.startswith(b"\xef\xbb\xbf")
    reader = csv.reader(io.StringIO(body[3:].decode("utf-8"), newline=""))
    header, *rows = list(reader)
    assert tuple(header) == export.FIELDS
    assert [dict(zip(header, r, strict=True)) for r in rows] == [as_csv_row(r) for r in expected]
    assert "'=1+2" in body.decode() and "\r\n" in body.decode()

    response = await fetch(http_client, base_url, token, format="jsonl")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response.headers["Content-Disposition"].endswith('evaluations_all_all.jsonl"')
    lines = response.body.decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == expected

    for body in (body, response.body):
        text = body.decode("utf-8")
        for personal in (APPLICANT_NAME, APPLICANT_ID, APPLICANT_PHONE, "黎**", "黎"):
            assert personal not in text


@pytest.mark.asyncio
async def test_range_and_scope(api, ctx, http_client, base_url):
    await ctx.db.run(seed, ctx)
    token = await admin_token(api, ctx)
    first, last = date(2026, 3, 3), date(2026, 3, 5)
    expected = await ctx.db.run(expected_rows, None, first, last)
    assert 0 < len(expected) < 50
    response = await fetch(
        http_client, base_url, token, format="jsonl", **{"from": "2026-03-03", "to": "2026-03-05"}
    )
    assert response.headers["Content-Disposition"].endswith(
        'filename="evaluations_2026-03-03_2026-03-05.jsonl"'
    )
    assert [json.loads(x) for x in response.body.decode().splitlines()] == expected

    def make_admin() -> None:
        with database.atomic():
            create_admin("ca_other", PASSWORD, "center_admin", OTHER_CENTER)

    await ctx.db.run(make_admin)
    other = await admin_token(api, ctx, "ca_other")
    response = await fetch(http_client, base_url, other, format="jsonl")
    got = [json.loads(x) for x in response.body.decode().splitlines()]
    assert got == await ctx.db.run(expected_rows, OTHER_CENTER)
    assert got and {r["center_code"] for r in got} == {OTHER_CENTER}
    response = await fetch(http_client, base_url, other)  # csv by default
    assert response.body.count(b"\r\n") == len(got) + 1

    entries = await ctx.db.run(
        lambda: list(
            AuditEntry.select()
            .where(AuditEntry.action == "evaluations.export")
            .order_by(AuditEntry.id)
            .dicts()
        )
    )
    assert [(e["username"], e["target_id"]) for e in entries] == [
        ("root", "jsonl"),
        ("ca_other", "jsonl"),
        ("ca_other", "csv"),
    ]
    detail = json.loads(entries[0]["detail"])
    assert detail["from"] == "2026-03-03" and detail["to"] == "2026-03-05"
    assert json.loads(entries[1]["detail"])["center_id"] is not None


@pytest.mark.asyncio
async def test_empty_export_is_just_the_header(api, ctx, http_client, base_url):
    token = await admin_token(api, ctx)
    response = await fetch(http_client, base_url, token, **{"from": "2030-01-01"})
    assert response.code == 200
    assert response.body == b"\xef\xbb\xbf" + ",".join(export.FIELDS).encode() + b"\r\n"
    response = await fetch(http_client, base_url, token, format="jsonl")
    assert response.code == 200 and response.body == b""


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    ["format=xml", "format=CSV", "from=2026-13-01", "to=tomorrow", "from=2026-03-02&to=2026-03-01"],
)
async def test_bad_queries(api, ctx, query):
    token = await admin_token(api, ctx)
    status, answer = await api("GET", f"{EXPORT}?{query}", token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_query", answer
