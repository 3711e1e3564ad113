"""Issue 12 item 15: cookie flags behind TLS, and login CSRF.

Reproduction: behind the README's nginx (TLS ends there) Tornado never sees https, so the
console cookie ``wxb_admin`` was never Secure; ``_xsrf`` had neither Secure nor SameSite;
another site could log a console into an account of its choosing (login CSRF).
"""

from __future__ import annotations

import json

import pytest

from tests.support.admins import PASSWORD, admin_token

BEHIND_NGINX = {"server": {"trusted_proxies": ["127.0.0.1/32"]}}
PUBLIC_URL = {"server": {"public_url": "https://pj.example.gov.cn/"}}
LOGIN = {"username": "root", "password": PASSWORD}


def cookies_of(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("Set-Cookie")}


async def login(http_client, base_url, **headers):
    return await http_client.fetch(
        f"{base_url}/admin/api/login",
        method="POST",
        body=json.dumps(LOGIN),
        headers={"Content-Type": "application/json", **headers},
        raise_error=False,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [BEHIND_NGINX])
async def test_cookies_are_secure_behind_a_tls_proxy(api, ctx, http_client, base_url):
    await admin_token(api, ctx)
    response = await login(http_client, base_url, **{"X-Forwarded-Proto": "https"})
    assert response.code == 200
    cookies = cookies_of(response)
    for name in ("wxb_admin", "_xsrf"):
        assert "Secure" in cookies[name] and "SameSite=Strict" in cookies[name], cookies[name]
    assert "HttpOnly" in cookies["wxb_admin"]
    page = await http_client.fetch(f"{base_url}/admin/", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in cookies_of(page)["_xsrf"]


@pytest.mark.asyncio
async def test_a_client_cannot_claim_tls_itself(api, ctx, http_client, base_url):
    await admin_token(api, ctx)  # 127.0.0.1 is not a trusted proxy here
    response = await login(http_client, base_url, **{"X-Forwarded-Proto": "https"})
    cookies = cookies_of(response)
    assert "Secure" not in cookies["wxb_admin"] and "SameSite=Strict" in cookies["_xsrf"]


@pytest.mark.asyncio
@pytest.mark.parametrize("settings_overrides", [PUBLIC_URL])
async def test_public_url_https_makes_cookies_secure(api, ctx, http_client, base_url):
    await admin_token(api, ctx)
    response = await login(http_client, base_url, Origin="https://pj.example.gov.cn")
    assert response.code == 200
    assert "Secure" in cookies_of(response)["wxb_admin"]


@pytest.mark.asyncio
async def test_login_from_another_site_is_refused(api, ctx, http_client, base_url):
    await admin_token(api, ctx)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
    ):
        response = await login(http_client, base_url, **headers)
        assert response.code == 403, headers
        assert json.loads(response.body)["error"]["code"] == "forbidden"
        assert "wxb_admin" not in cookies_of(response)
    same = await login(http_client, base_url, Origin=base_url, **{"Sec-Fetch-Site": "same-origin"})
    assert same.code == 200
    assert (await login(http_client, base_url)).code == 200  # an API client: no Origin
