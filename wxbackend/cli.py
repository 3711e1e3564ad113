"""The ``wxbackend`` command: serve, migrate, worker, sandbox, admin, partner, catalog, demo."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from wxbackend.logsetup import setup_logging
from wxbackend.settings import Settings, SettingsError, load_settings, local_wechat_problem

log = logging.getLogger("wxbackend")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wxbackend", description="政务服务好差评 backend")
    p.add_argument("--config", help="an extra TOML file layered on conf/default.toml")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--port", type=int)
    s.add_argument("--address")
    s.add_argument("--processes", type=int)

    sub.add_parser("migrate", help="create or upgrade the database schema")

    wk = sub.add_parser("worker", help="run due work: reminders, default ratings, housekeeping")
    wk.add_argument("--owner", help="the worker's name in job leases (default host:pid:random)")

    sb = sub.add_parser("sandbox", help="run the WeChat emulator alone")
    sb.add_argument("--port", type=int)
    sb.add_argument("--address")

    admin = sub.add_parser("admin", help="administrator accounts").add_subparsers(
        dest="action", required=True
    )
    ac = admin.add_parser("create")
    ac.add_argument("--username", required=True)
    ac.add_argument("--password-stdin", action="store_true", required=True)
    ac.add_argument("--role", required=True)
    ac.add_argument("--center")
    ac.add_argument("--department", help="the department of a handler")
    au = admin.add_parser("unlock")
    au.add_argument("username")

    partner = sub.add_parser("partner", help="partner (window system) keys").add_subparsers(
        dest="action", required=True
    )
    pc = partner.add_parser("create")
    pc.add_argument("--name", required=True)
    pc.add_argument(
        "--center",
        action="append",
        default=[],
        help="a center the partner serves (repeat for several; none: every center)",
    )
    pc.add_argument("--json", action="store_true")

    wc = sub.add_parser("wechat-config", help="the WeChat configuration").add_subparsers(
        dest="action", required=True
    )
    wc.add_parser("show")
    ws = wc.add_parser("set")
    ws.add_argument("pairs", nargs="+", metavar="KEY=VALUE")

    catalog = sub.add_parser("catalog", help="the catalogue").add_subparsers(
        dest="action", required=True
    )
    ci = catalog.add_parser("import")
    ci.add_argument("file")

    dm = sub.add_parser(
        "demo", help="the whole flow end to end against the WeChat sandbox, each step printed"
    )
    dm.add_argument("--port", type=int, help="the server's port (default: a free one)")
    dm.add_argument(
        "--keep-running", action="store_true", help="keep serving afterwards (until Ctrl-C)"
    )

    from wxbackend import verifylog  # standard library and cryptography only

    vl = sub.add_parser("verify-log", help="verify a server's transparency log (exit 0: all hold)")
    verifylog.add_arguments(vl)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"wxbackend: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log.level, settings.log.format)
    handler = COMMANDS[args.command]
    try:
        return handler(settings, args) or 0
    except SettingsError as exc:
        print(f"wxbackend: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"wxbackend: {exc}", file=sys.stderr)
        return 1


class CliError(Exception):
    """A command failed in a way the user can fix; printed without a traceback."""


def _open_db(settings: Settings):
    """The database for one-shot commands, migrated (keys loaded first: PostgreSQL checks)."""
    from models.migrations import migrate
    from wxbackend.db import database, make_peewee_database
    from wxbackend.security import StartupError, load_keys

    try:
        keys = load_keys(settings)
    except StartupError as exc:
        raise CliError(str(exc)) from None
    db = make_peewee_database(settings)
    database.initialize(db)
    migrate(db)
    return db, keys


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from models.migrations import migrate
    from wxbackend.db import database, make_peewee_database

    db = make_peewee_database(settings)
    database.initialize(db)
    applied = migrate(db)
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    db.close()
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run a worker until SIGTERM: then it stops claiming, lets in-flight jobs finish and
    hands unstarted ones back."""
    from wxbackend.context import build_context
    from wxbackend.server import migrate_schema
    from wxbackend.services.jobs.registry import run_until_signalled

    _refuse_local_wechat(settings)
    if settings.redis.url == "embedded":
        log.warning(
            "redis.url is 'embedded': this worker gets no wake-ups from servers (it still "
            "polls every %.1f s)",
            settings.worker.poll_seconds,
        )
    migrate_schema(settings)

    async def run() -> int:
        ctx = build_context(settings)
        await ctx.start()
        try:
            return await run_until_signalled(ctx, args.owner)
        finally:
            await ctx.close()

    processed = asyncio.run(run())
    log.info("worker exited after %d job(s)", processed)
    return 0


def cmd_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.sandbox import run_sandbox_forever

    run_sandbox_forever(
        args.address or settings.sandbox.address,
        args.port or settings.sandbox.port,
        settings.wechat.appid,
        settings.wechat.secret,
    )
    return 0


def cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "unlock":
        return _unlock(settings, args.username)
    from wxbackend.services.admin.accounts import AccountError, create_admin

    password = sys.stdin.readline().rstrip("\n")
    db, _ = _open_db(settings)
    try:
        with db.atomic():
            admin = create_admin(
                args.username, password, args.role, args.center, department_code=args.department
            )
    except AccountError as exc:
        raise CliError(str(exc)) from None
    print(f"created {admin.role} {admin.username}")
    return 0


def _unlock(settings: Settings, username: str) -> int:
    from wxbackend.cache import Keys, make_redis
    from wxbackend.services.admin.lockout import unlock

    if settings.redis.url == "embedded":
        raise CliError(
            "redis.url is 'embedded': locks live inside the server process and end with it "
            f"(or after admin.lockout_seconds = {settings.admin.lockout_seconds})"
        )

    async def run() -> int:
        client = make_redis(settings)
        try:
            return await unlock(client, Keys(settings.redis.key_prefix), username)
        finally:
            await client.aclose()

    n = asyncio.run(run())
    print(f"unlocked {username} ({n} locked address(es))")
    return 0


def cmd_partner(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.security import FieldCipher
    from wxbackend.services.admin.accounts import AccountError, create_partner

    db, keys = _open_db(settings)
    try:
        with db.atomic():
            key = create_partner(args.name, FieldCipher(keys), args.center)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({"key_id": key.key_id, "secret": key.secret}))
    else:
        print(f"key_id: {key.key_id}\nsecret: {key.secret}\n(the secret is shown only this once)")
    return 0


def _parse_pairs(pairs: list[str]) -> dict:
    changes: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f"expected KEY=VALUE, got {pair!r}")
        if key.startswith("templates."):
            changes.setdefault("templates", {})[key.split(".", 1)[1]] = value
        elif key == "check_path":
            if value.lower() not in ("true", "false"):
                raise CliError("check_path: true or false")
            changes[key] = value.lower() == "true"
        else:
            changes[key] = value
    return changes


def cmd_wechat_config(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.security import FieldCipher
    from wxbackend.services.admin.audit import Actor
    from wxbackend.services.admin.wechat_config import ConfigError, load_effective, save_changes

    db, keys = _open_db(settings)
    cipher = FieldCipher(keys)
    if args.action == "show":
        print(
            json.dumps(load_effective(settings, cipher).public_view(), ensure_ascii=False, indent=2)
        )
        return 0
    actor = Actor(None, f"cli:{os.environ.get('USER', 'unknown')}")
    try:
        config = save_changes(settings, cipher, actor, _parse_pairs(args.pairs))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    _announce_config(settings, config.version)
    print(json.dumps(config.public_view(), ensure_ascii=False, indent=2))
    return 0


def _announce_config(settings: Settings, version: int) -> None:
    """Tell running servers at once (they also poll the version every second)."""
    if settings.redis.url == "embedded":
        return
    from wxbackend.cache import Keys, make_redis

    async def run() -> None:
        client = make_redis(settings)
        try:
            await client.publish(Keys(settings.redis.key_prefix)("wechat-config"), str(version))
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - the servers' polling still picks it up
        log.warning("could not announce the change on Redis: %s", type(exc).__name__)


def cmd_catalog(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.security import LookupHasher
    from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
    from wxbackend.services.catalogue.rows import CatalogError

    db, keys = _open_db(settings)
    try:
        report = import_catalog(load_catalog_file(args.file), LookupHasher(keys))
    except CatalogError as exc:
        raise CliError(f"catalog import failed, nothing written: {exc}") from None
    for section, counts in report.counts.items():
        print(f"{section}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _refuse_local_wechat(settings: Settings) -> None:
    problem = local_wechat_problem(settings)
    if problem is not None:
        raise CliError(problem)
    base = settings.wechat.api_base
    if base == "sandbox" or base.startswith("http://"):
        log.warning("WeChat is %s: not real WeChat (%s)", base, _why_local(settings))


def _why_local(settings: Settings) -> str:
    if settings.wechat.allow_sandbox:
        return "wechat.allow_sandbox = true"
    return "allowed on the embedded defaults only"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    _refuse_local_wechat(settings)
    processes = args.processes or settings.server.processes
    if processes > 1:
        share_metrics_between_processes()  # before anything imports prometheus_client
    from wxbackend.server import serve

    return serve(
        settings,
        port=args.port or settings.server.port,
        address=args.address or settings.server.address,
        processes=processes,
    )


def share_metrics_between_processes() -> None:
    """With ``--processes`` above 1 a scrape of ``/metrics`` reaches one process of several:
    each one writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
    sums them all (prometheus_client's multiprocess mode, chosen when it is imported). An
    operator's own folder is used as given (it must start empty); else a fresh temporary one,
    removed when the server stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="wxb-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.demo import run_demo

    return run_demo(settings, port=args.port, keep_running=args.keep_running)


def cmd_verify_log(settings: Settings, args: argparse.Namespace) -> int:
    """``verify-log URL [--state FILE] [--receipt FILE]``: see :mod:`wxbackend.verifylog`."""
    from wxbackend import verifylog

    return verifylog.run(args)


COMMANDS = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "worker": cmd_worker,
    "sandbox": cmd_sandbox,
    "admin": cmd_admin,
    "partner": cmd_partner,
    "catalog": cmd_catalog,
    "wechat-config": cmd_wechat_config,
    "demo": cmd_demo,
    "verify-log": cmd_verify_log,
}

if __name__ == "__main__":
    sys.exit(main())
