"""The ``wxbackend`` command as a subprocess: its path, a clean environment, HTTP with the
standard library, waiting for ``/healthz``, stopping with SIGTERM, one-shot commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The repository.
ROOT = Path(__file__).resolve().parents[2]
#: The console script of this venv.
WXBACKEND = str(Path(sys.executable).parent / "wxbackend")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``WXB_`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    env["WXB_WECHAT_ALLOW_SANDBOX"] = "true"  # servers here use a real Redis beside the sandbox
    env.update(extra)
    return env


def http(method: str, url: str, body: dict | None = None, token: str | None = None):
    """(status, decoded JSON) of one request (urllib: usable from any thread)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 20) -> None:
    """Until ``url/healthz`` answers 200; fails if ``proc`` exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()[1].decode()[-2000:]}")
        try:
            if http("GET", url + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM (SIGKILL after 15 s); (return code, stderr)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode()


def run_cli(tmp_path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """``wxbackend *args`` in ``tmp_path`` on a clean environment plus ``env``."""
    return subprocess.run(
        [WXBACKEND, *args],
        cwd=tmp_path,
        env=clean_env(**env),
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
    )
