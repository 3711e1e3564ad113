"""What the console reads besides the contract's core (quick, no browser; tests/test_browser.py
drives the pages themselves): each ticket's rating in the ticket list, the reasons (指标) the
callback form offers, the pages' icon, and the console shell knowing whether it has a session.
"""

from __future__ import annotations

import pytest

from handlers.admin_base import ADMIN_COOKIE
from handlers.pages import WEB_DIR
from tests.support.admins import admin_token
from tests.support.tickets import T, seed_rating

MARKUP = "<img src=x onerror=alert(1)>"


@pytest.mark.asyncio
async def test_the_ticket_list_shows_each_tickets_rating(api, ctx):
    seeded = await seed_rating(ctx, overall=2, comment=MARKUP)
    no_approver = await seed_rating(ctx, overall=1, comment=None, approver_staff_no=None)
    token = await admin_token(api, ctx)
    listed = await api.expect("GET", T, token=token)
    by_case = {t["case_no"]: t for t in listed["items"]}
    assert by_case[seeded.case_no]["rating"] == {
        "overall": 2,
        "indicators": [],
        "comment": MARKUP,  # as stored: the console shows it as text
        "comment_status": "visible",
        "item": {"code": "440103-SY-001", "name": "失业登记"},
        "window_staff": {"staff_no": "HL001", "name": "黄玉华"},
        "approver": {"staff_no": "HL101", "name": "何国文"},
    }
    bare = by_case[no_approver.case_no]["rating"]
    assert bare["approver"] is None and bare["comment"] is None and bare["overall"] == 1
    one = await api.expect("GET", f"{T}/{no_approver.ticket_id}", token=token)
    assert one["rating"] == bare


@pytest.mark.asyncio
async def test_the_reasons_come_from_the_catalogue_in_order(api, ctx):
    status, answer = await api("GET", "/api/v1/public/indicators")
    assert status == 200
    codes = [i["code"] for i in answer["items"]]
    assert "poor_attitude" in codes and len(codes) == len(set(codes))
    assert {"code": "poor_attitude", "label": "服务态度差"} in answer["items"]


@pytest.mark.asyncio
async def test_favicon_is_served_and_linked(http_client, base_url):
    icon = await http_client.fetch(base_url + "/favicon.ico")
    assert icon.headers["Content-Type"] == "image/x-icon"
    assert icon.body == (WEB_DIR / "favicon.ico").read_bytes()
    assert icon.body[:4] == b"\x00\x00\x01\x00"  # an ICO header
    for page in ("/", "/public/", "/admin/"):
        body = (await http_client.fetch(base_url + page)).body.decode()
        assert '<link rel="icon" href="/favicon.ico"' in body, page


@pytest.mark.asyncio
async def test_the_console_shell_says_whether_it_has_a_session(http_client, base_url):
    """Without the session cookie the console shows its login form without asking
    ``/admin/api/me`` for a 401 (an error in the browser's console)."""
    fresh = (await http_client.fetch(base_url + "/admin/")).body.decode()
    assert "data-session" not in fresh
    headers = {"Cookie": f"{ADMIN_COOKIE}=anything"}
    signed = (await http_client.fetch(base_url + "/admin/", headers=headers)).body.decode()
    assert 'data-session="1"' in signed
