"""Servers the tests start themselves: a free port, a throwaway redis-server."""

from __future__ import annotations

import socket
import subprocess
import time

import redis


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis_server(
    port: int, exe: str = "redis-server", directory: str | None = None
) -> subprocess.Popen:
    """A throwaway redis-server on 127.0.0.1:``port`` (no persistence), once it answers PING;
    ``directory``: where it would write if persistence were switched on."""
    where = ["--dir", directory] if directory else []
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + where,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(250):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    return proc
