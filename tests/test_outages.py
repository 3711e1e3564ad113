"""Outages answer 503, never 500, say what is down, and end without a restart (issue 13
items 4–6): what an exception means, Redis killed under a running app and started again empty
on its port, a full disk under SQLite (``max_page_count``, and a real tmpfs where mounting is
permitted). PostgreSQL's outages: test_outages_postgres.py. Real servers throughout
(tests/support/outages.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import time

import peewee
import psycopg
import pytest
import redis.exceptions

from models.evaluation import Evaluation
from tests.support.admins import PASSWORD, admin_token
from tests.support.cases import make_case, make_id_number
from tests.support.outages import (
    RATE,
    OwnRedis,
    Tmpfs,
    answers,
    rated,
    transitions,
    unavailable,
    until,
)
from wxbackend.clients.citizen import verified_user
from wxbackend.db import database
from wxbackend.services.common import outages


def _by_peewee(exc: sqlite3.Error) -> peewee.PeeweeException:
    """``exc`` wrapped as peewee wraps a driver's error."""
    try:
        try:
            raise exc
        except sqlite3.Error as inner:
            raise peewee.OperationalError(inner, *inner.args) from None
    except peewee.OperationalError as outer:
        return outer


def _hiding(hidden: BaseException, exc: BaseException) -> BaseException:
    """``exc`` raised while handling ``hidden`` (a failed rollback after a failed COMMIT)."""
    try:
        try:
            raise hidden
        except BaseException:
            raise exc  # noqa: B904 - what peewee does
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (redis.exceptions.ConnectionError("Error 111 connecting"), "redis"),
        (redis.exceptions.BusyLoadingError("loading"), "redis"),
        (redis.exceptions.ResponseError("WRONGTYPE"), None),
        (OSError(errno.ENOSPC, "No space left on device"), "disk"),
        (_by_peewee(sqlite3.OperationalError("database or disk is full")), "disk"),
        (_by_peewee(sqlite3.OperationalError("database is locked")), "database"),
        (_by_peewee(sqlite3.OperationalError("no such table: x")), None),
        (
            _hiding(
                _by_peewee(sqlite3.OperationalError("database or disk is full")),
                _by_peewee(sqlite3.OperationalError("cannot rollback - no transaction is active")),
            ),
            "disk",
        ),
        (psycopg.errors.AdminShutdown("terminating connection"), "database"),
        (psycopg.OperationalError("connection failed: Connection refused"), "database"),
        (psycopg.errors.DiskFull("could not extend file"), "disk"),
        (psycopg.errors.DeadlockDetected("deadlock detected"), "database"),
        (psycopg.errors.SerializationFailure("could not serialize access"), "database"),
        (psycopg.errors.UniqueViolation("duplicate key value"), None),
        (psycopg.errors.UndefinedTable("relation x does not exist"), None),
        (peewee.IntegrityError("UNIQUE constraint failed"), None),
        (ValueError("a bug"), None),
    ],
)
def test_what_an_exception_means(exc: BaseException, dependency: str | None):
    """Outages are told from bugs: a bug stays a 500 (with its traceback logged)."""
    found = outages.classify(exc)
    assert (found.dependency if found else None) == dependency


@pytest.mark.parametrize(
    ("exc", "conflict"),
    [
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.errors.SerializationFailure("could not serialize access"), True),
        (psycopg.errors.StatementCompletionUnknown("statement completion unknown"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), False),
        (psycopg.OperationalError("connection failed: Connection refused"), False),
        (_by_peewee(sqlite3.OperationalError("database is locked")), False),
    ],
)
def test_a_rolled_back_transaction_is_a_conflict_not_an_outage(exc, conflict):
    """PostgreSQL answered (it rolled the transaction back): 503 ``unavailable`` naming the
    database with ``retry``, but no outage is opened (test_outages_postgres.py shows it)."""
    found = outages.classify(exc)
    assert found is not None and found.conflict is conflict
    answer = outages.answer(found, on_postgres=True)
    assert (answer.status, answer.extra["dependency"], answer.extra["retry"]) == (
        503,
        "database",
        True,
    )
    assert ("conflicted" in answer.message) is conflict


def test_reasons_never_show_a_password():
    exc = psycopg.OperationalError("connection to postgresql://wxb:s3cret@db:5432/wxb failed")
    assert "s3cret" not in outages.reason_of(exc)


@pytest.fixture
def own_redis():
    own = OwnRedis.start()
    yield own
    own.kill()


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict:
    """Redis of the test's own (it gets killed) when the test asks for ``own_redis``; the
    database on a small tmpfs when it asks for ``small_disk``."""
    layers: dict = {}
    if "own_redis" in request.fixturenames:
        layers["redis"] = {"url": request.getfixturevalue("own_redis").url}
    if "small_disk" in request.fixturenames:
        where = request.getfixturevalue("small_disk").where
        layers["database"] = {"url": f"sqlite:///{where}/test.db", "threads": 1}
    return layers


@pytest.mark.asyncio
async def test_redis_killed_answers_503_then_recovers_without_restart(
    api, sandbox, ctx, own_redis, caplog, http_client, base_url
):
    caplog.set_level(logging.INFO, logger="wxbackend.outages")
    id_number = make_id_number(901)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    admin = await admin_token(api, ctx)
    code = (await sandbox.login_code())["code"]
    path = "/admin/api/windows/HL-W01/device-key"
    device_key = (await api.expect("POST", path, token=admin))["device_key"]
    pairing = {"window_code": "HL-W01", "device_key": device_key}
    device = (await api.expect("POST", "/api/v1/device/pair", pairing))["device_token"]

    own_redis.kill()
    requests = {
        "device pair": ("POST", "/api/v1/device/pair", pairing, None),
        "device code": ("GET", "/api/v1/device/qrcode.png", None, device),
        "login": ("POST", "/api/v1/auth/login", {"code": code}, None),
        "scan": ("POST", "/api/v1/scan", {"scene": scene}, token),
        "submit": ("POST", RATE, {"scene": scene, "overall": 5}, token),
        "admin login": (
            "POST",
            "/admin/api/login",
            {"username": "root", "password": PASSWORD},
            None,
        ),
    }
    for _ in range(3):  # many requests, one log line
        for name, (method, path, body, bearer) in requests.items():
            started = time.monotonic()
            status, answer = await api(method, path, body, token=bearer)
            assert time.monotonic() - started < 3, name  # no long retrying before the 503
            unavailable(status, answer, "redis")
    status, answer = await api("GET", "/api/v1/public/evaluations")
    assert status in (200, 503) and (status == 200 or answer["error"]["dependency"] == "redis")
    status, health = await api("GET", "/healthz")
    assert status == 503 and health["checks"]["redis"].startswith("error"), health
    assert transitions(caplog, "redis") == ["redis is down"]
    metrics = (await http_client.fetch(base_url + "/metrics")).body.decode()
    assert 'wxb_dependency_down{dependency="redis"} 1.0' in metrics
    assert "Traceback" not in caplog.text and "unhandled error" not in caplog.text
    assert await ctx.db.run(Evaluation.select().count) == 0

    own_redis.restart()  # the same port, empty: sessions are gone, logins work again
    await until(lambda: answers(api, "GET", "/healthz", 200))
    assert transitions(caplog, "redis") == ["redis is down", "redis is back"]
    token = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await api("POST", RATE, {"scene": scene, "overall": 5}, token=token)
    assert status == 201, answer
    assert (await api("POST", "/admin/api/login", requests["admin login"][2]))[0] == 200
    assert not outages.outages(ctx).is_down("redis")
    metrics = (await http_client.fetch(base_url + "/metrics")).body.decode()
    assert 'wxb_dependency_down{dependency="redis"} 0.0' in metrics


@pytest.mark.asyncio
async def test_first_requests_after_a_redis_restart_succeed(api, sandbox, ctx, own_redis):
    """Pooled connections Redis closed are retried on a new one: no request fails."""
    await admin_token(api, ctx)
    body = {"username": "root", "password": PASSWORD}
    for _ in range(3):  # several pooled connections
        assert (await api("POST", "/admin/api/login", body))[0] == 200
    own_redis.kill()
    own_redis.restart()
    answers = await asyncio.gather(*(api("POST", "/admin/api/login", body) for _ in range(5)))
    assert [status for status, _ in answers] == [200] * 5, answers


def _limit_pages(full: bool) -> int:
    """Cap the database file at its present size (full=False: lift the cap), on this connection
    and the ones opened after it; the page count then. No page is left free (VACUUM), so
    the next new page fails."""
    db = database.obj
    if not full:
        db.pragma("max_page_count", 1073741823, permanent=True)
    else:
        if db.pragma("freelist_count"):
            db.execute_sql("VACUUM")
        db.pragma("max_page_count", db.pragma("page_count"), permanent=True)
    return db.pragma("page_count")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides",
    [{"database": {"threads": 1}, "rating": {"comment_max_chars": 3000}}],
)
async def test_full_sqlite_database_answers_503_naming_the_disk(api, sandbox, ctx, caplog):
    """``max_page_count`` on the app's one database connection: a rating whose comment needs
    a new page cannot be stored. 503 naming the disk, nothing half-written, healthz 503;
    the same rating is stored once there is room again."""
    caplog.set_level(logging.INFO, logger="wxbackend.outages")
    id_number = make_id_number(902)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    rating = {"scene": scene, "overall": 5, "comment": "服务很好" * 700}  # > one page
    await ctx.db.run(_limit_pages, True)
    for _ in range(3):
        unavailable(*await api("POST", RATE, rating, token=token), "disk")
    assert await ctx.db.run(rated, case_id) == (0, "active")  # nothing half-written
    status, health = await api("GET", "/healthz")
    assert status == 503 and health["checks"]["redis"] == "ok", health
    assert health["checks"]["database"].startswith("error: cannot write: database or disk is full")
    assert transitions(caplog, "disk") == ["disk is down"]

    await ctx.db.run(_limit_pages, False)  # room again
    await until(lambda: answers(api, "GET", "/healthz", 200))
    status, answer = await api("POST", RATE, rating, token=token)
    assert status == 201, answer
    assert await ctx.db.run(rated, case_id) == (1, "used")
    assert transitions(caplog, "disk") == ["disk is down", "disk is back"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs for the database (where this process may mount one)."""
    if not Tmpfs.permitted():
        pytest.skip("mounting a tmpfs is not permitted here (the max_page_count test covers it)")
    disk = Tmpfs(tmp_path / "disk")
    yield disk
    disk.unmount()


def _wal_emptied() -> None:
    """Checkpoint and truncate the WAL: the next commit must grow it on the disk."""
    database.obj.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.asyncio
async def test_a_full_disk_at_commit_answers_503_not_cannot_rollback(
    small_disk, api, sandbox, ctx, caplog
):
    """A real full disk (tmpfs): SQLite fails the COMMIT (``database or disk is full``) and
    peewee's rollback after it fails too (``cannot rollback``): still 503 naming the disk,
    nothing stored; stored once there is room."""
    caplog.set_level(logging.INFO, logger="wxbackend.outages")
    id_number = make_id_number(904)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    rating = {"scene": scene, "overall": 2, "comment": "等了太久"}
    await ctx.db.run(_wal_emptied)
    small_disk.fill()
    unavailable(*await api("POST", RATE, rating, token=token), "disk")
    assert await ctx.db.run(rated, case_id) == (0, "active")
    status, health = await api("GET", "/healthz")
    assert status == 503 and "disk is full" in health["checks"]["database"], health
    small_disk.free()
    await until(lambda: answers(api, "GET", "/healthz", 200))
    status, answer = await api("POST", RATE, rating, token=token)
    assert status == 201, answer
    assert await ctx.db.run(rated, case_id) == (1, "used")
    assert transitions(caplog, "disk") == ["disk is down", "disk is back"]
