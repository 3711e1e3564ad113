"""Sessions survive a Redis restarted empty (the database is their source, Redis the cache),
revocations survive it too, and a flood of bad tokens costs one database read per token.
Evaluator screens' device tokens too (migration 18): a screen stays paired, an ended pairing
stays ended."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from models.base import utcnow
from models.device import DeviceToken
from models.session import Session
from tests.support.admins import admin_token
from tests.support.databases import both_databases
from tests.support.servers import free_port, start_redis_server
from wxbackend.app import redis_persistence
from wxbackend.clients.device import ScreenStream, pair
from wxbackend.db import database
from wxbackend.security import new_token, token_digest
from wxbackend.services.common import session_store
from wxbackend.services.devices import pairing
from wxbackend.services.jobs import housekeeping


class OwnRedis:
    """A redis-server of this test alone (no persistence), restartable on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = str(directory)  # where it writes if a test turns persistence on
        self.proc: subprocess.Popen = start_redis_server(self.port, directory=self.directory)

    def restart_empty(self) -> None:
        """Stop it and start it again, empty (it never saved anything)."""
        self.proc.terminate()
        self.proc.wait(10)
        self.proc = start_redis_server(self.port, directory=self.directory)
        client = redis.Redis(port=self.port)
        assert client.dbsize() == 0
        client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def settings_overrides(own_redis: OwnRedis) -> dict[str, dict[str, Any]]:
    return {"redis": {"url": own_redis.url}}


async def _restart_empty(own_redis: OwnRedis, ctx: Any) -> None:
    """Restart Redis empty. The app's pooled connections to the old server are dropped too:
    replacing dead connections by itself is the Redis client's job (issue 13 item 6,
    ``wxbackend/cache.py``), not what these tests measure, which is where sessions live."""
    own_redis.restart_empty()
    await ctx.redis.connection_pool.disconnect()


async def _status(api, path: str, token: str) -> int:
    status, _ = await api("GET", path, token=token)
    return status


@both_databases
@pytest.mark.asyncio
async def test_citizen_and_admin_stay_logged_in_across_a_redis_restart(
    api, ctx, sandbox, own_redis
):
    citizen, _ = await api.login(sandbox)
    admin = await admin_token(api, ctx)
    assert await _status(api, "/api/v1/me", citizen) == 200
    assert await _status(api, "/admin/api/me", admin) == 200

    await _restart_empty(own_redis, ctx)
    assert await _status(api, "/api/v1/me", citizen) == 200
    assert await _status(api, "/admin/api/me", admin) == 200
    # The first request refilled the cache with the time the session has left.
    ttl = await ctx.redis.ttl(ctx.rkeys("sess", token_digest(citizen)))
    assert 0 < ttl <= ctx.settings.auth.session_ttl_seconds


@both_databases
@pytest.mark.asyncio
async def test_logout_and_revocation_stay_in_force_after_a_redis_restart(
    api, ctx, sandbox, own_redis
):
    citizen, _ = await api.login(sandbox)
    other_citizen, other = await api.login(sandbox)
    root = await admin_token(api, ctx)  # changes clerk's password
    clerk = await admin_token(api, ctx, "clerk", "viewer")
    clerk_again = await admin_token(api, ctx, "clerk", "viewer")
    leaving = await admin_token(api, ctx, "leaving", "viewer")

    assert (await api("POST", "/api/v1/auth/logout", {}, token=citizen))[0] == 204
    assert (await api("POST", "/admin/api/logout", {}, token=leaving))[0] == 204
    new_password = {"password": "another-correct-horse-42"}
    status, _ = await api("PUT", "/admin/api/admins/clerk", new_password, token=root)
    assert status == 200

    await _restart_empty(own_redis, ctx)  # the cache forgets; the database must not resurrect them
    assert await _status(api, "/api/v1/me", citizen) == 401
    assert await _status(api, "/admin/api/me", leaving) == 401
    assert await _status(api, "/admin/api/me", clerk) == 401
    assert await _status(api, "/admin/api/me", clerk_again) == 401
    assert await _status(api, "/api/v1/me", other_citizen) == 200
    assert await _status(api, "/admin/api/me", root) == 200

    # Every session of a user ends at once, whether Redis still held it or not.
    from wxbackend.services.citizens import auth

    assert await auth.revoke_all(ctx, int(other["user"]["id"])) == 1
    assert await _status(api, "/api/v1/me", other_citizen) == 401


@pytest.mark.asyncio
async def test_a_revocation_is_not_undone_by_a_lookup_that_read_the_row_before_it(ctx):
    """A lookup that read the live row just before the logout refills with SET NX: the
    revocation's negative entry stays."""
    token = await session_store.create(ctx, "citizen", "sess", 7, 600)
    digest = token_digest(token)
    live = await ctx.db.run(session_store._live_seconds, digest, "citizen")  # read first …
    await session_store.revoke(ctx, "citizen", "sess", token)  # … then the logout
    key = ctx.rkeys("sess", digest)
    assert live is not None
    assert not await ctx.redis.set(key, str(live[0]), ex=live[1], nx=True)  # the refill
    assert await session_store.lookup(ctx, "citizen", "sess", token) is None


@pytest.mark.asyncio
async def test_sessions_made_before_the_upgrade_still_work_and_are_revoked(ctx):
    """A token issued before migration 14 lives only in Redis (with the subject's index set,
    as the old code wrote it): it keeps working until its TTL, and revoking every session
    of its admin or citizen ends it too."""
    from wxbackend.services.admin import sessions as admin_sessions
    from wxbackend.services.citizens import auth

    for prefix, index, subject, revoke in (
        ("adm", "adm-sess", 5, admin_sessions.revoke_all),
        ("sess", "user-sess", 9, auth.revoke_all),
    ):
        token = new_token(32)
        key = ctx.rkeys(prefix, token_digest(token))
        await ctx.redis.set(key, str(subject), ex=600)
        await ctx.redis.sadd(ctx.rkeys(index, str(subject)), key)
        kind = "admin" if prefix == "adm" else "citizen"
        assert await session_store.lookup(ctx, kind, prefix, token) == subject
        await revoke(ctx, subject)
        assert await session_store.lookup(ctx, kind, prefix, token) is None


def _expire_in(token: str, seconds: int) -> None:
    """Move a device token's row expiry to ``seconds`` from now. Sync."""
    moved = utcnow() + timedelta(seconds=seconds)
    DeviceToken.update(expires_at=moved).where(DeviceToken.digest == token_digest(token)).execute()


def _live_device_tokens() -> list[str]:
    live = DeviceToken.ended_at.is_null() & (DeviceToken.expires_at > utcnow())
    return [d for (d,) in DeviceToken.select(DeviceToken.digest).where(live).tuples()]


@both_databases
@pytest.mark.asyncio
async def test_screens_stay_paired_across_a_redis_restart_and_ended_pairings_stay_ended(
    api, ctx, partner, base_url, own_redis, monkeypatch
):
    """Paired screens' tokens live in the database (Redis caches them): after Redis restarts
    empty a paired screen still streams and gets the window's next case; a token a rotation
    ended, one ended alone (its generation is current: only its row says so) and one expired
    stay refused; a screen connecting renews its row's expiry."""
    from handlers.devices import DeviceStreamHandler

    monkeypatch.setattr(DeviceStreamHandler, "heartbeat_seconds", 1.0)
    admin = await admin_token(api, ctx)

    async def new_key(window: str) -> str:
        path = f"/admin/api/windows/{window}/device-key"
        return (await api.expect("POST", path, token=admin))["device_key"]

    rotated = await pair(api, "HL-W01", await new_key("HL-W01"))
    screen = await pair(api, "HL-W01", await new_key("HL-W01"))
    other_key = await new_key("HL-W02")
    ended = await pair(api, "HL-W02", other_key)
    await pairing.end_pairings(ctx, "HL-W02")  # no rotation: the generation is current
    expired = await pair(api, "HL-W02", other_key)
    qr = "/api/v1/device/qrcode.png"  # 404 while no case is shown; 401 for no screen
    assert (await api("GET", qr, token=expired))[0] == 404
    await ctx.db.run(_expire_in, expired, -1)
    await ctx.db.run(_expire_in, screen, 60)
    stream = ScreenStream(base_url, screen)  # connecting renews: the row's expiry moves
    try:
        await stream.next_event("idle")
    finally:
        await stream.close()

    await _restart_empty(own_redis, ctx)
    assert (await api("GET", qr, token=screen))[0] == 404
    for token in (rotated, ended, expired):
        assert (await api("GET", qr, token=token))[0] == 401, token
    assert await ctx.db.run(_live_device_tokens) == [token_digest(screen)]
    row = await ctx.db.run(DeviceToken.get, DeviceToken.digest == token_digest(screen))
    assert row.expires_at > utcnow() + timedelta(days=ctx.settings.devices.token_days - 1)

    stream = ScreenStream(base_url, screen)
    try:
        await stream.next_event("idle")
        await partner.new_case(window_code="HL-W01")  # the window is known to be paired
        case = await stream.next_event("case", timeout=2.0)
        assert (await api("GET", case["qr_url"], token=screen))[0] == 200
    finally:
        await stream.close()
    await ctx.db.run(_expire_in, screen, -1)  # the housekeeping deletes the expired rows
    assert await housekeeping.TASKS["purge_sessions"](ctx) == 2
    assert await ctx.db.run(DeviceToken.select().count) == 2  # ended: kept until they expire


@pytest.mark.asyncio
async def test_screens_paired_before_the_upgrade_still_work_and_are_ended(api, ctx, partner):
    """A device token paired before migration 18 lives only in Redis (listed in its window's
    set, as the old code wrote it): it keeps working, counts as a pairing, and a rotation's
    end of pairings ends it too."""
    admin = await admin_token(api, ctx)
    await api.expect("POST", "/admin/api/windows/HL-W01/device-key", token=admin)
    token = new_token(32)
    digest = token_digest(token)
    await ctx.redis.set(ctx.rkeys("device-token", digest), '{"window": "HL-W01", "generation": 1}')
    await ctx.redis.sadd(ctx.rkeys("device-tokens", "HL-W01"), digest)
    await ctx.redis.delete(ctx.rkeys("device-paired", "HL-W01"))  # the new code's flag: not yet
    assert (await pairing.authenticate(ctx, token, renew=True)).window_code == "HL-W01"
    assert await pairing.has_pairings(ctx, "HL-W01")
    await pairing.end_pairings(ctx, "HL-W01")
    with pytest.raises(Exception, match="not paired"):
        await pairing.authenticate(ctx, token)
    assert not await pairing.has_pairings(ctx, "HL-W01")


@pytest.mark.asyncio
async def test_a_screen_paired_as_its_window_is_deleted_gets_no_token(ctx):
    """The window deleted between the key's check and the token's row: 401, not a 500."""
    from wxbackend.services.devices import tokens

    assert not await tokens.store(ctx, "d" * 64, "NO-SUCH-WINDOW", 1, 600)
    assert await ctx.db.run(DeviceToken.select().count) == 0


def _count_session_reads(calls: list[str]) -> Any:
    """Counts statements reading the session table (only this test reads it now)."""
    db = database.obj
    original = db.execute_sql
    lock = threading.Lock()

    def counting(sql, params=None, *args, **kwargs):
        if 'FROM "session"' in sql:
            with lock:
                calls.append(sql)
        return original(sql, params, *args, **kwargs)

    db.execute_sql = counting
    return lambda: delattr(db, "execute_sql")


@both_databases
@pytest.mark.asyncio
async def test_a_flood_of_bad_tokens_costs_one_database_read_per_token(api, ctx, sandbox):
    good, _ = await api.login(sandbox)
    bad = [new_token(32) for _ in range(20)]
    calls: list[str] = []
    undo = _count_session_reads(calls)
    try:
        for _ in range(5):  # each bad token five times, as a flood would
            for token in bad:
                assert await _status(api, "/api/v1/me", token) == 401
        admin_bad = new_token(32)
        for _ in range(5):
            assert await _status(api, "/admin/api/me", admin_bad) == 401
        for _ in range(5):
            assert await _status(api, "/api/v1/me", good) == 200  # cached: no read at all
    finally:
        undo()
    assert len(calls) == len(bad) + 1, calls


@both_databases
@pytest.mark.asyncio
async def test_housekeeping_purges_expired_sessions_in_batches(ctx, clock):
    for n in range(5):
        await session_store.create(ctx, "citizen", "sess", n, 60)
    keep = await session_store.create(ctx, "admin", "adm", 1, 3600)
    clock.advance(120)
    assert await ctx.db.run(session_store.purge_expired, 2) == 5
    assert await housekeeping.TASKS["purge_sessions"](ctx) == 0
    assert await ctx.db.run(Session.select().count) == 1
    assert await session_store.lookup(ctx, "admin", "adm", keep) == 1


@pytest.mark.asyncio
async def test_start_up_says_what_a_redis_restart_loses(own_redis):
    from redis.asyncio import Redis

    client = Redis.from_url(own_redis.url, decode_responses=True)
    try:
        line, warn = await redis_persistence(client)
        assert warn and "no persistence" in line and "rate-limit windows" in line
        assert "sessions are kept in the database" in line
        await client.config_set("appendonly", "yes")
        line, warn = await redis_persistence(client)
        assert not warn and line.startswith("Redis persists") and "appendonly=yes" in line
        await client.config_set("appendonly", "no")
        await client.config_set("save", "3600 1")
        line, warn = await redis_persistence(client)
        assert not warn and line.startswith("Redis persists")
        # A managed Redis that refuses CONFIG: the start goes on, the line says so.
        await client.acl_setuser(
            "app", enabled=True, nopass=True, keys="*", commands=["+@all", "-config"]
        )
        await client.aclose()
        url = own_redis.url.replace("redis://", "redis://app@")
        client = Redis.from_url(url, decode_responses=True)
        line, warn = await redis_persistence(client)
        assert warn and line.startswith("Redis persistence unknown")
    finally:
        await client.aclose()
