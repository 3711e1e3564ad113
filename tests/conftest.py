"""Test fixtures: a real redis-server, SQLite (or PostgreSQL), the WeChat sandbox over HTTP.

pytest-tornado is not used (it breaks with setuptools ≥ 82 and current pytest, and cannot
use async fixtures); these few pytest-asyncio fixtures give the same ``app``,
``http_server``, ``http_client`` and ``base_url``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import tornado.httpserver
import tornado.testing
from tornado.httpclient import AsyncHTTPClient

from models.migrations import migrate
from tests.support.pgcluster import PgCluster, pg_bindir
from tests.support.servers import free_port, start_redis_server
from wxbackend import security
from wxbackend.app import make_app, server_options
from wxbackend.clients import citizen
from wxbackend.clients.http import ApiClient
from wxbackend.clients.partner import PartnerClient
from wxbackend.clients.sandbox import SandboxClient
from wxbackend.clock import Clock
from wxbackend.clock import clock as app_clock
from wxbackend.context import Context, build_context
from wxbackend.sandbox import SandboxState, start_sandbox
from wxbackend.settings import Settings, load_settings
from wxbackend.wechat import client as wechat_client

#: Fixtures of the support modules (``fast_heartbeat`` …) for every test module.
pytest_plugins = ("tests.support.live",)

APPID = "wx00000000000000a1"
SECRET = "00000000000000000000000000000001"


# ---- servers for the whole session -----------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Any:
    """A real redis-server on a free port (WXB_TEST_REDIS_URL reuses a running one)."""
    if os.environ.get("WXB_TEST_REDIS_URL"):
        yield os.environ["WXB_TEST_REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if not exe:
        pytest.exit("redis-server is not installed: run scripts/test.sh", returncode=3)
    port = free_port()
    proc = start_redis_server(port, exe)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def postgres_url() -> Any:
    """A throw-away PostgreSQL cluster in a temp folder (WXB_TEST_POSTGRES_URL reuses one)."""
    if os.environ.get("WXB_TEST_POSTGRES_URL"):
        yield os.environ["WXB_TEST_POSTGRES_URL"]
        return
    bindir = pg_bindir()
    if bindir is None:
        pytest.exit("PostgreSQL is not installed: run scripts/test.sh", returncode=3)
    cluster = PgCluster(bindir)
    yield cluster.url
    cluster.stop()


@pytest.fixture
def postgres_settings(postgres_url: str) -> dict[str, dict[str, Any]]:
    """Settings layers for a test on PostgreSQL: a fresh schema and keys (PostgreSQL never
    generates them). The ``settings`` fixture adds them when ``db_backend`` is ``postgres``
    (``tests.support.databases.both_databases``)."""
    import base64

    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")

    def key() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    return {
        "database": {"url": postgres_url},
        "security": {"master_key": key(), "hash_key": key()},
        "transparency": {"signing_key": key()},
    }


# ---- per test --------------------------------------------------------------------------------


#: scrypt's n in tests. The production n (2**14) costs ~60 ms a hash or check, and a run logs
#: admins in hundreds of times (a third of some modules' time); the same algorithm and code
#: path at n=2**10 is 16 times cheaper (as Django's test settings swap in a fast hasher). A
#: test of the production parameters is marked ``production_password_cost``.
TEST_SCRYPT_N = 2**10


@pytest.fixture(autouse=True)
def cheap_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Passwords hashed with :data:`TEST_SCRYPT_N` (checks read n from the stored hash)."""
    if request.node.get_closest_marker("production_password_cost") is None:
        monkeypatch.setattr(security, "_SCRYPT_N", TEST_SCRYPT_N)


@pytest.fixture
def quick_wechat_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The WeChat client retries after ~20 and ~50 ms instead of ~0.2 and ~0.5 s (for tests of
    WeChat failing, where the pause is not what is tested)."""
    monkeypatch.setattr(wechat_client, "BACKOFF_SECONDS", (0.02, 0.05))


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The application's clock: ``clock.advance(seconds)`` lets a delay, lease or deadline
    run out at once instead of sleeping through it; the wall clock again after the test."""
    yield app_clock
    app_clock.reset()


@pytest.fixture
def redis_flushed(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


async def _bounded(awaitable, what: str, seconds: float = 10) -> None:
    """Teardown must never hang the suite: give up (loudly) after ``seconds``."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        import faulthandler
        import sys

        print(f"\nTEARDOWN HANG: {what}", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr)
        raise


class Sandbox(SandboxClient):
    """The WeChat sandbox of one test: its control API client, its server and its state."""

    def __init__(self, server: tornado.httpserver.HTTPServer, state: SandboxState):
        super().__init__(AsyncHTTPClient(force_instance=True), state.base_url)
        self.server = server
        self.state = state


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    server, state = await start_sandbox(port=0, state=SandboxState(APPID, SECRET))
    box = Sandbox(server, state)
    yield box
    box.client.close()
    server.stop()
    await _bounded(server.close_all_connections(), "sandbox connections")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def settings_overrides() -> dict[str, dict[str, Any]]:
    """Tests override this fixture (or parametrize it) to change settings."""
    return {}


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database of a test: ``sqlite``, or each of ``sqlite`` and ``postgres`` for a test
    marked ``tests.support.databases.both_databases``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    redis_flushed: str,
    data_dir: Path,
    db_backend: str,
    settings_overrides: dict[str, dict[str, Any]],
) -> Settings:
    layers: dict[str, dict[str, Any]] = {
        "database": {"url": f"sqlite:///{data_dir}/test.db"},
        "redis": {"url": redis_flushed},
        "server": {"data_dir": str(data_dir)},
        "wechat": {"timeout_seconds": 1.0, "appid": APPID, "secret": SECRET},
    }
    on_postgres = request.getfixturevalue("postgres_settings") if db_backend == "postgres" else {}
    for layer in (on_postgres, settings_overrides):
        for section, values in layer.items():
            layers.setdefault(section, {}).update(values)
    return load_settings(env={}, overrides=layers)


@pytest_asyncio.fixture
async def ctx(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Context]:
    context = build_context(settings, api_base=sandbox.url)
    await context.db.run(migrate, context.db.db)
    await context.start()
    yield context
    await _bounded(context.close(), "context")


@pytest.fixture
def app(ctx: Context):
    return make_app(ctx)


@pytest_asyncio.fixture
async def http_server(app) -> AsyncIterator[tuple[tornado.httpserver.HTTPServer, int]]:
    sock, port = tornado.testing.bind_unused_port()
    server = tornado.httpserver.HTTPServer(app, **server_options(app.settings["ctx"].settings))
    server.add_sockets([sock])
    yield server, port
    server.stop()
    await _bounded(server.close_all_connections(), "server connections")


@pytest.fixture
def base_url(http_server) -> str:
    return f"http://127.0.0.1:{http_server[1]}"


@pytest_asyncio.fixture
async def http_client() -> AsyncIterator[AsyncHTTPClient]:
    client = AsyncHTTPClient(force_instance=True, max_clients=100)
    yield client
    client.close()


class Api(ApiClient):
    """The server over real HTTP (`ApiClient`), plus a citizen's login for the tests."""

    async def login(self, sandbox: Sandbox, openid: str | None = None) -> tuple[str, dict]:
        """A citizen logged in (a fresh openid when None): ``(token, login answer)``."""
        return await citizen.login(self, sandbox, openid)


@pytest.fixture
def api(http_client: AsyncHTTPClient, base_url: str) -> Api:
    return Api(http_client, base_url)


@pytest_asyncio.fixture
async def partner(api: Api, ctx: Context) -> PartnerClient:
    """A signed partner client (`wxbackend.clients.partner`) with a fresh partner key, after
    importing conf/catalog.example.json (centers, departments, items, staff, windows)."""
    from models.access import Partner
    from wxbackend.services.admin.accounts import create_partner
    from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file

    catalog = load_catalog_file(str(Path(__file__).parent.parent / "conf/catalog.example.json"))
    await ctx.db.run(import_catalog, catalog, ctx.hasher)
    key = await ctx.db.run(create_partner, "测试窗口系统", ctx.cipher)
    row = await ctx.db.run(Partner.get, Partner.key_id == key.key_id)
    return PartnerClient(api, key.key_id, key.secret, row.id)
