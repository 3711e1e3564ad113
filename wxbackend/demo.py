"""``wxbackend demo``: the whole 好差评 flow end to end against the WeChat sandbox, step by step.

The real server runs in-process (:class:`wxbackend.server.AppServer`: the same settings as
``serve`` — by default SQLite ``data/wxbackend.db``, embedded Redis, the WeChat sandbox, the
embedded worker) on a free port (or ``--port``). The demo passes two settings of its own:
``reminders.first_after_seconds = 1`` and ``reminders.quiet_hours = ""`` so that a reminder
arrives while you watch. Then it plays every actor over real HTTP, printing each step in
Chinese and English with its key values:

1. setup, in-process through the services: the example catalogue
   (``conf/catalog.example.json``), a demo partner key, a demo superadmin ``demo`` (its
   generated password is printed when it is created and kept in
   ``<data_dir>/demo-admin-password.txt``, mode 0600); reused when present;
2. the admin configures the subscribe-message templates; the sandbox registers them;
3. the window system reports a finished case (signed) and fetches its QR code image
   (saved as ``<data_dir>/demo-qr.png``);
4. the citizen logs in, accepts the subscriptions, verifies by face, sees the case pending,
   scans, is reminded about a second case by the worker, rates the first one 2 stars (a 差评);
   a second citizen likes the rating;
5. the admin works the 差评 ticket: verify → rectify → callback (satisfied) → close; the
   citizen gets the rectified notice;
6. the URLs to browse (the public page, the APIs, the console with the demo credentials).

A step whose endpoint is missing prints ``skipped: <reason>`` and the demo goes on; any other
failure stops it with a message and exit code 1. Every run reports new cases; the catalogue,
partner key and admin are reused. Nothing printed shows an ID number or a real name: only the
demo's fictional personas, and masks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import signal
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.netutil
from stdnum.cn import ric

from wxbackend.settings import Settings, SettingsError

CATALOG_FILE = Path(__file__).resolve().parent.parent / "conf" / "catalog.example.json"
ADMIN_USERNAME = "demo"
PASSWORD_FILE = "demo-admin-password.txt"  # noqa: S105 (a file name)
QR_FILE = "demo-qr.png"
PARTNER_NAME = "演示窗口系统 (wxbackend demo)"
TEMPLATE_REMINDER = "wxb-demo-reminder"
TEMPLATE_RECTIFIED = "wxb-demo-rectified"
#: Codes of conf/catalog.example.json that fit together (item → department → center).
CASE_CODES = {
    "center_code": "440103-HL",
    "department_code": "HL-LABOR",
    "window_code": "HL-W01",
    "window_staff_no": "HL001",
    "approver_staff_no": "HL101",
}
FIRST_ITEM = "440103-SY-001"  # 失业登记
SECOND_ITEM = "440103-JY-001"  # 就业登记
#: The demo's fictional people (the only full names it prints).
APPLICANT = "林晓雨"
LIKER = "周子安"
COMMENT = "材料清单没有一次性告知，我跑了两趟才办成。"
WAIT_SECONDS = 20.0
#: (number, Chinese title, English title, method of :class:`Demo`), in order.
STEPS = [
    (
        "1",
        "准备：目录、合作方密钥、演示管理员",
        "setup: catalogue, partner key, demo admin",
        "setup",
    ),
    ("2", "配置微信订阅消息模板", "WeChat subscribe-message templates", "templates"),
    ("3", "窗口系统上报办件并取二维码", "the window system reports a case, gets its QR", "report"),
    ("4.1", "群众微信登录", "citizen logs in with WeChat", "login"),
    ("4.2", "同意订阅消息", "citizen accepts the subscribe messages", "subscribe"),
    ("4.3", "人脸核身（实名）", "face verification (real name)", "face"),
    ("4.4", "我的待评价办件", "/me shows the pending case", "me"),
    ("4.5", "扫码", "citizen scans the QR code", "scan"),
    ("4.6", "提醒评价（后台任务发送）", "the worker sends a reminder to rate", "reminder"),
    ("4.7", "评价：2 星差评", "citizen rates 2 stars (a 差评)", "rate"),
    ("4.8", "另一位群众点赞", "a second citizen likes the rating", "like"),
    ("5", "差评工单：核实 → 整改 → 回访 → 办结", "the 差评 ticket worked through", "ticket"),
]


class DemoError(Exception):
    """A step failed: the demo stops with this message (exit code 1)."""


class Skip(Exception):
    """A step cannot run (its endpoint is not there yet, or an earlier step was skipped)."""


@dataclass
class Reply:
    status: int
    data: Any
    body: bytes
    content_type: str


@dataclass
class State:
    """What the steps hand each other."""

    partner_key: str = ""
    partner_secret: str = ""
    admin_password: str = ""
    admin_password_new: bool = False
    admin_token: str | None = None
    templates: bool = False
    case1: dict[str, Any] | None = None
    citizen: dict[str, Any] | None = None
    evaluation_id: str | None = None
    ticket_id: str | None = None
    skipped: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- small helpers


def fictional_id_number() -> str:
    """A valid, random resident ID number (GB 11643) of nobody: Beijing Chaoyang, 1985–1999."""
    birth = date(1985, 1, 1) + timedelta(days=secrets.randbelow(15 * 365))
    first17 = f"110105{birth:%Y%m%d}{secrets.randbelow(1000):03d}"
    return first17 + ric.calc_check_digit(first17 + "0")


def mask_id(id_number: str) -> str:
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_name(name: str | None) -> str:
    return (name or "")[:1] + "**" if name else "-"


def mask_token(value: str | None, keep: int = 4) -> str:
    return f"{value[:keep]}…" if value else "-"


def iso_ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(timespec="seconds")


def _error_text(reply: Reply) -> str:
    if isinstance(reply.data, dict) and isinstance(reply.data.get("error"), dict):
        err = reply.data["error"]
        return f"{err.get('code')}: {err.get('message')}"
    return reply.body[:200].decode("utf-8", "replace")


def out(text: str = "") -> None:
    print(text, flush=True)


def line(zh: str, en: str, value: str = "") -> None:
    out(f"    {zh} · {en}" + (f": {value}" if value else ""))


# --------------------------------------------------------------------------- the demo


class Demo:
    def __init__(self, server: Any, base: str, sandbox: str, data_dir: str):
        self.server = server
        self.ctx = server.ctx
        self.settings: Settings = server.settings
        self.base = base
        self.sandbox = sandbox
        self.data_dir = data_dir
        self.http = tornado.httpclient.AsyncHTTPClient()
        self.s = State()

    # ---- HTTP

    async def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if payload is None and method in ("POST", "PUT"):
            payload = b""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        request = tornado.httpclient.HTTPRequest(
            url, method=method, body=payload, headers=all_headers, request_timeout=30
        )
        try:
            resp = await self.http.fetch(request, raise_error=False)
        except OSError as exc:
            raise DemoError(f"{method} {url}: {exc}") from None
        ctype = resp.headers.get("Content-Type", "")
        data = None
        if "json" in ctype and resp.body:
            with contextlib.suppress(ValueError):
                data = json.loads(resp.body)
        return Reply(resp.code, data, resp.body or b"", ctype)

    async def api(self, method: str, path: str, body: Any = None, *, expect: int = 200, **kw):
        """A call to the server; the answer's JSON, or Skip (endpoint missing) / DemoError."""
        reply = await self.call(method, self.base + path, body, **kw)
        return self._check(method, path, reply, expect)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """A call to the sandbox's control API (``/_sandbox/<path>``)."""
        reply = await self.call(method, f"{self.sandbox}_sandbox/{path}", body)
        return self._check(method, f"/_sandbox/{path}", reply, 200)

    @staticmethod
    def _check(method: str, path: str, reply: Reply, expect: int) -> Any:
        if reply.status == expect:
            return reply.data if reply.data is not None else reply
        route = path.split("?")[0]
        if reply.status == 405 or (
            reply.status == 404
            and isinstance(reply.data, dict)
            and (reply.data.get("error") or {}).get("message") == "No such endpoint."
        ):
            raise Skip(f"{method} {route} is not available yet (HTTP {reply.status})")
        raise DemoError(f"{method} {route} → HTTP {reply.status} ({_error_text(reply)})")

    async def partner(self, method: str, target: str, body: Any = None, expect: int = 200):
        """A signed partner request (the contract's HMAC, ``partner_auth.compute_signature``)."""
        from wxbackend.services.cases.partners import compute_signature

        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        ts, nonce = str(int(time.time())), secrets.token_urlsafe(16)
        headers = {
            "X-Partner-Key": self.s.partner_key,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": compute_signature(
                self.s.partner_secret, method, target, ts, nonce, payload
            ),
        }
        reply = await self.call(
            method, self.base + target, headers=headers, raw=payload if body is not None else None
        )
        return self._check(method, target, reply, expect)

    async def wait_for_message(self, openid: str, template_id: str, page_suffix: str) -> dict:
        query = urllib.parse.urlencode({"openid": openid, "template_id": template_id})
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            items = (await self.control("GET", f"messages?{query}"))["items"]
            for item in items:
                if (item.get("page") or "").endswith(page_suffix):
                    return item
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no {template_id} message for …{page_suffix} reached the sandbox within "
                    f"{WAIT_SECONDS:.0f} s (is the worker running? worker.embedded)"
                )
            await asyncio.sleep(0.2)

    # ---- steps

    async def run(self) -> None:
        steps = [(number, zh, en, getattr(self, name)) for number, zh, en, name in STEPS]
        for number, zh, en, action in steps:
            out(f"\n[{number}] {zh} · {en}")
            try:
                await action()
            except Skip as exc:
                out(f"    skipped: {exc}")
                self.s.skipped.append(f"{number} ({en}): {exc}")
            except DemoError as exc:
                raise DemoError(f"step {number} ({en}): {exc}") from None

    async def setup(self) -> None:
        from wxbackend.services.catalogue.importer import (
            CatalogError,
            import_catalog,
            load_catalog_file,
        )

        try:
            report = await self.ctx.db.run(
                import_catalog, load_catalog_file(str(CATALOG_FILE)), self.ctx.hasher
            )
        except CatalogError as exc:
            raise DemoError(f"catalogue import: {exc}") from None
        rows = ", ".join(f"{section} {sum(c.values())}" for section, c in report.counts.items())
        outcomes = " / ".join(f"{report.total(o)} {o}" for o in ("created", "updated", "unchanged"))
        line("导入示例目录", "catalogue imported", f"{CATALOG_FILE.name}: {rows} ({outcomes})")
        key_id, secret, created = await self.ctx.db.run(self._partner_key)
        self.s.partner_key, self.s.partner_secret = key_id, secret
        line(
            "合作方密钥",
            "partner key",
            f"{key_id} ({'new' if created else 'reused'}; secret kept encrypted in the database)",
        )
        password, created = await self.ctx.db.run(self._admin)
        self.s.admin_password, self.s.admin_password_new = password, created
        where = os.path.join(self.data_dir, PASSWORD_FILE)
        if created:
            line(
                "演示超级管理员",
                "demo superadmin",
                f"{ADMIN_USERNAME} / password {password}  (shown once; also in {where}, mode 0600)",
            )
        else:
            line(
                "演示超级管理员",
                "demo superadmin",
                f"{ADMIN_USERNAME} (reused; password in {where})",
            )

    def _partner_key(self) -> tuple[str, str, bool]:
        from models.access import Partner
        from wxbackend.db import database
        from wxbackend.security import DecryptionError
        from wxbackend.services.admin.accounts import create_partner
        from wxbackend.services.cases.partner_keys import SECRET_CONTEXT

        rows = (
            Partner.select()
            .where((Partner.name == PARTNER_NAME) & Partner.revoked_at.is_null())
            .order_by(Partner.id.desc())
        )
        for row in rows:
            with contextlib.suppress(DecryptionError):
                return row.key_id, self.ctx.cipher.decrypt(row.secret_enc, SECRET_CONTEXT), False
        with database.atomic():
            key = create_partner(PARTNER_NAME, self.ctx.cipher)
        return key.key_id, key.secret, True

    def _admin(self) -> tuple[str, bool]:
        """The demo superadmin's password, and whether it is new (created or reset)."""
        from models.access import Admin
        from wxbackend.db import database
        from wxbackend.security import verify_password
        from wxbackend.services.admin.accounts import create_admin, update_admin
        from wxbackend.services.admin.audit import Actor

        path = Path(self.data_dir) / PASSWORD_FILE
        admin = Admin.get_or_none(Admin.username == ADMIN_USERNAME)
        stored = path.read_text().strip() if path.exists() else ""
        if (
            admin is not None
            and stored
            and admin.role == "superadmin"
            and not admin.disabled
            and verify_password(stored, admin.password_hash)
        ):
            return stored, False
        password = secrets.token_urlsafe(12)
        if admin is None:
            with database.atomic():
                create_admin(ADMIN_USERNAME, password, "superadmin")
        else:  # the demo's own account, whose password it no longer knows: reset it (audited)
            changes = {"password": password, "role": "superadmin", "disabled": False}
            update_admin(Actor(None, "cli:demo"), ADMIN_USERNAME, changes)
        os.makedirs(self.data_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        return password, True

    async def admin_login(self) -> str:
        if self.s.admin_token is None:
            answer = await self.api(
                "POST",
                "/admin/api/login",
                {"username": ADMIN_USERNAME, "password": self.s.admin_password},
            )
            self.s.admin_token = answer["token"]
            line("管理员登录", "admin logged in", f"{ADMIN_USERNAME} (role {answer['role']})")
        return self.s.admin_token

    async def templates(self) -> None:
        token = await self.admin_login()
        answer = await self.api(
            "PUT",
            "/admin/api/wechat-config",
            {"templates": {"reminder": TEMPLATE_REMINDER, "rectified": TEMPLATE_RECTIFIED}},
            token=token,
        )
        line(
            "模板已配置",
            "templates configured",
            f"reminder={answer['templates']['reminder']}, "
            f"rectified={answer['templates']['rectified']} "
            f"(config version {answer.get('version')})",
        )
        fields = list(self.settings.reminders.template_fields)
        for template_id in (TEMPLATE_REMINDER, TEMPLATE_RECTIFIED):
            await self.control("POST", "templates", {"template_id": template_id, "fields": fields})
        line("沙箱登记模板", "registered in the sandbox", f"fields {'/'.join(fields)}")
        self.s.templates = True

    def case_body(self, item_code: str, id_number: str) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return {
            "case_no": f"DEMO-{stamp}-{secrets.token_hex(3).upper()}",
            "item_code": item_code,
            **CASE_CODES,
            "applicant": {"name": APPLICANT, "id_number": id_number},
            "accepted_at": iso_ago(40),
            "completed_at": iso_ago(5),
        }

    async def report(self) -> None:
        id_number = fictional_id_number()
        body = self.case_body(FIRST_ITEM, id_number)
        answer = await self.partner("POST", "/api/v1/partner/cases", body, expect=201)
        self.s.case1 = {**answer, "case_no": body["case_no"], "id_number": id_number}
        line(
            "办件已上报",
            "case reported (signed POST /api/v1/partner/cases)",
            f"case_no {body['case_no']}, case_id {answer['case_id']}, item {FIRST_ITEM}, "
            f"applicant {APPLICANT} {mask_id(id_number)}",
        )
        line(
            "一次性二维码",
            "one-time QR token",
            f"scene {mask_token(answer['scene'])} ({len(answer['scene'])} chars), "
            f"valid until {answer['expires_at']}",
        )
        target = "/api/v1/partner/qrcode.png?" + urllib.parse.urlencode({"scene": answer["scene"]})
        png = await self.partner("GET", target)
        if not isinstance(png, Reply) or not png.body.startswith(b"\x89PNG"):
            raise DemoError("GET /api/v1/partner/qrcode.png did not answer a PNG")
        os.makedirs(self.data_dir, exist_ok=True)
        path = os.path.join(self.data_dir, QR_FILE)
        with open(path, "wb") as fh:
            fh.write(png.body)
        line(
            "二维码图片", "QR code image saved", f"{os.path.abspath(path)} ({len(png.body)} bytes)"
        )

    async def new_citizen(self) -> dict[str, Any]:
        code = await self.control("POST", "login-code", {})
        answer = await self.api("POST", "/api/v1/auth/login", {"code": code["code"]})
        return {"openid": code["openid"], "token": answer["token"], "user": answer["user"]}

    async def verify(self, citizen: dict[str, Any], name: str, id_number: str) -> dict:
        started = await self.api(
            "POST",
            "/api/v1/identity/face/start",
            {"name": name, "id_number": id_number},
            token=citizen["token"],
        )
        await self.control(
            "POST", "face/finish", {"verify_id": started["verify_id"], "verify_ret": 10000}
        )
        return await self.api(
            "POST",
            "/api/v1/identity/face/finish",
            {"verify_id": started["verify_id"]},
            token=citizen["token"],
        )

    def need(self, *what: str) -> None:
        names = {"case1": "step 3 (the case)", "citizen": "step 4.1 (login)"}
        names |= {"evaluation_id": "step 4.7 (the rating)", "templates": "step 2 (templates)"}
        for attr in what:
            if not getattr(self.s, attr):
                raise Skip(f"needs {names[attr]}, which did not run")

    async def login(self) -> None:
        citizen = await self.new_citizen()
        self.s.citizen = citizen
        line(
            "沙箱 wx.login 取 code，登录",
            "login code from the sandbox → POST /api/v1/auth/login",
            f"user {citizen['user']['id']}, openid {mask_token(citizen['openid'], 6)}, "
            f"verified {citizen['user']['verified']}",
        )

    async def subscribe(self) -> None:
        self.need("citizen", "templates")
        citizen = self.s.citizen
        assert citizen is not None
        # Two popups (wx.requestSubscribeMessage): reminders for two cases, one rectified notice.
        popups = [{TEMPLATE_REMINDER: "accept", TEMPLATE_RECTIFIED: "accept"}]
        popups.append({TEMPLATE_REMINDER: "accept"})
        quota: dict[str, int] = {}
        for results in popups:
            answer = await self.api(
                "POST", "/api/v1/subscriptions", {"results": results}, token=citizen["token"]
            )
            quota.update(answer["quota"])
        line("订阅结果", "POST /api/v1/subscriptions (two popups)", f"quota {quota}")
        for template_id, count in ((TEMPLATE_REMINDER, 2), (TEMPLATE_RECTIFIED, 1)):
            await self.control(
                "POST",
                "quota",
                {"openid": citizen["openid"], "template_id": template_id, "count": count},
            )
        line(
            "微信侧额度",
            "the same quota at WeChat (sandbox)",
            f"{TEMPLATE_REMINDER} 2, {TEMPLATE_RECTIFIED} 1",
        )

    async def face(self) -> None:
        self.need("citizen", "case1")
        assert self.s.citizen is not None and self.s.case1 is not None
        done = await self.verify(self.s.citizen, APPLICANT, self.s.case1["id_number"])
        line(
            "核身通过",
            "verified (sandbox verify_ret 10000)",
            f"{APPLICANT} {mask_id(self.s.case1['id_number'])} → shown as {done['name_masked']}",
        )

    async def me(self) -> None:
        self.need("citizen", "case1")
        assert self.s.citizen is not None and self.s.case1 is not None
        me = await self.api("GET", "/api/v1/me", token=self.s.citizen["token"])
        identity = me.get("identity") or {}
        line(
            "实名状态",
            "identity",
            f"verified {identity.get('verified')}, {identity.get('name_masked')}",
        )
        pending = [
            c for c in me.get("pending_cases", []) if c["case_id"] == self.s.case1["case_id"]
        ]
        if not pending:
            raise DemoError("the reported case is not among /me's pending_cases")
        case = pending[0]
        line(
            "待评价",
            "pending case",
            f"case_id {case['case_id']} {case['item']['name']} @ {case['center']['name']}, "
            f"rate until {case['rate_until']}",
        )

    async def scan(self) -> None:
        self.need("citizen", "case1")
        assert self.s.citizen is not None and self.s.case1 is not None
        answer = await self.api(
            "POST", "/api/v1/scan", {"scene": self.s.case1["scene"]}, token=self.s.citizen["token"]
        )
        case, form = answer["case"], answer["form"]
        self.s.case1["form"] = form
        staff = case.get("window_staff") or {}
        line(
            "办件信息",
            "POST /api/v1/scan → the case",
            f"{case['item']['name']} ({case['department']['name']}), window staff "
            f"{mask_name(staff.get('name'))} #{staff.get('staff_no')}, "
            f"completed {case['completed_at']}",
        )
        labels = ", ".join(i["label"] for i in form.get("indicators", [])[:4])
        line(
            "评价表",
            "the form",
            f"{len(form.get('levels', []))} levels, indicators e.g. {labels} … (token valid until "
            f"{answer['expires_at']})",
        )

    async def reminder(self) -> None:
        self.need("citizen", "case1", "templates")
        assert self.s.citizen is not None and self.s.case1 is not None
        body = self.case_body(SECOND_ITEM, self.s.case1["id_number"])
        answer = await self.partner("POST", "/api/v1/partner/cases", body, expect=201)
        case_id = answer["case_id"]
        line(
            "第二件办件已上报",
            "a second case reported for the same citizen",
            f"case_no {body['case_no']}, case_id {case_id}, item {SECOND_ITEM}; reminder due in "
            f"{self.settings.reminders.first_after_seconds} s (demo setting)",
        )
        openid = self.s.citizen["openid"]
        message = await self.wait_for_message(openid, TEMPLATE_REMINDER, f"?case_id={case_id}")
        data = {k: v.get("value") for k, v in (message.get("data") or {}).items()}
        line(
            "提醒已送达（沙箱）",
            "reminder in GET /_sandbox/messages",
            f"template {message['template_id']}, page {message['page']}, data {data}",
        )
        query = urllib.parse.urlencode({"openid": openid, "template_id": TEMPLATE_REMINDER})
        others = [
            m["page"]
            for m in (await self.control("GET", f"messages?{query}"))["items"]
            if m is not message and not m["page"].endswith(f"?case_id={case_id}")
        ]
        if others:
            line(
                "另有提醒",
                "also sent (the first case: identity bound after it was reported)",
                ", ".join(others),
            )

    async def rate(self) -> None:
        self.need("citizen", "case1")
        assert self.s.citizen is not None and self.s.case1 is not None
        form = self.s.case1.get("form") or {}
        indicators = form.get("indicators") or []
        if not indicators:
            raise Skip("needs step 4.5 (the scanned form with its indicators)")
        chosen = next((i for i in indicators if "一次" in i["label"]), indicators[0])
        body = {
            "scene": self.s.case1["scene"],
            "overall": 2,
            "stages": {"appointment": 4, "handling": 2, "delivery": 3},
            "targets": {"window_staff": 2, "approver": 3, "department": 3},
            "indicators": [chosen["code"]],
            "comment": COMMENT,
        }
        answer = await self.api(
            "POST", "/api/v1/evaluations", body, token=self.s.citizen["token"], expect=201
        )
        evaluation = answer["evaluation"]
        self.s.evaluation_id = str(evaluation["id"])
        line(
            "已评价",
            "POST /api/v1/evaluations → 201",
            f"evaluation {evaluation['id']}: overall {evaluation['overall']} (不满意), indicator "
            f"{chosen['code']} {chosen['label']}, channel {evaluation['channel']}, comment "
            f"{evaluation['comment_status']}: {COMMENT}",
        )

    async def public_item(self) -> dict[str, Any] | None:
        center = CASE_CODES["center_code"]
        answer = await self.api("GET", f"/api/v1/public/evaluations?center={center}&limit=20")
        return next((i for i in answer["items"] if str(i["id"]) == self.s.evaluation_id), None)

    async def like(self) -> None:
        self.need("evaluation_id")
        liker = await self.new_citizen()
        liker_id = fictional_id_number()
        done = await self.verify(liker, LIKER, liker_id)
        line(
            "第二位群众",
            "second citizen logged in and verified",
            f"{LIKER} → {done['name_masked']}",
        )
        answer = await self.api(
            "PUT", f"/api/v1/evaluations/{self.s.evaluation_id}/like", token=liker["token"]
        )
        line("点赞", "PUT /like", f"liked {answer['liked']}, like_count {answer['like_count']}")
        item = await self.public_item()
        if item is not None:
            line(
                "公开展示",
                "on the public list",
                f"{item['name_masked']} {item['overall']}★ “{item['comment']}”, likers "
                f"{item['likers']}, ticket {item['ticket_status']}",
            )

    async def find_ticket(self, token: str) -> dict[str, Any]:
        cursor = None
        for _ in range(10):
            query = "/admin/api/tickets?status=open" + (f"&cursor={cursor}" if cursor else "")
            answer = await self.api("GET", query, token=token)
            for item in answer["items"]:
                if str(item["evaluation_id"]) == self.s.evaluation_id:
                    return item
            cursor = answer.get("next_cursor")
            if not cursor:
                break
        raise DemoError(f"no open ticket for evaluation {self.s.evaluation_id}")

    async def ticket(self) -> None:
        self.need("evaluation_id")
        token = await self.admin_login()
        ticket = await self.find_ticket(token)
        self.s.ticket_id = str(ticket["id"])
        line(
            "差评工单",
            "GET /admin/api/tickets",
            f"ticket {ticket['id']} for case {ticket['case_no']}: {ticket['status']}; "
            f"verify_due {ticket['verify_due']}, rectify_due {ticket['rectify_due']}, "
            f"overdue {ticket['overdue']}",
        )
        base = f"/admin/api/tickets/{ticket['id']}"
        steps = [
            ("核实", "verify", {"valid": True, "note": "核实属实：窗口未一次性告知所需材料。"}),
            ("整改", "rectify", {"note": "已培训窗口人员，材料清单张贴上墙并一次性告知。"}),
            (
                "回访",
                "callback",
                {"channel": "phone", "satisfied": True, "note": "电话回访，群众表示满意。"},
            ),
            ("办结", "close", {}),
        ]
        for zh, step, body in steps:
            ticket = await self.api("POST", f"{base}/{step}", body, token=token)
            line(zh, f"POST …/{step}", f"→ {ticket['status']}")
        line(
            "时限",
            "deadlines (working days)",
            f"verify_due {ticket['verify_due']}, rectify_due {ticket['rectify_due']}, "
            f"overdue {ticket['overdue']}",
        )
        item = await self.public_item()
        if item is not None:
            line("公开整改状态", "public ticket status", str(item["ticket_status"]))
        if self.s.templates and self.s.citizen is not None:
            case_id = self.s.case1["case_id"] if self.s.case1 else ""
            message = await self.wait_for_message(
                self.s.citizen["openid"], TEMPLATE_RECTIFIED, f"?case_id={case_id}"
            )
            data = {k: v.get("value") for k, v in (message.get("data") or {}).items()}
            line(
                "整改通知已送达（沙箱）",
                "rectified notice in GET /_sandbox/messages",
                f"page {message['page']}, data {data}",
            )

    def summary(self, keep_running: bool) -> None:
        b = self.base + "/"
        out("\n[6] 浏览 · Browse")
        line("公开评价页", "public page", f"{b}public/")
        line("评价器页面", "evaluator screen", f"{b}device/{CASE_CODES['window_code']}")
        line(
            "公开接口",
            "public API",
            f"{b}api/v1/public/evaluations?center={CASE_CODES['center_code']}  "
            f"{b}api/v1/public/stats",
        )
        line("接口文档", "OpenAPI", f"{b}openapi.json")
        where = os.path.join(self.data_dir, PASSWORD_FILE)
        password = self.s.admin_password if self.s.admin_password_new else f"(see {where})"
        line("管理后台", "admin console", f"{b}admin/  user {ADMIN_USERNAME}  password {password}")
        line("微信沙箱", "WeChat sandbox", f"{self.sandbox}_sandbox/")
        line("数据", "data", f"{self.settings.database.url} (kept; `wxbackend serve` shows it too)")
        if self.s.skipped:
            out("\nskipped steps:")
            for text in self.s.skipped:
                out(f"    - {text}")
        if keep_running:
            out("\nserving until Ctrl-C · 服务运行中，按 Ctrl-C 结束")
        else:
            out("\ndemo finished · 演示完成 (run `wxbackend demo --keep-running` to browse)")


# --------------------------------------------------------------------------- entry point


def demo_settings(settings: Settings) -> Settings:
    """The settings the demo runs the server with: the given ones, plus a reminder due one
    second after a case is reported, no quiet hours and the embedded worker."""
    if not settings.sandbox_mode:
        raise SettingsError(
            'the demo runs against the WeChat sandbox: wechat.api_base must be "sandbox" '
            f"(it is {settings.wechat.api_base!r})"
        )
    return settings.replace(
        reminders__first_after_seconds=1,
        reminders__quiet_hours="",
        worker__embedded=True,
        worker__poll_seconds=min(settings.worker.poll_seconds, 0.2),
    )


async def _start(settings: Settings, port: int, address: str):
    from wxbackend.server import AppServer

    sockets = tornado.netutil.bind_sockets(port, address)
    sandbox_port = settings.sandbox.port
    for attempt in range(2):
        server = AppServer(settings, sockets, with_sandbox=True, sandbox_port=sandbox_port)
        try:
            await server.start()
            return server
        except OSError as exc:
            await server.stop()
            if exc.errno != errno.EADDRINUSE or attempt:
                raise
            out(f"(sandbox port {sandbox_port} is in use: the demo's sandbox takes a free port)")
            sandbox_port = 0
    raise AssertionError("unreachable")


async def _main(settings: Settings, port: int, address: str, keep_running: bool) -> int:
    server = await _start(settings, port, address)
    try:
        base = f"http://{address}:{server.port}"
        sandbox = server.sandbox_state.base_url
        out("wxbackend demo — 政务服务好差评, end to end against the WeChat sandbox")
        out(f"server {base}/  ·  WeChat sandbox {sandbox}  ·  database {settings.database.url}")
        demo = Demo(server, base, sandbox, settings.server.data_dir)
        try:
            await demo.run()
        except DemoError as exc:
            out(f"\nFAILED: {exc}")
            print(f"wxbackend demo: {exc}", file=sys.stderr)
            return 1
        demo.summary(keep_running)
        if keep_running:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return 0
    finally:
        await server.stop()


def run_demo(settings: Settings, port: int | None = None, keep_running: bool = False) -> int:
    """``wxbackend demo``: 0 when every step worked or was skipped, 1 when one failed."""
    from wxbackend.security import StartupError, load_keys
    from wxbackend.server import migrate_schema

    settings = demo_settings(settings)
    try:
        load_keys(settings)
    except StartupError as exc:
        raise SettingsError(str(exc)) from None
    if settings.log.level == "INFO":  # the demo's own lines tell the story; keep warnings
        logging.getLogger().setLevel(logging.WARNING)
    migrate_schema(settings)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    address = settings.server.address
    try:
        return asyncio.run(_main(settings, port or 0, address, keep_running))
    except OSError as exc:
        print(f"wxbackend demo: cannot start the server: {exc}", file=sys.stderr)
        return 1
