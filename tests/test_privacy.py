"""Privacy of real-name identities: names and ID numbers never show up in clear.

The whole identity flow runs with distinctive names and ID numbers (two citizens, failures,
success, a rebind, an erasure, bad input), while every log record of every logger is captured
at DEBUG. Then the API answers, the logs, every table of the database, the raw database and
WAL files, and Redis are searched for the plain names, the ID numbers and WeChat's unkeyed
``cert_hash``: none may be found.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis
from stdnum.cn import ric

from wxbackend.db import sqlite_path
from wxbackend.services.citizens.identity import cert_hash

START = "/api/v1/identity/face/start"
FINISH = "/api/v1/identity/face/finish"


def resident_id(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "?")


NAME_1 = "慕容雪霁"
ID_1 = resident_id("65010219870615731")
NAME_2 = "欧阳·翠微"
ID_2 = resident_id("51010719930228946")
SECRETS_ = [NAME_1, ID_1, NAME_2, ID_2, "欧阳", "翠微", "雪霁"]
HASHES = [cert_hash(NAME_1, ID_1), cert_hash(NAME_2, ID_2)]


class Recorder:
    """Keeps every API answer of the flow (status and raw text)."""

    def __init__(self, api: Any):
        self.api = api
        self.answers: list[str] = []

    async def __call__(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        status, body = await self.api(*args, **kwargs)
        self.answers.append(f"{status} {body!r}")
        return status, body


async def run_flow(api: Any, call: Recorder, sandbox: Any) -> None:
    """Everything the identity API does with personal data, including its error paths."""
    first, _ = await api.login(sandbox, "oPrivacy1000000000000000001")
    second, _ = await api.login(sandbox, "oPrivacy2000000000000000001")
    await call("POST", START, {"name": NAME_1, "id_number": ID_1[:-1] + "0"}, token=first)
    await call("POST", START, {"name": NAME_1 + "1", "id_number": ID_1}, token=first)
    await call("POST", START, {"name": NAME_1, "id_number": ID_1, "x": NAME_1}, token=first)

    status, started = await call("POST", START, {"name": NAME_1, "id_number": ID_1}, token=first)
    assert status == 200
    verify_id = started["verify_id"]
    await call("POST", FINISH, {"verify_id": verify_id}, token=first)  # unfinished → 403
    await sandbox.control("POST", "face/finish", {"verify_id": verify_id, "verify_ret": 10003})
    await call("POST", FINISH, {"verify_id": verify_id}, token=first)  # 403
    await call("POST", FINISH, {"verify_id": verify_id}, token=second)  # 404
    await sandbox.control("POST", "face/finish", {"verify_id": verify_id, "verify_ret": 10000})
    assert (await call("POST", FINISH, {"verify_id": verify_id}, token=first))[0] == 200
    await call("POST", FINISH, {"verify_id": verify_id}, token=first)  # 409
    await call("GET", "/api/v1/me", token=first)

    # the second citizen takes over the same identity (rebind), then verifies another one
    for name, number in ((NAME_1, ID_1), (NAME_2, ID_2)):
        status, started = await call(
            "POST", START, {"name": name, "id_number": number}, token=second
        )
        assert status == 200
        await sandbox.control("POST", "face/finish", {"verify_id": started["verify_id"]})
        status, _ = await call("POST", FINISH, {"verify_id": started["verify_id"]}, token=second)
        assert status == 200
    await call("GET", "/api/v1/me", token=second)
    assert (await call("DELETE", "/api/v1/me/identity", token=first))[0] == 204

    # the first citizen verifies the second identity... and erases it again
    status, started = await call("POST", START, {"name": NAME_2, "id_number": ID_2}, token=first)
    await sandbox.control("POST", "face/finish", {"verify_id": started["verify_id"]})
    assert (await call("POST", FINISH, {"verify_id": started["verify_id"]}, token=first))[0] == 200
    assert (await call("DELETE", "/api/v1/me/identity", token=first))[0] == 204
    await call("GET", "/api/v1/me", token=first)

    # the second citizen ends verified as the first identity (kept for the dump)
    status, started = await call("POST", START, {"name": NAME_1, "id_number": ID_1}, token=second)
    await sandbox.control("POST", "face/finish", {"verify_id": started["verify_id"]})
    assert (await call("POST", FINISH, {"verify_id": started["verify_id"]}, token=second))[0] == 200


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: message, extra fields, exception text."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
    return "\n".join(parts)


def database_dump(path: str) -> str:
    """Every row of every table of the SQLite database, as text."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        lines = []
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):
                lines.append(f"{table}: {row!r}")
        return "\n".join(lines)
    finally:
        connection.close()


def raw_files(path: str, checkpoint: bool) -> bytes:
    """The raw bytes of the database file and its WAL (after a checkpoint if asked)."""
    if checkpoint:
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
    blobs = []
    for suffix in ("", "-wal", "-journal"):
        file = Path(path + suffix)
        if file.exists():
            blobs.append(file.read_bytes())
    return b"\n".join(blobs)


def redis_dump(url: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        lines = []
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == "string":
                value: Any = client.get(key)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            else:
                value = kind
            lines.append(f"{key}: {value!r}")
        return "\n".join(lines)
    finally:
        client.close()


def assert_absent(where: str, text: str) -> None:
    lowered = text.lower()
    for secret in SECRETS_:
        assert secret.lower() not in lowered, f"{secret!r} found in {where}"
    for digest in HASHES:
        assert digest not in lowered, f"an unkeyed cert_hash found in {where}"


def assert_absent_bytes(where: str, blob: bytes) -> None:
    for secret in SECRETS_:
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in blob, f"{secret!r} ({encoding}) in {where}"
    for digest in HASHES:
        assert digest.encode() not in blob, f"an unkeyed cert_hash found in {where}"
        assert bytes.fromhex(digest) not in blob, f"a raw cert_hash found in {where}"


@pytest.mark.asyncio
async def test_names_and_id_numbers_never_appear_in_clear(api, sandbox, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if logger.level > logging.DEBUG:
            caplog.set_level(logging.DEBUG, logger=name)
    call = Recorder(api)
    await run_flow(api, call, sandbox)

    answers = "\n".join(call.answers)
    assert "face_verify_failed" in answers and "invalid_id_number" in answers  # it did run
    assert_absent("API answers", answers)

    logs = log_text(caplog)
    assert "identity rebound" in logs and "face verification started" in logs
    assert_absent("logs", logs)

    db_path = sqlite_path(ctx.settings.database.url)
    before = raw_files(db_path, checkpoint=False)
    dump = database_dump(db_path)
    assert "慕**" in dump  # the second citizen's mask: the dump does see the identity table
    assert_absent("the database tables", dump)
    assert_absent_bytes("the raw database/WAL files", before)
    assert_absent_bytes("the raw database file after a checkpoint", raw_files(db_path, True))

    assert_absent("Redis", redis_dump(ctx.settings.redis.url))
