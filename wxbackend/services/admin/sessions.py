"""Administrator login: scrypt passwords, lockout, opaque bearer tokens kept in Redis.

A token maps (by its SHA-256) to the admin's id; the admin's role and scope are re-read
from the database on each request, so a role change or a disabled account applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.access import Admin
from wxbackend import errors
from wxbackend.context import Context
from wxbackend.security import hash_password, new_token, token_digest, verify_password_async
from wxbackend.services.admin.lockout import Lockout
from wxbackend.services.citizens import ratelimit

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


def _token_key(ctx: Context, token: str) -> str:
    return ctx.rkeys("adm", token_digest(token))


def _index_key(ctx: Context, admin_id: int) -> str:
    return ctx.rkeys("adm-sess", str(admin_id))


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
    token = new_token(32)
    ttl = ctx.settings.admin.token_ttl_seconds
    key = _token_key(ctx, token)
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.set(key, str(principal.admin_id), ex=ttl)
        pipe.sadd(_index_key(ctx, principal.admin_id), key)
        pipe.expire(_index_key(ctx, principal.admin_id), ttl)
        await pipe.execute()
    return token, principal


async def authenticate(ctx: Context, token: str) -> Principal | None:
    if len(token) > 128:
        return None
    value = await ctx.redis.get(_token_key(ctx, token))
    if not value:
        return None
    return await ctx.db.run(load_principal, int(value))


async def logout(ctx: Context, token: str) -> None:
    await ctx.redis.delete(_token_key(ctx, token))


async def revoke_all(ctx: Context, admin_id: int) -> None:
    """End every session of an admin (disabled, role changed, password reset)."""
    index = _index_key(ctx, admin_id)
    keys = await ctx.redis.smembers(index)
    if keys:
        await ctx.redis.delete(*keys)
    await ctx.redis.delete(index)
