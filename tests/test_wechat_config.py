"""The WeChat configuration: validation, masking, versions, and every process applying a
change within a second without a restart."""

import json
import logging
import os
import subprocess
import time

import pytest

from models.audit import AuditEntry
from tests.support.admins import admin_token
from tests.support.cli import WXBACKEND, clean_env, http, run_cli, stop, wait_healthy
from tests.support.servers import free_port

SECRET = "0123456789abcdef0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@pytest.mark.asyncio
async def test_get_masks_and_put_validates(api, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    token = await admin_token(api, ctx)
    status, config = await api("GET", "/admin/api/wechat-config", token=token)
    assert status == 200 and config["version"] == 0
    assert config["secret"].startswith("****") and config["api_base"] == "sandbox"

    change = {
        "secret": SECRET,
        "push_token": "Token123",
        "aes_key": AES_KEY,
        "templates": {"reminder": "T" * 43, "rectified": "R" * 43},
        "env_version": "trial",
    }
    status, config = await api("PUT", "/admin/api/wechat-config", change, token=token)
    assert status == 200, config
    assert config["version"] == 1 and config["updated_by"] == "root"
    assert config["secret"] == "****cdef" and config["push_token"] == "****"
    assert config["aes_key"] == "****" and config["templates"]["reminder"] == "T" * 43
    assert ctx.wechat_config.config().secret == SECRET  # in force in this process

    # secrets never in an answer, log, audit entry or the stored row in clear
    entries = await ctx.db.run(lambda: [e.detail for e in AuditEntry.select()])
    assert any("secret" in d for d in entries)
    everything = json.dumps(config) + " ".join(entries) + caplog.text
    for raw in (SECRET, "Token123", AES_KEY):
        assert raw not in everything
    from models.settings_store import WeChatConfigVersion

    stored = await ctx.db.run(lambda: WeChatConfigVersion.get(version=1).values)
    assert SECRET not in stored and AES_KEY not in stored

    # an omitted secret keeps its value
    status, config = await api(
        "PUT", "/admin/api/wechat-config", {"env_version": "release"}, token=token
    )
    assert config["version"] == 2 and ctx.wechat_config.config().secret == SECRET
    status, history = await api("GET", "/admin/api/wechat-config/history", token=token)
    assert [h["changed_fields"] for h in history["items"]][0] == ["env_version"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change, field",
    [
        ({"appid": "wx123"}, "appid"),
        ({"secret": "not-hex"}, "secret"),
        ({"push_token": "a"}, "push_token"),
        ({"aes_key": "short"}, "aes_key"),
        ({"templates": {"reminder": "bad id!"}}, "templates.reminder"),
        ({"templates": {"other": "x"}}, "templates.other"),
        ({"miniprogram_page": "/pages/x"}, "miniprogram_page"),
        ({"env_version": "beta"}, "env_version"),
        ({"api_base": "https://evil.example/"}, "api_base"),
    ],
)
async def test_bad_values_change_nothing(api, ctx, change, field):
    token = await admin_token(api, ctx)
    status, answer = await api("PUT", "/admin/api/wechat-config", change, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_config"
    assert answer["error"]["field"] == field
    assert (await api("GET", "/admin/api/wechat-config", token=token))[1]["version"] == 0


@pytest.mark.asyncio
async def test_config_test_button(api, ctx, sandbox):
    token = await admin_token(api, ctx)
    status, answer = await api("POST", "/admin/api/wechat-config/test", token=token)
    assert status == 200 and answer == {"ok": True}
    await api("PUT", "/admin/api/wechat-config", {"secret": SECRET}, token=token)
    status, answer = await api("POST", "/admin/api/wechat-config/test", token=token)
    assert answer["ok"] is False and answer["errcode"] == 40125


@pytest.mark.slow
def test_cli_show_and_set(tmp_path):
    shown = run_cli(tmp_path, "wechat-config", "show")
    assert shown.returncode == 0 and json.loads(shown.stdout)["version"] == 0
    done = run_cli(
        tmp_path, "wechat-config", "set", f"secret={SECRET}", "templates.reminder=abc_DEF-1"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["version"] == 1 and answer["templates"]["reminder"] == "abc_DEF-1"
    assert SECRET not in done.stdout.decode()
    bad = run_cli(tmp_path, "wechat-config", "set", "appid=nope")
    assert bad.returncode == 1 and b"appid" in bad.stderr


@pytest.mark.slow
def test_second_process_sees_a_change_within_a_second(tmp_path, redis_flushed):
    """Two servers on one database and one Redis: a PUT on one shows on the other in ≤1 s."""
    sandbox_port = free_port()
    env = clean_env(
        WXB_REDIS_URL=redis_flushed,
        WXB_SANDBOX_PORT=str(sandbox_port),
        WXB_WORKER_EMBEDDED="false",
    )
    made = subprocess.run(
        [
            WXBACKEND,
            "admin",
            "create",
            "--username",
            "root",
            "--password-stdin",
            "--role",
            "superadmin",
        ],
        cwd=tmp_path,
        env=env,
        input=b"correct-horse-battery\n",
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    ports = [free_port(), free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            # the second server uses the first one's sandbox
            extra = {"WXB_WECHAT_API_BASE": f"http://127.0.0.1:{sandbox_port}/"} if i else {}
            procs.append(
                subprocess.Popen(
                    [WXBACKEND, "serve", "--port", str(port)],
                    cwd=tmp_path,
                    env={**env, **extra},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            wait_healthy(f"http://127.0.0.1:{port}", procs[-1])
        a, b = (f"http://127.0.0.1:{p}" for p in ports)
        _, login = http(
            "POST",
            a + "/admin/api/login",
            {"username": "root", "password": "correct-horse-battery"},
        )
        token = login["token"]
        assert (
            http("GET", b + "/admin/api/wechat-config", token=token)[1]["env_version"] == "release"
        )
        status, _ = http(
            "PUT", a + "/admin/api/wechat-config", {"env_version": "develop"}, token=token
        )
        assert status == 200
        changed_at = time.monotonic()
        seen = None
        while time.monotonic() - changed_at < 3:
            if (
                http("GET", b + "/admin/api/wechat-config", token=token)[1]["env_version"]
                == "develop"
            ):
                seen = time.monotonic() - changed_at
                break
            time.sleep(0.02)
        assert seen is not None and seen <= 1.0, seen
    finally:
        for proc in procs:
            stop(proc)
    assert os.path.exists(tmp_path / "data" / "wxbackend.db")
