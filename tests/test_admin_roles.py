"""Role and scope rules of every admin endpoint, as one table: endpoint × role → status.

Each :class:`Case` is one request (method, path template, body) and the status each role must
get. The roles (:data:`ROLES`) are logged in once per test run of the table:

* ``superadmin``      — no center (sees everything)
* ``center_admin_a``  — center_admin of center A (``440103-HL``, the example catalogue)
* ``center_admin_b``  — center_admin of center B (``440104-XY``)
* ``handler_a``       — handler of department ``HL-LABOR`` of center A
* ``viewer``          — viewer with no center
* ``auditor``         — auditor (纪检督查) with no center: reads tickets, ratings, the audit log
* ``auditor_a``       — auditor bound to center A
* ``anonymous``       — no token

Who may do what is the permission table (``wxbackend/services/admin/permissions.py``); this
table is its behaviour, route by route.

**Adding rows for your endpoints**: append ``Case``s to :data:`CASES` (build ``expected`` with
:func:`expect`) — or keep them in a module of your own listed in :data:`CASE_MODULES` (a
``CASES`` list run by :func:`run_table`) — and add your handler module to
:data:`CHECKED_MODULES` so that
``test_every_admin_route_has_a_case`` insists every method of its routes appears. Templates
and string values in bodies are ``str.format``-ed with :meth:`RoleEnv.values` — the fixed
codes below, ``{uid}`` (unique per attempt, for rows you create), plus whatever your
``setup`` returns. ``setup(env)`` runs before *each* role's attempt (use it to make a fresh
target, e.g. a row to delete, so one role's success does not change the next role's answer).
Rows of center B are out of center_admin_a's scope: reading or changing them is 404; naming
center B in a write is 403.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from handlers.openapi import implemented_methods
from handlers.routes import all_routes
from models.catalog import Center, Department, ServiceItem, Staff, Window
from tests.support.admins import PASSWORD
from wxbackend.db import database
from wxbackend.services.admin import permissions
from wxbackend.services.admin.accounts import create_admin, create_partner
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file

ROLES = (
    "superadmin",
    "center_admin_a",
    "center_admin_b",
    "handler_a",
    "viewer",
    "auditor",
    "auditor_a",
    "anonymous",
)
#: The admin behind each column: (username, role, center, department).
ACCOUNTS: dict[str, tuple[str, str, str | None, str | None]] = {
    "superadmin": ("role_super", "superadmin", None, None),
    "center_admin_a": ("role_ca_a", "center_admin", "440103-HL", None),
    "center_admin_b": ("role_ca_b", "center_admin", "440104-XY", None),
    "handler_a": ("role_handler_a", "handler", None, "HL-LABOR"),
    "viewer": ("role_viewer", "viewer", None, None),
    "auditor": ("role_auditor", "auditor", None, None),
    "auditor_a": ("role_auditor_a", "auditor", "440103-HL", None),
}
#: The auditor has only tickets.read, evaluations.read and audit.read: 403 elsewhere, bound to
#: a center or not.
NO_AUDITOR = {"auditor": 403, "auditor_a": 403}
CENTER_A, CENTER_B = "440103-HL", "440104-XY"
DEPT_A, DEPT_B = "HL-LABOR", "XY-GEN"
SECOND_CENTER = {
    "centers": [{"code": CENTER_B, "name": "越秀某街政务服务中心", "area_code": "440104"}],
    "departments": [{"code": DEPT_B, "name": "综合受理", "center": CENTER_B}],
    "items": [{"code": "440104-ZH-001", "name": "居住证办理", "department": DEPT_B}],
    "staff": [
        {
            "staff_no": "XY001",
            "name": "周小红",
            "role": "window",
            "department": DEPT_B,
            "center": CENTER_B,
        }
    ],
    "windows": [{"code": "XY-W01", "name": "1号窗口", "center": CENTER_B, "staff_no": "XY001"}],
}
#: Placeholders every template may use.
FIXED = {
    "center_a": CENTER_A,
    "center_b": CENTER_B,
    "dept_a": DEPT_A,
    "dept_b": DEPT_B,
    "item_a": "440103-SY-001",
    "item_b": "440104-ZH-001",
    "staff_a": "HL001",
    "staff_b": "XY001",
    "window_a": "HL-W01",
    "window_b": "XY-W01",
}
#: Handler modules whose every /admin/api route and method must appear in CASES.
CHECKED_MODULES = [
    "handlers.admin",
    "handlers.admin_catalog",
    "handlers.admin_accounts",
    "handlers.admin_tickets",
    "handlers.admin_evaluations",
    "handlers.admin_stats",
    "handlers.admin_messages",
    "handlers.devices",
]
#: Test modules with rows of their own: each has a ``CASES`` list and runs it with
#: :func:`run_table`; their rows count for ``test_every_admin_route_has_a_case``.
CASE_MODULES = [
    "tests.test_admin_roles_ratings",
    "tests.test_admin_roles_stats",
    "tests.test_admin_messages",
]
#: Routes tested elsewhere that the table skips (login is public; logout ends the session).
EXEMPT = {("POST", "/admin/api/login"), ("POST", "/admin/api/logout")}


@dataclass
class RoleEnv:
    """The logged-in roles and the test's resources, handed to each ``setup``."""

    api: Any
    ctx: Any
    tokens: dict[str, str | None]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def values(self) -> dict[str, str]:
        return {**FIXED, "uid": f"{next(self.counter):04d}"}

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the database thread inside a transaction."""

        def run() -> Any:
            with database.atomic():
                return fn(*args)

        return await self.ctx.db.run(run)


Setup = Callable[[RoleEnv, dict[str, str]], Awaitable[dict[str, str]]]


@dataclass(frozen=True)
class Case:
    """One request and the status every role must get for it."""

    method: str
    path: str
    body: Any = None
    expected: dict[str, int] = field(default_factory=dict)
    setup: Setup | None = None


def expect(default: int, **by_role: int) -> dict[str, int]:
    """Every role gets ``default`` except those named; ``anonymous`` gets 401 unless named."""
    table = dict.fromkeys(ROLES, default)
    table["anonymous"] = 401
    table.update(by_role)
    return table


def everyone(status: int) -> dict[str, int]:
    return expect(status)


def superadmin_only(status: int) -> dict[str, int]:
    return expect(403, superadmin=status)


def writers_of_a(status: int) -> dict[str, int]:
    """A write naming center A: superadmin and A's center_admin; B's center_admin 403."""
    return expect(403, superadmin=status, center_admin_a=status)


def writers_of_b(status: int) -> dict[str, int]:
    return expect(403, superadmin=status, center_admin_b=status)


def change_in_a(status: int) -> dict[str, int]:
    """A change of an existing row of center A: B's center_admin cannot see it (404)."""
    return expect(403, superadmin=status, center_admin_a=status, center_admin_b=404)


def read_a() -> dict[str, int]:
    """A catalogue row of center A (the auditor has no catalogue.read)."""
    return expect(200, center_admin_b=404, **NO_AUDITOR)


def read_b() -> dict[str, int]:
    return expect(200, center_admin_a=404, handler_a=404, **NO_AUDITOR)


def catalogue_readers(status: int) -> dict[str, int]:
    """Every role with catalogue.read (all but the auditor)."""
    return expect(status, **NO_AUDITOR)


# ---- setups: a fresh target for each attempt ------------------------------------------------


async def fresh_center(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    code = f"RC-{v['uid']}"
    await env.db(lambda: Center.create(code=code, name="临时中心", area_code="440199"))
    return {"target": code}


async def fresh_department(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    code = f"RD-{v['uid']}"

    def make() -> None:
        center = Center.get(Center.code == CENTER_A)
        Department.create(code=code, name="临时部门", center=center)

    await env.db(make)
    return {"target": code}


async def fresh_item(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    code = f"RI-{v['uid']}"
    await env.db(
        lambda: ServiceItem.create(
            code=code, name="临时事项", department=Department.get(Department.code == DEPT_A)
        )
    )
    return {"target": code}


async def fresh_staff(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    staff_no = f"RS-{v['uid']}"

    def make() -> None:
        department = Department.get(Department.code == DEPT_A)
        Staff.create(
            staff_no=staff_no,
            name="临时",
            role="window",
            department=department,
            center=department.center_id,
        )

    await env.db(make)
    return {"target": staff_no}


async def fresh_window(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    code = f"RW-{v['uid']}"
    await env.db(
        lambda: Window.create(
            code=code, name="临时窗口", center=Center.get(Center.code == CENTER_A)
        )
    )
    return {"target": code}


async def fresh_partner(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    key = await env.db(create_partner, f"临时系统{v['uid']}", env.ctx.cipher)
    return {"target": key.key_id}


async def fresh_admin(env: RoleEnv, v: dict[str, str]) -> dict[str, str]:
    username = f"tmp{v['uid']}"
    await env.db(create_admin, username, PASSWORD, "viewer")
    return {"target": username}


def _staff_body(center: str, dept: str) -> dict[str, str]:
    return {
        "staff_no": "NS-{uid}",
        "name": "新人",
        "role": "window",
        "department": dept,
        "center": center,
    }


CASES: list[Case] = [
    # -- existing admin endpoints
    Case("GET", "/admin/api/me", expected=everyone(200)),
    Case("GET", "/admin/api/wechat-config", expected=expect(200, handler_a=403, **NO_AUDITOR)),
    Case("PUT", "/admin/api/wechat-config", {"env_version": "trial"}, superadmin_only(200)),
    Case("POST", "/admin/api/wechat-config/test", None, superadmin_only(200)),
    Case("GET", "/admin/api/wechat-config/history", expected=superadmin_only(200)),
    # -- centers
    Case("GET", "/admin/api/centers", expected=catalogue_readers(200)),
    Case(
        "POST",
        "/admin/api/centers",
        {"code": "NC-{uid}", "name": "新中心", "area_code": "440199"},
        superadmin_only(201),
    ),
    Case("GET", "/admin/api/centers/{center_a}", expected=read_a()),
    Case("GET", "/admin/api/centers/{center_b}", expected=read_b()),
    Case(
        "PUT", "/admin/api/centers/{center_a}", {"name": "海龙街政务服务中心"}, superadmin_only(200)
    ),
    Case(
        "DELETE", "/admin/api/centers/{target}", expected=superadmin_only(204), setup=fresh_center
    ),
    # -- departments
    Case("GET", "/admin/api/departments", expected=catalogue_readers(200)),
    Case(
        "POST",
        "/admin/api/departments",
        {"code": "ND-{uid}", "name": "新部门", "center": "{center_a}"},
        writers_of_a(201),
    ),
    Case(
        "POST",
        "/admin/api/departments",
        {"code": "ND-{uid}", "name": "新部门", "center": "{center_b}"},
        writers_of_b(201),
    ),
    Case("GET", "/admin/api/departments/{dept_a}", expected=read_a()),
    Case("GET", "/admin/api/departments/{dept_b}", expected=read_b()),
    Case("PUT", "/admin/api/departments/{dept_a}", {"name": "劳动保障专窗"}, change_in_a(200)),
    Case(
        "DELETE",
        "/admin/api/departments/{target}",
        expected=change_in_a(204),
        setup=fresh_department,
    ),
    # -- items
    Case("GET", "/admin/api/items", expected=catalogue_readers(200)),
    Case(
        "POST",
        "/admin/api/items",
        {"code": "NI-{uid}", "name": "新事项", "department": "{dept_a}"},
        writers_of_a(201),
    ),
    Case(
        "POST",
        "/admin/api/items",
        {"code": "NI-{uid}", "name": "新事项", "department": "{dept_b}"},
        writers_of_b(201),
    ),
    Case("GET", "/admin/api/items/{item_a}", expected=read_a()),
    Case("GET", "/admin/api/items/{item_b}", expected=read_b()),
    Case("PUT", "/admin/api/items/{item_a}", {"name": "失业登记"}, change_in_a(200)),
    Case("DELETE", "/admin/api/items/{target}", expected=change_in_a(204), setup=fresh_item),
    # -- staff
    Case("GET", "/admin/api/staff", expected=catalogue_readers(200)),
    Case("POST", "/admin/api/staff", _staff_body("{center_a}", "{dept_a}"), writers_of_a(201)),
    Case("POST", "/admin/api/staff", _staff_body("{center_b}", "{dept_b}"), writers_of_b(201)),
    Case("GET", "/admin/api/staff/{staff_a}", expected=read_a()),
    Case("GET", "/admin/api/staff/{staff_b}", expected=read_b()),
    Case("PUT", "/admin/api/staff/{staff_a}", {"name": "黄玉华"}, change_in_a(200)),
    Case("DELETE", "/admin/api/staff/{target}", expected=change_in_a(204), setup=fresh_staff),
    # -- windows
    Case("GET", "/admin/api/windows", expected=catalogue_readers(200)),
    Case(
        "POST",
        "/admin/api/windows",
        {"code": "NW-{uid}", "name": "新窗口", "center": "{center_a}"},
        writers_of_a(201),
    ),
    Case(
        "POST",
        "/admin/api/windows",
        {"code": "NW-{uid}", "name": "新窗口", "center": "{center_b}"},
        writers_of_b(201),
    ),
    Case("GET", "/admin/api/windows/{window_a}", expected=read_a()),
    Case("GET", "/admin/api/windows/{window_b}", expected=read_b()),
    Case("PUT", "/admin/api/windows/{window_a}", {"name": "1号窗口"}, change_in_a(200)),
    Case("DELETE", "/admin/api/windows/{target}", expected=change_in_a(204), setup=fresh_window),
    # a window's evaluator-screen key: who may change the window's center (catalogue.write)
    Case("POST", "/admin/api/windows/{window_a}/device-key", expected=change_in_a(200)),
    Case(
        "POST",
        "/admin/api/windows/{window_b}/device-key",
        expected=expect(403, superadmin=200, center_admin_b=200, center_admin_a=404),
    ),
    # -- partner keys
    Case("GET", "/admin/api/partners", expected=superadmin_only(200)),
    Case("POST", "/admin/api/partners", {"name": "系统{uid}"}, superadmin_only(201)),
    Case(
        "POST",
        "/admin/api/partners/{target}/revoke",
        expected=superadmin_only(200),
        setup=fresh_partner,
    ),
    # -- administrators and the audit log
    Case("GET", "/admin/api/admins", expected=superadmin_only(200)),
    Case(
        "POST",
        "/admin/api/admins",
        {"username": "new{uid}", "password": PASSWORD, "role": "viewer"},
        superadmin_only(201),
    ),
    Case("GET", "/admin/api/admins/{target}", expected=superadmin_only(200), setup=fresh_admin),
    Case(
        "PUT",
        "/admin/api/admins/{target}",
        {"role": "handler", "department": "{dept_a}"},
        superadmin_only(200),
        setup=fresh_admin,
    ),
    Case("DELETE", "/admin/api/admins/{target}", expected=superadmin_only(204), setup=fresh_admin),
    Case(
        "GET",
        "/admin/api/audit-log",
        expected=expect(403, superadmin=200, viewer=200, auditor=200, auditor_a=200),
    ),
]


# ---- the machinery ---------------------------------------------------------------------------


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


async def _login(api: Any, username: str) -> str:
    status, answer = await api(
        "POST", "/admin/api/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, answer
    return answer["token"]


async def role_env(api: Any, ctx: Any) -> RoleEnv:
    """Catalogue A (conf/catalog.example.json) and B, one admin per role, logged in."""
    from pathlib import Path

    example = load_catalog_file(str(Path(__file__).parent.parent / "conf/catalog.example.json"))

    def seed() -> None:
        with database.atomic():
            import_catalog(example, ctx.hasher)
            import_catalog(SECOND_CENTER, ctx.hasher)
            for username, role, center, department in ACCOUNTS.values():
                create_admin(username, PASSWORD, role, center, department)

    await ctx.db.run(seed)
    usernames = {column: account[0] for column, account in ACCOUNTS.items()}
    tokens: dict[str, str | None] = {r: await _login(api, u) for r, u in usernames.items()}
    tokens["anonymous"] = None
    return RoleEnv(api, ctx, tokens)


async def attempt(env: RoleEnv, case: Case, role: str) -> tuple[int, Any, str]:
    values = env.values()
    if case.setup is not None:
        values.update(await case.setup(env, values))
    path = _fill(case.path, values)
    body = _fill(case.body, values)
    status, answer = await env.api(case.method, path, body, token=env.tokens[role])
    return status, answer, path


async def run_table(env: RoleEnv, cases: list[Case]) -> None:
    """Try every case as every role; fail listing each status that differs from the table,
    then check that no case ended a session of the table's admins."""
    mismatches = []
    for case in cases:
        assert set(case.expected) == set(ROLES), f"{case.method} {case.path}: every role"
        for role in ROLES:
            status, answer, path = await attempt(env, case, role)
            if status != case.expected[role]:
                mismatches.append(
                    f"{case.method} {path} as {role}: {status} (want {case.expected[role]}) "
                    f"{str(answer)[:160]}"
                )
    assert not mismatches, "\n" + "\n".join(mismatches)
    # every token is still good: no case ended a session of the table's admins
    for role, token in env.tokens.items():
        if token:
            assert (await env.api("GET", "/admin/api/me", token=token))[0] == 200, role


def all_cases() -> list[Case]:
    """:data:`CASES` plus the ``CASES`` of every module of :data:`CASE_MODULES`."""
    import importlib

    found = list(CASES)
    for name in CASE_MODULES:
        found.extend(importlib.import_module(name).CASES)
    return found


@pytest.mark.asyncio
async def test_role_table(api, ctx, sandbox):
    await run_table(await role_env(api, ctx), CASES)


def test_every_admin_route_has_a_case():
    """Every method of every /admin/api route of CHECKED_MODULES is in the table."""
    from handlers import routes

    checked = {m for m in routes.MODULES if m.__name__ in CHECKED_MODULES}
    assert {m.__name__ for m in checked} == set(CHECKED_MODULES)
    checked_rules = {id(r) for m in checked for r in m.default_handlers}
    covered = {(c.method, c.path.split("?")[0]) for c in all_cases()}
    covered_templates = {(m, _template_shape(p)) for m, p in covered}
    missing = []
    for rule in all_routes():
        if id(rule) not in checked_rules or not rule.name.startswith("/admin/api/"):
            continue
        for method in implemented_methods(rule.target):
            key = (method.upper(), rule.name)
            if key in EXEMPT:
                continue
            if (method.upper(), _template_shape(rule.name)) not in covered_templates:
                missing.append(f"{method.upper()} {rule.name}")
    assert not missing, f"admin routes without a role case: {missing}"


def _template_shape(path: str) -> str:
    """``/admin/api/staff/{staff_a}`` and ``/admin/api/staff/{staff_no}`` → the same shape."""
    import re

    return re.sub(r"\{\w+\}", "{}", path)


def test_every_role_of_the_permission_table_has_a_column():
    """A role added to the table fails here until the role table gives it a column."""
    assert {role for _, role, _, _ in ACCOUNTS.values()} == set(permissions.ROLES)
    assert set(ACCOUNTS) | {"anonymous"} == set(ROLES)


@pytest.mark.asyncio
async def test_auditor_reads_the_audit_log_of_its_reach(api, ctx, sandbox):
    """A bound auditor reads the entries of its center's administrators; an unbound one all."""
    env = await role_env(api, ctx)
    for column, department in (("center_admin_a", DEPT_A), ("center_admin_b", DEPT_B)):
        status, _ = await api(
            "PUT",
            f"/admin/api/departments/{department}",
            {"name": "改名"},
            token=env.tokens[column],
        )
        assert status == 200, column

    async def authors(column: str) -> set[str]:
        status, page = await api(
            "GET", "/admin/api/audit-log?action=department.update", token=env.tokens[column]
        )
        assert status == 200, page
        return {entry["username"] for entry in page["items"]}

    assert await authors("auditor") == {"role_ca_a", "role_ca_b"}
    assert await authors("auditor_a") == {"role_ca_a"}


@pytest.mark.asyncio
async def test_superadmin_bound_to_a_center_acts_within_it(api, ctx, sandbox):
    """The table's reach for a center's superadmin: its center's accounts and rows; nothing
    that belongs to every center (the WeChat configuration, partner keys, unbound accounts)."""
    env = await role_env(api, ctx)
    await env.db(create_admin, "role_super_a", PASSWORD, "superadmin", CENTER_A)
    token = await _login(api, "role_super_a")
    me = (await api("GET", "/admin/api/me", token=token))[1]
    assert "wechat_config.write" not in me["permissions"] and "admins.manage" in me["permissions"]
    put = await api("PUT", "/admin/api/wechat-config", {"env_version": "trial"}, token=token)
    assert put[0] == 403
    assert (await api("POST", "/admin/api/partners", {"name": "x"}, token=token))[0] == 403
    status, page = await api("GET", "/admin/api/admins", token=token)
    assert status == 200
    assert {a["center"] for a in page["items"]} == {CENTER_A}
    assert (await api("GET", "/admin/api/admins/role_ca_b", token=token))[0] == 404
    new = {"username": "new_a", "password": PASSWORD, "role": "viewer"}
    assert (await api("POST", "/admin/api/admins", new, token=token))[0] == 403
    new["center"] = CENTER_A
    assert (await api("POST", "/admin/api/admins", new, token=token))[0] == 201
    change = {"center": CENTER_B}
    assert (await api("PUT", "/admin/api/admins/new_a", change, token=token))[0] == 403
