"""A regular install works: the wheel that ``pip install .`` builds carries the defaults, the
example catalogue, the pages and the password list, and ``wxbackend serve`` starts from an
empty folder on the embedded defaults (it used to look for ``conf/default.toml`` outside the
package and fail with FileNotFoundError)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.cli import http, stop, wait_healthy
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds a wheel and a virtual environment


def test_the_wheel_installs_and_serves_from_an_empty_folder(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(  # -v: pip shows what setuptools prints while building
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    log = build.stdout + build.stderr
    # the package data is declared (pyproject.toml): no setuptools warnings about
    # wxbackend.web.static (80 lines of them once came before the first useful line)
    for noise in ("Package would be ignored", "as data is deprecated", "wxbackend.web.static"):
        assert noise not in log, log[log.find(noise) - 500 :][:2000]
    (wheel,) = wheels.glob("wxbackend-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "wxbackend/conf/default.toml",
        "wxbackend/conf/catalog.example.json",
        "wxbackend/data/common-passwords.txt",
        "wxbackend/web/templates/public.html",
    ):
        assert shipped in names, shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        timeout=900,
        capture_output=True,
    )
    assert install.returncode == 0, install.stderr.decode()[-2000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXB_")}
    env["WXB_SANDBOX_PORT"] = str(sandbox_port)
    proc = subprocess.Popen(
        [str(venv / "bin" / "wxbackend"), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, seconds=60)
        status, levels = http("GET", base + "/api/v1/public/levels")
        assert status == 200 and levels["bad_max"] == 2
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    assert (empty / "data" / "wxbackend.db").exists()  # the data folder is the working one
