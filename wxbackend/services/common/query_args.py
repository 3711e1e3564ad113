"""Query-string parsing shared by the listings: text filters, ``limit``, choices, the opaque
keyset ``cursor``, calendar days and times, and the newest-first keyset page itself.

Used by the public list and figures (``public``), the admin ratings (``admin_evaluations``),
the audit log (``audit_search``) and the messages (``messages_admin``), and by import
through those by the tickets, statistics, export and catalogue listings.

Each helper takes one raw value, ``str | None`` as ``get_query_argument(name, None)`` gives
it, so it serves callers that hold a mapping as well as those that hold a getter; absent and
empty (``center=``) both mean "not given". Every failure is 400 ``invalid_query`` naming the
parameter under ``key``: ``parameter`` by default, ``field`` where an endpoint has always
answered so (the audit log, the messages' status/kind/limit) — kept, clients may read it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import peewee

from wxbackend import errors
from wxbackend.timefmt import SHANGHAI, parse_iso

MAX_TEXT_CHARS = 64
MAX_ID = 2**63 - 1
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SMALL_INT = re.compile(r"[0-9]{1,4}")
_LIMIT = re.compile(r"[0-9]{1,9}")  # ASCII digits only, and never a huge int() to parse


def invalid(name: str, message: str, key: str = "parameter") -> errors.ContractError:
    """400 ``invalid_query`` with ``{key: name}`` beside the code and message."""
    return errors.InvalidQuery(message, **{key: name})


def text(value: str | None, name: str) -> str | None:
    """A text filter: None when absent or empty; over 64 characters is 400."""
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT_CHARS:
        raise invalid(name, f"Parameter {name} is too long.")
    return value


def int_in(value: str | None, name: str, low: int, high: int) -> int | None:
    """An integer ``low..high`` written with 1–4 ASCII digits (the public list's level and
    limit); None when absent or empty."""
    value = text(value, name)
    if value is None:
        return None
    if not _SMALL_INT.fullmatch(value) or not low <= int(value) <= high:
        raise invalid(name, f"Parameter {name} must be an integer from {low} to {high}.")
    return int(value)


def limit(value: str | None, default: int, maximum: int, key: str = "parameter") -> int:
    """A page size ``1..maximum``; ``default`` when absent or empty."""
    if value is None or value == "":
        return default
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= maximum:
        raise invalid("limit", f"limit must be 1 to {maximum}.", key)
    return int(value)


def choice(
    value: str | None, allowed: Iterable[Any], name: str, key: str = "parameter"
) -> str | None:
    """``value`` when it is one of ``allowed`` (compared as given), None when absent or
    empty."""
    if value is None or value == "":
        return None
    if value not in allowed:
        raise invalid(name, f"{name} must be one of {', '.join(map(str, allowed))}.", key)
    return value


# --------------------------------------------------------------------------- the keyset cursor


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of a page: URL-safe base64 of the last id shown."""
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The last id shown, from a cursor of :func:`encode_cursor` (400 ``invalid_query``)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise invalid("cursor", "The cursor is not valid.") from None
    if (
        not raw.isdigit()
        or len(raw) > len(str(MAX_ID))  # also spares int() a huge string
        or not 0 < int(raw) <= MAX_ID
        or encode_cursor(int(raw)) != cursor
    ):
        raise invalid("cursor", "The cursor is not valid.")
    return int(raw)


def cursor_id(value: str | None) -> int | None:
    """The id a ``cursor`` parameter continues after; None when absent or empty."""
    return decode_cursor(value) if value else None


def newest_first(
    rows: peewee.Select, id_column: peewee.Field, before_id: int | None, size: int
) -> tuple[list[Any], bool]:
    """One keyset page, newest first: at most ``size`` rows with an id below ``before_id``
    (never OFFSET), and whether more follow (one extra row is read to know)."""
    if before_id is not None:
        rows = rows.where(id_column < before_id)
    found = list(rows.order_by(id_column.desc()).limit(size + 1))
    return found[:size], len(found) > size


# --------------------------------------------------------------------------- days and times


#: The years a day or month parameter may name: beyond them the UTC conversion of a
#: Shanghai midnight overflows (``0001-01-01``, ``9999-12-31`` + 1 day) and no rating exists.
FIRST_YEAR, LAST_YEAR = 1970, 2999


def day(value: str | None, name: str) -> date | None:
    """A calendar day ``YYYY-MM-DD`` from :data:`FIRST_YEAR` to :data:`LAST_YEAR`; None when
    absent or empty."""
    value = text(value, name)
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        found = date.fromisoformat(value)
    except ValueError:
        raise invalid(name, f"Parameter {name} must be a date YYYY-MM-DD.") from None
    if not FIRST_YEAR <= found.year <= LAST_YEAR:
        raise invalid(name, f"Parameter {name} must lie in {FIRST_YEAR}–{LAST_YEAR}.")
    return found


def day_start_utc(day: date) -> datetime:
    """Midnight of ``day`` in Asia/Shanghai, as the naive UTC the database stores."""
    local = datetime.combine(day, time(0), tzinfo=SHANGHAI)
    return local.astimezone(UTC).replace(tzinfo=None)


def day_range(first: str | None, last: str | None) -> tuple[datetime | None, datetime | None]:
    """``from`` and ``to`` days (Asia/Shanghai, both inclusive) → ``[start, end)`` in naive
    UTC, each None when not given; ``from`` after ``to`` is 400."""
    first_day = day(first, "from")
    last_day = day(last, "to")
    if first_day and last_day and first_day > last_day:
        raise invalid("from", "Parameter from is after to.")
    return (
        day_start_utc(first_day) if first_day else None,
        day_start_utc(last_day + timedelta(days=1)) if last_day else None,
    )


def instant(value: str | None, name: str, key: str = "parameter") -> datetime | None:
    """An ISO 8601 time with offset → naive UTC; None when absent or empty."""
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise invalid(name, f"{name} must be an ISO 8601 time with offset.", key) from None
