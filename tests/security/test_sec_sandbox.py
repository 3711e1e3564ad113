"""Issue 12 item 19: a local process could get verified identities from the sandbox.

Reproduction: ``wechat.api_base = "sandbox"`` (or any ``http://`` base) was accepted beside
PostgreSQL and a real Redis, and the sandbox mints logins and face passes for anyone who can
reach it. Now ``serve`` and ``worker`` refuse such a base, in one line naming it, unless the
server runs on the embedded defaults or ``wechat.allow_sandbox = true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WXBACKEND = str(Path(sys.executable).parent / "wxbackend")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    return subprocess.run(
        [WXBACKEND, *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
@pytest.mark.parametrize("base", ["sandbox", "http://127.0.0.1:8900/"])
def test_sandbox_beside_a_real_redis_is_refused(tmp_path, redis_flushed, command, base):
    result = run(tmp_path, *command, WXB_REDIS_URL=redis_flushed, WXB_WECHAT_API_BASE=base)
    assert result.returncode == 1, result.stderr[-500:]
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr.decode()
    assert base in lines[0] and "allow_sandbox" in lines[0]


def test_a_plain_http_robot_base_beside_a_real_redis_is_refused(tmp_path, redis_flushed):
    """The WeCom robots' base too: plain http would carry each center's robot key in clear."""
    result = run(
        tmp_path,
        "serve",
        "--port",
        "1",
        WXB_REDIS_URL=redis_flushed,
        WXB_WECHAT_API_BASE="https://api.weixin.qq.com/",
        WXB_WECOM_API_BASE="http://qyapi.example.org/",
    )
    assert result.returncode == 1, result.stderr[-500:]
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr.decode()
    assert "wecom.api_base" in lines[0] and "http://qyapi.example.org/" in lines[0]
