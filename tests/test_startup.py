"""`wxbackend` refuses bad surroundings at start: one line on stderr naming the URL or the
value, no traceback, a non-zero exit, nothing announced. And the operator's niceties of the
command line: every flag described, `wechat-config unset`, CLI writes audited with the OS
user, `admin unlock` explaining why it cannot reach the embedded Redis."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support.cli import ROOT, WXBACKEND, clean_env, run_cli
from tests.support.servers import free_port
from wxbackend.cliargs import parser

pytestmark = pytest.mark.slow  # starts OS processes


def refusal(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a refused start printed (log lines are JSON and may come before it)."""
    err = result.stderr.decode()
    assert result.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "listening" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line and not line.startswith("{")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def postgres_env(url: str) -> dict[str, str]:
    return {
        "WXB_DATABASE_URL": url,
        "WXB_SECURITY_MASTER_KEY": key(),
        "WXB_SECURITY_HASH_KEY": key(),
        "WXB_TRANSPARENCY_SIGNING_KEY": key(),
    }


@pytest.fixture
def taken_port():
    """A port something listens on for the test's length."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_server_port_in_use(tmp_path, taken_port):
    result = run_cli(tmp_path, "serve", "--port", str(taken_port))
    line = refusal(result)
    assert f"http://127.0.0.1:{taken_port}/" in line and "in use" in line
    # a refused first start generates no keys (they once stayed behind in data/)
    assert not (tmp_path / "data").exists()


def test_sandbox_port_in_use_is_refused_before_listening(tmp_path, taken_port):
    result = run_cli(
        tmp_path, "serve", "--port", str(free_port()), WXB_SANDBOX_PORT=str(taken_port)
    )
    line = refusal(result)
    assert "sandbox.port" in line and f"http://127.0.0.1:{taken_port}/" in line
    assert not (tmp_path / "data").exists()


def test_two_servers_starting_at_once_on_one_sandbox_port(tmp_path):
    """The sandbox's port is bound before "listening", not only probed: of two servers
    started at the same moment with the same sandbox port, one serves and the other is
    refused in one line (both used to pass the probe; the loser crashed with a traceback
    after announcing itself)."""
    sandbox_port = free_port()
    procs = []
    for n in range(2):
        folder = tmp_path / f"s{n}"
        folder.mkdir()
        procs.append(
            subprocess.Popen(
                [WXBACKEND, "serve", "--port", str(free_port())],
                cwd=folder,
                env=clean_env(WXB_SANDBOX_PORT=str(sandbox_port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    try:
        deadline = time.monotonic() + 20  # the loser exits at once; the winner serves on
        while not (exited := [p for p in procs if p.poll() is not None]):
            assert time.monotonic() < deadline, "both servers started on one sandbox port"
            time.sleep(0.05)
        refused = exited[0]
        result = subprocess.CompletedProcess([], refused.returncode, b"", refused.stderr.read())
        line = refusal(result)
        assert "sandbox.port" in line and f"http://127.0.0.1:{sandbox_port}/" in line
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)
            proc.stderr.close()
    winner = next(proc for proc in procs if proc is not refused)
    assert winner.returncode == 0


def test_sandbox_command_port_in_use(tmp_path, taken_port):
    line = refusal(run_cli(tmp_path, "sandbox", "--port", str(taken_port)))
    assert f"http://127.0.0.1:{taken_port}/" in line and "in use" in line


#: The long-running commands an operator starts (from systemd too): each refuses the same
#: bad surroundings the same way.
SERVICES = [["serve", "--port", "0"], ["worker"], ["live", "--port", "0"]]


def service(command: list[str]) -> list[str]:
    """``command`` with a free port where it takes one."""
    return [str(free_port()) if arg == "0" else arg for arg in command]


@pytest.mark.parametrize("command", SERVICES, ids=lambda c: c[0])
def test_unreachable_redis(tmp_path, command):
    url = f"redis://:hunter2pw@127.0.0.1:{free_port()}/0"
    line = refusal(run_cli(tmp_path, *service(command), WXB_REDIS_URL=url))
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in line
    assert "hunter2pw" not in line
    assert not (tmp_path / "data").exists()  # nothing left behind


@pytest.mark.parametrize("command", SERVICES, ids=lambda c: c[0])
def test_unreachable_postgres_names_the_url_without_its_password(tmp_path, command):
    url = f"postgresql://wx:hunter2pw@127.0.0.1:{free_port()}/wx"
    env = postgres_env(url) | {"WXB_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    if command[0] != "live":  # live needs a real Redis: it is checked after the database
        del env["WXB_REDIS_URL"]
    result = run_cli(tmp_path, *service(command), **env)
    line = refusal(result)
    assert "cannot connect to PostgreSQL at postgresql://wx:***@127.0.0.1:" in line
    assert "hunter2pw" not in result.stderr.decode()


def test_live_port_in_use(tmp_path, taken_port, redis_url):
    result = run_cli(tmp_path, "live", "--port", str(taken_port), WXB_REDIS_URL=redis_url)
    line = refusal(result)
    assert f"http://127.0.0.1:{taken_port}/" in line and "in use" in line
    assert not (tmp_path / "data").exists()


def test_postgres_driver_missing_names_the_extra(tmp_path):
    """The real command's main() with psycopg hidden, as on an install without the extra."""
    url = f"postgresql://wx@127.0.0.1:{free_port()}/wx"
    code = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None; "
        "from wxbackend.cli import main; sys.exit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=clean_env(**postgres_env(url)),
        capture_output=True,
        timeout=60,
    )
    line = refusal(result)
    assert "pip install 'wxbackend[postgres]'" in line and "psycopg" in line
    assert "psycopg2 driver" not in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "70000"], "70000 is not a port"),
        (["--port", "0"], "0 is not a port"),
        (["--processes", "0"], "0 must be 1 or more"),
        (["--processes", "-1"], "-1 must be 1 or more"),
        (["--processes", "two"], "'two' is not a whole number"),
    ],
)
def test_bad_flags_are_refused(tmp_path, args, expected):
    line = refusal(run_cli(tmp_path, "serve", *args), code=2)  # one line, argparse's too
    assert expected in line and "`wxbackend serve --help`" in line
    assert not (tmp_path / "data").exists()  # refused before anything was set up


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WXB_REMINDERS_TIMEZONE": "Mars/Olympus"}, "reminders.timezone: unknown time zone"),
        ({"WXB_SERVER_PORT": "70000"}, "server.port: must be 1–65535"),
        ({"WXB_SERVER_PROCESSES": "0"}, "server.processes: must be positive"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker", "live"])
def test_bad_settings_are_refused(tmp_path, env, expected, command):
    line = refusal(run_cli(tmp_path, command, **env), code=2)
    assert expected in line


def test_every_argument_of_every_command_is_described(tmp_path):
    def walk(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if not any(c.dest == name for c in action._choices_actions):
                        yield p.prog, name
                    yield from walk(sub)
            elif action.dest != "help" and not action.help:
                yield p.prog, action.dest

    assert list(walk(parser())) == []
    result = run_cli(tmp_path, "serve", "--help")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "the port to listen on" in out and "above 1 needs a real Redis" in out


def audit_rows(tmp_path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "data" / "wxbackend.db") as db:
        return db.execute("SELECT username, action FROM audit_entry ORDER BY id").fetchall()


def test_cli_writes_are_audited_with_the_os_user_and_unset_clears_an_override(tmp_path):
    who = f"cli:{getpass.getuser()}"
    catalog = str(ROOT / "conf" / "catalog.example.json")
    assert run_cli(tmp_path, "catalog", "import", catalog).returncode == 0
    create = ["admin", "create", "--username", "root", "--password-stdin", "--role", "superadmin"]
    created = run_cli(tmp_path, *create, stdin="a long enough password 1\n")
    assert created.returncode == 0, created.stderr.decode()
    assert run_cli(tmp_path, "partner", "create", "--name", "窗口系统").returncode == 0
    before = json.loads(run_cli(tmp_path, "wechat-config", "show").stdout)
    wrong = "0123456789abcdef0123456789abcdef"  # a wrong secret breaks every WeChat call
    changed = run_cli(tmp_path, "wechat-config", "set", f"secret={wrong}")
    assert json.loads(changed.stdout)["secret"] != before["secret"]
    unset = run_cli(tmp_path, "wechat-config", "unset", "secret", "templates.reminder")
    assert unset.returncode == 0, unset.stderr.decode()
    shown = json.loads(run_cli(tmp_path, "wechat-config", "show").stdout)
    assert shown["secret"] == before["secret"]  # the settings' value applies again
    assert shown["updated_by"] == who and shown["version"] == 2
    assert audit_rows(tmp_path) == [
        (who, "catalog.import"),
        (who, "admin.create"),
        (who, "partner.create"),
        (who, "wechat_config.update"),
        (who, "wechat_config.unset"),
    ]
    bad = run_cli(tmp_path, "wechat-config", "unset", "nonsense")
    assert bad.returncode == 1 and "nonsense: unknown field" in bad.stderr.decode()


def test_admin_unlock_explains_the_embedded_redis(tmp_path):
    line = refusal(run_cli(tmp_path, "admin", "unlock", "root"))
    assert "'embedded'" in line and "no other process can reach" in line
    assert "admin.lockout_seconds" in line
