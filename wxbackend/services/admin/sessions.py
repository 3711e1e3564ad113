"""Administrator login: scrypt passwords, lockout, opaque bearer tokens (durable in the
database, cached in Redis: :mod:`wxbackend.services.common.session_store`).

A token maps (by its SHA-256) to the admin's id; the admin's role and scope are re-read
from the database on each request, so a role change or a disabled account applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.access import Admin
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.security import hash_password, verify_password_async
from wxbackend.services.admin.lockout import Lockout
from wxbackend.services.citizens import ratelimit
from wxbackend.services.common import session_store

# Verifying against this when the account does not exist keeps timing equal.
_DUMMY_HASH = hash_password("not-a-real-password-0")


@dataclass(frozen=True)
class Principal:
    """The administrator behind a request, with the scope of their role."""

    admin_id: int
    username: str
    role: str
    center_id: int | None
    department_id: int | None


def _principal(admin: Admin) -> Principal:
    return Principal(admin.id, admin.username, admin.role, admin.center_id, admin.department_id)


def _account(username: str) -> Admin | None:
    return Admin.get_or_none(Admin.username == username)


async def _check_password(ctx: Context, username: str, password: str) -> Principal | None:
    """The admin when the password is right: the row is read on a database thread, scrypt
    runs on the password threads (:func:`~wxbackend.security.verify_password_async`), so a
    flood of logins never takes the database threads from ratings and pages."""
    admin = await ctx.db.run(_account, username)
    ok = await verify_password_async(password, admin.password_hash if admin else _DUMMY_HASH)
    if not ok or admin is None or admin.disabled:
        return None
    return _principal(admin)


def load_principal(admin_id: int) -> Principal | None:
    admin = Admin.get_or_none(Admin.id == admin_id)
    if admin is None or admin.disabled:
        return None
    return _principal(admin)


#: ``Session.kind`` and the Redis key prefix of administrators' sessions.
KIND = "admin"
LEGACY_INDEX = "adm-sess"  # before migration 14 (see session_store.revoke_all)
CACHE_PREFIX = "adm"


async def login(
    ctx: Context, username: str, password: str, client_ip: str
) -> tuple[str, Principal]:
    """A new token, or 401 bad_credentials / 429 locked / 429 rate_limited.

    Per client address at most ``ratelimit.admin_login_per_ip_per_minute`` attempts (any
    usernames: a flood of made-up ones no longer reaches scrypt); per (account, address)
    the lockout, counted before the password is checked."""
    limit = ctx.settings.ratelimit.admin_login_per_ip_per_minute
    await ratelimit.hit(ctx, "admin-login-ip", client_ip, limit, 60)
    lockout = Lockout(ctx.redis, ctx.rkeys, ctx.settings)
    if not await lockout.attempt(username, client_ip):
        raise errors.Locked()
    principal = await _check_password(ctx, username, password)
    if principal is None:
        await lockout.failed(username, client_ip)
        raise errors.BadCredentials()
    await lockout.clear(username, client_ip)
    ttl = ctx.settings.admin.token_ttl_seconds
    token = await session_store.create(ctx, KIND, CACHE_PREFIX, principal.admin_id, ttl)
    return token, principal


async def authenticate(ctx: Context, token: str) -> Principal | None:
    """The administrator of a live token (role and reach read now), or None."""
    admin_id = await session_store.lookup(ctx, KIND, CACHE_PREFIX, token)
    if admin_id is None:
        return None
    return await ctx.db.run(load_principal, admin_id)


async def logout(ctx: Context, token: str) -> None:
    """End this session."""
    await session_store.revoke(ctx, KIND, CACHE_PREFIX, token)


async def revoke_all(ctx: Context, admin_id: int) -> None:
    """End every session of an admin (disabled, role changed, password reset)."""
    await session_store.revoke_all(ctx, KIND, CACHE_PREFIX, admin_id, LEGACY_INDEX)
