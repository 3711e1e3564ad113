"""Issue 12 item 12: inputs an anonymous client can send that answered 500.

Each must be a 400 or 404 with the contract's error body: a date the UTC conversion cannot
hold, a month far in the future, JSON nested thousands deep, a NUL byte in a static path.
"""

from __future__ import annotations

import json

import pytest

from tests.support.admins import admin_token


def contract_error(status: int, body: bytes, expected: int) -> str:
    assert status == expected, (status, body[:200])
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message"}
    return error["code"]


async def raw(http_client, url: str, **kwargs):
    response = await http_client.fetch(url, raise_error=False, **kwargs)
    return response.code, response.body


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    ["to=9999-12-31", "from=0001-01-01", "from=0001-01-01&to=9999-12-31", "to=1969-12-31"],
)
async def test_public_stats_out_of_range_days(http_client, base_url, query):
    status, body = await raw(http_client, f"{base_url}/api/v1/public/stats?{query}")
    assert contract_error(status, body, 400) == "invalid_query"


@pytest.mark.asyncio
@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01"])
async def test_admin_lists_out_of_range_days(api, ctx, http_client, base_url, query):
    token = await admin_token(api, ctx)
    auth = {"Authorization": f"Bearer {token}"}
    for path in (
        "/admin/api/stats?group_by=center&",
        "/admin/api/export?",
        "/admin/api/evaluations?",
    ):
        status, body = await raw(http_client, f"{base_url}{path}{query}", headers=auth)
        assert status == 400, (path, status, body[:200])


@pytest.mark.asyncio
@pytest.mark.parametrize("month", ["9999-12", "0001-01", "2999-13"])
async def test_staff_ranking_far_months(api, ctx, http_client, base_url, month):
    token = await admin_token(api, ctx)
    status, body = await raw(
        http_client,
        f"{base_url}/admin/api/staff-ranking?month={month}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert contract_error(status, body, 400) == "invalid_query"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/partner/cases", "/admin/api/login"]
)
async def test_deeply_nested_json(http_client, base_url, path):
    body = b"[" * 100_000 + b"]" * 100_000
    status, answer = await raw(http_client, f"{base_url}{path}", method="POST", body=body[:60_000])
    assert 400 <= status < 500, (status, answer[:200])
    nested = b'{"code":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    status, answer = await raw(http_client, f"{base_url}{path}", method="POST", body=nested)
    assert 400 <= status < 500, (status, answer[:200])


@pytest.mark.asyncio
async def test_deeply_nested_json_on_a_citizen_route(api, sandbox, http_client, base_url):
    token, _ = await api.login(sandbox)
    nested = b'{"scene":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    status, body = await raw(
        http_client,
        f"{base_url}/api/v1/scan",
        method="POST",
        body=nested,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert contract_error(status, body, 400) == "invalid_body"


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/static/x%00", "/static/%00", "/static/common.js%00.map"])
async def test_nul_in_a_static_path(http_client, base_url, path):
    status, body = await raw(http_client, f"{base_url}{path}")
    assert contract_error(status, body, 404) == "not_found"
