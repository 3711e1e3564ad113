"""Outages answer 503, never 500, say what is down, and end without a restart (issue 13
items 4–6): Redis killed under a running app and started again empty on its port, a full
disk under SQLite, PostgreSQL stopped under ``serve --processes 2`` and restarted ``-m fast``.
Real servers throughout (tests/support/outages.py).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import logging
import os
import signal
import sqlite3
import subprocess
import time

import peewee
import psycopg
import pytest
import redis.exceptions

from models.case import QrToken
from models.evaluation import Evaluation
from tests.conftest import APPID, SECRET
from tests.support.admins import PASSWORD, admin_token
from tests.support.cases import make_case, make_id_number
from tests.support.cli import WXBACKEND, clean_env, http, wait_healthy
from tests.support.outages import OwnPostgres, OwnRedis, Tmpfs, pg_bindir
from tests.support.servers import free_port
from wxbackend.clients.citizen import verified_user
from wxbackend.db import database
from wxbackend.services.common import outages

RATE = "/api/v1/evaluations"


def unavailable(status: int, answer: dict, dependency: str) -> None:
    """The answer is 503 ``unavailable`` naming ``dependency``, with ``retry: true``."""
    assert status == 503, answer
    error = answer["error"]
    assert (error["code"], error["dependency"], error["retry"]) == (
        "unavailable",
        dependency,
        True,
    ), answer
    assert dependency in error["message"].lower(), answer


def transitions(caplog: pytest.LogCaptureFixture, dependency: str) -> list[str]:
    """The outage log lines about ``dependency``: "<dep> is down", "<dep> is back"."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wxbackend.outages" and r.getMessage().startswith(dependency)
    ]


async def until(check, seconds: float = 10.0):
    """Await ``check()`` until it answers something true (or fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.1)


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
        (psycopg.errors.UndefinedTable("relation x does not exist"), None),
        (peewee.IntegrityError("UNIQUE constraint failed"), None),
        (ValueError("a bug"), None),
    ],
)
def test_what_an_exception_means(exc: BaseException, dependency: str | None):
    """Outages are told from bugs: a bug stays a 500 (with its traceback logged)."""
    found = outages.classify(exc)
    assert (found.dependency if found else None) == dependency


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
    """Redis of the test's own (it gets killed) when the test asks for ``own_redis``; this
    module's PostgreSQL cluster when it asks for ``on_own_postgres``."""
    layers: dict = {}
    if "own_redis" in request.fixturenames:
        layers["redis"] = {"url": request.getfixturevalue("own_redis").url}
    if "small_disk" in request.fixturenames:
        where = request.getfixturevalue("small_disk").where
        layers["database"] = {"url": f"sqlite:///{where}/test.db", "threads": 1}
    if "on_own_postgres" in request.fixturenames:
        layers.update(request.getfixturevalue("on_own_postgres"))
    return layers


@pytest.mark.asyncio
async def test_redis_killed_answers_503_then_recovers_without_restart(
    api, sandbox, ctx, own_redis, caplog, http_client, base_url
):
    caplog.set_level(logging.INFO, logger="wxbackend.outages")
    id_number = make_id_number(901)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    await admin_token(api, ctx)
    code = (await sandbox.login_code())["code"]

    own_redis.kill()
    requests = {
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
    await until(lambda: _status(api, "GET", "/healthz", expect=200))
    assert transitions(caplog, "redis") == ["redis is down", "redis is back"]
    token = await verified_user(api, sandbox, "黎明", id_number)
    status, answer = await api("POST", RATE, {"scene": scene, "overall": 5}, token=token)
    assert status == 201, answer
    assert (await api("POST", "/admin/api/login", requests["admin login"][2]))[0] == 200
    assert not outages.outages(ctx).is_down("redis")
    metrics = (await http_client.fetch(base_url + "/metrics")).body.decode()
    assert 'wxb_dependency_down{dependency="redis"} 0.0' in metrics


async def _status(api, method: str, path: str, expect: int) -> bool:
    return (await api(method, path))[0] == expect


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


def _rated(case_id: str) -> tuple[int, str]:
    token = QrToken.get(QrToken.case == int(case_id))
    return Evaluation.select().where(Evaluation.case == int(case_id)).count(), token.status


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
    assert await ctx.db.run(_rated, case_id) == (0, "active")  # nothing half-written
    status, health = await api("GET", "/healthz")
    assert status == 503 and health["checks"]["redis"] == "ok", health
    assert health["checks"]["database"].startswith("error: cannot write: database or disk is full")
    assert transitions(caplog, "disk") == ["disk is down"]

    await ctx.db.run(_limit_pages, False)  # room again
    await until(lambda: _status(api, "GET", "/healthz", expect=200))
    status, answer = await api("POST", RATE, rating, token=token)
    assert status == 201, answer
    assert await ctx.db.run(_rated, case_id) == (1, "used")
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
    assert await ctx.db.run(_rated, case_id) == (0, "active")
    status, health = await api("GET", "/healthz")
    assert status == 503 and "disk is full" in health["checks"]["database"], health
    small_disk.free()
    await until(lambda: _status(api, "GET", "/healthz", expect=200))
    status, answer = await api("POST", RATE, rating, token=token)
    assert status == 201, answer
    assert await ctx.db.run(_rated, case_id) == (1, "used")
    assert transitions(caplog, "disk") == ["disk is down", "disk is back"]


# ---- PostgreSQL: a cluster of this module's own, stopped and restarted ---------------------


@pytest.fixture(scope="module")
def own_postgres():
    bindir = pg_bindir()
    if bindir is None:
        pytest.exit("PostgreSQL is not installed: run scripts/test.sh", returncode=3)
    own = OwnPostgres(bindir)
    yield own
    own.remove()


def _keys() -> dict[str, dict[str, str]]:
    def key() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    return {
        "security": {"master_key": key(), "hash_key": key()},
        "transparency": {"signing_key": key()},
    }


def _fresh_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture
def on_own_postgres(own_postgres) -> dict:
    """Settings layers for the app on this module's cluster (a fresh schema)."""
    _fresh_schema(own_postgres.url)
    return {"database": {"url": own_postgres.url, "threads": 4}, **_keys()}


@pytest.mark.slow  # this module's PostgreSQL cluster: ~6 s to make once
@pytest.mark.asyncio
async def test_first_requests_after_a_postgres_fast_restart_succeed(
    on_own_postgres, api, ctx, own_postgres
):
    """Every database thread holds a connection the restart ended: each is dropped before
    use (or its call run again), so no request after the restart fails."""
    token = await admin_token(api, ctx)
    for _ in range(3):  # every database thread holds a connection
        answers = await asyncio.gather(
            *(api("GET", "/admin/api/me", token=token) for _ in range(6))
        )
        assert {s for s, _ in answers} == {200}
    await asyncio.to_thread(own_postgres.restart_fast)
    answers = await asyncio.gather(*(api("GET", "/admin/api/me", token=token) for _ in range(8)))
    assert [s for s, _ in answers] == [200] * 8, answers
    assert (await api("GET", "/api/v1/public/evaluations"))[0] == 200


_CUT_AT_COMMIT = """
CREATE OR REPLACE FUNCTION wxb_test_cut() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER wxb_test_cut AFTER INSERT ON {table}
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wxb_test_cut();
"""


@pytest.mark.slow  # this module's PostgreSQL cluster: ~6 s to make once
@pytest.mark.asyncio
async def test_a_commit_cut_off_by_postgres_is_503_and_the_key_learns_the_truth(
    on_own_postgres, api, sandbox, ctx, own_postgres
):
    """The server ends the session at COMMIT (a deferred trigger terminates its own backend,
    as ``pg_ctl stop -m fast`` or a failover would): the outcome is unknown to the app, so
    503 ``unavailable`` with ``retry: true`` says so; the retry with the same Idempotency-Key
    learns it (here: nothing was stored, so it is stored now, once)."""
    id_number = make_id_number(903)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    rating, key = {"scene": scene, "overall": 4}, {"Idempotency-Key": "cut-at-commit-0001"}
    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute(_CUT_AT_COMMIT.format(table=Evaluation._meta.table_name))
    status, answer = await api("POST", RATE, rating, token=token, headers=key)
    unavailable(status, answer, "database")
    assert "outcome is unknown" in answer["error"]["message"], answer
    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER wxb_test_cut ON {Evaluation._meta.table_name}")
    status, answer = await api("POST", RATE, rating, token=token, headers=key)
    assert status == 201, answer
    again = await api("POST", RATE, rating, token=token, headers=key)
    assert again == (201, answer)
    assert await ctx.db.run(_rated, case_id) == (1, "used")


def _serve_env(layers: dict, redis_url: str, data_dir, sandbox_url: str) -> dict[str, str]:
    env = {
        "WXB_DATABASE_URL": layers["database"]["url"],
        "WXB_REDIS_URL": redis_url,
        "WXB_SERVER_DATA_DIR": str(data_dir),
        "WXB_WECHAT_API_BASE": sandbox_url,
        "WXB_WECHAT_APPID": APPID,
        "WXB_WECHAT_SECRET": SECRET,
        "WXB_WORKER_EMBEDDED": "false",
    }
    for section in ("security", "transparency"):
        for key, value in layers[section].items():
            env[f"WXB_{section.upper()}_{key.upper()}"] = value
    return clean_env(**env)


def _poll(base: str, token: str, seconds: float) -> list[tuple[str, int, str]]:
    """``(path, status, error code/dependency)`` of requests made for ``seconds``."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/admin/api/me", "/api/v1/public/evaluations", "/healthz"):
            try:
                status, answer = http("GET", base + path, token=token)
            except OSError as exc:  # no answer within http()'s 10 s
                status, answer = 0, {"error": {"code": type(exc).__name__}}
            error = (answer or {}).get("error") or {}
            seen.append((path, status, f"{error.get('code')}/{error.get('dependency')}"))
        time.sleep(0.1)
    return seen


@pytest.mark.slow
@pytest.mark.asyncio
async def test_postgres_stopped_under_two_server_processes(
    own_postgres, redis_flushed, tmp_path, sandbox
):
    """``serve --processes 2`` while PostgreSQL stops for 10 s: 503 naming the database
    (never 500) meanwhile, one log line per process and transition, no traceback; the first
    requests once it is back succeed, without a restart."""
    _fresh_schema(own_postgres.url)
    env = _serve_env(
        {"database": {"url": own_postgres.url}, **_keys()}, redis_flushed, tmp_path, sandbox.url
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "serve.log"  # a file: a full pipe would block the server
    with open(log_file, "wb") as log_out:
        proc = subprocess.Popen(
            [WXBACKEND, "serve", "--port", str(port), "--processes", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_out,
        )
    try:
        await asyncio.to_thread(wait_healthy, base, proc, 60)
        created = subprocess.run(
            [WXBACKEND, "admin", "create", "--username", "root", "--password-stdin"]
            + ["--role", "superadmin"],
            cwd=tmp_path,
            env=env,
            input=PASSWORD.encode(),
            capture_output=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr.decode()[-2000:]
        body = {"username": "root", "password": PASSWORD}
        token = http("POST", base + "/admin/api/login", body)[1]["token"]
        assert {s for _, s, _ in await asyncio.to_thread(_poll, base, token, 0.5)} == {200}

        await asyncio.to_thread(own_postgres.stop)
        during = await asyncio.to_thread(_poll, base, token, 10)
        await asyncio.to_thread(own_postgres.start)
        after = [http("GET", base + "/admin/api/me", token=token)[0] for _ in range(8)]
        late = await asyncio.to_thread(_poll, base, token, 1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(proc.wait, 30)
    err = log_file.read_text()
    assert {(s, e) for _, s, e in during} == {(503, "unavailable/database"), (503, "None/None")}
    assert after == [200] * len(after), after
    assert {s for _, s, _ in late} == {200}, ([x for x in late if x[1] != 200], err[-6000:])
    lines = [json.loads(line)["msg"] for line in err.splitlines() if line.startswith("{")]
    assert 1 <= lines.count("database is down") <= 2, lines
    assert lines.count("database is back") == lines.count("database is down"), lines
    assert "Traceback" not in err and "unhandled error" not in lines, err[-3000:]
    assert returncode == 0, err[-2000:]
