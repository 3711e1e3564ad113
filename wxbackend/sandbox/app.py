"""The sandbox's Tornado application, and starting, stopping and running its server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

import tornado.httpserver
import tornado.netutil
import tornado.web

from wxbackend.sandbox import face, login, security, subscribe, token, wecom, wxacode
from wxbackend.sandbox.base import WeChatHandler
from wxbackend.sandbox.control import ROUTES, NotFoundHandler
from wxbackend.sandbox.state import DEFAULT_APPID, DEFAULT_SECRET, SandboxState
from wxbackend.sandbox.wxacode import DEFAULT_PAGES

log = logging.getLogger(__name__)

#: Every WeChat endpoint's handler, one API group (module) after the other.
WECHAT_HANDLERS: tuple[type[WeChatHandler], ...] = (
    *token.HANDLERS,
    *login.HANDLERS,
    *face.HANDLERS,
    *wxacode.HANDLERS,
    *subscribe.HANDLERS,
    *security.HANDLERS,
    *wecom.HANDLERS,
)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Request log at DEBUG: the sandbox stays quiet unless asked."""
    request = handler.request
    log.debug(
        "%d %s %s %.1fms",
        handler.get_status(),
        request.method,
        request.path,
        1000 * request.request_time(),
    )


def make_sandbox_app(state: SandboxState | None = None) -> tornado.web.Application:
    """The sandbox's Tornado application; ``app.settings["sandbox_state"]`` is the state."""
    routes: list[tornado.web.URLSpec] = [
        tornado.web.url(f"/{handler.wechat_path}", handler) for handler in WECHAT_HANDLERS
    ]
    return tornado.web.Application(
        [*routes, *ROUTES, *wecom.ROUTES],
        sandbox_state=state or SandboxState(),
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
    )


async def start_sandbox(
    address: str = "127.0.0.1",
    port: int = 8900,
    state: SandboxState | None = None,
    sockets: list[socket.socket] | None = None,
) -> tuple[tornado.httpserver.HTTPServer, SandboxState]:
    """Bind (unless ``sockets`` were bound already) and start serving on the running loop;
    port 0 picks a free port (``state.port``)."""
    state = state or SandboxState()
    sockets = sockets or tornado.netutil.bind_sockets(port, address=address)
    server = tornado.httpserver.HTTPServer(make_sandbox_app(state))
    server.add_sockets(sockets)
    state.address = address
    state.port = sockets[0].getsockname()[1]
    return server, state


async def stop_sandbox(server: tornado.httpserver.HTTPServer, state: SandboxState) -> None:
    """Stop listening, end hanging calls and close every open connection."""
    server.stop()
    state.release_hangs()
    deadline = time.monotonic() + 1.0
    while state.hang_waiters and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # let released handlers answer before closing
    await server.close_all_connections()


def run_sandbox_forever(
    address: str = "127.0.0.1",
    port: int = 8900,
    appid: str = DEFAULT_APPID,
    secret: str = DEFAULT_SECRET,
    *,
    published_pages: tuple[str, ...] = DEFAULT_PAGES,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Run the sandbox until interrupted (``wxbackend sandbox`` and forked child processes),
    on ``sockets`` when the caller bound them already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    async def serve() -> None:
        state = SandboxState(appid, secret, published_pages)
        await start_sandbox(address, port, state, sockets)
        log.info("WeChat sandbox listening on %s", state.base_url)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
