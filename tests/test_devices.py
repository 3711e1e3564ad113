"""Evaluator screens (评价器, product rule 24) over real HTTP, Redis and the WeChat sandbox:
device keys (made, hashed, rotated, audited), pairing, the screen's stream (``case`` within a
second of a partner's report, ``rated`` after the rating, then ``idle``), the code image for
the paired screen only, the renewal that keeps the old code usable, the streams' own cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from handlers.devices import DeviceStreamHandler
from models.audit import AuditEntry
from models.case import QrToken
from models.device import WindowDevice
from tests.support.admins import admin_token
from wxbackend.clients.citizen import rate, verified_user
from wxbackend.clients.device import ScreenStream
from wxbackend.clients.partner import resident_id
from wxbackend.sandbox.png import code_png
from wxbackend.security import token_digest
from wxbackend.services.devices import pairing, screen


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch):
    """A 1 s heartbeat: a stream whose screen went away ends within a second (the server
    learns of a closed connection when it next writes), not after the 15 s of production."""
    monkeypatch.setattr(DeviceStreamHandler, "heartbeat_seconds", 1.0)


WINDOW, OTHER_WINDOW = "HL-W01", "HL-W02"
QR = "/api/v1/device/qrcode.png"


async def new_key(api, token: str, window: str = WINDOW) -> str:
    answer = await api.expect("POST", f"/admin/api/windows/{window}/device-key", token=token)
    return answer["device_key"]


async def pair(api, key: str, window: str = WINDOW) -> tuple[int, dict]:
    return await api("POST", "/api/v1/device/pair", {"window_code": window, "device_key": key})


async def paired_screen(api, ctx, window: str = WINDOW) -> str:
    """A device token of a freshly keyed window."""
    key = await new_key(api, await admin_token(api, ctx), window)
    status, answer = await pair(api, key, window)
    assert status == 200, answer
    return answer["device_token"]


@contextlib.asynccontextmanager
async def screen_showing_a_case(api, ctx, partner, base_url):
    """A paired screen's stream, idle, then showing a case reported at its window:
    ``(device token, stream, the case event, the report)``; the stream is closed after."""
    token = await paired_screen(api, ctx)
    stream = ScreenStream(base_url, token)
    try:
        await stream.next_event("idle")
        report = await partner.new_case(window_code=WINDOW)
        yield token, stream, await stream.next_event("case"), report
    finally:
        await stream.close()


@pytest.mark.asyncio
async def test_pairing_with_the_right_wrong_and_rotated_key(api, ctx, partner):
    admin = await admin_token(api, ctx)
    first = await new_key(api, admin)
    row = await ctx.db.run(WindowDevice.get)
    assert row.key_hash == token_digest(pairing.normalize_key(first))  # hashed, never in clear
    audited = await ctx.db.run(
        lambda: list(AuditEntry.select().where(AuditEntry.action == "window.device_key"))
    )
    assert [e.target_id for e in audited] == [WINDOW]
    assert pairing.normalize_key(first) not in audited[0].detail

    assert (await pair(api, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF"))[0] == 401
    assert (await pair(api, first, OTHER_WINDOW))[0] == 401  # that window has no key
    assert (await pair(api, first, "NOPE-W99"))[0] == 401
    status, answer = await pair(api, first.lower().replace("-", " "))  # as a person types it
    assert status == 200, answer
    old_token = answer["device_token"]
    assert (await api("GET", QR, token=old_token))[0] == 404  # paired; nothing on screen yet
    assert (await api("GET", QR))[0] == 401

    second = await new_key(api, admin)  # rotates: the old key and its pairings end
    assert second != first
    assert (await api("GET", QR, token=old_token))[0] == 401
    assert (await pair(api, first))[0] == 401
    status, answer = await pair(api, second)
    assert status == 200
    assert (await api("GET", QR, token=answer["device_token"]))[0] == 404
    assert (await ctx.db.run(WindowDevice.get)).generation == 2


@pytest.mark.asyncio
async def test_bad_pairing_bodies_are_contract_errors(api, ctx, partner):
    assert (await api("POST", "/api/v1/device/pair", {"window_code": WINDOW}))[0] == 400
    body = {"window_code": "no spaces", "device_key": "x"}
    assert (await api("POST", "/api/v1/device/pair", body))[0] == 422
    body = {"window_code": WINDOW, "device_key": 5}
    assert (await api("POST", "/api/v1/device/pair", body))[0] == 400


@pytest.mark.parametrize(
    "settings_overrides", [{"devices": {"pair_per_address_per_minute": 3}}], indirect=False
)
@pytest.mark.asyncio
async def test_pairing_is_rate_limited_per_address(api, ctx, partner, settings_overrides):
    statuses = [(await pair(api, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF"))[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize("settings_overrides", [{"devices": {"thanks_seconds": 1}}])
@pytest.mark.asyncio
async def test_screen_shows_the_case_then_thanks_then_idles(
    api, ctx, partner, sandbox, base_url, settings_overrides
):
    token = await paired_screen(api, ctx)
    other = await paired_screen(api, ctx, OTHER_WINDOW)
    stream = ScreenStream(base_url, token)
    try:
        await stream.next_event("idle")
        id_number = resident_id(birth="19500301")
        sent = time.monotonic()
        status, report = await partner.report_case(
            window_code=WINDOW, applicant={"name": "黎明", "id_number": id_number}
        )
        assert status == 201, report
        case = await stream.next_event("case", timeout=1.0)
        received = next(t for n, _, t in stream.events if n == "case")
        assert received - sent < 1.0
        assert set(case) == {"case_no_masked", "item", "qr_url", "expires_at"}
        assert "*" in case["case_no_masked"] and case["item"]
        assert case["qr_url"].startswith(QR)

        # the code: this screen only; it is the code of the case's current scene
        status, image = await api("GET", case["qr_url"], token=token)
        assert status == 200 and image.startswith(b"\x89PNG")
        assert (await api("GET", case["qr_url"]))[0] == 401
        assert (await api("GET", case["qr_url"], token=other))[0] == 404  # not its window
        state = await screen.current(ctx, WINDOW)
        scene = ctx.cipher.decrypt(state["scene"], screen.SCENE_CONTEXT)
        assert image == code_png(scene, ctx.settings.qr.width)

        # the citizen scans the screen's code and rates: thanks, then idle
        citizen = await verified_user(api, sandbox, "黎明", id_number)
        count = len(stream.events)
        status, answer = await rate(api, citizen, scene=scene, overall=5)
        assert status == 201, answer
        await stream.next_event("rated", after=count, timeout=1.0)
        await stream.next_event("idle", after=count + 1, timeout=3.0)
        assert (await api("GET", QR, token=token))[0] == 404
    finally:
        await stream.close()


@pytest.mark.asyncio
async def test_a_case_of_another_window_stays_off_the_screen(api, ctx, partner, base_url):
    token = await paired_screen(api, ctx)
    stream = ScreenStream(base_url, token)
    try:
        await stream.next_event("idle")
        await partner.new_case(window_code=OTHER_WINDOW, window_staff_no=None)
        await partner.new_case(window_code=None, window_staff_no=None)
        await asyncio.sleep(0.5)
        assert stream.names() == ["idle"]
    finally:
        await stream.close()


@pytest.mark.parametrize(
    "settings_overrides", [{"devices": {"code_seconds": 32, "renew_before_seconds": 31}}]
)
@pytest.mark.asyncio
async def test_the_code_is_renewed_before_it_expires_and_the_old_one_stays_usable(
    api, ctx, partner, base_url, settings_overrides
):
    async with screen_showing_a_case(api, ctx, partner, base_url) as (token, stream, first, _):
        renewed = await stream.next_event("case", after=2, timeout=4.0)  # due after ~1 s
        assert renewed["qr_url"] != first["qr_url"]
        assert renewed["expires_at"] >= first["expires_at"]
        tokens = await ctx.db.run(lambda: [t.status for t in QrToken.select()])
        # the report's token, the first screen code (NOT revoked: a citizen may be mid-scan),
        # the renewed one
        assert tokens.count("active") >= 3 and "revoked" not in tokens
        status, image = await api("GET", renewed["qr_url"], token=token)
        assert status == 200 and image.startswith(b"\x89PNG")


@pytest.mark.asyncio
async def test_rotating_the_key_ends_the_open_stream(api, ctx, partner, base_url):
    admin = await admin_token(api, ctx)
    token = await paired_screen(api, ctx)
    stream = ScreenStream(base_url, token)
    try:
        await stream.next_event("idle")
        await new_key(api, admin)
        response = await asyncio.wait_for(asyncio.shield(stream.done), 5)
        assert getattr(response, "code", None) == 200  # ended by the server
        again = ScreenStream(base_url, token)
        response = await asyncio.wait_for(asyncio.shield(again.done), 5)
        assert response.code == 401
        again.client.close()
    finally:
        await stream.close()


@pytest.mark.parametrize("settings_overrides", [{"devices": {"max_streams_per_window": 1}}])
@pytest.mark.asyncio
async def test_screen_streams_have_their_own_cap(api, ctx, partner, base_url, settings_overrides):
    token = await paired_screen(api, ctx)
    first = ScreenStream(base_url, token)
    try:
        await first.next_event("idle")
        assert ctx.device_streams.open == 1 and ctx.live_streams.open == 0
        second = ScreenStream(base_url, token)
        response = await asyncio.wait_for(asyncio.shield(second.done), 5)
        assert response.code == 503
        assert json.loads(second.buffer)["error"]["code"] == "too_many_streams"  # streamed body
        second.client.close()
        assert (await api("GET", "/api/v1/device/stream"))[0] == 401
    finally:
        await first.close()


@pytest.mark.asyncio
async def test_the_device_page_pairs_and_reads_no_qr_parameter(
    api, ctx, partner, http_client, base_url
):
    """The page as served, and every script it loads: a ``?qr=`` link shows nothing of its
    own, and no script reads the page's query string."""
    url = base_url + "/device/HL-W01?qr=https%3A%2F%2Fevil.example%2Fmine.png"
    page = (await http_client.fetch(url)).body.decode()
    assert "evil.example" not in page
    assert 'id="pair-form"' in page and 'id="qr-box"' in page
    scripts = [part.split('"', 1)[0] for part in page.split('<script src="')[1:]]
    assert any("device.js" in s for s in scripts)
    for src in scripts:
        body = (await http_client.fetch(base_url + src)).body.decode()
        for reader in ("location.search", "URLSearchParams", "location.href", 'get("qr")'):
            assert reader not in body, (src, reader)
    device_js = next(s for s in scripts if "device.js" in s)
    body = (await http_client.fetch(base_url + device_js)).body.decode()
    assert "/api/v1/device/stream" in body and "/api/v1/device/pair" in body


@pytest.mark.asyncio
async def test_a_partner_renewal_revokes_the_screen_code_and_the_screen_gets_a_new_one(
    api, ctx, partner, base_url, monkeypatch
):
    monkeypatch.setattr(DeviceStreamHandler, "heartbeat_seconds", 0.5)  # the renewal check
    async with screen_showing_a_case(api, ctx, partner, base_url) as (token, stream, first, case):
        status, _ = await partner.qrcode(case["case_no"])  # revokes every active code
        assert status == 200
        assert (await api("GET", first["qr_url"], token=token))[0] == 410
        renewed = await stream.next_event("case", after=2, timeout=3.0)
        assert renewed["qr_url"] != first["qr_url"]
        status, image = await api("GET", renewed["qr_url"], token=token)
        assert status == 200 and image.startswith(b"\x89PNG")


@pytest.mark.asyncio
async def test_the_next_case_replaces_the_previous_one_whose_code_stays_usable(
    api, ctx, partner, base_url
):
    async with screen_showing_a_case(api, ctx, partner, base_url) as (_, stream, first, _):
        first_hash = (await screen.current(ctx, WINDOW))["token_hash"]
        await partner.new_case(window_code=WINDOW)
        second = await stream.next_event("case", after=2)
        assert second["case_no_masked"] != first["case_no_masked"]
        assert await ctx.db.run(screen.token_active, first_hash)  # its citizen may be rating


@pytest.mark.asyncio
async def test_a_window_with_a_device_key_can_still_be_deleted(api, ctx, partner):
    admin = await admin_token(api, ctx)
    body = {"code": "HL-W99", "name": "临时窗口", "center": "440103-HL"}
    await api.expect("POST", "/admin/api/windows", body, token=admin, status=201)
    key = await new_key(api, admin, "HL-W99")
    await api.expect("DELETE", "/admin/api/windows/HL-W99", token=admin, status=204)
    assert await ctx.db.run(lambda: WindowDevice.select().count()) == 0
    assert (await pair(api, key, "HL-W99"))[0] == 401
