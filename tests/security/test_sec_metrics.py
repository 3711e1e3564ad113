"""Issue 12 item 11: ``/metrics`` grew without bound and was public.

Reproduction: 300 requests with made-up HTTP methods added 600 series; anyone could read the
figures. Now unknown methods count as ``OTHER`` and the endpoint answers only the addresses
of ``metrics.allow`` (trusted-proxy aware) or the ``metrics.token`` bearer.
"""

from __future__ import annotations

import pytest

LOOPBACK_ONLY_VIA_PROXY = {
    "server": {"trusted_proxies": ["127.0.0.1/32"]},
    "metrics": {"allow": ["10.1.2.0/24"], "token": "scrape-me-please-0123456789"},
}


async def fetch(http_client, url: str, **kwargs):
    response = await http_client.fetch(url, raise_error=False, **kwargs)
    return response.code, response.body


def series(text: bytes) -> set[str]:
    return {
        line.split(" ")[0]
        for line in text.decode().splitlines()
        if line.startswith("wxb_http_requests_total{")
    }


@pytest.mark.asyncio
async def test_made_up_methods_add_no_series(http_client, base_url):
    _, before = await fetch(http_client, f"{base_url}/metrics")
    for n in range(60):
        await fetch(
            http_client,
            f"{base_url}/api/v1/public/stats",
            method=f"FOO{n}",
            allow_nonstandard_methods=True,
        )
        await fetch(
            http_client, f"{base_url}/nosuch/{n}", method=f"BAR{n}", allow_nonstandard_methods=True
        )
    _, after = await fetch(http_client, f"{base_url}/metrics")
    added = {s for s in series(after) - series(before) if 'route="/metrics"' not in s}
    assert len(added) <= 4, added
    assert all('method="OTHER"' in s for s in added), added


@pytest.mark.asyncio
async def test_metrics_are_for_loopback_by_default(http_client, base_url):
    status, body = await fetch(http_client, f"{base_url}/metrics")
    assert status == 200 and b"wxb_http_requests_total" in body


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [LOOPBACK_ONLY_VIA_PROXY])
async def test_allow_list_and_token_behind_a_proxy(http_client, base_url):
    url = f"{base_url}/metrics"
    outside = {"X-Forwarded-For": "203.0.113.9"}
    status, body = await fetch(http_client, url, headers=outside)
    assert status == 403 and b'"forbidden"' in body
    status, _ = await fetch(http_client, url)  # the proxy itself is not on the list
    assert status == 403
    status, _ = await fetch(http_client, url, headers={"X-Forwarded-For": "10.1.2.7"})
    assert status == 200
    bearer = {**outside, "Authorization": "Bearer scrape-me-please-0123456789"}
    status, _ = await fetch(http_client, url, headers=bearer)
    assert status == 200
    wrong = {**outside, "Authorization": "Bearer scrape-me-please-0123456788"}
    status, _ = await fetch(http_client, url, headers=wrong)
    assert status == 403
