"""The ``wxbackend`` command: serve, live, migrate, worker, sandbox, admin, partner, catalog,
rebuild-rollups, demo."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import getpass
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from wxbackend.cliargs import parser
from wxbackend.logsetup import setup_logging
from wxbackend.security import StartupError
from wxbackend.settings import Settings, SettingsError, load_settings, local_wechat_problem

log = logging.getLogger("wxbackend")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
    except (CliError, StartupError) as exc:
        print(f"wxbackend: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `wxbackend wechat-config show | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


class CliError(Exception):
    """A command failed in a way the user can fix; printed without a traceback."""


def _open_db(settings: Settings):
    """The database for one-shot commands, migrated, and its keys (which must fit its data)."""
    from models.migrations import migrate
    from wxbackend.db import check_database, database, make_peewee_database
    from wxbackend.keycheck import check_keys_fit
    from wxbackend.security import load_keys

    check_database(settings)
    check_keys_fit(settings)  # before load_keys could generate keys beside existing data
    keys = load_keys(settings)
    db = make_peewee_database(settings)
    database.initialize(db)
    migrate(db)
    return db, keys


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from models.migrations import migrate
    from wxbackend.db import check_database, database, make_peewee_database

    check_database(settings)
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
    from wxbackend.keycheck import check_keys_fit
    from wxbackend.server import check_surroundings, migrate_schema
    from wxbackend.services.jobs.registry import run_until_signalled

    _refuse_local_wechat(settings)
    check_surroundings(settings)
    check_keys_fit(settings)
    _warn_local_wechat(settings)
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
    from wxbackend.server import bind_sandbox

    address, port = args.address or settings.sandbox.address, args.port or settings.sandbox.port
    sockets = bind_sandbox(address, port) if port else None
    run_sandbox_forever(
        address,
        port,
        settings.wechat.appid,
        settings.wechat.secret,
        sockets=sockets,
    )
    return 0


def cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "unlock":
        return _unlock(settings, args.username)
    from wxbackend.services.admin.accounts import AccountError, create_admin
    from wxbackend.services.admin.audit import record

    password = sys.stdin.readline().rstrip("\n")
    db, _ = _open_db(settings)
    try:
        with db.atomic():
            admin = create_admin(
                args.username, password, args.role, args.center, department_code=args.department
            )
            detail = {"role": args.role, "center": args.center, "department": args.department}
            record(cli_actor(), "admin.create", "admin", admin.username, detail)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    print(f"created {admin.role} {admin.username}")
    return 0


def _unlock(settings: Settings, username: str) -> int:
    from wxbackend.cache import Keys, make_redis
    from wxbackend.services.admin.lockout import unlock

    if settings.redis.url == "embedded":
        raise CliError(
            "admin unlock cannot reach the lock: redis.url is 'embedded', an in-memory Redis "
            "inside the running server's process, which no other process can reach. The lock "
            f"ends by itself after admin.lockout_seconds ({settings.admin.lockout_seconds} s) "
            "or when that server restarts; configure a real Redis (redis.url) to unlock here"
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
    from wxbackend.services.admin.audit import record

    db, keys = _open_db(settings)
    try:
        with db.atomic():
            key = create_partner(args.name, FieldCipher(keys), args.center)
            detail = {"name": args.name.strip(), "centers": sorted(set(args.center))}
            record(cli_actor(), "partner.create", "partner", key.key_id, detail)
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


def cli_actor():
    """Who runs this command, for the audit log: ``cli:<the OS user>``."""
    from wxbackend.services.admin.audit import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry for the uid
        user = f"uid{os.getuid()}"
    return Actor(None, f"cli:{user}")


def cmd_wechat_config(settings: Settings, args: argparse.Namespace) -> int:
    from wxbackend.security import FieldCipher
    from wxbackend.services.admin.wechat_config import (
        ConfigError,
        load_effective,
        save_changes,
        unset_fields,
    )

    db, keys = _open_db(settings)
    cipher = FieldCipher(keys)
    if args.action == "show":
        print(
            json.dumps(load_effective(settings, cipher).public_view(), ensure_ascii=False, indent=2)
        )
        return 0
    try:
        if args.action == "unset":
            config = unset_fields(settings, cipher, cli_actor(), args.keys)
        else:
            config = save_changes(settings, cipher, cli_actor(), _parse_pairs(args.pairs))
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
    from wxbackend.services.admin.audit import record
    from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
    from wxbackend.services.catalogue.rows import CatalogError

    db, keys = _open_db(settings)
    try:
        with db.atomic():
            report = import_catalog(load_catalog_file(args.file), LookupHasher(keys))
            name = os.path.basename(args.file)
            record(cli_actor(), "catalog.import", "catalog", name, {"counts": report.counts})
    except CatalogError as exc:
        raise CliError(f"catalog import failed, nothing written: {exc}") from None
    for section, counts in report.counts.items():
        print(f"{section}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_rebuild_rollups(settings: Settings, args: argparse.Namespace) -> int:
    """``rebuild-rollups``: recount every rollup of the figures from the raw rows (one
    transaction, idempotent), audited with the OS user."""
    from wxbackend.services.admin.audit import record
    from wxbackend.services.public.rollup_rebuild import rebuild

    db, _ = _open_db(settings)
    with db.atomic():
        rows = rebuild(db)
        record(cli_actor(), "rollups.rebuild", "rollups", "", {"rows": rows})
    for table, count in rows.items():
        print(f"{table}: {count} rows")
    return 0


def _refuse_local_wechat(settings: Settings) -> None:
    problem = local_wechat_problem(settings)
    if problem is not None:
        raise CliError(problem)


def _warn_local_wechat(settings: Settings, sandbox: bool = True) -> None:
    """Log (once the start can no longer be refused) that WeChat is not the real one;
    ``sandbox=False``: only for a plain-http base (``serve`` announces its sandbox itself)."""
    base = settings.wechat.api_base
    if (sandbox and base == "sandbox") or base.startswith("http://"):
        log.warning("WeChat is %s: not real WeChat (%s)", base, _why_local(settings))


def _why_local(settings: Settings) -> str:
    if settings.wechat.allow_sandbox:
        return "wechat.allow_sandbox = true"
    return "allowed on the embedded defaults only"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    _refuse_local_wechat(settings)
    _warn_local_wechat(settings, sandbox=False)
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


def cmd_live(settings: Settings, args: argparse.Namespace) -> int:
    """``live``: the live streams apart from the ratings (:mod:`wxbackend.live_server`)."""
    processes = args.processes or settings.live.processes
    if processes > 1:
        share_metrics_between_processes()
    from wxbackend.live_server import run_live

    return run_live(
        settings,
        port=args.port or settings.live.port,
        address=args.address or settings.live.address,
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
    "live": cmd_live,
    "migrate": cmd_migrate,
    "worker": cmd_worker,
    "sandbox": cmd_sandbox,
    "admin": cmd_admin,
    "partner": cmd_partner,
    "catalog": cmd_catalog,
    "rebuild-rollups": cmd_rebuild_rollups,
    "wechat-config": cmd_wechat_config,
    "demo": cmd_demo,
    "verify-log": cmd_verify_log,
}

if __name__ == "__main__":
    sys.exit(main())
