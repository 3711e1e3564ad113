"""Role and scope rules of every admin endpoint, as one table: endpoint × role → status.

Each :class:`Case` (tests/support/roles.py) is one request (method, path template, body) and
the status each role (:data:`ROLES` there) must get.

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

import pytest

from handlers.openapi import implemented_methods
from handlers.routes import all_routes
from models.catalog import Center, Department, ServiceItem, Staff, Window
from tests.support.admins import PASSWORD
from tests.support.roles import (
    ACCOUNTS,
    CENTER_A,
    CENTER_B,
    DEPT_A,
    DEPT_B,
    NO_AUDITOR,
    ROLES,
    Case,
    RoleEnv,
    catalogue_readers,
    change_in_a,
    everyone,
    expect,
    login,
    read_a,
    read_b,
    role_env,
    run_table,
    superadmin_only,
    writers_of_a,
    writers_of_b,
)
from wxbackend.services.admin import permissions
from wxbackend.services.admin.accounts import create_admin, create_partner

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
    token = await login(api, "role_super_a")
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
