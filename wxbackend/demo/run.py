"""``wxbackend demo``'s entry point: the demo's settings, the in-process server, the run."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from typing import Any

import tornado.httpclient
import tornado.netutil

from wxbackend.clients.http import ApiClient
from wxbackend.clients.sandbox import SandboxClient
from wxbackend.demo.flow import run_steps, summary
from wxbackend.demo.output import DemoError, out
from wxbackend.demo.session import Demo
from wxbackend.settings import Settings, SettingsError

#: The demo's own folder under ``server.data_dir``: its SQLite database, keys and files.
DEMO_FOLDER = "demo"


def demo_settings(settings: Settings) -> Settings:
    """The settings the demo runs the server with: the given ones, plus a reminder due one
    second after a case is reported, no quiet hours and the embedded worker, with its data
    kept apart from ``serve``'s in ``<data_dir>/demo/`` (its own SQLite database, generated
    keys and the embedded Redis), so no ``demo`` superadmin lands in a real database."""
    if not settings.sandbox_mode:
        raise SettingsError(
            'the demo runs against the WeChat sandbox: wechat.api_base must be "sandbox" '
            f"(it is {settings.wechat.api_base!r})"
        )
    folder = os.path.join(settings.server.data_dir, DEMO_FOLDER)
    return settings.replace(
        server__data_dir=folder,
        database__url=f"sqlite:///{folder}/wxbackend.db",
        redis__url="embedded",
        security__master_key="",
        security__old_master_keys=[],
        security__hash_key="",
        transparency__signing_key="",
        reminders__first_after_seconds=1,
        reminders__quiet_hours="",
        worker__embedded=True,
        worker__poll_seconds=min(settings.worker.poll_seconds, 0.2),
        wecom__api_base="sandbox",
    )


async def _start(settings: Settings, port: int, address: str) -> Any:
    """The server with its sandbox (on a free port if the configured one is taken)."""
    from wxbackend.server import AppServer

    sockets = tornado.netutil.bind_sockets(port, address)
    sandbox_port = settings.sandbox.port
    for attempt in range(2):
        server = AppServer(settings, sockets, with_sandbox=True, sandbox_port=sandbox_port)
        try:
            await server.start()
            return server
        except OSError as exc:
            await server.stop()
            if exc.errno != errno.EADDRINUSE or attempt:
                raise
            out(f"(sandbox port {sandbox_port} is in use: the demo's sandbox takes a free port)")
            sandbox_port = 0
    raise AssertionError("unreachable")


async def _main(settings: Settings, port: int, address: str, keep_running: bool) -> int:
    server = await _start(settings, port, address)
    try:
        base = f"http://{address}:{server.port}"
        sandbox = server.sandbox_state.base_url
        out("wxbackend demo — 政务服务好差评, end to end against the WeChat sandbox")
        out(f"server {base}/  ·  WeChat sandbox {sandbox}  ·  database {settings.database.url}")
        http = tornado.httpclient.AsyncHTTPClient()
        clients = ApiClient(http, base), SandboxClient(http, sandbox)
        demo = Demo(server, *clients, settings.server.data_dir)
        try:
            await run_steps(demo)
        except DemoError as exc:
            out(f"\nFAILED: {exc}")
            print(f"wxbackend demo: {exc}", file=sys.stderr)
            return 1
        summary(demo, keep_running)
        if keep_running:
            logging.getLogger().setLevel(settings.log.level)  # each request, as `serve` logs
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0
    finally:
        await server.stop()


def run_demo(settings: Settings, port: int | None = None, keep_running: bool = False) -> int:
    """``wxbackend demo``: 0 when every step worked or was skipped, 1 when one failed."""
    from wxbackend.security import StartupError, load_keys
    from wxbackend.server import migrate_schema

    settings = demo_settings(settings)
    try:
        load_keys(settings)
    except StartupError as exc:
        raise SettingsError(str(exc)) from None
    if settings.log.level == "INFO":  # the demo's own lines tell the story; keep warnings
        logging.getLogger().setLevel(logging.WARNING)
    migrate_schema(settings)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    address = settings.server.address
    try:
        return asyncio.run(_main(settings, port or 0, address, keep_running))
    except OSError as exc:
        print(f"wxbackend demo: cannot start the server: {exc}", file=sys.stderr)
        return 1
