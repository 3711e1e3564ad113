"""The evaluator screen's steps (评价器): paired with its window's device key before the case
is reported (2.1), it shows the case's one-time code as soon as the case is reported (3.1).
The stream stays open (the next case at the window, step 4.6's, replaces it on the screen);
the server's stop ends it. Its thank-you after a rating is in tests/test_devices.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wxbackend.clients.device import ScreenStream, pair
from wxbackend.clients.http import ApiError
from wxbackend.demo.office import admin
from wxbackend.demo.output import DemoError, failure, line, mask_token
from wxbackend.demo.session import CASE_CODES, WAIT_SECONDS

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo


async def paired(demo: Demo) -> None:
    """The admin makes the window's device key; the screen pairs and listens (idle)."""
    window = CASE_CODES["window_code"]
    console = await admin(demo)
    key = (await console.expect("POST", f"/admin/api/windows/{window}/device-key"))["device_key"]
    token = await pair(demo.api, window, key)
    stream = ScreenStream(demo.api.base_url, token)
    await stream.next_event("idle", timeout=WAIT_SECONDS)
    demo.s.screen = {"token": token, "stream": stream}
    line(
        "评价器已配对",
        "screen paired (POST /api/v1/device/pair)",
        f"window {window}, device key {mask_token(key)} (shown once), stream idle",
    )


async def shows_code(demo: Demo) -> None:
    """The case just reported at the window reaches the screen, with its own code."""
    demo.need("screen", "case1")
    stream: ScreenStream = demo.s.screen["stream"]
    try:
        case = await stream.next_event("case", timeout=WAIT_SECONDS)
    except TimeoutError:
        raise DemoError("the screen did not get the case") from None
    line(
        "评价器显示办件",
        "screen got the case (GET /api/v1/device/stream)",
        f"event case: {case['case_no_masked']}, {case['item']}, code until {case['expires_at']}",
    )
    status, png = await demo.api("GET", case["qr_url"], token=demo.s.screen["token"])
    if status != 200 or not isinstance(png, bytes) or not png.startswith(b"\x89PNG"):
        raise failure(ApiError("GET", case["qr_url"], status, png))
    anonymous, _ = await demo.api("GET", case["qr_url"])
    line(
        "评价器二维码",
        "the code, for the paired screen only",
        f"GET /api/v1/device/qrcode.png → PNG {len(png)} bytes (without the token: {anonymous})",
    )
