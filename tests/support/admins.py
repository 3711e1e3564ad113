"""Admins for tests: create one in the database, then log in over HTTP (`AdminClient`)."""

from __future__ import annotations

from typing import Any

from models.access import Admin
from wxbackend.clients.admin import AdminClient
from wxbackend.db import database
from wxbackend.services.admin.accounts import create_admin

PASSWORD = "correct-horse-battery"


def _create(username: str, role: str, center_code: str | None) -> int:
    with database.atomic():
        return create_admin(username, PASSWORD, role, center_code).id


async def admin_token(
    api: Any, ctx: Any, username: str = "root", role: str = "superadmin", center: str | None = None
) -> str:
    """Create the admin (once) and return a bearer token from POST /admin/api/login."""
    exists = await ctx.db.run(lambda: Admin.select().where(Admin.username == username).exists())
    if not exists:
        await ctx.db.run(_create, username, role, center)
    return (await AdminClient.login(api, username, PASSWORD)).token
