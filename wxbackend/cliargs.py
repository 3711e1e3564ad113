"""The ``wxbackend`` command's arguments: every command and flag, each with its help."""

from __future__ import annotations

import argparse
from typing import NoReturn


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1–65535."""
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1–65535)")
    return value


def positive(text: str) -> int:
    """An argparse type: a whole number above 0."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a refused flag prints one line naming it and its value
    (argparse's usage block before it was noise in a service's journal), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (`{self.prog} --help` describes every flag)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="wxbackend",
        description="政务服务好差评 backend. Settings: conf/default.toml, then --config FILE, "
        "then WXB_<SECTION>_<KEY> environment variables (later wins).",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file layered on conf/default.toml (or WXB_CONFIG); the environment "
        "still wins over it",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server (API, /public/, /admin/, /device/…) and, with "
        'worker.embedded, the worker; with wechat.api_base = "sandbox" also the WeChat '
        "sandbox on sandbox.port. Refuses to start, in one line naming the address, URL or "
        "setting, when a port is taken or a configured Redis or PostgreSQL does not answer.",
    )
    s.add_argument(
        "--port", type=port_number, help="the port to listen on (default: server.port, 8000)"
    )
    s.add_argument(
        "--address", help="the address to listen on (default: server.address, 127.0.0.1)"
    )
    s.add_argument(
        "--processes",
        type=positive,
        help="server processes sharing the port (default: server.processes, 1); "
        "above 1 needs a real Redis",
    )

    lv = sub.add_parser(
        "live",
        help="serve only the live streams (public page, evaluator screens) from Redis, "
        "apart from the ratings; needs a real Redis",
    )
    lv.add_argument(
        "--port", type=port_number, help="the port to listen on (default: live.port, 8001)"
    )
    lv.add_argument("--address", help="the address to listen on (default: live.address)")
    lv.add_argument(
        "--processes",
        type=positive,
        help="processes sharing the port (default: live.processes, 1)",
    )

    sub.add_parser("migrate", help="create or upgrade the database schema")

    wk = sub.add_parser("worker", help="run due work: reminders, default ratings, housekeeping")
    wk.add_argument("--owner", help="the worker's name in job leases (default host:pid:random)")

    sb = sub.add_parser("sandbox", help="run the WeChat emulator alone")
    sb.add_argument(
        "--port", type=port_number, help="the port to listen on (default: sandbox.port, 8900)"
    )
    sb.add_argument("--address", help="the address to listen on (default: sandbox.address)")

    admin = sub.add_parser("admin", help="administrator accounts").add_subparsers(
        dest="action", required=True
    )
    ac = admin.add_parser("create", help="create an administrator (before the first console login)")
    ac.add_argument(
        "--username", required=True, help="the login name (3–64 of letters, digits, _.@-)"
    )
    ac.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    ac.add_argument(
        "--role",
        required=True,
        help="superadmin, center_admin (with --center), handler (with --department), viewer "
        "or auditor",
    )
    ac.add_argument("--center", help="the center code the administrator is bound to")
    ac.add_argument("--department", help="the department of a handler")
    au = admin.add_parser(
        "unlock", help="lift a login lockout (needs a real Redis, not 'embedded')"
    )
    au.add_argument("username", help="the locked administrator")

    partner = sub.add_parser("partner", help="partner (window system) keys").add_subparsers(
        dest="action", required=True
    )
    pc = partner.add_parser("create", help="create a partner key (its secret is shown once)")
    pc.add_argument("--name", required=True, help="the partner's name")
    pc.add_argument(
        "--center",
        action="append",
        default=[],
        help="a center the partner serves (repeat for several; none: every center)",
    )
    pc.add_argument("--json", action="store_true", help="print the key as JSON")

    wc = sub.add_parser("wechat-config", help="the WeChat configuration").add_subparsers(
        dest="action", required=True
    )
    wc.add_parser("show", help="print the configuration in force (secrets masked)")
    ws = wc.add_parser("set", help="store console values (a new version, audited)")
    ws.add_argument(
        "pairs",
        nargs="+",
        metavar="KEY=VALUE",
        help="appid, secret, push_token, aes_key, templates.reminder, templates.rectified, "
        "miniprogram_page, env_version, check_path",
    )
    wu = wc.add_parser(
        "unset", help="remove console values: the file and environment apply again (audited)"
    )
    wu.add_argument("keys", nargs="+", metavar="KEY", help="a key as `set` names it")

    catalog = sub.add_parser("catalog", help="the catalogue").add_subparsers(
        dest="action", required=True
    )
    ci = catalog.add_parser("import", help="check and upsert a catalogue JSON file (audited)")
    ci.add_argument("file", help="the JSON file (see conf/catalog.example.json)")

    sub.add_parser(
        "rebuild-rollups",
        help="recount the figures' rollups from the ratings and cases (a repair; audited)",
    )

    dm = sub.add_parser(
        "demo", help="the whole flow end to end against the WeChat sandbox, each step printed"
    )
    dm.add_argument("--port", type=port_number, help="the server's port (default: a free one)")
    dm.add_argument(
        "--keep-running", action="store_true", help="keep serving afterwards (until Ctrl-C)"
    )

    from wxbackend import verifylog  # standard library and cryptography only

    vl = sub.add_parser("verify-log", help="verify a server's transparency log (exit 0: all hold)")
    verifylog.add_arguments(vl)
    return p
