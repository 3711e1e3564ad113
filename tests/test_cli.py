"""The `wxbackend` command as an operator runs it: serve, migrate, admin, partner, catalog."""

import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import ROOT, WXBACKEND, clean_env, http, run_cli, stop, wait_healthy
from tests.support.servers import free_port

pytestmark = pytest.mark.slow  # starts OS processes


def start_serve(tmp_path, port: int, *args: str, **env: str) -> subprocess.Popen:
    """``wxbackend serve --port PORT *args`` in ``tmp_path`` with ``env`` on a clean one."""
    return subprocess.Popen(
        [WXBACKEND, "serve", "--port", str(port), *args],
        cwd=tmp_path,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def login_and_me(base: str, sandbox: str) -> dict:
    status, code = http("POST", sandbox + "/_sandbox/login-code", {})
    assert status == 200, code
    status, answer = http("POST", base + "/api/v1/auth/login", {"code": code["code"]})
    assert status == 200, answer
    status, me = http("GET", base + "/api/v1/me", token=answer["token"])
    assert status == 200, me
    return me


def test_serve_with_no_configuration(tmp_path):
    """The README's first command: embedded defaults, sandbox, a login that /me accepts."""
    port, sandbox_port = free_port(), free_port()
    proc = start_serve(tmp_path, port, WXB_SANDBOX_PORT=str(sandbox_port))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        me = login_and_me(base, f"http://127.0.0.1:{sandbox_port}")
        assert me["identity"]["verified"] is False
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    assert "sandbox" in err and "embedded" in err
    assert (tmp_path / "data" / "wxbackend.db").exists()
    assert oct((tmp_path / "data" / "master.key").stat().st_mode & 0o777) == "0o600"


def test_processes_refuse_embedded_redis(tmp_path):
    result = subprocess.run(
        [WXBACKEND, "serve", "--port", str(free_port()), "--processes", "2"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "redis.url" in result.stderr.decode()


def test_two_processes_with_real_redis(tmp_path, redis_flushed):
    port, sandbox_port = free_port(), free_port()
    proc = start_serve(
        tmp_path,
        port,
        "--processes",
        "2",
        WXB_SANDBOX_PORT=str(sandbox_port),
        WXB_REDIS_URL=redis_flushed,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        for _ in range(6):
            login_and_me(base, f"http://127.0.0.1:{sandbox_port}")
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 3  # two server processes and the sandbox
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_admin_unlock_lifts_a_lock_at_once_with_a_real_redis(tmp_path, redis_flushed):
    """The README: with a real Redis ``admin unlock`` lifts a login lockout at once."""
    port, sandbox_port = free_port(), free_port()
    redis_env = {"WXB_REDIS_URL": redis_flushed}
    proc = start_serve(tmp_path, port, WXB_SANDBOX_PORT=str(sandbox_port), **redis_env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        create = ["admin", "create", "--username", "root", "--password-stdin", "--role"]
        password = "a long enough password 1"
        made = run_cli(tmp_path, *create, "superadmin", stdin=password + "\n", **redis_env)
        assert made.returncode == 0, made.stderr.decode()
        right = {"username": "root", "password": password}
        for _ in range(5):
            http("POST", base + "/admin/api/login", {**right, "password": "wrong " * 4})
        assert http("POST", base + "/admin/api/login", right)[0] == 429  # locked out
        unlocked = run_cli(tmp_path, "admin", "unlock", "root", **redis_env)
        assert unlocked.returncode == 0, unlocked.stderr.decode()
        assert "unlocked root (1 locked address(es))" in unlocked.stdout.decode()
        assert http("POST", base + "/admin/api/login", right)[0] == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]


def _healthz_count(base: str) -> int:
    req = urllib.request.Request(base + "/metrics")
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    line = 'wxb_http_requests_total{method="GET",route="/healthz",status="200"}'
    return sum(int(float(row.split()[-1])) for row in text.splitlines() if row.startswith(line))


def test_metrics_of_every_process(tmp_path, redis_flushed):
    """With two server processes any scrape of /metrics counts the requests of both: requests
    on many connections until both processes have taken some (each leaves its files in the
    metrics folder), then every scrape shows exactly that many more."""
    port, sandbox_port = free_port(), free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    proc = start_serve(
        tmp_path,
        port,
        "--processes",
        "2",
        WXB_SANDBOX_PORT=str(sandbox_port),
        WXB_REDIS_URL=redis_flushed,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        deadline = time.monotonic() + 5  # wait_healthy's 200 is counted just after it went out
        while (before := _healthz_count(base)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        sent, pids = 0, set()
        with ThreadPoolExecutor(32) as pool:
            while len(pids) < 2 and sent < 2000:  # until both processes have answered some
                statuses = list(pool.map(lambda _: http("GET", base + "/healthz")[0], range(200)))
                assert statuses == [200] * 200
                sent += 200
                pids = {f.stem.rsplit("_", 1)[-1] for f in metrics_dir.glob("counter_*.db")}
        assert len(pids) == 2, pids
        deadline = time.monotonic() + 5  # a request is counted just after its answer went out
        while _healthz_count(base) - before != sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [_healthz_count(base) - before for _ in range(6)] == [sent] * 6
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]


def test_sigterm_with_an_open_live_stream_stops_at_once(tmp_path, redis_flushed):
    """A live (SSE) stream never ends by itself: stopping the server with one open ends it
    and exits well within the drain period (about 0.8 s here, 1.9 s when the stream was only
    cut with its connection)."""
    port, sandbox_port = free_port(), free_port()
    proc = start_serve(
        tmp_path, port, WXB_SANDBOX_PORT=str(sandbox_port), WXB_REDIS_URL=redis_flushed
    )
    stream = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        stream = urllib.request.urlopen(base + "/api/v1/public/live", timeout=10)
        assert stream.status == 200
        started = time.monotonic()
        code, err = stop(proc)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        if stream is not None:
            stream.close()
    assert code == 0, err[-2000:]
    assert elapsed < 3.0, elapsed  # the drain period is 5 s


def test_migrate_admin_partner_catalog(tmp_path):
    first = run_cli(tmp_path, "migrate")
    assert first.returncode == 0 and b"applied migrations" in first.stdout
    assert b"up to date" in run_cli(tmp_path, "migrate").stdout

    catalog = str(ROOT / "conf" / "catalog.example.json")
    imported = run_cli(tmp_path, "catalog", "import", catalog)
    assert imported.returncode == 0, imported.stderr
    again = run_cli(tmp_path, "catalog", "import", catalog)
    assert b"created 0" in again.stdout or b"unchanged" in again.stdout

    bad = tmp_path / "bad.json"
    bad.write_text('{"items": [{"code": "X1", "name": "n", "department": "NOPE"}]}')
    failed = run_cli(tmp_path, "catalog", "import", str(bad))
    assert failed.returncode == 1 and b"NOPE" in failed.stderr

    made = run_cli(
        tmp_path,
        "admin",
        "create",
        "--username",
        "root",
        "--password-stdin",
        "--role",
        "superadmin",
        stdin="a-long-password\n",
    )
    assert made.returncode == 0, made.stderr
    handler = run_cli(
        tmp_path,
        "admin",
        "create",
        "--username",
        "clerk",
        "--password-stdin",
        "--role",
        "handler",
        "--center",
        "440103-HL",
        "--department",
        "HL-LABOR",
        stdin="a-long-password\n",
    )
    assert handler.returncode == 0, handler.stderr
    weak = run_cli(
        tmp_path,
        "admin",
        "create",
        "--username",
        "weak",
        "--password-stdin",
        "--role",
        "viewer",
        stdin="short\n",
    )
    assert weak.returncode == 1 and b"password" in weak.stderr

    partner = run_cli(tmp_path, "partner", "create", "--name", "Window system", "--json")
    assert partner.returncode == 0, partner.stderr
    key = json.loads(partner.stdout)
    assert key["key_id"].startswith("pk_") and len(key["secret"]) >= 40

    db = sqlite3.connect(tmp_path / "data" / "wxbackend.db")
    try:
        (password_hash,) = db.execute("select password_hash from admin").fetchone()
        (secret_enc,) = db.execute("select secret_enc from partner").fetchone()
    finally:
        db.close()
    assert password_hash.startswith("scrypt$") and "a-long-password" not in password_hash
    assert key["secret"] not in secret_enc


def test_bad_configuration_names_the_key(tmp_path):
    result = run_cli(tmp_path, "migrate", WXB_QR_TTL_DAYS="many")
    assert result.returncode == 2 and b"WXB_QR_TTL_DAYS" in result.stderr


@pytest.mark.postgres
def test_postgres_needs_keys(tmp_path, postgres_url):
    result = run_cli(tmp_path, "partner", "create", "--name", "x", WXB_DATABASE_URL=postgres_url)
    assert result.returncode == 1
    assert b"security.master_key" in result.stderr
