"""Administrator accounts and the audit log (``/admin/api/admins``, ``/admin/api/audit-log``).

* ``/admins`` (``admins.manage``): any change to an admin (role, reach, password, disabled)
  ends every session of that admin at once; DELETE disables (the row stays for the audit
  log). The last active superadmin cannot be disabled or demoted (409 ``last_superadmin``).
* ``/audit-log`` (``audit.read``): entries within the reader's reach (see audit_search).
"""

from __future__ import annotations

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import Field, route
from handlers.openapi import INSTANT, errors_of, json_body
from wxbackend.services.admin import accounts, audit_search, passwords, permissions
from wxbackend.services.admin import sessions as admin_auth

_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_PASSWORD = {"type": "string", "minLength": passwords.MIN_LENGTH, "maxLength": passwords.MAX_LENGTH}
_ROLE = {"type": "string", "enum": list(permissions.ROLES)}


class AdminsHandler(AdminHandler):
    permissions = {"get": "admins.manage", "post": "admins.manage"}
    openapi = {
        "get": {
            "summary": "Administrators: username, role, center, department, disabled",
            **admin_security(),
            "responses": {"200": {"description": "{items}"}, **errors_of(401, 403)},
        },
        "post": {
            "summary": "Create an administrator, bound as its role needs (a center, a department)",
            **admin_security(),
            "requestBody": json_body(
                {
                    "username": {"type": "string", "pattern": accounts.USERNAME.pattern},
                    "password": _PASSWORD,
                    "role": _ROLE,
                    "center": _NULLABLE_STR,
                    "department": _NULLABLE_STR,
                    "staff_no": _NULLABLE_STR,
                },
                required=["username", "password", "role"],
            ),
            "responses": {
                "201": {"description": "the admin"},
                **errors_of(400, 401, 403, 409, 422),
            },
        },
    }

    async def get(self) -> None:
        self.send({"items": await self.ctx.db.run(accounts.list_admins, self.admin)})

    async def post(self) -> None:
        body = self.json_body(
            {
                "username": Field(str, required=True),
                "password": Field(str, required=True),
                "role": Field(str, required=True),
                "center": Field(str, nullable=True),
                "department": Field(str, nullable=True),
                "staff_no": Field(str, nullable=True),
            }
        )
        answer = await self.ctx.db.run(accounts.add_admin, self.admin, self.actor, body)
        self.send(answer, status=201)


class AdminAccountHandler(AdminHandler):
    permissions = dict.fromkeys(("get", "put", "delete"), "admins.manage")
    openapi = {
        "get": {
            "summary": "One administrator",
            **admin_security(),
            "responses": {"200": {"description": "the admin"}, **errors_of(401, 403, 404)},
        },
        "put": {
            "summary": "Change role, center, department, disabled or password; ends the "
            "admin's sessions",
            **admin_security(),
            "requestBody": json_body(
                {
                    "role": _ROLE,
                    "center": _NULLABLE_STR,
                    "department": _NULLABLE_STR,
                    "disabled": {"type": "boolean"},
                    "staff_no": _NULLABLE_STR,
                    "password": _PASSWORD,
                }
            ),
            "responses": {
                "200": {"description": "the admin"},
                **errors_of(400, 403, 404, 409, 422),
            },
        },
        "delete": {
            "summary": "Disable an administrator (kept for the audit log); ends their sessions",
            **admin_security(),
            "responses": {"204": {"description": "disabled"}, **errors_of(403, 404, 409)},
        },
    }

    async def get(self, username: str) -> None:
        self.send(await self.ctx.db.run(accounts.get_admin, self.admin, username))

    async def put(self, username: str) -> None:
        changes = self.json_body(
            {
                "role": Field(str),
                "center": Field(str, nullable=True),
                "department": Field(str, nullable=True),
                "disabled": Field(bool),
                "password": Field(str),
                "staff_no": Field(str, nullable=True),
            }
        )
        view, admin_id = await self.ctx.db.run(
            accounts.update_admin, self.admin, self.actor, username, changes
        )
        if changes:
            await admin_auth.revoke_all(self.ctx, admin_id)
        self.send(view)

    async def delete(self, username: str) -> None:
        admin_id = await self.ctx.db.run(accounts.disable_admin, self.admin, self.actor, username)
        await admin_auth.revoke_all(self.ctx, admin_id)
        self.no_content()


class AuditLogHandler(AdminHandler):
    permissions = {"get": "audit.read"}
    openapi = {
        "get": {
            "summary": "The audit log, newest first: who did what, when, from where",
            **admin_security(),
            "parameters": [
                *({"name": n, "in": "query", "schema": _STR} for n in ("action", "username")),
                *({"name": n, "in": "query", "schema": INSTANT} for n in ("from", "to")),
                *({"name": n, "in": "query", "schema": _STR} for n in ("cursor", "limit")),
            ],
            "responses": {
                "200": {
                    "description": "{items:[{id, at, username, action, target_type, "
                    "target_id, detail, client_ip}], next_cursor}"
                },
                **errors_of(400, 401, 403),
            },
        }
    }

    async def get(self) -> None:
        query = audit_search.parse_query(lambda name: self.get_query_argument(name, None))
        self.send(await self.ctx.db.run(audit_search.search, self.admin, query))


default_handlers = [
    route("/admin/api/admins", AdminsHandler),
    route("/admin/api/admins/{username}", AdminAccountHandler),
    route("/admin/api/audit-log", AuditLogHandler),
]
