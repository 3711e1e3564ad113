"""The README's "Backup and restore", done as an operator would: a running ``wxbackend serve``
with ratings is backed up with the README's own commands (SQLite's online backup, the keys
copied with it; ``pg_dump`` on PostgreSQL), restored into a fresh data folder (an empty
database) as the README says, and a server started there serves the old ratings with the
old keys: the transparency key is the same, a partner's secret (encrypted with the master
key) still signs, and a citizen verifying again (the hash key) finds their unrated case."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import WXBACKEND, clean_env, http, run_cli, stop, wait_healthy
from tests.support.fault_data import on_database, seed_cases, settings_of
from tests.support.servers import free_port
from wxbackend.clients.partner import case_payload, sign

README = Path(__file__).resolve().parents[1] / "README.md"
KEY_FILES = ("master.key", "hash.key", "transparency.key")
pytestmark = pytest.mark.slow  # starts servers and the backup tools


class Served:
    """``wxbackend serve`` in ``folder`` (its data in ``folder/data``, as the README's
    layout) on the sandbox as WeChat; ``env`` adds settings."""

    def __init__(self, folder: Path, **env: str):
        self.folder, self.port, sandbox = folder, free_port(), free_port()
        self.base, self.sandbox = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{sandbox}"
        self.env = clean_env(
            WXB_SANDBOX_PORT=str(sandbox),
            WXB_SERVER_DATA_DIR=str(folder / "data"),  # the same folder, named absolutely
            **env,
        )
        self.env.setdefault("WXB_DATABASE_URL", f"sqlite:///{folder / 'data/wxbackend.db'}")
        self.proc = subprocess.Popen(
            [WXBACKEND, "serve", "--port", str(self.port)],
            cwd=folder,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_healthy(self.base, self.proc, seconds=60)

    def stop(self) -> None:
        code, err = stop(self.proc)
        assert code == 0, err[-2000:]

    def login(self) -> tuple[str, str]:
        """A fresh WeChat user logged in: (openid, session token)."""
        code = http("POST", self.sandbox + "/_sandbox/login-code", {})[1]
        status, answer = http("POST", self.base + "/api/v1/auth/login", {"code": code["code"]})
        assert status == 200, answer
        return code["openid"], answer["token"]

    def get(self, path: str, token: str | None = None):
        status, answer = http("GET", self.base + path, token=token)
        assert status == 200, (path, answer)
        return answer

    def report_case(self, key_id: str, secret: str) -> int:
        """A signed ``POST /api/v1/partner/cases``: its status."""
        body = json.dumps(case_payload()).encode()
        ts, nonce = str(int(time.time())), secrets.token_urlsafe(16)
        signature = sign(secret, "POST", "/api/v1/partner/cases", ts, nonce, body)
        headers = {"X-Partner-Key": key_id, "X-Timestamp": ts, "X-Nonce": nonce}
        headers |= {"X-Signature": signature, "Content-Type": "application/json"}
        url = self.base + "/api/v1/partner/cases"
        request = urllib.request.Request(url, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code


def rated_server(served: Served) -> dict:
    """A citizen with three cases rates two of them (one a 差评), a partner key is made:
    what the restored server must still know."""
    openid, token = served.login()
    settings = settings_of(served.env)
    ((_, scenes),) = on_database(settings, lambda: seed_cases(settings, [(openid, token)], 3))
    ids = []
    for scene, overall in zip(scenes[:2], (5, 2), strict=True):
        assert http("POST", served.base + "/api/v1/scan", {"scene": scene}, token)[0] == 200
        body = {"scene": scene, "overall": overall}
        if overall == 2:
            body["indicators"] = ["long_queue"]
        status, rating = http("POST", served.base + "/api/v1/evaluations", body, token)
        assert status == 201, rating
        ids.append(rating["evaluation"]["id"])
    wxb = {k: v for k, v in served.env.items() if k.startswith("WXB_")}
    partner = run_cli(served.folder, "partner", "create", "--name", "窗口系统", "--json", **wxb)
    assert partner.returncode == 0, partner.stderr.decode()
    return {
        "ids": ids,
        "partner": json.loads(partner.stdout),
        "vkey": served.get("/api/v1/public/log/key")["vkey"],
        "token": token,
    }


def listed(served: Served) -> list[str]:
    return [item["id"] for item in served.get("/api/v1/public/evaluations")["items"]]


def assert_restored(served: Served, before: dict) -> None:
    """The restored server knows the ratings, the sessions and every key."""
    assert sorted(listed(served)) == sorted(before["ids"])
    assert served.get("/api/v1/me", before["token"])["identity"]["verified"]  # in the database
    assert served.get("/api/v1/public/log/key")["vkey"] == before["vkey"]
    partner = before["partner"]
    assert served.report_case(partner["key_id"], partner["secret"]) == 201  # the master key
    _, token = served.login()  # a new WeChat user proves the same person by face: the same
    started = http(  # hash of the ID number finds their one unrated case (the hash key)
        "POST",
        served.base + "/api/v1/identity/face/start",
        {"name": "黎明", "id_number": seeded_id_number()},
        token,
    )[1]
    finish = {"verify_id": started["verify_id"], "verify_ret": 10000}
    assert http("POST", served.sandbox + "/_sandbox/face/finish", finish)[0] == 200
    body = {"verify_id": started["verify_id"]}
    assert http("POST", served.base + "/api/v1/identity/face/finish", body, token)[0] == 200
    assert len(served.get("/api/v1/me", token)["pending_cases"]) == 1


def seeded_id_number() -> str:
    from tests.support.cases import make_id_number

    return make_id_number(500)  # seed_cases' first citizen


def readme_commands(starts: str) -> list[str]:
    """The command lines of the README's "Backup and restore" code blocks starting with
    ``starts``."""
    text = README.read_text()
    section = text[text.index("## Backup and restore") :]
    section = section[: section.index("\n## ", 1)]
    lines = [block.split("\n", 1)[1] for block in section.split("```")[1::2]]
    return [ln for block in lines for ln in block.splitlines() if ln.startswith(starts)]


def run_readme(command: str, folder: Path, **env: str) -> None:
    """One README command line, as an operator's shell runs it, in ``folder``."""
    environment = clean_env(**env)
    subprocess.run(["bash", "-ec", command], cwd=folder, env=environment, check=True, timeout=120)


#: The README's example file names in its restore commands.
SQLITE_BACKUP, PG_DUMP = "backup-2026-12-01.db", "wxbackend-2026-12-01.dump"


def test_sqlite_backup_and_restore_as_the_readme_says(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    served = Served(old)
    try:
        before = rated_server(served)
        # the README's online backups, while the server runs (sqlite3's where installed)
        commands = readme_commands("python3 -c 'import sqlite3")
        if shutil.which("sqlite3"):
            commands += readme_commands("sqlite3 data/wxbackend.db")
        assert len(commands) == (2 if shutil.which("sqlite3") else 1), "the README's commands"
        for command in commands:
            run_readme(command, old)
    finally:
        served.stop()
    backups = sorted((old / "data").glob("backup*.db"))
    restore = readme_commands("rm -f data/") + readme_commands(f"cp {SQLITE_BACKUP} data/")
    assert len(backups) == len(commands) and len(restore) == 2, "the README's restore"
    for n, backup in enumerate(backups):
        new = tmp_path / f"restored{n}"  # a fresh machine: the backup and the keys
        (new / "data").mkdir(parents=True)
        shutil.copy(backup, new / SQLITE_BACKUP)
        for name in KEY_FILES:
            shutil.copy2(old / "data" / name, new / "data" / name)
        for command in restore:
            run_readme(command, new)
        restored = Served(new)
        try:
            assert_restored(restored, before)
        finally:
            restored.stop()


def refused(result: subprocess.CompletedProcess) -> str:
    """The one line of a start refused as a configuration error (exit 2, no traceback)."""
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line and not line.startswith("{")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def test_a_restore_without_its_keys_is_refused_at_start(tmp_path):
    """Why the README says to keep the keys, and what happens without them: the start is
    refused in one line naming what is missing or wrong (it used to generate new keys, then
    answer 500 to a partner and sign the log with a key nobody knows)."""
    old = tmp_path / "old"
    old.mkdir()
    served = Served(old)
    try:
        before = rated_server(served)
    finally:
        served.stop()
    new = tmp_path / "new"
    (new / "data").mkdir(parents=True)
    shutil.copy(old / "data/wxbackend.db", new / "data/wxbackend.db")  # stopped: a copy is fine
    port = str(free_port())
    for command in (["serve", "--port", port], ["partner", "create", "--name", "x"], ["worker"]):
        line = refused(run_cli(new, *command, WXB_SANDBOX_PORT=str(free_port())))
        assert "its key files are missing" in line and "master.key" in line, line
    assert sorted(p.name for p in (new / "data").iterdir()) == ["wxbackend.db"]  # none made

    other = tmp_path / "other"  # another installation's keys: the wrong ones
    other.mkdir()
    for name in KEY_FILES:
        (other / name).write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        (other / name).chmod(0o600)
        shutil.copy2(other / name, new / "data" / name)
    line = refused(run_cli(new, "serve", "--port", port, WXB_SANDBOX_PORT=str(free_port())))
    assert "security.master_key" in line and "does not open the data" in line, line
    shutil.copy2(old / "data/master.key", new / "data/master.key")
    shutil.copy2(old / "data/hash.key", new / "data/hash.key")
    line = refused(run_cli(new, "serve", "--port", port, WXB_SANDBOX_PORT=str(free_port())))
    assert "transparency.signing_key" in line and "did not sign the checkpoints" in line, line

    # a master key rotated since the backup: the old one listed as retired opens the data
    shutil.copy2(old / "data/transparency.key", new / "data/transparency.key")
    retired = (old / "data/master.key").read_text().strip()
    shutil.copy2(other / "master.key", new / "data/master.key")
    restored = Served(new, WXB_SECURITY_OLD_MASTER_KEYS=json.dumps([retired]))
    try:
        assert_restored(restored, before)
    finally:
        restored.stop()


@pytest.mark.postgres
def test_postgres_pg_dump_and_restore_as_the_readme_says(tmp_path, postgres_url):
    names = [f"wxb_backup_{secrets.token_hex(4)}", f"wxb_restore_{secrets.token_hex(4)}"]
    urls = [urllib.parse.urlsplit(postgres_url)._replace(path=f"/{n}").geturl() for n in names]
    psql = ["psql", "-q", "-v", "ON_ERROR_STOP=1", postgres_url, "-c"]
    for name in names:
        subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, timeout=60)
    keys = {  # with PostgreSQL the keys come from the environment (/etc/wxbackend/env)
        name: base64.b64encode(os.urandom(32)).decode()
        for name in (
            "WXB_SECURITY_MASTER_KEY",
            "WXB_SECURITY_HASH_KEY",
            "WXB_TRANSPARENCY_SIGNING_KEY",
        )
    }
    (dump,) = readme_commands("pg_dump ")
    (restore,) = readme_commands("pg_restore ")
    try:
        old, new = tmp_path / "old", tmp_path / "new"
        old.mkdir(), new.mkdir()
        served = Served(old, WXB_DATABASE_URL=urls[0], **keys)
        try:
            before = rated_server(served)
            run_readme(dump, old, WXB_DATABASE_URL=urls[0])  # while it runs
        finally:
            served.stop()
        (dumped,) = old.glob("wxbackend-*.dump")
        shutil.copy(dumped, new / PG_DUMP)
        run_readme(restore, new, WXB_DATABASE_URL=urls[1])  # into an empty database
        wrong = keys | {"WXB_SECURITY_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
        ports = {"WXB_SERVER_PORT": str(free_port()), "WXB_SANDBOX_PORT": str(free_port())}
        line = refused(run_cli(new, "serve", WXB_DATABASE_URL=urls[1], **wrong, **ports))
        assert "security.master_key" in line and "wxb:***@" not in line, line
        restored = Served(new, WXB_DATABASE_URL=urls[1], **keys)
        try:
            assert_restored(restored, before)
        finally:
            restored.stop()
    finally:
        for name in names:
            subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], timeout=60)
