"""The floor of a scan+submit pair: the same I/O as the real server, none of its logic.

    python benchmarks/rating_floor.py PORT DB_PATH REDIS_URL SANDBOX_URL SCAN_BYTES

A Tornado app, one process, with the two routes ``rating.py`` loads. Each does what the real
request has to do on this stack and nothing else: no validation, no peewee, no ORM rows, no
access log line, no metrics.

- ``POST /api/v1/scan``: the session GET in Redis (the bearer token's key, as
  ``services.auth`` stores it), one SELECT on the database thread pool, a JSON answer of
  ``SCAN_BYTES`` (the size of the real scan answer).
- ``POST /api/v1/evaluations``: the session GET, one SELECT on the pool, ``wxa/msg_sec_check``
  to the sandbox through Tornado's libcurl client (a kept-alive connection, the token fetched
  once at start), the claim ``SET NX EX`` in Redis, one write transaction on the pool
  (``BEGIN IMMEDIATE``, an INSERT, COMMIT), ``PUBSUB CHANNELS``, a 201 JSON answer.

So a pair here is two HTTP requests, three thread-pool trips, four Redis round trips and one
WeChat call: what ``rating.py`` measures for the real server minus everything the product
adds. ``rating.py`` runs it in the same run as the bare handler and the real server, so the
three figures compare.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
import tornado.web
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPRequest

APPID = "wx00000000000000a1"
SECRET = "00000000000000000000000000000001"
THREADS = 4


class Floor:
    def __init__(self, db_path: str, redis_url: str, sandbox_url: str, scan_bytes: int):
        self.db_path = db_path
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.sandbox_url = sandbox_url
        self.http = CurlAsyncHTTPClient(force_instance=True, max_clients=64)
        self.pool = ThreadPoolExecutor(THREADS)
        self.local = threading.local()
        self.token = ""
        self.scan_answer = json.dumps({"pad": "x" * max(scan_bytes - 10, 0)}).encode()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=wal")
            conn.execute("PRAGMA synchronous=normal")
            conn.execute("PRAGMA busy_timeout=5000")
            self.local.conn = conn
        return conn

    def setup(self) -> None:
        self.conn().execute(
            "CREATE TABLE IF NOT EXISTS rating (id INTEGER PRIMARY KEY, scene TEXT, body TEXT)"
        )

    def select(self) -> None:
        self.conn().execute("SELECT id, scene FROM rating ORDER BY id DESC LIMIT 1").fetchall()

    def insert(self, scene: str, body: str) -> int:
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute("INSERT INTO rating (scene, body) VALUES (?, ?)", (scene, body))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cursor.lastrowid

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def fetch_token(self) -> None:
        body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        response = await self.http.fetch(
            HTTPRequest(
                self.sandbox_url + "cgi-bin/stable_token",
                method="POST",
                body=json.dumps(body),
                request_timeout=5,
            )
        )
        self.token = json.loads(response.body)["access_token"]


class Base(tornado.web.RequestHandler):
    def initialize(self, floor: Floor) -> None:
        self.floor = floor

    async def session(self) -> str | None:
        token = self.request.headers.get("Authorization", "")[7:]
        key = "wxb:sess:" + hashlib.sha256(token.encode()).hexdigest()
        return await self.floor.redis.get(key)

    def check_xsrf_cookie(self) -> None:
        pass


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"status": "ok"})


class Scan(Base):
    async def post(self) -> None:
        if await self.session() is None:
            raise tornado.web.HTTPError(401)
        await self.floor.run(self.floor.select)
        self.set_header("Content-Type", "application/json")
        self.finish(self.floor.scan_answer)


class Evaluations(Base):
    async def post(self) -> None:
        user = await self.session()
        if user is None:
            raise tornado.web.HTTPError(401)
        body = json.loads(self.request.body)
        floor = self.floor
        await floor.run(floor.select)
        check = {"version": 2, "openid": "o", "scene": 2, "content": body.get("comment", "")}
        await floor.http.fetch(
            HTTPRequest(
                f"{floor.sandbox_url}wxa/msg_sec_check?access_token={floor.token}",
                method="POST",
                body=json.dumps(check, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
                request_timeout=5,
            ),
            raise_error=False,
        )
        await floor.redis.set(f"wxb:floor-claim:{body['scene']}", user, nx=True, ex=30)
        new_id = await floor.run(floor.insert, body["scene"], self.request.body.decode())
        await floor.redis.pubsub_channels("wxb:live:*")
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"id": str(new_id), "overall": body.get("overall")}))


async def main(port: int, db_path: str, redis_url: str, sandbox_url: str, scan_bytes: int):
    floor = Floor(db_path, redis_url, sandbox_url, scan_bytes)
    await floor.run(floor.setup)
    await floor.fetch_token()
    app = tornado.web.Application(
        [
            (r"/api/v1/scan", Scan, {"floor": floor}),
            (r"/api/v1/evaluations", Evaluations, {"floor": floor}),
            (r"/healthz", Ready),
        ]
    )
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, db_path, redis_url, sandbox_url, scan_bytes = sys.argv[1:6]
    asyncio.run(main(int(port), db_path, redis_url, sandbox_url, int(scan_bytes)))
