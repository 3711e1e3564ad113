"""Outages of PostgreSQL (issue 13 items 4–6), on a cluster of this module's own (the
session's shared one is never stopped): a restart ``-m fast`` (the first requests after it
succeed), a COMMIT cut off by the server (503, the outcome unknown; the Idempotency-Key learns
it), and a 10 s stop under ``serve --processes 2`` (503 naming the database, never 500).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import time

import psycopg
import pytest

from models.evaluation import Evaluation
from tests.conftest import APPID, SECRET
from tests.support.admins import PASSWORD, admin_token
from tests.support.cases import make_case, make_id_number
from tests.support.cli import WXBACKEND, clean_env, http, wait_healthy
from tests.support.outages import RATE, rated, transitions, unavailable
from tests.support.pgcluster import PgCluster, pg_bindir
from tests.support.servers import free_port
from wxbackend.clients.citizen import verified_user


@pytest.fixture(scope="module")
def own_postgres():
    bindir = pg_bindir()
    if bindir is None:
        pytest.exit("PostgreSQL is not installed: run scripts/test.sh", returncode=3)
    own = PgCluster(bindir)  # its own: stopping it disturbs no other test
    yield own
    own.stop()


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
def settings_overrides(own_postgres) -> dict:
    """The app on this module's cluster (a fresh schema)."""
    _fresh_schema(own_postgres.url)
    return {"database": {"url": own_postgres.url, "threads": 4}, **_keys()}


@pytest.mark.slow  # this module's PostgreSQL cluster: ~6 s to make once
@pytest.mark.asyncio
async def test_first_requests_after_a_postgres_fast_restart_succeed(api, ctx, own_postgres):
    """Every database thread holds a connection the restart ended: each is dropped before
    use (or its call run again), so no request after the restart fails."""
    token = await admin_token(api, ctx)
    for _ in range(3):  # every database thread holds a connection
        answers = await asyncio.gather(
            *(api("GET", "/admin/api/me", token=token) for _ in range(6))
        )
        assert {s for s, _ in answers} == {200}
    await asyncio.to_thread(own_postgres.restart)
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
    api, sandbox, ctx, own_postgres
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
    assert await ctx.db.run(rated, case_id) == (1, "used")


_CONFLICT_ON_INSERT = """
CREATE OR REPLACE FUNCTION wxb_test_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $$;
CREATE TRIGGER wxb_test_conflict BEFORE INSERT ON {table}
FOR EACH ROW EXECUTE FUNCTION wxb_test_conflict();
"""


@pytest.mark.slow  # this module's PostgreSQL cluster: ~6 s to make once
@pytest.mark.asyncio
async def test_a_serialization_conflict_is_503_but_no_outage(
    api, sandbox, ctx, own_postgres, caplog, http_client, base_url
):
    """PostgreSQL rolls the rating's transaction back (SQLSTATE 40001, as a serialization
    conflict would): 503 ``unavailable`` naming the database with ``retry`` (nothing stored),
    yet the database is up: no "database is down" line, the gauge stays 0, the conflict is
    counted; the retry with the same key is stored once."""
    caplog.set_level(logging.INFO, logger="wxbackend.outages")
    id_number = make_id_number(905)
    case_id, scene = await make_case(ctx, "黎明", id_number)
    token = await verified_user(api, sandbox, "黎明", id_number)
    rating, key = (
        {"scene": scene, "overall": 2, "indicators": ["long_queue"]},
        {"Idempotency-Key": "conflict-0001"},
    )
    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute(_CONFLICT_ON_INSERT.format(table=Evaluation._meta.table_name))
    for _ in range(2):
        status, answer = await api("POST", RATE, rating, token=token, headers=key)
        unavailable(status, answer, "database")
        assert "conflicted" in answer["error"]["message"], answer
    assert await ctx.db.run(rated, case_id) == (0, "active")
    assert transitions(caplog, "database") == []
    metrics = (await http_client.fetch(base_url + "/metrics")).body.decode()
    assert 'wxb_dependency_down{dependency="database"} 0.0' in metrics
    assert "wxb_database_conflicts_total 2.0" in metrics
    assert (await api("GET", "/healthz"))[0] == 200
    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER wxb_test_conflict ON {Evaluation._meta.table_name}")
    status, answer = await api("POST", RATE, rating, token=token, headers=key)
    assert status == 201, answer
    assert await ctx.db.run(rated, case_id) == (1, "used")


def _serve_env(layers: dict, redis_url: str, data_dir, sandbox_url: str) -> dict[str, str]:
    env = {
        "WXB_DATABASE_URL": layers["database"]["url"],
        "WXB_REDIS_URL": redis_url,
        "WXB_SERVER_DATA_DIR": str(data_dir),
        "WXB_WECHAT_API_BASE": sandbox_url,
        "WXB_WECHAT_APPID": APPID,
        "WXB_WECHAT_SECRET": SECRET,
        "WXB_WORKER_EMBEDDED": "false",
        # page 1 of the public list is kept ≤1 s per process: read it from the database
        "WXB_PUBLIC_LIST_CACHE_SECONDS": "0",
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

        await asyncio.to_thread(own_postgres.down)
        during = await asyncio.to_thread(_poll, base, token, 10)
        await asyncio.to_thread(own_postgres.up)
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
