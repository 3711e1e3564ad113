"""The web pages (/public/, /device/{window_code}, /admin/), their static files and the public
window endpoint the evaluator screen reads."""

from __future__ import annotations

import re

import pytest

from handlers.pages import STATIC_DIR
from models.catalog import Staff, Window
from tests.support.public_seed import seed_catalog

PAGES = [
    ("/", "政务服务好差评 · Government service ratings"),
    ("/public/", "实时评价公示 · 政务服务好差评"),
    ("/admin/", "好差评管理后台"),
    ("/device/HL-W01", "评价器 · 1号窗口 · 广州市荔湾区海龙街政务服务中心"),
]


async def _seed(ctx) -> None:
    await ctx.db.run(seed_catalog, ctx)


def _title(body: bytes) -> str:
    match = re.search(rb"<title>(.*?)</title>", body, re.S)
    assert match, body[:200]
    return match.group(1).decode().strip()


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "title"), PAGES)
async def test_page_is_html_with_title_and_security_headers(
    api, ctx, http_client, base_url, path, title
):
    await _seed(ctx)
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert response.code == 200, response.body[:300]
    assert response.headers["Content-Type"].startswith("text/html")
    assert _title(response.body) == title
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "img-src 'self' https: data:" in csp
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.body.decode()
    # no inline script (the CSP would block it): every <script> loads a local file
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts and all(re.search(r'src="/static/[\w.-]+\?v=\w+"', s) for s in scripts)
    assert all(
        not inner.strip() for inner in re.findall(r"<script\b[^>]*>(.*?)</script>", body, re.S)
    )
    assert " style=" not in body and " on" + "click=" not in body
    assert "http://" not in body and "https://" not in body  # nothing from a CDN


@pytest.mark.asyncio
async def test_every_referenced_static_file_is_served(api, ctx, http_client, base_url):
    await _seed(ctx)
    seen = set()
    for path, _ in PAGES:
        page = await http_client.fetch(base_url + path)
        for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.body.decode()):
            seen.add(url)
    assert len(seen) >= 10  # css, common, public, device, the admin files
    for url in sorted(seen):
        response = await http_client.fetch(base_url + url.replace("&amp;", "&"), raise_error=False)
        assert response.code == 200, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        kind = response.headers["Content-Type"]
        assert ("javascript" in kind) if url.split("?")[0].endswith(".js") else ("text/css" in kind)
        assert "max-age" in response.headers.get("Cache-Control", "")  # ?v= makes it cacheable
    on_disk = {p.name for p in STATIC_DIR.iterdir()}
    assert {u.split("?")[0].rsplit("/", 1)[1] for u in seen} == on_disk  # nothing unused


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/static/nope.js", "/static/..%2Fhandlers.py", "/static/..%2F..%2Fpyproject.toml"]
)
async def test_static_unknown_or_outside_is_404(api, path):
    status, _ = await api("GET", path)
    assert status in (403, 404)


@pytest.mark.asyncio
async def test_javascript_never_builds_html_from_strings():
    """Data goes into the DOM as text: no innerHTML / outerHTML / insertAdjacentHTML /
    document.write anywhere in the pages' scripts."""
    for script in STATIC_DIR.glob("*.js"):
        text = script.read_text(encoding="utf-8")
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{script.name} uses {banned}"


@pytest.mark.asyncio
async def test_device_unknown_window_is_html_404(api, ctx, http_client, base_url):
    await _seed(ctx)
    response = await http_client.fetch(base_url + "/device/NOPE-W99", raise_error=False)
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "未找到" in response.body.decode()


@pytest.mark.asyncio
async def test_device_page_escapes_catalogue_text(api, ctx, http_client, base_url):
    await _seed(ctx)

    def rename():
        Window.update(name='<script>alert("x")</script>').where(Window.code == "HL-W02").execute()

    await ctx.db.run(rename)
    response = await http_client.fetch(base_url + "/device/HL-W02")
    body = response.body.decode()
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body


@pytest.mark.asyncio
async def test_admin_page_sets_xsrf_cookie(api, http_client, base_url):
    response = await http_client.fetch(base_url + "/admin/")
    cookies = response.headers.get_list("Set-Cookie")
    assert any(c.startswith("_xsrf=") for c in cookies)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "target"), [("/admin", "/admin/"), ("/public?center=X", "/public/?center=X")]
)
async def test_without_trailing_slash_redirects(http_client, base_url, path, target):
    response = await http_client.fetch(base_url + path, follow_redirects=False, raise_error=False)
    assert response.code == 301 and response.headers["Location"] == target


@pytest.mark.asyncio
async def test_public_window_shape(api, ctx):
    await _seed(ctx)
    status, answer = await api("GET", "/api/v1/public/windows/HL-W01")
    assert status == 200
    assert answer == {
        "window": {"code": "HL-W01", "name": "1号窗口"},
        "center": {"code": "440103-HL", "name": "广州市荔湾区海龙街政务服务中心"},
        "staff": {
            "name": "黄玉华",
            "staff_no": "HL001",
            "photo_url": "https://example.org/staff/hl001.jpg",
        },
    }


@pytest.mark.asyncio
async def test_public_window_without_active_clerk_has_null_staff(api, ctx):
    await _seed(ctx)

    def change():
        Window.update(staff=None).where(Window.code == "HL-W01").execute()
        Staff.update(active=False).where(Staff.staff_no == "HL002").execute()

    await ctx.db.run(change)
    for code in ("HL-W01", "HL-W02"):  # no clerk; a deactivated clerk
        status, answer = await api("GET", f"/api/v1/public/windows/{code}")
        assert status == 200 and answer["staff"] is None, answer


@pytest.mark.asyncio
async def test_public_window_unknown_is_404(api, ctx):
    await _seed(ctx)
    status, answer = await api("GET", "/api/v1/public/windows/NOPE")
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = await api("GET", "/api/v1/public/windows/" + "W" * 65)
    assert status == 404


@pytest.mark.asyncio
async def test_landing_page_links_the_pages_and_the_api(api, http_client, base_url):
    response = await http_client.fetch(base_url + "/", raise_error=False)
    assert response.code == 200
    links = re.findall(r'<a href="([^"]+)"', response.body.decode())
    assert {"/public/", "/admin/", "/openapi.json"} <= set(links)
    status, doc = await api("GET", "/openapi.json")
    assert status == 200 and "get" in doc["paths"]["/"]
