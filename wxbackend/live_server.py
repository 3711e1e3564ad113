"""``wxbackend live``: the live streams in processes of their own, never beside ratings.

The public page's stream (``GET /api/v1/public/live``) and the evaluator screens'
(``GET /api/v1/device/stream``) are fanned out from Redis pub/sub, which every ``serve``
process publishes to: a process that serves only them gets every rating published anywhere,
and its fan-out no longer takes event-loop time from the ratings. It also answers
``/healthz``, ``/metrics`` and ``/openapi.json`` (of its few routes); any other path is the
contract's 404. ``serve`` keeps serving the streams too (one command to run): nginx sends the
stream paths here and falls back to ``serve`` when this process is down
(``conf/nginx.example.conf``).

It needs a real Redis (the embedded one lives inside the ``serve`` process) and the same
configuration as ``serve``: the screens' pairings are read from Redis and the database, and
a screen's code is renewed in the database. It publishes nothing and runs no worker.
"""

from __future__ import annotations

import asyncio
import logging

import tornado.web

from wxbackend.app import make_app, server_options
from wxbackend.context import build_context
from wxbackend.server import (
    AppServer,
    DrainingServer,
    _bind,
    _supervise,
    check_surroundings,
    load_startup_keys,
    migrate_schema,
    run_process,
)
from wxbackend.settings import Settings, SettingsError

log = logging.getLogger("wxbackend")


def live_routes() -> list[tornado.web.URLSpec]:
    """The routes a live process serves: health, metrics, its OpenAPI document, the streams."""
    from handlers import devices, health, live

    screens = [
        r for r in devices.default_handlers if r.handler_class is devices.DeviceStreamHandler
    ]
    return [*health.default_handlers, *live.default_handlers, *screens]


class LiveServer(AppServer):
    """One ``wxbackend live`` process's pieces: a context that publishes nothing, the
    streams' app on the sockets; no sandbox, no embedded worker. Stopping (SIGTERM) ends
    every stream cleanly and drains like ``serve``."""

    async def start(self) -> None:
        self.ctx = build_context(self.settings)
        self.ctx.publisher = None  # ratings are stored and published by ``serve``
        await self.ctx.start()
        app = make_app(self.ctx, live_routes())
        self.http_server = DrainingServer(app, **server_options(self.settings))
        self.http_server.add_sockets(self.sockets)


def run_live(settings: Settings, port: int, address: str, processes: int) -> int:
    """``wxbackend live``: refuse in one line (SettingsError/StartupError) what cannot work,
    bind, then serve the streams in ``processes`` processes until SIGTERM."""
    if settings.redis.url == "embedded":
        raise SettingsError(
            "wxbackend live needs a real Redis: set redis.url (WXB_REDIS_URL); 'embedded' "
            "lives inside the serve process, whose ratings this one could never hear"
        )
    check_surroundings(settings)
    sockets = _bind(address, port, "wxbackend live")
    load_startup_keys(settings, sockets)  # as serve: generated only once nothing refuses
    migrate_schema(settings)  # a screen's stream reads windows; serve may not have run yet
    log.info("live streams on http://%s:%d/ with %d process(es)", address, port, processes)
    if processes > 1:
        return _supervise(settings, sockets, processes, None, server_class=LiveServer)
    asyncio.run(run_process(settings, sockets, server_class=LiveServer))
    return 0
