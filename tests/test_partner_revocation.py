"""A revoked partner key stops working at once in every process (``partner_auth``'s cache).

"Process A" is the ``ctx`` / ``api`` fixtures; "process B" is a second :class:`Context`
(its own secret cache, Redis connections, watcher, database pool and HTTP server) on the same
Redis and database, or a real ``wxbackend serve`` process. Nothing mocks Redis, the database
or HTTP: only our own functions are wrapped (the publish, the database read).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import tornado.httpserver
import tornado.testing

from tests.conftest import APPID, SECRET, Api
from tests.support.admins import admin_token
from tests.support.cli import WXBACKEND, clean_env, stop, wait_healthy
from tests.support.servers import free_port
from wxbackend.app import make_app
from wxbackend.clients.partner import PartnerClient
from wxbackend.context import Context, build_context
from wxbackend.db import database
from wxbackend.services.cases import partner_keys
from wxbackend.services.cases import partners as partner_auth
from wxbackend.services.cases.partner_keys import SecretCache

A = "/admin/api"
#: The brief's bound for another process (the poll is 1 s; a request checks after 1.5 s).
BOUND = 1.5


def code(answer: Any) -> str:
    return answer["error"]["code"]


@dataclasses.dataclass
class Process:
    ctx: Context
    api: Api

    def client(self, key_id: str, secret: str) -> PartnerClient:
        return PartnerClient(self.api, key_id, secret)


@pytest_asyncio.fixture
async def second_process(
    settings, sandbox, ctx, http_client
) -> AsyncIterator[Callable[[], Awaitable[Process]]]:
    """Starts process B on demand (after a test patched what it needs)."""
    made: list[tuple[Context, tornado.httpserver.HTTPServer]] = []

    async def start() -> Process:
        other = build_context(settings, api_base=sandbox.url)
        await other.start()
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(make_app(other))
        server.add_sockets([sock])
        made.append((other, server))
        await until(lambda: other.partner_secrets.version is not None)
        return Process(other, Api(http_client, f"http://127.0.0.1:{port}"))

    yield start
    for other, server in made:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 10)
        await asyncio.wait_for(other.close(), 10)  # closing never hangs
    database.initialize(ctx.db.db)  # the models' proxy back to process A's database


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def new_key(api: Api, root: str, name: str = "窗口系统") -> tuple[str, str]:
    status, key = await api("POST", f"{A}/partners", {"name": name}, token=root)
    assert status == 201, key
    return key["key_id"], key["secret"]


async def revoke(api: Api, root: str, key_id: str) -> None:
    status, answer = await api("POST", f"{A}/partners/{key_id}/revoke", token=root)
    assert status == 200 and answer["revoked_at"], answer


async def seconds_until_rejected(client: PartnerClient, limit: float = 5) -> float:
    """Signed requests until one is refused with the contract's 401 ``bad_signature``."""
    started = time.monotonic()
    while True:
        status, answer = await client.report_case()
        elapsed = time.monotonic() - started
        if status == 401:
            assert code(answer) == "bad_signature", answer
            return elapsed
        assert status == 201, answer
        assert elapsed < limit, "the revoked key is still accepted"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_revocation_reaches_another_process_by_pubsub(
    partner, api, ctx, second_process, monkeypatch
):
    """With the version poll pushed out of reach, only the pub/sub message can tell B."""
    monkeypatch.setattr(partner_keys, "POLL_SECONDS", 60.0)
    monkeypatch.setattr(partner_keys, "CHECK_SECONDS", 60.0)
    b = await second_process()
    in_b = b.client(partner.key_id, partner.secret)
    assert (await partner.report_case())[0] == 201  # cached in A
    assert (await in_b.report_case())[0] == 201  # cached in B
    assert partner.key_id in b.ctx.partner_secrets.entries
    root = await admin_token(api, ctx)
    await revoke(api, root, partner.key_id)
    # the revoking process itself: at once
    status, answer = await partner.report_case()
    assert status == 401 and code(answer) == "bad_signature"
    assert await seconds_until_rejected(in_b) < BOUND
    # a new key works at once, in both processes
    key_id, secret = await new_key(api, root, "新窗口系统")
    assert (await b.client(key_id, secret).report_case())[0] == 201
    assert (await PartnerClient(api, key_id, secret).report_case())[0] == 201


@pytest.mark.asyncio
async def test_lost_message_converges_by_the_version_poll(
    partner, api, ctx, second_process, monkeypatch
):
    b = await second_process()
    in_b = b.client(partner.key_id, partner.secret)
    assert (await in_b.report_case())[0] == 201
    suppressed: list[tuple[int, str]] = []

    async def lost(_ctx: Context, version: int, key_id: str) -> None:
        suppressed.append((version, key_id))  # the message never reaches Redis

    monkeypatch.setattr(partner_auth, "publish_key_change", lost)
    root = await admin_token(api, ctx)
    await revoke(api, root, partner.key_id)
    assert [key for _, key in suppressed] == [partner.key_id]
    assert await seconds_until_rejected(in_b) < BOUND
    assert (await partner.report_case())[0] == 401  # and in A, of course
    key_id, secret = await new_key(api, root)
    assert (await b.client(key_id, secret).report_case())[0] == 201


@pytest.mark.asyncio
async def test_cache_spares_the_database(partner, api, ctx, second_process, monkeypatch):
    monkeypatch.setattr(partner_keys, "POLL_SECONDS", 0.1)  # B's version checks: 1 s and
    monkeypatch.setattr(partner_keys, "CHECK_SECONDS", 0.15)  # 1.5 s in production
    b = await second_process()
    reads: list[str] = []
    load_partner = partner_keys.load_partner

    def counting(key_id: str):
        reads.append(key_id)
        return load_partner(key_id)

    monkeypatch.setattr(partner_keys, "load_partner", counting)
    in_b = b.client(partner.key_id, partner.secret)
    for _ in range(5):
        assert (await in_b.report_case())[0] == 201
    assert reads == [partner.key_id]
    # the version checks (background, and a request's own after CHECK_SECONDS) keep it
    await asyncio.sleep(partner_keys.CHECK_SECONDS + 0.2)  # several background checks
    assert (await in_b.report_case())[0] == 201
    assert reads == [partner.key_id]
    # another key's revocation empties the cache once; then it is cached again
    root = await admin_token(api, ctx)
    other_key, _ = await new_key(api, root)
    version = int(await ctx.redis.get(partner_keys.version_key(ctx.rkeys)) or 0)
    await revoke(api, root, other_key)
    await until(lambda: b.ctx.partner_secrets.version == version + 1)
    for _ in range(3):
        assert (await in_b.report_case())[0] == 201
    assert reads == [partner.key_id, partner.key_id]


@pytest.mark.asyncio
async def test_redis_down_never_fails_the_check(partner, ctx, caplog):
    """A real client to a port where nothing listens: the cache falls back to its lifetime."""
    dead = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, socket_connect_timeout=0.5
    )
    cut_off = dataclasses.replace(
        ctx, redis=dead, partner_secrets=SecretCache(dead, ctx.rkeys, ctx.db, ctx.cipher)
    )
    caplog.set_level(logging.INFO)
    try:
        found = await cut_off.partner_secrets.lookup(partner.key_id)
        assert found is not None and found[1] == partner.secret
        cache = cut_off.partner_secrets
        entry = cache.entries[partner.key_id]
        assert entry.until - time.monotonic() <= partner_keys.SECRET_CACHE_SECONDS
        assert cache.failing and cache.version is None
        attempted = cache.attempted_at
        assert (await cache.lookup(partner.key_id))[1] == partner.secret
        assert cache.attempted_at == attempted  # at most one attempt per POLL_SECONDS
        await partner_auth.announce_key_change(cut_off, partner.key_id)  # logged, not raised
        assert partner.key_id not in cache.entries  # this process forgot it anyway
    finally:
        await dead.aclose()
    text = caplog.text
    assert "partner keys version" in text and "partner key change" in text
    assert partner.secret not in text


@pytest.mark.slow
@pytest.mark.asyncio
async def test_two_server_processes(partner, api, ctx, settings, data_dir, sandbox, monkeypatch):
    """B is a real ``wxbackend serve`` on A's database and Redis; A runs in this process."""
    b_port = free_port()
    env = clean_env(
        WXB_DATABASE_URL=settings.database.url,
        WXB_REDIS_URL=settings.redis.url,
        WXB_SERVER_DATA_DIR=str(data_dir),  # the keys the fixtures generated there
        WXB_WECHAT_API_BASE=sandbox.url,
        WXB_WECHAT_APPID=APPID,
        WXB_WECHAT_SECRET=SECRET,
        WXB_WORKER_EMBEDDED="false",
    )
    proc = subprocess.Popen(
        [WXBACKEND, "serve", "--port", str(b_port)],
        cwd=data_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{b_port}", proc)
        b_api = Api(api.client, f"http://127.0.0.1:{b_port}")
        root = await admin_token(api, ctx)
        secrets = [partner.secret]
        for lose_the_message in (False, True):
            key_id, secret = await new_key(api, root)
            secrets.append(secret)
            in_b = PartnerClient(b_api, key_id, secret)
            assert (await in_b.report_case())[0] == 201
            await asyncio.sleep(0.3)
            assert (await in_b.report_case())[0] == 201  # from B's cache
            with monkeypatch.context() as patch:
                if lose_the_message:
                    patch.setattr(partner_auth, "publish_key_change", _lost)
                await revoke(api, root, key_id)
            assert await seconds_until_rejected(in_b) < BOUND
    finally:
        returncode, err = await asyncio.to_thread(stop, proc)
    assert returncode == 0, err[-2000:]
    assert not any(secret in err for secret in secrets)


async def _lost(_ctx: Context, _version: int, _key_id: str) -> None:
    """A publish that never reaches Redis."""
