"""What the demo prints, and how it stops: bilingual lines, masks, `DemoError` and `Skip`."""

from __future__ import annotations

from wxbackend.clients.http import ApiError


class DemoError(Exception):
    """A step failed: the demo stops with this message (exit code 1)."""


class Skip(Exception):
    """A step cannot run (its endpoint is not there yet, or an earlier step was skipped)."""


def failure(exc: ApiError) -> Skip | DemoError:
    """`Skip` when the endpoint is not there yet (404 "No such endpoint.", 405), else
    `DemoError` with the method, route, status and the contract's error."""
    route = exc.path.split("?")[0]
    missing = exc.status == 405 or (
        exc.status == 404
        and isinstance(exc.answer, dict)
        and (exc.answer.get("error") or {}).get("message") == "No such endpoint."
    )
    if missing:
        return Skip(f"{exc.method} {route} is not available yet (HTTP {exc.status})")
    return DemoError(str(exc))


def mask_id(id_number: str) -> str:
    """An ID number with all but its first 6 and last 4 characters hidden."""
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_name(name: str | None) -> str:
    """A name's first character and ``**``."""
    return (name or "")[:1] + "**" if name else "-"


def mask_token(value: str | None, keep: int = 4) -> str:
    """The first ``keep`` characters of a secret value."""
    return f"{value[:keep]}…" if value else "-"


def out(text: str = "") -> None:
    """Print a line now (the demo's output is watched live)."""
    print(text, flush=True)


def line(zh: str, en: str, value: str = "") -> None:
    """One result line of a step: Chinese · English: value."""
    out(f"    {zh} · {en}" + (f": {value}" if value else ""))
