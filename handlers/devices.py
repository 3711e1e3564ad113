"""Evaluator screens (评价器): device keys, pairing, the screen's stream and its code image.

* ``POST /admin/api/windows/{code}/device-key`` → ``{device_key}``, shown once (rotates);
* ``POST /api/v1/device/pair {window_code, device_key}`` → ``{device_token}``;
* ``GET /api/v1/device/stream`` (``Authorization: Bearer <device_token>``): Server-Sent Events
  ``case`` ``{case_no_masked, item, qr_url, expires_at}``, ``rated`` and ``idle``; the stream
  ends when the window's key is rotated (the screen then pairs again);
* ``GET /api/v1/device/qrcode.png`` (device token): the code of the case on the screen.

The streams are counted apart from the public live streams (``devices.max_streams`` per
process, ``devices.max_streams_per_window``) and share the process's one pub/sub connection.
The rules are in ``wxbackend/services/devices/``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import BaseHandler, Field, bearer_token, route
from handlers.live import EVENT_STREAM, LiveHandler, TooManyStreams
from handlers.openapi import errors_of, json_body
from wxbackend import errors
from wxbackend.services.cases import images
from wxbackend.services.devices import events, pairing, screen
from wxbackend.services.public.live_hub import LiveFeed

log = logging.getLogger("wxbackend.devices")

_DEVICE = {"security": [{"device": []}]}
_STR = {"type": "string"}
_WINDOW_CODE = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}


def sse(event: str, data: dict[str, Any] | None = None) -> bytes:
    """One named SSE event (JSON never contains a raw newline)."""
    body = json.dumps(data or {}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {body}\n\n".encode()


class DeviceKeyHandler(AdminHandler):
    permissions = {"post": "catalogue.write"}
    openapi = {
        "post": {
            "summary": "A new device key for the window's evaluator screen, shown this once; "
            "the screens paired with the previous key must pair again (audited)",
            **admin_security(),
            "responses": {"200": {"description": "{device_key}"}, **errors_of(401, 403, 404)},
        }
    }

    async def post(self, code: str) -> None:
        self.json_body({})
        key = await pairing.create_key(self.ctx, self.actor, self.admin, code)
        self.send({"device_key": key})


class PairHandler(BaseHandler):
    openapi = {
        "post": {
            "summary": "Pair an evaluator screen with its window's device key → {device_token} "
            "(401 for a wrong window or key; rate-limited per address)",
            "requestBody": json_body(
                {"window_code": _WINDOW_CODE, "device_key": {"type": "string", "maxLength": 64}},
                required=["window_code", "device_key"],
            ),
            "responses": {
                "200": {"description": "{device_token}"},
                **errors_of(400, 401, 422, 429),
            },
        }
    }

    async def post(self) -> None:
        body = self.json_body(
            {"window_code": Field(str, required=True), "device_key": Field(str, required=True)}
        )
        token = await pairing.pair(self.ctx, self.client_ip(), body)
        self.set_header("Cache-Control", "no-store")
        self.send({"device_token": token})


class DeviceQrcodeHandler(BaseHandler):
    openapi = {
        "get": {
            "summary": "The one-time mini-program code of the case on this screen (device token)",
            **_DEVICE,
            "responses": {
                "200": {
                    "description": "the image",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                },
                **errors_of(401, 404, 410, 503),
            },
        }
    }

    async def get(self) -> None:
        token = bearer_token(self.request.headers.get("Authorization", ""))
        session = await pairing.authenticate(self.ctx, token)
        image = await screen.qrcode(self.ctx, session)
        self.set_header("Content-Type", images.image_type(image))
        self.set_header("Cache-Control", "no-store")
        self.finish(image)


class DeviceStreamHandler(LiveHandler):
    """``GET /api/v1/device/stream``: what the window's screen shows, as it changes."""

    openapi = {
        "get": {
            "summary": "The screen's events as Server-Sent Events: `case` {case_no_masked, item, "
            "qr_url, expires_at}, `rated`, `idle`; a `: ping` comment every 15 s",
            **_DEVICE,
            "responses": {
                "200": EVENT_STREAM,
                **errors_of(401, 503),
            },
        }
    }

    def initialize(self, route_template: str = "unmatched") -> None:
        super().initialize(route_template)
        self._window_slot: str | None = None

    async def get(self) -> None:
        token = bearer_token(self.request.headers.get("Authorization", ""))
        session = await pairing.authenticate(self.ctx, token, renew=True)
        limits = self.ctx.settings.devices
        window = session.window_code
        if not self.ctx.device_streams.take(
            limits.max_streams, window, limits.max_streams_per_window
        ):
            raise TooManyStreams()
        self._window_slot = window
        try:
            feed = await events.subscribe(self.ctx, window)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("device: cannot subscribe", extra={"fields": {"error": type(exc).__name__}})
            raise errors.Unavailable("The screen's stream is unavailable; try again.") from None
        try:
            await self._screen(feed, window)
        finally:
            await self._close_feed(feed)

    async def _screen(self, feed: LiveFeed, window: str) -> None:
        if not await self._begin():
            return
        view = _ScreenView(self, window)
        try:
            state = await screen.current(self.ctx, window)  # subscribed first: nothing missed
        except pairing.REDIS_DOWN:
            state = None  # the hub fails too, and the stream ends: the screen reconnects
        if await view.start(state):
            await self._pump(feed, view.on_message, view.on_timer, view.wait_seconds)

    def on_finish(self) -> None:
        if self._window_slot is not None:
            self.ctx.device_streams.release(self._window_slot)
            self._window_slot = None
        super().on_finish()


class _ScreenView:
    """One stream's idea of the screen: the case shown (and when to renew its code or drop
    it), the thank-you, the heartbeat. Each method returns False when the stream must end."""

    def __init__(self, handler: DeviceStreamHandler, window: str):
        self.handler = handler
        self.ctx = handler.ctx
        self.window = window
        self.showing: dict[str, Any] | None = None  # {"renew_at", "shown_until"}
        self.idle_at: float | None = None
        self.sent_at = time.monotonic()

    async def send(self, chunk: bytes) -> bool:
        self.sent_at = time.monotonic()
        return await self.handler._send(chunk)

    async def start(self, state: dict[str, Any] | None) -> bool:
        if state is None:
            return await self.send(sse("idle"))
        return await self.show(screen.case_message(self.ctx, state))

    async def show(self, message: dict[str, Any]) -> bool:
        self.idle_at = None
        self.showing = {"renew_at": message["renew_at"], "shown_until": message["shown_until"]}
        return await self.send(sse("case", message["data"]))

    def wait_seconds(self) -> float:
        """Until the next thing to do: a heartbeat, the idle screen, a renewal."""
        now = time.time()
        due = [self.sent_at + self.handler.heartbeat_seconds - time.monotonic() + now]
        if self.idle_at is not None:
            due.append(self.idle_at)
        if self.showing is not None:
            due += [self.showing["renew_at"], self.showing["shown_until"]]
        return max(0.0, min(due) - now)

    async def on_message(self, message: dict[str, Any]) -> bool:
        kind = message.get("event")
        if kind == "revoked":
            return False  # the key was rotated: the screen reconnects, gets 401, pairs again
        if kind == "case":
            return await self.show(message)
        if kind == "rated":
            self.showing = None
            self.idle_at = time.time() + self.ctx.settings.devices.thanks_seconds
            return await self.send(sse("rated"))
        if kind == "idle":
            self.showing, self.idle_at = None, None
            return await self.send(sse("idle"))
        return True

    async def on_timer(self) -> bool:
        now = time.time()
        if self.idle_at is not None and now >= self.idle_at:
            self.idle_at = None
            return await self.send(sse("idle"))
        if self.showing is not None and now >= self.showing["shown_until"]:
            self.showing = None
            return await self.send(sse("idle"))
        heartbeat = time.monotonic() - self.sent_at >= self.handler.heartbeat_seconds
        if self.showing is not None and (heartbeat or now >= self.showing["renew_at"]):
            self.showing["renew_at"] = max(self.showing["renew_at"], now + 1)  # ask once a second
            await self._renew()
        if heartbeat:
            return await self.send(b": ping\n\n")
        return True

    async def _renew(self) -> None:
        try:
            await screen.renew_if_due(self.ctx, self.window)
        except Exception as exc:  # noqa: BLE001 - the code on screen stays; retried next time
            log.warning("device: renewal failed", extra={"fields": {"error": type(exc).__name__}})


default_handlers = [
    route("/admin/api/windows/{code}/device-key", DeviceKeyHandler),
    route("/api/v1/device/pair", PairHandler),
    route("/api/v1/device/stream", DeviceStreamHandler),
    route("/api/v1/device/qrcode.png", DeviceQrcodeHandler),
]
