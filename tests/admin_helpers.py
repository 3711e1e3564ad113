"""Test helpers for the admin API: create an admin in the database and log in over HTTP."""

from __future__ import annotations

from wxbackend.db import database
from wxbackend.services.admin.accounts import create_admin

PASSWORD = "correct-horse-battery"


def _create(username: str, role: str, center_code: str | None) -> int:
    with database.atomic():
        return create_admin(username, PASSWORD, role, center_code).id


async def admin_token(
    api, ctx, username: str = "root", role: str = "superadmin", center: str | None = None
) -> str:
    """Create the admin (once) and return a bearer token from POST /admin/api/login."""
    from models.access import Admin

    exists = await ctx.db.run(lambda: Admin.select().where(Admin.username == username).exists())
    if not exists:
        await ctx.db.run(_create, username, role, center)
    status, answer = await api(
        "POST", "/admin/api/login", {"username": username, "password": PASSWORD}
    )
    assert status == 200, answer
    return answer["token"]
