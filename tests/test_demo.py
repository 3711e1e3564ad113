"""``wxbackend demo`` as a newcomer runs it: twice in a fresh folder, on the embedded defaults.

Each run must exit 0 having done every step (none skipped), print the key values, never an
ID number, and leave the data behind: the second run reports new cases while reusing the
catalogue, the partner key and the demo admin.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import http
from tests.support.servers import free_port

pytestmark = pytest.mark.slow  # starts OS processes

WXBACKEND = str(Path(sys.executable).parent / "wxbackend")
ID_NUMBER = re.compile(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")

#: Lines (fragments) every successful run prints, in this order.
STEP_LINES = [
    "[1] ",
    "catalogue imported",
    "[2] ",
    "templates configured: reminder=wxb-demo-reminder, rectified=wxb-demo-rectified",
    "[2.1] ",
    "wecom_webhook_key ****",
    "[2.2] ",
    "screen paired (POST /api/v1/device/pair)",
    "[3] ",
    "case reported (signed POST /api/v1/partner/cases)",
    "(born in 1950)",  # an applicant older than her district's code rates all the same
    "QR code image saved:",
    "[3.1] ",
    "screen got the case (GET /api/v1/device/stream)",
    "GET /api/v1/device/qrcode.png → PNG",
    "(without the token: 401)",
    "[4.1] ",
    "[4.2] ",
    "quota {'wxb-demo-reminder': 2, 'wxb-demo-rectified': 1}",
    "[4.3] ",
    "→ shown as 林**",
    "[4.4] ",
    "pending case: case_id",
    "[4.5] ",
    "POST /api/v1/scan → the case: 失业登记",
    "[4.6] ",
    "reminder in GET /_sandbox/messages: template wxb-demo-reminder",
    "page pages/evaluate/index?case_id=",
    "[4.7] ",
    "POST /api/v1/evaluations → 201",
    "[4.8] ",
    "like_count 1",
    "likers ['周**']",
    "[4.9] ",
    "alert in GET /_sandbox/wecom/messages",
    "办理事项：失业登记",
    '评价等级：<font color="warning">不满意</font>',
    "[5] ",
    "POST …/verify: → verified",
    "POST …/rectify: → rectified",
    "POST …/callback: → called_back",
    "POST …/close: → closed",
    "verify_due 20",
    "public ticket status: closed",
    "rectified notice in GET /_sandbox/messages",
    "[6] ",
    "/public/",
    "/admin/  user demo  password",
    "demo finished",
]


def run_demo(cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    env["WXB_SANDBOX_PORT"] = str(free_port())
    proc = subprocess.run(
        [WXBACKEND, "demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    position = 0
    for fragment in STEP_LINES:
        found = out.find(fragment, position)
        assert found >= 0, f"missing (in order): {fragment!r}\n{out}"
        position = found
    assert "skipped" not in out, out
    assert not ID_NUMBER.search(out + proc.stderr), "an ID number was printed"
    return out


def count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]


def test_demo_twice_leaves_browsable_data(tmp_path):
    first = run_demo(tmp_path)
    assert "partner key: pk_" in first and "(new;" in first
    password = re.search(r"demo / password (\S+)", first)
    assert password, first
    password_file = tmp_path / "data" / "demo" / "demo-admin-password.txt"
    assert password_file.read_text().strip() == password.group(1)
    assert password_file.stat().st_mode & 0o077 == 0
    assert (tmp_path / "data" / "demo" / "demo-qr.png").read_bytes().startswith(b"\x89PNG")

    second = run_demo(tmp_path)
    assert "(reused;" in second and "demo (reused; password in" in second
    assert password.group(1) not in second  # printed once

    # the demo keeps apart from `serve`: its own database and keys in data/demo/
    assert not (tmp_path / "data" / "wxbackend.db").exists()
    assert not (tmp_path / "data" / "master.key").exists()
    assert (tmp_path / "data" / "demo" / "master.key").exists()
    db = tmp_path / "data" / "demo" / "wxbackend.db"
    assert count(db, "case") == 4  # two per run: the rated one and the reminded one
    assert count(db, "evaluation") == 2
    assert count(db, "ticket") == 2
    assert count(db, "partner") == 1
    assert count(db, "admin") == 1
    with sqlite3.connect(db) as conn:
        statuses = {row[0] for row in conn.execute("SELECT status FROM ticket")}
    assert statuses == {"closed"}


def test_demo_keep_running_logs_each_request_like_serve(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    env["WXB_SANDBOX_PORT"] = str(free_port())
    port = free_port()
    proc = subprocess.Popen(
        [WXBACKEND, "demo", "--keep-running", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # the walkthrough, then the server keeps serving
            if "serving until Ctrl-C" in line:
                break
        else:
            raise AssertionError(proc.stderr.read()[-3000:])
        status, _ = http("GET", f"http://127.0.0.1:{port}/api/v1/public/levels")
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(
        entry.get("msg") == "request"
        and entry.get("route") == "/api/v1/public/levels"
        and entry.get("status") == 200
        for entry in logged
    ), err[-3000:]
