"""Evaluator screens on PostgreSQL: the device key's upsert and rotation, the screen's own
QR tokens beside the report's."""

import pytest

from models.case import QrToken
from models.device import WindowDevice
from tests.support.admins import admin_token
from wxbackend.clients.device import ScreenStream, pair

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch):
    """A 1 s heartbeat: the stream ends within a second of its screen going away."""
    from handlers.devices import DeviceStreamHandler

    monkeypatch.setattr(DeviceStreamHandler, "heartbeat_seconds", 1.0)


@pytest.fixture
def settings_overrides(postgres_settings):
    return postgres_settings


@pytest.mark.asyncio
async def test_keys_rotate_and_the_screen_gets_the_case_on_postgres(api, ctx, partner, base_url):
    admin = await admin_token(api, ctx)
    path = "/admin/api/windows/HL-W01/device-key"
    first = (await api.expect("POST", path, token=admin))["device_key"]
    second = (await api.expect("POST", path, token=admin))["device_key"]
    assert (await ctx.db.run(WindowDevice.get)).generation == 2
    assert (
        await api("POST", "/api/v1/device/pair", {"window_code": "HL-W01", "device_key": first})
    )[0] == 401
    token = await pair(api, "HL-W01", second)
    stream = ScreenStream(base_url, token)
    try:
        await stream.next_event("idle")
        await partner.new_case(window_code="HL-W01")
        case = await stream.next_event("case", timeout=1.0)
        status, image = await api("GET", case["qr_url"], token=token)
        assert status == 200 and image.startswith(b"\x89PNG")
        assert await ctx.db.run(lambda: QrToken.select().count()) == 2
    finally:
        await stream.close()
