"""``wxbackend serve``: bind, migrate, optionally fork, run the app; stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import tornado.httpserver
import tornado.httputil
import tornado.netutil

from models.migrations import is_empty, migrate
from wxbackend.app import log_redis_persistence, make_app, server_options
from wxbackend.cache import check_redis
from wxbackend.context import Context, build_context
from wxbackend.db import check_database, database, make_peewee_database
from wxbackend.keycheck import check_keys_fit
from wxbackend.security import StartupError, load_keys
from wxbackend.services.jobs.registry import EmbeddedWorker
from wxbackend.services.transparency.checkpoints import load_signer
from wxbackend.settings import Settings, SettingsError

log = logging.getLogger("wxbackend")


def serve(settings: Settings, port: int, address: str, processes: int) -> int:
    if processes > 1 and settings.redis.url == "embedded":
        raise SettingsError(
            "--processes above 1 needs a real Redis: set redis.url (WXB_REDIS_URL); "
            "'embedded' lives inside one process"
        )
    check_surroundings(settings)
    sockets = _bind(address, port, "the server")
    sandbox_sockets: list[socket.socket] = []
    if settings.sandbox_mode and settings.sandbox.port:
        sandbox_sockets = bind_sandbox(settings.sandbox.address, settings.sandbox.port, sockets)
    load_startup_keys(settings, [*sockets, *sandbox_sockets], with_signer=True)
    migrate_schema(settings)
    log.info("listening on http://%s:%d/ with %d process(es)", address, port, processes)
    sandbox_pid = None
    if settings.sandbox_mode:
        log.warning(
            "wechat.api_base is 'sandbox': using the built-in WeChat emulator at "
            "http://%s:%d/ (not real WeChat; its control API is under /_sandbox/)",
            settings.sandbox.address,
            settings.sandbox.port,
        )
        if processes > 1:
            sandbox_pid = _fork_sandbox(settings, sockets, sandbox_sockets)
    if processes > 1:
        return _supervise(settings, sockets, processes, sandbox_pid)
    with_sandbox = settings.sandbox_mode
    asyncio.run(run_process(settings, sockets, with_sandbox, sandbox_sockets=sandbox_sockets))
    return 0


def check_surroundings(settings: Settings) -> None:
    """Refuse to start (StartupError, one line) when the database or a configured Redis
    cannot be reached: better than a server that answers 500s."""
    check_database(settings)
    asyncio.run(check_redis(settings))
    asyncio.run(log_redis_persistence(settings))


def load_startup_keys(
    settings: Settings, sockets: Sequence[socket.socket], with_signer: bool = False
) -> None:
    """Load the keys (with SQLite, generated once into ``server.data_dir``) once nothing else
    can refuse the start, so that a refused first start leaves no key files behind; before
    any fork. A bad key, or keys that do not open the database's data (:mod:`keycheck`),
    refuse the start too (``sockets`` are closed then)."""
    try:
        check_keys_fit(settings)
        load_keys(settings)
        if with_signer:
            load_signer(settings)  # the transparency log's key
    except (StartupError, SettingsError) as exc:
        for sock in sockets:
            sock.close()
        raise SettingsError(str(exc)) from None


def _bind(address: str, port: int, what: str) -> list[socket.socket]:
    try:
        return tornado.netutil.bind_sockets(port, address)
    except OSError as exc:
        raise StartupError(
            f"{what} cannot listen on http://{address}:{port}/: {exc.strerror or exc}"
        ) from None


def bind_sandbox(
    address: str, port: int, opened: Sequence[socket.socket] = ()
) -> list[socket.socket]:
    """The sandbox's sockets, bound now, before anything is announced, and handed to whoever
    serves it (a port only probed here could be taken before the sandbox bound it, by a
    second server starting at the same moment): StartupError when the port is taken
    (``opened`` is closed then)."""
    try:
        return _bind(address, port, "the WeChat sandbox (sandbox.port)")
    except StartupError:
        for sock in opened:
            sock.close()
        raise


def migrate_schema(settings: Settings) -> None:
    """Apply pending migrations (once, before any fork)."""
    db = make_peewee_database(settings)
    database.initialize(db)
    if is_empty(db):
        log.info("empty database: creating the schema")
    migrate(db)
    db.close()


class _Tracked(tornado.httputil.HTTPMessageDelegate):
    """One request of a :class:`DrainingServer`'s connection: marks the connection busy once
    the request's headers are read (from then on the request is answered, even while
    draining)."""

    def __init__(
        self,
        inner: tornado.httputil.HTTPMessageDelegate,
        server: DrainingServer,
        server_conn: object,
        request_conn: tornado.httputil.HTTPConnection,
    ):
        self.inner = inner
        self.server = server
        self.server_conn = server_conn
        self.request_conn = request_conn

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | tornado.httputil.ResponseStartLine,
        headers: tornado.httputil.HTTPHeaders,
    ) -> object:
        self.server.busy[self.server_conn] = self.request_conn
        if self.server.draining:
            _close_after_answer(self.request_conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> object:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.server.busy.pop(self.server_conn, None)
        self.inner.on_connection_close()


def _close_after_answer(request_conn: tornado.httputil.HTTPConnection) -> None:
    """Answer with ``Connection: close`` and close after the answer (what Tornado does for a
    client that asked for it; it has no public switch for a server that is stopping)."""
    request_conn._disconnect_on_finish = True  # type: ignore[attr-defined]


class DrainingServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server plus :meth:`drain`: it knows which connections are inside a
    request (headers read, answer not yet finished) and which are idle."""

    def initialize(self, *args: object, **kwargs: object) -> None:
        super().initialize(*args, **kwargs)  # type: ignore[arg-type]
        self.busy: dict[object, tornado.httputil.HTTPConnection] = {}
        self.draining = False

    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        self.busy.pop(server_conn, None)  # its previous request, if any, was answered
        inner = super().start_request(server_conn, request_conn)
        return _Tracked(inner, self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.busy.pop(server_conn, None)
        super().on_close(server_conn)

    async def drain(self, seconds: float, end_streams: Callable[[], Awaitable[None]]) -> int:
        """Stop accepting (the listening sockets close) and answer every request already
        read, for up to ``seconds``: their answers say ``Connection: close``; idle kept-alive
        connections close at once (and as they become idle); ``end_streams`` ends live
        streams, which would hold the drain. Then closes what is left; returns how many
        connections were still inside a request then (0: nothing was cut)."""
        self.stop()
        self.draining = True
        for request_conn in self.busy.values():
            _close_after_answer(request_conn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            await end_streams()  # again each round: a stream may open on a kept-alive one
            for conn in list(self._connections):
                # idle = still waiting for a request's headers; a header read that completed
                # but whose request has not started yet is left for the next round: closing
                # then would let Tornado finish reading it from its buffer and handle it
                # with no way to answer (stored, unanswered)
                if conn not in self.busy and conn.stream.reading():
                    conn.stream.close()
            if not self.busy or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        cut = len(self.busy)
        await self.close_all_connections()
        return cut


class AppServer:
    """One server process's pieces on the running loop, startable and stoppable: the WeChat
    sandbox (when asked), the context, the app on ``sockets`` and the embedded worker.

    ``run_process`` runs one until a signal; ``wxbackend demo`` runs one in-process and
    drives it over HTTP. ``sandbox_port`` overrides ``sandbox.port`` (0 picks a free port);
    the app then talks to the sandbox where it really listens.
    """

    def __init__(
        self,
        settings: Settings,
        sockets: list[socket.socket],
        with_sandbox: bool = False,
        sandbox_port: int | None = None,
        sandbox_sockets: list[socket.socket] | None = None,
    ):
        self.settings = settings
        self.sockets = sockets
        self.with_sandbox = with_sandbox
        self.sandbox_port = settings.sandbox.port if sandbox_port is None else sandbox_port
        self.sandbox_sockets = sandbox_sockets or None  # bound by serve before "listening"
        self.sandbox_server: tornado.httpserver.HTTPServer | None = None
        self.sandbox_state = None  # a wxbackend.sandbox.SandboxState when running
        self.ctx: Context | None = None  # once started
        self.http_server: DrainingServer | None = None
        self.worker: EmbeddedWorker | None = None

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    async def start(self) -> None:
        api_base = None
        if self.with_sandbox:
            from wxbackend.sandbox import SandboxState, start_sandbox

            self.sandbox_server, self.sandbox_state = await start_sandbox(
                self.settings.sandbox.address,
                self.sandbox_port,
                SandboxState(self.settings.wechat.appid, self.settings.wechat.secret),
                self.sandbox_sockets,
            )
            api_base = self.sandbox_state.base_url
        self.ctx = build_context(self.settings, api_base=api_base)
        await self.ctx.start()
        self.http_server = DrainingServer(make_app(self.ctx), **server_options(self.settings))
        self.http_server.add_sockets(self.sockets)
        if self.settings.worker.embedded:  # one per process: they share the job table safely
            self.worker = EmbeddedWorker(self.ctx)
            await self.worker.start()

    async def stop(self) -> None:
        """Drain (:meth:`DrainingServer.drain`, up to ``server.drain_seconds``) while the
        embedded worker stops (its running jobs finish, unstarted ones go back); then the
        sandbox, and the context: the WeChat client, Redis, the database executor."""
        worker = asyncio.ensure_future(self.worker.stop()) if self.worker is not None else None
        if self.http_server is not None:
            cut = await self.http_server.drain(
                self.settings.server.drain_seconds, self._end_streams
            )
            if cut:
                log.warning("stopping: %d request(s) cut after the drain period", cut)
        if worker is not None:
            await worker
        if self.sandbox_server is not None:
            from wxbackend.sandbox import stop_sandbox

            await stop_sandbox(self.sandbox_server, self.sandbox_state)
        if self.ctx is not None:
            await self.ctx.close()

    async def _end_streams(self) -> None:
        if self.ctx is not None:  # live streams never end by themselves: end them cleanly
            await self.ctx.end_live_feeds()


async def run_process(
    settings: Settings,
    sockets: list[socket.socket],
    with_sandbox: bool = False,
    server_class: type[AppServer] = AppServer,
    sandbox_sockets: list[socket.socket] | None = None,
) -> None:
    """One server process: the app (``server_class``'s) on ``sockets`` until SIGTERM/SIGINT
    (with the sandbox on ``sandbox_sockets`` when they were bound already)."""
    server = server_class(settings, sockets, with_sandbox, sandbox_sockets=sandbox_sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before serving: a SIGTERM while the
        loop.add_signal_handler(sig, stop.set)  # worker starts still stops cleanly
    await server.start()
    await stop.wait()
    log.info(
        "stopping: no new connections, draining for up to %.0f s",
        settings.server.drain_seconds,
    )
    started = time.monotonic()
    await server.stop()
    log.info("stopped in %.2f s", time.monotonic() - started)


def _fork_sandbox(
    settings: Settings, sockets: Sequence[socket.socket], sandbox_sockets: list[socket.socket]
) -> int:
    pid = os.fork()
    if pid == 0:  # child
        from wxbackend.sandbox import run_sandbox_forever

        for sock in sockets:  # the server's: held here, the kernel would queue connections
            sock.close()  # on them after the servers stopped accepting, and never answer

        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        try:
            run_sandbox_forever(
                settings.sandbox.address,
                settings.sandbox.port,
                settings.wechat.appid,
                settings.wechat.secret,
                sockets=sandbox_sockets,
            )
        finally:
            os._exit(0)
    for sock in sandbox_sockets:  # the child serves them
        sock.close()
    _wait_for_port(settings.sandbox.address, settings.sandbox.port, seconds=10.0)
    return pid


def _wait_for_port(address: str, port: int, seconds: float) -> None:
    """Until something listens on ``address:port`` (the sandbox's child, before the servers
    that call it start answering), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.2):
            return
        time.sleep(0.02)
    log.warning("the WeChat sandbox is not listening on %s:%d yet", address, port)


def _supervise(
    settings: Settings,
    sockets: list[socket.socket],
    processes: int,
    sandbox_pid: int | None,
    server_class: type[AppServer] = AppServer,
) -> int:
    """Fork ``processes`` workers (``server_class``) sharing ``sockets``; restart a crashed
    one; forward SIGTERM."""
    children: dict[int, int] = {}
    stopping = False

    def start(task_id: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                asyncio.run(run_process(settings, sockets, server_class=server_class))
            except Exception:
                log.exception("server process %d failed", task_id)
                os._exit(1)
            os._exit(0)
        children[pid] = task_id

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for sock in sockets:  # the servers stop accepting: so must the kernel (see
            sock.close()  # _fork_sandbox)
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for task_id in range(processes):
        start(task_id)
    restarts = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == sandbox_pid:
            continue
        task_id = children.pop(pid, None)
        if task_id is None or stopping:
            continue
        if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0:
            restarts += 1
            log.warning("server process %d (pid %d) died; restarting it", task_id, pid)
            if restarts > 100:
                log.error("too many restarts; stopping")
                on_signal(signal.SIGTERM, None)
                continue
            time.sleep(0.5)
            start(task_id)
    if sandbox_pid:
        _kill(sandbox_pid, signal.SIGTERM)
        os.waitpid(sandbox_pid, 0)
    return 0


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: wxbackend serve")
