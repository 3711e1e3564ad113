"""The window system's step (3): report a finished case, signed, and fetch its QR code."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from wxbackend.clients.http import ApiError
from wxbackend.clients.partner import DEFAULT_CASE, case_payload, iso_ago, resident_id
from wxbackend.demo.output import (
    DemoError,
    failure,
    line,
    mask_id,
    mask_token,
)
from wxbackend.demo.session import CASE_CODES

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo

QR_FILE = "demo-qr.png"
#: The first case's codes: an item of conf/catalog.example.json with its department,
#: center, window and staff (`DEFAULT_CASE` of the partner client).
FIRST_ITEM = DEFAULT_CASE["item_code"]  # 失业登记
SECOND_ITEM = "440103-JY-001"  # 就业登记
#: The demo's fictional applicant (with the liker, the only full names it prints).
APPLICANT = "林晓雨"


def fictional_id_number(born_in: int | None = None) -> str:
    """A valid, random resident ID number (GB 11643) of nobody from a Guangzhou Liwan street
    (440103, a district code from 1983): born in ``born_in``, else 1985–1999."""
    first = date(born_in or 1985, 1, 1)
    days = 364 if born_in else 15 * 365
    birth = first + timedelta(days=secrets.randbelow(days))
    return resident_id("440103", f"{birth:%Y%m%d}")


#: The demo's applicant was born in 1950: older than her district's code, as most people who
#: come to a street center are (product rule 13: the ID is valid all the same).
APPLICANT_BORN = 1950


async def report_case(demo: Demo, item_code: str, id_number: str) -> dict[str, Any]:
    """``POST /api/v1/partner/cases`` (signed) for the demo's applicant; the answer plus
    ``case_no``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    body = case_payload(
        case_no=f"DEMO-{stamp}-{secrets.token_hex(3).upper()}",
        item_code=item_code,
        **CASE_CODES,
        applicant={"name": APPLICANT, "id_number": id_number},
        accepted_at=iso_ago(minutes=40),
        completed_at=iso_ago(minutes=5),
    )
    answer = await demo.partner().expect("POST", "/api/v1/partner/cases", body, status=201)
    return {**answer, "case_no": body["case_no"]}


async def report(demo: Demo) -> None:
    """Report the first case, show its one-time token, save its QR code image."""
    id_number = fictional_id_number(APPLICANT_BORN)
    case = await report_case(demo, FIRST_ITEM, id_number)
    demo.s.case1 = {**case, "id_number": id_number}
    line(
        "办件已上报",
        "case reported (signed POST /api/v1/partner/cases)",
        f"case_no {case['case_no']}, case_id {case['case_id']}, item {FIRST_ITEM}, "
        f"applicant {APPLICANT} {mask_id(id_number)} (born in {APPLICANT_BORN})",
    )
    line(
        "一次性二维码",
        "one-time QR token",
        f"scene {mask_token(case['scene'])} ({len(case['scene'])} chars), "
        f"valid until {case['expires_at']}",
    )
    status, png = await demo.partner().png(case["scene"])
    if status != 200:
        raise failure(ApiError("GET", "/api/v1/partner/qrcode.png", status, png))
    if not isinstance(png, bytes) or not png.startswith(b"\x89PNG"):
        raise DemoError("GET /api/v1/partner/qrcode.png did not answer a PNG")
    os.makedirs(demo.data_dir, exist_ok=True)
    path = os.path.join(demo.data_dir, QR_FILE)
    with open(path, "wb") as fh:
        fh.write(png)
    line("二维码图片", "QR code image saved", f"{os.path.abspath(path)} ({len(png)} bytes)")
