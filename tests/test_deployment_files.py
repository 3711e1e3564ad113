"""The deployment examples (issue 15 item 8) fit the code: conf/production.example.toml loads
with the settings loader given the environment conf/systemd/wxbackend.env.example names, and
the systemd units start commands and flags the ``wxbackend`` command has."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import WXBACKEND
from wxbackend import cliargs
from wxbackend.security import StartupError, load_keys
from wxbackend.settings import load_settings, local_wechat_problem

CONF = Path(__file__).resolve().parents[1] / "conf"
PRODUCTION = CONF / "production.example.toml"
ENV_EXAMPLE = CONF / "systemd" / "wxbackend.env.example"
README = CONF.parent / "README.md"
UNITS = {
    "serve": CONF / "systemd/wxbackend.service",
    "worker": CONF / "systemd/wxbackend-worker.service",
    "live": CONF / "systemd/wxbackend-live.service",
}


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


#: What an operator writes over each CHANGE-ME of the environment example.
FILLED = {
    "WXB_SECURITY_MASTER_KEY": _key,
    "WXB_SECURITY_HASH_KEY": _key,
    "WXB_TRANSPARENCY_SIGNING_KEY": _key,
    "WXB_WECHAT_SECRET": lambda: "0123456789abcdef0123456789abcdef",
    "WXB_WECHAT_PUSH_TOKEN": lambda: "PushToken2026",
    "WXB_WECHAT_AES_KEY": lambda: "a" * 43,
    "WXB_DATABASE_URL": lambda: "s3cret",  # the password inside the URL
}


def _example_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value.replace("CHANGE-ME", FILLED[name]())
    return env


def _unit(path: Path) -> dict[str, str]:
    """``Section.Key`` → value of a unit file (every key here appears once)."""
    values: dict[str, str] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert f"{section}.{key}" not in values, f"{path.name}: {key} twice"
            values[f"{section}.{key}"] = value
    return values


def test_production_example_loads_with_its_environment():
    env = _example_env()
    settings = load_settings(PRODUCTION, env=env)
    assert not settings.is_sqlite and settings.database.url == env["WXB_DATABASE_URL"]
    assert settings.redis.url.startswith("redis://")
    assert settings.wechat.api_base == "https://api.weixin.qq.com/"
    assert local_wechat_problem(settings) is None
    assert settings.worker.embedded is False
    assert settings.server.trusted_proxies and settings.server.public_url.startswith("https://")
    assert "0.0.0.0/0" not in settings.metrics.allow
    assert settings.wechat.secret == env["WXB_WECHAT_SECRET"]
    load_keys(settings)  # PostgreSQL: every key configured, none generated
    assert settings.transparency.signing_key == env["WXB_TRANSPARENCY_SIGNING_KEY"]


def test_production_example_needs_the_keys_from_the_environment():
    env = {k: v for k, v in _example_env().items() if k != "WXB_SECURITY_MASTER_KEY"}
    with pytest.raises(StartupError, match="WXB_SECURITY_MASTER_KEY"):
        load_keys(load_settings(PRODUCTION, env=env))


@pytest.mark.parametrize("command", sorted(UNITS))
def test_systemd_unit_runs_an_existing_command(command: str):
    unit = _unit(UNITS[command])
    argv = shlex.split(unit["Service.ExecStart"])
    assert Path(argv[0]).name == "wxbackend"
    args = cliargs.parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag
    assert args.command == command
    assert args.config == "/etc/wxbackend/production.toml"
    service = {k.split(".", 1)[1]: v for k, v in unit.items() if k.startswith("Service.")}
    assert service["User"] and service["User"] != "root"
    assert service["WorkingDirectory"] == "/var/lib/wxbackend"
    assert service["EnvironmentFile"] == "/etc/wxbackend/env"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad setting: retrying cannot help
    assert service["KillSignal"] == "SIGTERM"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes" and service["CapabilityBoundingSet"] == ""
    stop = float(service["TimeoutStopSec"])
    defaults = load_settings(env={})
    # serve drains for server.drain_seconds; the worker lets a WeChat call end (2 × timeout + 2 s)
    assert stop > defaults.server.drain_seconds and stop > 2 * defaults.wechat.timeout_seconds + 2
    assert unit["Install.WantedBy"] == "multi-user.target"


def test_systemd_units_verify(tmp_path: Path):
    """systemd's own check (where systemd is installed): no unknown key, no bad value."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # the checks above still ran; this adds systemd's parser
        return
    copies = []
    for path in UNITS.values():
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace("/opt/wxbackend/.venv/bin/wxbackend", WXBACKEND))
        copies.append(str(copy))
    done = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_readme_sqlite_backup_keeps_writes_still_in_the_wal(tmp_path: Path):
    """The README's online backup (Python's sqlite3) while a writer holds the database open
    with its last writes only in the write-ahead log."""
    (tmp_path / "data").mkdir()
    writer = sqlite3.connect(tmp_path / "data/wxbackend.db")
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # nothing reaches wxbackend.db itself
    writer.execute("CREATE TABLE evaluation (id INTEGER PRIMARY KEY, overall INTEGER)")
    writer.executemany("INSERT INTO evaluation (overall) VALUES (?)", [(5,)] * 100)
    writer.commit()
    lines = [
        ln for ln in README.read_text().splitlines() if ln.startswith("python3 -c 'import sqlite3")
    ]
    assert len(lines) == 1, "the README's backup command"
    argv = shlex.split(lines[0])
    subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, check=True, timeout=60)
    writer.close()
    with sqlite3.connect(tmp_path / "data/backup.db") as backup:
        assert backup.execute("SELECT count(*) FROM evaluation").fetchone() == (100,)
