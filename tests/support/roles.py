"""The role table's machinery: the roles, a table row (:class:`Case`: one request and the
status every role must get), the logged-in roles (:func:`role_env`) and :func:`run_table`.

The roles (:data:`ROLES`) are logged in once per run of a table:

* ``superadmin``      — no center (sees everything)
* ``center_admin_a``  — center_admin of center A (``440103-HL``, the example catalogue)
* ``center_admin_b``  — center_admin of center B (``440104-XY``)
* ``handler_a``       — handler of department ``HL-LABOR`` of center A
* ``viewer``          — viewer with no center
* ``auditor``         — auditor (纪检督查) with no center: reads tickets, ratings, the audit log
* ``auditor_a``       — auditor bound to center A
* ``anonymous``       — no token

Who may do what is the permission table (``wxbackend/services/admin/permissions.py``); the
rows, its behaviour route by route, live in tests/test_admin_roles.py and the modules its
``CASE_MODULES`` lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.admins import PASSWORD
from wxbackend.db import database
from wxbackend.services.admin.accounts import create_admin
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


# ---- running a table ----------------------------------------------------------------------------


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


async def login(api: Any, username: str) -> str:
    status, answer = await api(
        "POST", "/admin/api/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, answer
    return answer["token"]


async def role_env(api: Any, ctx: Any) -> RoleEnv:
    """Catalogue A (conf/catalog.example.json) and B, one admin per role, logged in."""
    example = load_catalog_file(str(Path(__file__).parents[2] / "conf/catalog.example.json"))

    def seed() -> None:
        with database.atomic():
            import_catalog(example, ctx.hasher)
            import_catalog(SECOND_CENTER, ctx.hasher)
            for username, role, center, department in ACCOUNTS.values():
                create_admin(username, PASSWORD, role, center, department)

    await ctx.db.run(seed)
    usernames = {column: account[0] for column, account in ACCOUNTS.items()}
    tokens: dict[str, str | None] = {r: await login(api, u) for r, u in usernames.items()}
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
