"""The gateway to WeChat's server API: one async facade every service calls.

HTTP goes through its own Tornado ``AsyncHTTPClient`` (kept apart from the database pool),
so hanging WeChat calls never block the IOLoop or starve other work. With
``wechat.http_keepalive`` (the default) it is Tornado's libcurl client, which keeps
connections to WeChat open between calls (a new TCP connection per call, as Tornado's own
client makes, cost about 0.6 ms of CPU per call against 0.25 ms). libcurl itself re-sends a
request once when a *reused* connection turns out closed before a single byte of answer came
back (the usual idle keep-alive race, where the server never read it); a server that acted
on a request and then closed without answering would see it twice, a risk every keep-alive
client shares.

Each method maps one WeChat endpoint (the shape of wechatpy's API classes) and raises a
typed :class:`~wxbackend.wechat.errors.WeChatError` on failure.

Rules:
- at most 3 attempts, ``timeout`` seconds each, retrying -1 / HTTP 5xx / timeouts / network
  errors with backoff, never longer than ``2 × timeout + 2`` seconds in all;
- the access token comes from ``cgi-bin/stable_token``, cached in Redis and shared by every
  process (and kept in the process for up to ``LOCAL_TOKEN_SECONDS``, so a call needs no
  Redis round trip); on 40001/42001 it is refreshed under a Redis lock, only if the cached
  token is still the one that failed, and the call is retried once;
- WeChat refusing the configured credentials (40013, 40125) is remembered for every process
  (:mod:`wxbackend.wechat.refusals`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from wxbackend.cache import Keys
from wxbackend.metrics import Metrics
from wxbackend.wechat import errors as e
from wxbackend.wechat.refusals import CredentialRefusals

log = logging.getLogger("wxbackend.wechat")


def _warnings_and_up(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


# Tornado's libcurl client logs each request's URL at DEBUG (the secret and login codes are in
# query strings): a filter drops those, whatever level an operator sets on the logger.
logging.getLogger("tornado.curl_httpclient").addFilter(_warnings_and_up)

BACKOFF_SECONDS = (0.2, 0.5)
TOKEN_MARGIN_SECONDS = 300  # refresh a cached token this long before WeChat expires it
LOCK_SECONDS = 15
#: How long a process reuses the token it last read from Redis without asking again. A
#: token refreshed elsewhere meanwhile costs one 40001 here, then the shared one is read.
LOCAL_TOKEN_SECONDS = 30.0
#: libcurl errors that mean nothing reached WeChat (could not resolve, could not connect).
_CURL_NOT_SENT = {6, 7}


@dataclass(frozen=True)
class Credentials:
    """The mini-program's appid and secret (from settings, or stored by an admin)."""

    appid: str
    secret: str


class _Retryable(Exception):
    """An attempt failed in a way worth another try. ``ambiguous``: WeChat may have acted on
    it (a timeout, a connection lost after sending), so only idempotent calls retry it."""

    def __init__(self, errcode: str, message: str, ambiguous: bool = False):
        self.errcode = errcode
        self.ambiguous = ambiguous
        super().__init__(message)


class WeChatGateway:
    """Async client of the WeChat server API (see ../shared/docs/wechat.md)."""

    def __init__(
        self,
        api_base: str,
        credentials: Callable[[], Credentials],
        redis: aioredis.Redis,
        rkeys: Keys,
        timeout: float,
        metrics: Metrics | None = None,
        max_clients: int = 512,
        keepalive: bool = True,
    ):
        self.api_base = api_base
        self.credentials = credentials
        self.redis = redis
        self.rkeys = rkeys
        self.timeout = timeout
        self.metrics = metrics
        self.http = make_http_client(max_clients, keepalive)
        #: ``(appid, token, monotonic time it stops being reused)`` of the last token read.
        self._local_token: tuple[str, str, float] | None = None
        self.refusals = CredentialRefusals(redis, rkeys, credentials)

    def close(self) -> None:
        self.http.close()

    # ---- endpoints -----------------------------------------------------------------------

    async def code2session(self, js_code: str) -> dict[str, Any]:
        """``sns/jscode2session``: a login code → ``{openid, session_key, unionid?}``."""
        cred = self.credentials()
        query = {
            "appid": cred.appid,
            "secret": cred.secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        return await self._credentialed("sns/jscode2session", query=query)

    async def get_verify_id(
        self, out_seq_no: str, cert_name: str, cert_no: str, openid: str
    ) -> dict[str, Any]:
        """``cityservice/face/identify/getverifyid`` → ``{verify_id, expires_in}``."""
        body = {
            "out_seq_no": out_seq_no,
            "cert_info": {"cert_type": "IDENTITY_CARD", "cert_name": cert_name, "cert_no": cert_no},
            "openid": openid,
        }
        return await self._call_with_token("cityservice/face/identify/getverifyid", body)

    async def query_verify_info(
        self, verify_id: str, out_seq_no: str, cert_hash: str, openid: str
    ) -> dict[str, Any]:
        """``cityservice/face/identify/queryverifyinfo`` → ``{errcode, verify_ret}``."""
        body = {
            "verify_id": verify_id,
            "out_seq_no": out_seq_no,
            "cert_hash": cert_hash,
            "openid": openid,
        }
        return await self._call_with_token("cityservice/face/identify/queryverifyinfo", body)

    async def get_wxacode_unlimit(
        self,
        scene: str,
        page: str | None = None,
        check_path: bool = True,
        env_version: str = "release",
        width: int = 430,
    ) -> bytes:
        """``wxa/getwxacodeunlimit``: the mini-program code image (PNG/JPEG bytes)."""
        body: dict[str, Any] = {
            "scene": scene,
            "check_path": check_path,
            "env_version": env_version,
            "width": width,
        }
        if page:
            body["page"] = page
        return await self._call_with_token("wxa/getwxacodeunlimit", body, binary=True)

    async def send_subscribe_message(
        self,
        touser: str,
        template_id: str,
        data: dict[str, dict[str, str]],
        page: str | None = None,
        miniprogram_state: str | None = None,
        lang: str = "zh_CN",
    ) -> dict[str, Any]:
        """``cgi-bin/message/subscribe/send``: one subscribe message (spends one quota)."""
        body: dict[str, Any] = {
            "touser": touser,
            "template_id": template_id,
            "data": data,
            "lang": lang,
        }
        if page:
            body["page"] = page
        if miniprogram_state:
            body["miniprogram_state"] = miniprogram_state
        # Not idempotent (each delivery spends a quota): never resent after a timeout here;
        # the caller decides (see services/messaging/sending.py).
        return await self._call_with_token("cgi-bin/message/subscribe/send", body, idempotent=False)

    async def msg_sec_check(self, openid: str, content: str, scene: int = 2) -> dict[str, Any]:
        """``wxa/msg_sec_check`` v2 → ``{result: {suggest: pass|review|risky, label}}``."""
        body = {"version": 2, "openid": openid, "scene": scene, "content": content}
        return await self._call_with_token("wxa/msg_sec_check", body)

    # ---- access token --------------------------------------------------------------------

    def _token_key(self, appid: str) -> str:
        return self.rkeys("wechat", "token", appid)

    async def access_token(self) -> str:
        """The shared access token, fetched through ``stable_token`` only when none is cached."""
        return await self._token(stale=None, deadline=time.monotonic() + 2 * self.timeout + 2)

    async def check_credentials(self) -> None:
        """Ask ``stable_token`` with the credentials in force, bypassing the cache (the
        console's "test" button); a good answer refreshes the cache."""
        cred = self.credentials()
        body = {"grant_type": "client_credential", "appid": cred.appid, "secret": cred.secret}
        answer = await self._credentialed("cgi-bin/stable_token", body=body, clear=True)
        ttl = max(int(answer.get("expires_in", 7200)) - TOKEN_MARGIN_SECONDS, 60)
        await self.redis.set(self._token_key(cred.appid), answer["access_token"], ex=ttl)
        self._remember(cred.appid, answer["access_token"])

    def _remember(self, appid: str, token: str) -> str:
        self._local_token = (appid, token, time.monotonic() + LOCAL_TOKEN_SECONDS)
        return token

    async def _token(self, stale: str | None, deadline: float) -> str:
        """A valid token. ``stale``: the token WeChat just rejected (forces a refresh)."""
        cred = self.credentials()
        local = self._local_token
        if (
            local is not None
            and local[0] == cred.appid
            and local[1] != stale
            and time.monotonic() < local[2]
        ):
            return local[1]
        key = self._token_key(cred.appid)
        cached = await self.redis.get(key)
        if cached and cached != stale:
            return self._remember(cred.appid, cached)
        lock_key = key + ":lock"
        owner = secrets.token_hex(8)
        while True:
            if await self.redis.set(lock_key, owner, nx=True, ex=LOCK_SECONDS):
                break
            if time.monotonic() >= deadline:
                raise e.WeChatUnavailableError("cgi-bin/stable_token", "lock", "token refresh busy")
            await asyncio.sleep(0.05)
            cached = await self.redis.get(key)
            if cached and cached != stale:
                return self._remember(cred.appid, cached)
        try:
            cached = await self.redis.get(key)
            if cached and cached != stale:
                return self._remember(cred.appid, cached)  # refreshed elsewhere meanwhile
            body = {
                "grant_type": "client_credential",
                "appid": cred.appid,
                "secret": cred.secret,
                "force_refresh": stale is not None,
            }
            answer = await self._credentialed(
                "cgi-bin/stable_token", body=body, deadline=deadline, clear=True
            )
            token = answer["access_token"]
            ttl = max(int(answer.get("expires_in", 7200)) - TOKEN_MARGIN_SECONDS, 60)
            await self.redis.set(key, token, ex=ttl)
            log.info("fetched a WeChat access token", extra={"fields": {"ttl": ttl}})
            return self._remember(cred.appid, token)
        finally:
            # Release only our own lock (compare-and-delete).
            await self.redis.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('del', KEYS[1]) end return 0",
                1,
                lock_key,
                owner,
            )

    async def _call_with_token(
        self, path: str, body: dict[str, Any], binary: bool = False, idempotent: bool = True
    ) -> Any:
        deadline = time.monotonic() + 2 * self.timeout + 2
        options = {"body": body, "binary": binary, "deadline": deadline, "idempotent": idempotent}
        token = await self._token(stale=None, deadline=deadline)
        try:
            return await self._call(path, token=token, **options)
        except e.AccessTokenError as exc:
            if exc.errcode not in e.TOKEN_INVALID:
                raise
            token = await self._token(stale=token, deadline=deadline)
            return await self._call(path, token=token, **options)

    # ---- refused credentials -------------------------------------------------------------

    async def _credentialed(self, path: str, clear: bool = False, **options: Any) -> Any:
        """A call made with the appid and secret: a refusal of them is recorded, a success
        clears it (``clear``: always; else only when this process recorded one)."""
        try:
            answer = await self._call(path, **options)
        except e.InvalidCredentialError as exc:
            await self.refusals.note(path, exc)
            raise
        await self.refusals.clear(always=clear)
        return answer

    async def credential_problem(self) -> dict[str, Any] | None:
        """The last refusal of the credentials in force, or None (see :mod:`.refusals`)."""
        return await self.refusals.problem()

    # ---- transport -----------------------------------------------------------------------

    async def _call(
        self,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        binary: bool = False,
        deadline: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        """One WeChat call with retries inside the overall deadline (a call that is not
        idempotent is not retried after an ambiguous failure)."""
        deadline = deadline or time.monotonic() + 2 * self.timeout + 2
        params = dict(query or {})
        if token:
            params["access_token"] = token
        url = self.api_base + path + ("?" + urlencode(params) if params else "")
        last: _Retryable | None = None
        for attempt in range(3):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            try:
                return await self._attempt(path, url, body, binary, min(self.timeout, remaining))
            except _Retryable as exc:
                last = exc
                if exc.ambiguous and not idempotent:
                    raise e.WeChatUnavailableError(
                        path, exc.errcode, str(exc), ambiguous=True
                    ) from None
            if attempt < 2:
                pause = BACKOFF_SECONDS[attempt] * (0.5 + secrets.randbelow(1000) / 1000)
                if deadline - time.monotonic() <= pause + 0.05:
                    break
                await asyncio.sleep(pause)
        errcode = last.errcode if last else "deadline"
        raise e.WeChatUnavailableError(path, errcode, str(last) if last else "deadline passed")

    async def _attempt(
        self, path: str, url: str, body: dict[str, Any] | None, binary: bool, timeout: float
    ) -> Any:
        request = HTTPRequest(
            url,
            method="POST" if body is not None else "GET",
            body=json.dumps(body, ensure_ascii=False).encode() if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
            connect_timeout=timeout,
            request_timeout=timeout,
        )
        started = time.monotonic()
        errcode = "0"
        try:
            try:
                response = await self.http.fetch(request, raise_error=False)
            except (HTTPClientError, OSError) as exc:
                failure = transport_failure(exc)
                errcode = failure.errcode
                raise failure from None
            if response.code >= 500:
                errcode = f"http_{response.code}"
                raise _Retryable(errcode, f"HTTP {response.code}")
            if response.code != 200:
                errcode = f"http_{response.code}"
                raise e.InvalidArgumentError(path, errcode, f"HTTP {response.code}")
            if binary and not _is_json(response):
                return response.body
            answer = _parse_json(path, response)
            code = int(answer.get("errcode") or 0)
            errcode = str(code)
            if code == e.BUSY:
                raise _Retryable(errcode, "WeChat busy (-1)")
            if code != 0:
                raise e.error_for(path, code, str(answer.get("errmsg", "")))
            return answer
        finally:
            if self.metrics:
                self.metrics.observe_wechat(path, errcode, time.monotonic() - started)


def make_http_client(max_clients: int, keepalive: bool) -> AsyncHTTPClient:
    """The gateway's own HTTP client: libcurl's (connections kept alive) when ``keepalive``
    and pycurl is installed, else Tornado's (a new connection per call)."""
    if keepalive:
        try:
            import certifi
            from tornado.curl_httpclient import CurlAsyncHTTPClient
        except ImportError:  # pragma: no cover - pycurl is a dependency; a broken install
            log.warning("pycurl unavailable: WeChat calls open a new connection each")
        else:
            # The pycurl wheel's built-in CA path is another distribution's: name the bundle.
            return CurlAsyncHTTPClient(
                force_instance=True,
                max_clients=max_clients,
                defaults={"ca_certs": certifi.where(), "prepare_curl_callback": _no_trace},
            )
    return SimpleAsyncHTTPClient(force_instance=True, max_clients=max_clients)


def _no_trace(curl: Any) -> None:
    """Tornado turns libcurl's trace on when its logger allows DEBUG; that trace carries
    every URL and body (the secret, login codes, openids, ID numbers). Never, whatever the
    log level."""
    curl.setopt(curl.VERBOSE, 0)


def transport_failure(exc: Exception) -> _Retryable:
    """What a failed fetch means for retrying. Nothing sent (refused, unreachable, no DNS,
    connect timeout) is plainly retryable; a timeout or a connection lost after the request
    went out is *ambiguous* (WeChat may have acted on it). ``errcode`` is ``timeout`` or
    ``network``."""
    if isinstance(exc, HTTPClientError):
        curl_errno = getattr(exc, "errno", None)  # tornado.curl_httpclient.CurlError
        text = str(exc)
        if curl_errno is not None:
            timed_out = curl_errno == 28
            not_sent = curl_errno in _CURL_NOT_SENT or (
                timed_out and ("Connection timed out" in text or "Resolving timed out" in text)
            )
        else:  # Tornado's client: 599 Timeout, or the stream closed
            timed_out = "Timeout" in text
            not_sent = False
        errcode = "timeout" if timed_out else "network"
        return _Retryable(errcode, f"{errcode}: {text}", ambiguous=not not_sent)
    # Tornado's client raises OSError when it cannot connect: refused, unreachable, DNS.
    return _Retryable("network", f"network: {type(exc).__name__}")


def _is_json(response: HTTPResponse) -> bool:
    ctype = response.headers.get("Content-Type", "")
    return "json" in ctype or "text/plain" in ctype or response.body[:1] == b"{"


def _parse_json(path: str, response: HTTPResponse) -> dict[str, Any]:
    try:
        answer = json.loads(response.body)
    except ValueError:
        raise _Retryable("bad_json", "WeChat answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise _Retryable("bad_json", "WeChat answered JSON that is not an object")
    return answer
