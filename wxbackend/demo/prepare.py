"""Step 1, in-process through the services: the example catalogue, the demo partner key and
the demo superadmin (reused when present)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wxbackend.demo.output import DemoError, line

if TYPE_CHECKING:
    from wxbackend.demo.session import Demo

CATALOG_FILE = Path(__file__).resolve().parents[1] / "conf" / "catalog.example.json"
ADMIN_USERNAME = "demo"
PASSWORD_FILE = "demo-admin-password.txt"  # noqa: S105 (a file name)  # nosec B105
PARTNER_NAME = "演示窗口系统 (wxbackend demo)"


async def setup(demo: Demo) -> None:
    """Import the catalogue; find or make the partner key and the demo superadmin."""
    from wxbackend.services.catalogue.importer import (
        CatalogError,
        import_catalog,
        load_catalog_file,
    )

    ctx = demo.ctx
    try:
        report = await ctx.db.run(import_catalog, load_catalog_file(str(CATALOG_FILE)), ctx.hasher)
    except CatalogError as exc:
        raise DemoError(f"catalogue import: {exc}") from None
    rows = ", ".join(f"{section} {sum(c.values())}" for section, c in report.counts.items())
    outcomes = " / ".join(f"{report.total(o)} {o}" for o in ("created", "updated", "unchanged"))
    line("导入示例目录", "catalogue imported", f"{CATALOG_FILE.name}: {rows} ({outcomes})")
    key_id, secret, created = await ctx.db.run(partner_key, ctx)
    demo.use_partner(key_id, secret)
    line(
        "合作方密钥",
        "partner key",
        f"{key_id} ({'new' if created else 'reused'}; secret kept encrypted in the database)",
    )
    password, created = await ctx.db.run(admin_password, demo.data_dir)
    demo.s.admin_password, demo.s.admin_password_new = password, created
    where = os.path.join(demo.data_dir, PASSWORD_FILE)
    if created:
        line(
            "演示超级管理员",
            "demo superadmin",
            f"{ADMIN_USERNAME} / password {password}  (shown once; also in {where}, mode 0600)",
        )
    else:
        line("演示超级管理员", "demo superadmin", f"{ADMIN_USERNAME} (reused; password in {where})")


def partner_key(ctx: Any) -> tuple[str, str, bool]:
    """The demo partner's key id and secret (the newest readable one, else a new key), and
    whether it is new."""
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
            return row.key_id, ctx.cipher.decrypt(row.secret_enc, SECRET_CONTEXT), False
    with database.atomic():
        key = create_partner(PARTNER_NAME, ctx.cipher)
    return key.key_id, key.secret, True


def admin_password(data_dir: str) -> tuple[str, bool]:
    """The demo superadmin's password, and whether it is new (created or reset)."""
    from models.access import Admin
    from wxbackend.db import database
    from wxbackend.security import verify_password
    from wxbackend.services.admin.accounts import create_admin, update_admin
    from wxbackend.services.admin.audit import Actor

    path = Path(data_dir) / PASSWORD_FILE
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
    os.makedirs(data_dir, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password, True
