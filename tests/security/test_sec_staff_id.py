"""Issue 12 item 17: linking a citizen's ID number to a clerk was audited only as
``id_number: set`` inside a general ``staff.update`` entry.

Linking an ID to a staff member refuses that person's ratings of the clerk's cases (product
rule 11), so staff could silence a citizen this way. Now each link or unlink is its own
``staff.id_number`` entry: who, which staff member, when, from where, and a fingerprint that
is equal for equal numbers — never the number or its hash.
"""

from __future__ import annotations

import json

import pytest

from models.audit import AuditEntry
from models.catalog import Staff
from tests.support.admins import admin_token
from wxbackend.clients.partner import resident_id

A = "/admin/api"


@pytest.mark.asyncio
async def test_each_id_link_is_its_own_audit_entry(api, ctx, partner):
    root = await admin_token(api, ctx)
    citizen = resident_id(birth="19500101", seq=424)
    body = {
        "staff_no": "HL301",
        "name": "林晓",
        "role": "window",
        "department": "HL-CIVIL",
        "center": "440103-HL",
        "id_number": citizen,
    }
    status, answer = await api("POST", f"{A}/staff", body, token=root)
    assert status == 201, answer
    status, _ = await api("PUT", f"{A}/staff/HL001", {"id_number": citizen}, token=root)
    assert status == 200
    status, _ = await api("PUT", f"{A}/staff/HL001", {"id_number": None}, token=root)
    assert status == 200

    status, page = await api("GET", f"{A}/audit-log?action=staff.id_number", token=root)
    assert status == 200
    entries = page["items"]
    assert [(e["target_id"], e["detail"]["change"]) for e in entries] == [
        ("HL001", "cleared"),
        ("HL001", "set"),
        ("HL301", "set"),
    ]
    assert all(e["username"] == "root" and e["at"] and e["client_ip"] for e in entries)
    fingerprints = [e["detail"].get("fingerprint") for e in entries]
    assert fingerprints[0] is None and fingerprints[1] == fingerprints[2]  # the same person

    id_hash = await ctx.db.run(lambda: Staff.get(Staff.staff_no == "HL301").id_hash)
    stored = await ctx.db.run(lambda: [e.detail for e in AuditEntry.select()])
    text = json.dumps(stored) + json.dumps(page)
    assert citizen not in text and id_hash not in text
