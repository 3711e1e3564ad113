"""The HTTP base: strict JSON, 413, errors, request ids, logs, health, OpenAPI coverage."""

import asyncio
import json
import logging

import pytest

from handlers.openapi import implemented_methods
from handlers.routes import all_routes


@pytest.mark.asyncio
async def test_unknown_field_is_invalid_body(api):
    status, answer = await api("POST", "/api/v1/auth/login", {"code": "x", "extra": 1})
    assert status == 400
    assert answer["error"]["code"] == "invalid_body"
    assert "extra" in answer["error"]["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"code": 5}', b"{}"]
)
async def test_malformed_bodies(api, raw):
    status, answer = await api("POST", "/api/v1/auth/login", raw=raw)
    assert status == 400 and answer["error"]["code"] == "invalid_body"


@pytest.mark.asyncio
async def test_body_over_64k_is_413(api):
    big = json.dumps({"code": "x" * (64 * 1024)}).encode()
    status, answer = await api("POST", "/api/v1/auth/login", raw=big)
    assert status == 413 and answer["error"]["code"] == "body_too_large"


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [64 * 1024 + 1, 100 << 20])
async def test_announced_big_body_is_413_before_it_is_read(http_server, api, size):
    """The headers alone announce too much: 413 at once (the body is never sent or read),
    the connection is closed, and the server goes on serving. 100 MiB is far above
    Tornado's own cap, which used to answer a bare 400."""
    reader, writer = await asyncio.open_connection("127.0.0.1", http_server[1])
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # until the server closes
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"]["code"] == "body_too_large"
    status, _ = await api("GET", "/healthz")
    assert status == 200


@pytest.mark.asyncio
async def test_unknown_path_and_method(api):
    status, answer = await api("GET", "/api/v1/nosuch")
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = await api("DELETE", "/api/v1/auth/login")
    assert status == 405 and answer["error"]["code"] == "method_not_allowed"


@pytest.mark.asyncio
async def test_request_id_echoed_or_made(api, http_client, base_url):
    response = await http_client.fetch(
        base_url + "/healthz", headers={"X-Request-Id": "abc-123"}, raise_error=False
    )
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await http_client.fetch(base_url + "/healthz", raise_error=False)
    assert len(response.headers["X-Request-Id"]) == 16


@pytest.mark.asyncio
async def test_one_log_line_per_request_without_personal_data(api, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    code = await sandbox.login_code("oLogged00000000000000000000001")
    await api("POST", "/api/v1/auth/login", {"code": code["code"]})
    lines = [r for r in caplog.records if r.name == "wxbackend.access"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["route"] == "/api/v1/auth/login" and fields["status"] == 200
    everything = " ".join(
        r.getMessage() + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records
    )
    assert "oLogged" not in everything and code["code"] not in everything


@pytest.mark.asyncio
async def test_healthz_ok(api):
    status, answer = await api("GET", "/healthz")
    assert status == 200
    assert answer == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "settings_overrides", [{"redis": {"url": "redis://127.0.0.1:9/0", "timeout_seconds": 0.5}}]
)
async def test_healthz_503_when_redis_is_down(api, ctx):
    """Port 9 (discard): nothing listens there."""
    status, answer = await api("GET", "/healthz")
    assert status == 503
    assert answer["checks"]["redis"].startswith("error")
    assert answer["checks"]["database"] == "ok"


@pytest.mark.asyncio
async def test_healthz_503_when_database_is_down(api, ctx):
    def break_db():
        ctx.db.db.close()
        ctx.db.db.database = "/nonexistent/dir/db.sqlite"

    for _ in range(ctx.settings.database.threads):
        await ctx.db.run(break_db)
    status, answer = await api("GET", "/healthz")
    assert status == 503 and answer["checks"]["database"].startswith("error")


@pytest.mark.asyncio
async def test_openapi_describes_every_route(api, app):
    status, doc = await api("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    missing = []
    for rule in all_routes():
        entry = doc["paths"].get(rule.name)
        if entry is None:
            missing.append(rule.name)
            continue
        for method in implemented_methods(rule.target):
            if method not in entry or not entry[method].get("summary"):
                missing.append(f"{method.upper()} {rule.name}")
    assert not missing, f"routes missing from /openapi.json: {missing}"
    assert "/api/v1/auth/login" in doc["paths"]
