"""``wxbackend live`` as an OS process beside a test's server (same Redis, key prefix,
database and keys), for tests/test_live_process.py and tests/test_nginx.py."""

from __future__ import annotations

import subprocess

from tests.support.cli import WXBACKEND, clean_env
from wxbackend.settings import Settings


def start_live(settings: Settings, port: int, *args: str, **env: str) -> subprocess.Popen:
    """``wxbackend live --port PORT *args`` on ``settings``' Redis, database and keys, plus
    the ``WXB_*`` variables ``env``; its standard error is piped (``cli.stop`` returns it)."""
    return subprocess.Popen(
        [WXBACKEND, "live", "--port", str(port), *args],
        env=clean_env(
            WXB_REDIS_URL=settings.redis.url,
            WXB_REDIS_KEY_PREFIX=settings.redis.key_prefix,
            WXB_DATABASE_URL=settings.database.url,
            WXB_SERVER_DATA_DIR=settings.server.data_dir,
            **env,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
