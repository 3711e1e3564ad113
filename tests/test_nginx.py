"""conf/nginx.example.conf run by Debian's nginx in front of a server (issue 15 item 6): the
client address and the Secure cookie through it, both live streams unbuffered (served by
``wxbackend live`` when it runs, else by the server), /metrics and large bodies refused, plain
http redirected.

The example is used as written except for what a test cannot use: its ports become free ones,
the upstream is the test's server, the certificate is a self-signed one made here, and there
is no IPv6 listen; and nginx ignores the server's own ``X-Accel-Buffering: no``, so the
streams pass because of the example's ``proxy_buffering off``. Every substitution must match,
so the test follows the example's edits.
The server trusts nginx (``server.trusted_proxies`` = 127.0.0.1); nginx says https.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from handlers.devices import DeviceStreamHandler
from tests.support.admins import PASSWORD, admin_token
from tests.support.cli import stop, wait_healthy
from tests.support.live import Stream
from tests.support.live_process import start_live
from tests.support.public_seed import rated_case, seed_catalog
from tests.support.servers import free_port
from wxbackend.clients.device import ScreenStream, pair
from wxbackend.services.public import live as realtime

pytestmark = pytest.mark.slow  # starts nginx

EXAMPLE = Path(__file__).resolve().parents[1] / "conf" / "nginx.example.conf"
#: Added to the server block: the server's own "X-Accel-Buffering: no" ignored, so the
#: example's proxy_buffering off is what the live test sees working.
IGNORE_ACCEL = "proxy_ignore_headers X-Accel-Buffering;"
BEHIND_NGINX = {"server": {"trusted_proxies": ["127.0.0.1/32"]}}
#: The test's client connects to nginx from this address (not a trusted proxy) …
CLIENT = "127.0.0.5"
#: … and claims this one: nginx appends the peer it sees, so the claim is never believed.
CLAIMED = "203.0.113.7"


@dataclass
class Proxy:
    """nginx in front of the test's server: its https and http bases and the CA to trust."""

    https: str
    http: str
    cert: str


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("Debian's nginx is not installed: run scripts/test.sh (it installs it)")
    return found


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _derive(example: str, replacements: list[tuple[str, str]]) -> str:
    """The example with each (old, new) replaced; every ``old`` must be in it."""
    for old, new in replacements:
        assert old in example, f"conf/nginx.example.conf no longer has {old!r}"
        example = example.replace(old, new)
    return example


def _main_config(folder: Path, site: Path) -> str:
    """The top level Debian's /etc/nginx/nginx.conf would give, inside ``folder``."""
    temps = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # the temp folder is root's alone
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {folder / 'access.log'};\n{temps}    include {site};\n}}\n"
    )


def _wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen")


@pytest.fixture
def settings_overrides():
    return BEHIND_NGINX


@pytest.fixture
def live_upstream(request, settings) -> Iterator[int]:
    """The port of the example's ``wxbackend live`` upstream: nothing listens there (nginx
    falls back to the test's server, as when ``wxbackend live`` is not running), or with
    ``indirect`` parameter ``"process"`` a real ``wxbackend live --processes 2`` on the test's
    Redis."""
    port = free_port()
    if getattr(request, "param", None) != "process":
        yield port
        return
    proc = start_live(settings, port, "--processes", "2")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]


@pytest.fixture
def nginx(http_server, live_upstream: int, tmp_path: Path) -> Iterator[Proxy]:
    """Debian's nginx running the example in front of the test's server (and of
    ``live_upstream`` for the streams)."""
    folder = tmp_path / "nginx"
    folder.mkdir()
    cert, key = _self_signed(folder)
    tls_port, http_port = free_port(), free_port()
    site = folder / "wxbackend.conf"
    site.write_text(
        _derive(
            EXAMPLE.read_text(),
            [
                ("server 127.0.0.1:8000;", f"server 127.0.0.1:{http_server[1]};"),
                ("server 127.0.0.1:8001;", f"server 127.0.0.1:{live_upstream};"),
                ("server 127.0.0.1:8000 backup;", f"server 127.0.0.1:{http_server[1]} backup;"),
                ("    listen [::]:80;\n", ""),
                ("    listen [::]:443 ssl http2;\n", ""),
                ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                ("listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;"),
                ("/etc/ssl/certs/pj.example.gov.cn.crt", str(cert)),
                ("/etc/ssl/private/pj.example.gov.cn.key", str(key)),
                (
                    "    client_max_body_size",
                    "    proxy_ignore_headers X-Accel-Buffering;\n    client_max_body_size",
                ),
            ],
        )
    )
    main = folder / "nginx.conf"
    main.write_text(_main_config(folder, site))
    log = folder / "error.log"
    command = [_nginx_binary(), "-p", str(folder), "-c", str(main), "-e", str(log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(tls_port, proc, log)
        yield Proxy(f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{http_port}", str(cert))
    finally:
        proc.terminate()  # SIGTERM: nginx's fast shutdown
        proc.wait(10)


async def _fetch(http_client, proxy: Proxy, method: str, path: str, body=None, **headers):
    """One request through nginx's https side (its certificate trusted)."""
    return await http_client.fetch(
        proxy.https + path,
        method=method,
        body=None if body is None else (body if isinstance(body, bytes) else json.dumps(body)),
        headers={"Content-Type": "application/json", **headers},
        ca_certs=proxy.cert,
        network_interface=CLIENT,
        raise_error=False,
        follow_redirects=False,
    )


def _cookies(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("Set-Cookie")}


@pytest.mark.asyncio
async def test_client_address_and_secure_cookie_through_nginx(api, ctx, http_client, nginx):
    await admin_token(api, ctx)  # creates root
    login = await _fetch(
        http_client,
        nginx,
        "POST",
        "/admin/api/login",
        {"username": "root", "password": PASSWORD},
        **{"X-Forwarded-For": CLAIMED},
    )
    assert login.code == 200, login.body
    cookie = _cookies(login)["wxb_admin"]
    assert "Secure" in cookie and "HttpOnly" in cookie, cookie  # nginx said https
    token = json.loads(login.body)["token"]
    auth = {"Authorization": f"Bearer {token}", "X-Forwarded-For": CLAIMED}
    created = await _fetch(
        http_client,
        nginx,
        "POST",
        "/admin/api/admins",
        {"username": "viewer1", "password": PASSWORD, "role": "viewer"},
        **auth,
    )
    assert created.code in (200, 201), created.body
    log = await _fetch(
        http_client, nginx, "GET", "/admin/api/audit-log?action=admin.create", **auth
    )
    entries = json.loads(log.body)["items"]
    assert [e["client_ip"] for e in entries] == [
        CLIENT
    ]  # nginx's peer: not 127.0.0.1, not the claim


@pytest.mark.asyncio
async def test_live_stream_passes_an_event_promptly(api, ctx, nginx, fast_heartbeat):
    stream = Stream(nginx.https, ca_certs=nginx.cert)
    try:
        await stream.connected()
        assert stream.headers["content-type"].startswith("text/event-stream")
        await ctx.db.run(seed_catalog, ctx)
        rating = await ctx.db.run(rated_case, ctx, 5)
        started = time.monotonic()
        assert await realtime.publish_evaluation(ctx, rating) >= 1
        await stream.wait_for(lambda: stream.events, timeout=2)
        assert time.monotonic() - started < 2
        assert stream.events[0]["id"] == str(rating)
    finally:
        await stream.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("live_upstream", ["process"], indirect=True)
async def test_live_stream_goes_to_the_live_process_when_it_runs(api, ctx, nginx):
    """The example's live upstream: a running ``wxbackend live`` takes the stream (the test's
    server holds none), and a rating published by the server reaches it through nginx."""
    stream = Stream(nginx.https, ca_certs=nginx.cert)
    try:
        await stream.connected()
        assert ctx.live_streams.open == 0  # not the test's server: the live process
        await ctx.db.run(seed_catalog, ctx)
        rating = await ctx.db.run(rated_case, ctx, 5)
        assert await realtime.publish_evaluation(ctx, rating) == 1  # the live process only
        await stream.wait_for(lambda: stream.events, timeout=2)
        assert stream.events[0]["id"] == str(rating)
    finally:
        stream.hang_up = True  # its heartbeat is 15 s away: stopping the process ends it
        stream.client.close()


@pytest.mark.asyncio
async def test_screen_stream_passes_a_case_promptly(api, ctx, partner, nginx, monkeypatch):
    monkeypatch.setattr(DeviceStreamHandler, "heartbeat_seconds", 0.5)  # a quick hang-up
    admin = await admin_token(api, ctx)
    path = "/admin/api/windows/HL-W01/device-key"
    key = (await api.expect("POST", path, token=admin))["device_key"]
    stream = ScreenStream(nginx.https, await pair(api, "HL-W01", key), ca_certs=nginx.cert)
    try:
        await stream.next_event("idle")
        started = time.monotonic()
        await partner.new_case(window_code="HL-W01")
        await stream.next_event("case", timeout=2)
        received = next(t for name, _, t in stream.events if name == "case")
        assert received - started < 2
    finally:
        await stream.close()


@pytest.mark.asyncio
async def test_metrics_refused_body_limited_http_redirected(api, ctx, http_client, nginx):
    status, _ = await api("GET", "/metrics")
    assert status == 200  # the server itself answers its allow-list (127.0.0.1) …
    for path in ("/metrics", "//metrics", "/%6Detrics", "/metrics?name=x"):
        response = await _fetch(http_client, nginx, "GET", path)
        assert response.code == 404, path  # … but never through nginx
        assert b"wxb_" not in (response.body or b""), path
    big = await _fetch(http_client, nginx, "POST", "/admin/api/login", b"x" * (65 * 1024))
    assert big.code == 413 and b"nginx" in big.body  # refused by nginx, not passed on
    healthy = await _fetch(http_client, nginx, "GET", "/healthz")
    assert healthy.code == 200
    plain = await http_client.fetch(
        nginx.http + "/healthz", follow_redirects=False, raise_error=False
    )
    assert plain.code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/healthz"
