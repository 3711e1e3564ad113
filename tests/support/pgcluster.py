"""A throw-away PostgreSQL cluster in a temp folder: the test session's shared one
(``tests/conftest.py``'s ``postgres_url``) and the private ones of fault tests, which restart
theirs without disturbing anyone else's."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are, or None when PostgreSQL is not installed."""
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


#: One ``initdb`` per test process, copied for each cluster (``initdb`` takes seconds).
_templates: dict[Path, Path] = {}


class PgCluster:
    """A cluster (a copy of one ``initdb`` per process) started on a free port, database
    ``wxb`` (user ``wxb``, trust); :meth:`restart` (``-m fast``: connections are cut),
    :meth:`stop` removes it all."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="wxb-pg-"))
        self.port = free_port()
        self.data = self.folder / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(["cp", "-a", str(self._template()), str(self.data)], check=True)
        self._ctl("start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "wxb", "wxb")

    def _template(self) -> Path:
        template = _templates.get(self.bindir)
        if template is None:
            folder = Path(tempfile.mkdtemp(prefix="wxb-pg-template-"))
            atexit.register(shutil.rmtree, folder, True)
            if self.as_user:
                shutil.chown(folder, "postgres", "postgres")
            template = folder / "data"
            self._run(
                "initdb", "-D", str(template), "-U", "wxb", "--auth=trust", "-E", "UTF8", "-N"
            )
            _templates[self.bindir] = template
        return template

    @property
    def url(self) -> str:
        return f"postgresql://wxb@127.0.0.1:{self.port}/wxb"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.as_user, str(self.bindir / tool), *args]
        subprocess.run(command, check=True, capture_output=True)

    def _ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, *args, action)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop it at once (sessions cut, ``-m fast``) and start it again, after
        ``down_seconds`` (meanwhile connections are refused)."""
        if down_seconds <= 0:
            self._ctl("restart", "-m", "fast")
            return
        self.down()
        time.sleep(down_seconds)
        self.up()

    def down(self) -> None:
        """``pg_ctl stop -m fast``: every session ended (AdminShutdown), then down; its data
        stays for :meth:`up`."""
        self._ctl("stop", "-m", "fast")

    def up(self) -> None:
        """Start it again after :meth:`down`."""
        self._ctl("start")

    def stop(self) -> None:
        command = [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data)]
        subprocess.run([*command, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
