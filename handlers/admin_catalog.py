"""Catalogue CRUD and partner keys of the admin API (``/admin/api/centers`` … ``/windows``,
``/admin/api/partners``).

Thin handlers over ``wxbackend.services.catalogue.admin`` (rules, validation, reach, audit)
and ``…catalogue.admin_partners``. Who may call what is the permission table's
(``services/admin/permissions.py``): GET ``catalogue.read``; writes of centers
``centers.write``, of the other sections ``catalogue.write`` (a row beyond the reader's reach
is 404, a write naming a center beyond the writer's reach 403); partners ``partners.manage``.
"""

from __future__ import annotations

import re
from typing import Any

from handlers.admin_base import AdminHandler, admin_security
from handlers.base import Field, route
from handlers.openapi import errors_of, json_body
from models.catalog import STAFF_ROLES
from wxbackend import errors
from wxbackend.services.admin.audit_search import parse_limit
from wxbackend.services.cases import partners as partner_auth
from wxbackend.services.catalogue import admin as admin_catalog
from wxbackend.services.catalogue import admin_partners
from wxbackend.services.catalogue.admin import ListQuery
from wxbackend.services.catalogue.admin_rows import write_action
from wxbackend.services.common import query_args

_STR = {"type": "string"}
#: The path parameter naming one row, per section (default ``code``).
_KEYS = {"staff": "staff_no"}

#: Body fields per section: (JSON type, nullable). Optional fields may be null (cleared).
_SECTION_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "centers": {
        "code": (str, False),
        "name": (str, False),
        "area_code": (str, False),
        "wecom_webhook_key": (str, True),  # write-only: answered masked
    },
    "departments": {
        "code": (str, False),
        "name": (str, False),
        "center": (str, False),
        "credit_code": (str, True),
    },
    "items": {"code": (str, False), "name": (str, False), "department": (str, False)},
    "staff": {
        "staff_no": (str, False),
        "name": (str, False),
        "role": (str, False),
        "department": (str, False),
        "center": (str, False),
        "photo_url": (str, True),
        "id_number": (str, True),
        "active": (bool, False),
    },
    "windows": {
        "code": (str, False),
        "name": (str, False),
        "center": (str, False),
        "staff_no": (str, True),
    },
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "centers": ("code", "name", "area_code"),
    "departments": ("code", "name", "center"),
    "items": ("code", "name", "department"),
    "staff": ("staff_no", "name", "role", "department", "center"),
    "windows": ("code", "name", "center"),
}
_LIST_FILTERS: dict[str, tuple[str, ...]] = {
    "centers": (),
    "departments": ("center",),
    "items": ("center", "department"),
    "staff": ("center", "department", "active"),
    "windows": ("center",),
}


def _fields(section: str, create: bool) -> dict[str, Field]:
    required = _REQUIRED[section] if create else ()
    return {
        name: Field(kind, required=name in required, nullable=nullable)
        for name, (kind, nullable) in _SECTION_FIELDS[section].items()
    }


_CONTROL = r"\x00-\x1f\x7f-\x9f"  # Unicode category Cc
_PLAIN = f"[^{_CONTROL}]"
#: What services.catalogue.rows checks of these fields, said in the document too: codes are
#: 1–64 of ``[A-Za-z0-9_.-]``, names hold a visible character and no control characters.
_CHECKED: dict[str, dict[str, Any]] = {
    "code": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "staff_no": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "center": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "department": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "name": {"maxLength": 64, "pattern": f"^{_PLAIN}*[^\\s{_CONTROL}]{_PLAIN}*$"},
    "area_code": {"pattern": "^[0-9]{6,12}$"},
    "role": {"enum": list(STAFF_ROLES)},
    # an http(s) URL naming a host, without spaces or control characters (catalogue.rows)
    "photo_url": {
        "pattern": f"^(?!.*[{_CONTROL}])https?://([^\\s/?#@]*@)?[^\\s/?#@:\\[\\]]+"
        "(:[0-9]*)?([/?#]\\S*)?$",
        "maxLength": 500,
    },
    "credit_code": {"pattern": f"^{_PLAIN}*$", "maxLength": 64},  # its check digit: beyond
    # the robot's key, or its whole webhook address as WeCom shows it (admin_rows); "" clears
    "wecom_webhook_key": {
        "pattern": "^[ \t\n\r]*((https://qyapi[.]weixin[.]qq[.]com/cgi-bin/webhook/send[?]key=)?"
        "[A-Za-z0-9-]{8,64})?[ \t\n\r]*$"
    },
}


def _schema(section: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (kind, nullable) in _SECTION_FIELDS[section].items():
        base = "boolean" if kind is bool else "string"
        out[name] = {"type": [base, "null"]} if nullable else {"type": base}
        if name in _CHECKED:
            out[name].update(_CHECKED[name])
    if section == "staff":
        out["id_number"]["description"] = "Stored only as its keyed hash; never returned."
    return out


#: A catalogue list's cursor is the last code (or staff_no) shown, not the opaque cursor of
#: the other lists: a code may hold a dot.
_CODE_CURSOR = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_CODE_CURSOR_SCHEMA = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_.-]*$",
    "maxLength": 64,
    "description": "next_cursor of the previous page (the last code shown)",
}


def _list_params(section: str) -> list[dict[str, Any]]:
    names = (*_LIST_FILTERS[section], "cursor", "limit")
    return [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": _CODE_CURSOR_SCHEMA if n == "cursor" else _STR,
        }
        for n in names
    ]


def _collection_openapi(section: str, writers: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"List {section} in your scope (by code, keyset pagination)",
            **admin_security(),
            "parameters": _list_params(section),
            "responses": {"200": {"description": "{items, next_cursor}"}, **errors_of(400, 401)},
        },
        "post": {
            "summary": f"Create one of the {section} ({writers})",
            **admin_security(),
            "requestBody": json_body(_schema(section), required=list(_REQUIRED[section])),
            "responses": {
                "201": {"description": "the new row"},
                **errors_of(400, 401, 403, 409, 422),
            },
        },
    }


def _item_openapi(section: str, writers: str) -> dict[str, Any]:
    delete = (
        "Deactivate a staff member (active=false; never deleted: cases name them)"
        if section == "staff"
        else f"Delete one of the {section} no longer referenced"
    )
    return {
        "get": {
            "summary": f"One of the {section}",
            **admin_security(),
            "responses": {"200": {"description": "the row"}, **errors_of(401, 404)},
        },
        "put": {
            "summary": f"Change any subset of a row of {section} ({writers})",
            **admin_security(),
            "requestBody": json_body(_schema(section)),
            "responses": {"200": {"description": "the row"}, **errors_of(400, 403, 404, 409, 422)},
        },
        "delete": {
            "summary": f"{delete} ({writers})",
            **admin_security(),
            "responses": {"204": {"description": "done"}, **errors_of(403, 404, 409)},
        },
    }


class CatalogHandler(AdminHandler):
    """Base of the catalogue handlers; ``section`` names the catalogue section."""

    section = "centers"

    def list_query(self) -> ListQuery:
        filters = _LIST_FILTERS[self.section]

        def arg(name: str) -> str | None:
            if name not in filters:
                return None
            return query_args.text(self.get_query_argument(name, None), name)  # ≤ 64 chars

        active = arg("active")
        if active not in (None, "", "true", "false"):
            raise errors.InvalidQuery("active must be true or false.", field="active")
        cursor = self.get_query_argument("cursor", None) or None
        if cursor is not None and not _CODE_CURSOR.fullmatch(cursor):
            raise query_args.invalid("cursor", "The cursor is not valid.")
        return ListQuery(
            center=arg("center"),
            department=arg("department"),
            active=None if not active else active == "true",
            cursor=cursor,
            limit=parse_limit(
                self.get_query_argument("limit", None),
                admin_catalog.DEFAULT_LIMIT,
                admin_catalog.MAX_LIMIT,
            ),
        )


class CatalogCollectionHandler(CatalogHandler):
    permissions = {"get": "catalogue.read", "post": "catalogue.write"}

    async def get(self) -> None:
        page = await self.ctx.db.run(
            admin_catalog.list_rows, self.section, self.admin, self.list_query()
        )
        self.send(page)

    async def post(self) -> None:
        body = self.json_body(_fields(self.section, create=True))
        row = await self.ctx.db.run(
            admin_catalog.create_row,
            self.section,
            self.actor,
            self.admin,
            body,
            self.ctx.hasher,
            self.ctx.cipher,
        )
        self.send(row, status=201)


class CatalogItemHandler(CatalogHandler):
    """One row, by the path's ``{code}`` (``{staff_no}`` for staff)."""

    permissions = {"get": "catalogue.read", "put": "catalogue.write", "delete": "catalogue.write"}

    @property
    def key(self) -> str:
        return self.path_kwargs[_KEYS.get(self.section, "code")]

    async def get(self, **_: str) -> None:
        row = await self.ctx.db.run(admin_catalog.get_row, self.section, self.admin, self.key)
        self.send(row)

    async def put(self, **_: str) -> None:
        body = self.json_body(_fields(self.section, create=False))
        row = await self.ctx.db.run(
            admin_catalog.update_row,
            self.section,
            self.actor,
            self.admin,
            self.key,
            body,
            self.ctx.hasher,
            self.ctx.cipher,
        )
        self.send(row)

    async def delete(self, **_: str) -> None:
        await self.ctx.db.run(
            admin_catalog.delete_row, self.section, self.actor, self.admin, self.key
        )
        self.no_content()


def _pair(section: str, writers: str) -> tuple[type[CatalogHandler], type[CatalogHandler]]:
    """The collection and the one-row handler classes of a section."""
    write = write_action(section)
    name = section.title().replace("_", "")
    collection = type(
        f"{name}Handler",
        (CatalogCollectionHandler,),
        {
            "section": section,
            "permissions": {"get": "catalogue.read", "post": write},
            "openapi": _collection_openapi(section, writers),
            "__doc__": f"``/admin/api/{section}``: list and create.",
        },
    )
    one = type(
        f"{name}ItemHandler",
        (CatalogItemHandler,),
        {
            "section": section,
            "permissions": {"get": "catalogue.read", "put": write, "delete": write},
            "openapi": _item_openapi(section, writers),
            "__doc__": f"``/admin/api/{section}/{{code}}``: read, change, delete.",
        },
    )
    return collection, one


# --------------------------------------------------------------------------- partners


class PartnersHandler(AdminHandler):
    permissions = {"get": "partners.manage", "post": "partners.manage"}
    openapi = {
        "get": {
            "summary": "Partner keys: key_id, name, created_at, revoked_at (never a secret)",
            **admin_security(),
            "responses": {"200": {"description": "{items}"}, **errors_of(401, 403)},
        },
        "post": {
            "summary": "Create a partner key; the answer shows its secret this once",
            **admin_security(),
            "requestBody": json_body(
                {
                    # trimmed, then 1–200 characters (services.admin.accounts.create_partner)
                    "name": {"type": "string", "maxLength": 200, "pattern": r"\S"},
                    "centers": {"type": "array", "items": _STR},
                },
                required=["name"],
            ),
            "responses": {
                "201": {"description": "{key_id, name, centers, created_at, revoked_at, secret}"},
                **errors_of(400, 401, 403, 422),
            },
        },
    }

    async def get(self) -> None:
        self.send({"items": await self.ctx.db.run(admin_partners.list_partners)})

    async def post(self) -> None:
        body = self.json_body({"name": Field(str, required=True), "centers": Field(list)})
        key = await self.ctx.db.run(
            admin_partners.add_partner,
            self.actor,
            body["name"],
            self.ctx.cipher,
            body.get("centers"),
        )
        self.send(key, status=201)


class PartnerRevokeHandler(AdminHandler):
    permissions = {"post": "partners.manage"}
    openapi = {
        "post": {
            "summary": "Revoke a partner key: its signed requests fail from now on (idempotent)",
            **admin_security(),
            "responses": {"200": {"description": "the key"}, **errors_of(401, 403, 404)},
        }
    }

    async def post(self, key_id: str) -> None:
        self.json_body({})
        view = await self.ctx.db.run(admin_partners.revoke_partner, self.actor, key_id)
        await partner_auth.announce_key_change(self.ctx, key_id)  # every process drops it
        self.send(view)


default_handlers = []
for _section in admin_catalog.SECTIONS:
    _collection, _one = _pair(_section, f"permission {write_action(_section)}")
    _key = _KEYS.get(_section, "code")
    default_handlers.append(route(f"/admin/api/{_section}", _collection))
    default_handlers.append(route(f"/admin/api/{_section}/{{{_key}}}", _one))
default_handlers += [
    route("/admin/api/partners", PartnersHandler),
    route("/admin/api/partners/{key_id}/revoke", PartnerRevokeHandler),
]
