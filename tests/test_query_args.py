"""Query-string parsing of the listings, pinned error by error.

The public list and figures, the admin ratings, the audit log and the messages each parse
``limit``, ``cursor``, dates and choices; they share ``wxbackend.services.common.query_args``. These
tests fix what each endpoint answers — the code, the message and the name of the key that
carries the parameter (``parameter`` or ``field``), and which check wins when several fail —
so a change of the shared helper shows. No database: every error is raised before a query
runs.
"""

from __future__ import annotations

import base64
from datetime import date, datetime

import pytest

from wxbackend import errors
from wxbackend.services.admin import audit_search
from wxbackend.services.admin import messages as messages_admin
from wxbackend.services.admin import moderation as admin_evaluations
from wxbackend.services.admin.sessions import Principal
from wxbackend.services.common import query_args
from wxbackend.services.public import figures, listing

ROOT = Principal(1, "root", "superadmin", None, None)

#: Each endpoint's parser, called with a dict of the query parameters.
PARSERS = {
    "public list": listing.parse_list_query,
    "public stats": figures.parse_stats_query,
    "admin evaluations": lambda args: admin_evaluations.parse_evaluation_query(args.get),
    "audit log": lambda args: audit_search.parse_query(args.get),
    "messages": lambda args: messages_admin.list_messages(ROOT, args.get),
}


def p(name: str, message: str) -> dict:
    """An error naming its parameter under ``parameter``."""
    return {"code": "invalid_query", "message": message, "parameter": name}


def f(name: str, message: str) -> dict:
    """An error naming its parameter under ``field`` (the audit log, the messages)."""
    return {"code": "invalid_query", "message": message, "field": name}


def too_long(name: str) -> dict:
    return p(name, f"Parameter {name} is too long.")


LIMIT_50 = "Parameter limit must be an integer from 1 to 50."
LIMIT_200 = "limit must be 1 to 200."
LEVEL_5 = "Parameter level must be an integer from 1 to 5."
BAD_CURSOR = "The cursor is not valid."
FROM_DAY = "Parameter from must be a date YYYY-MM-DD."
TO_DAY = "Parameter to must be a date YYYY-MM-DD."
AFTER = "Parameter from is after to."
LEVELS = "level must be one of 1, 2, 3, 4, 5."
CHANNELS = "channel must be one of qr, miniprogram, phone, sms, default."
COMMENT = "comment_status must be one of visible, pending_review, hidden."
AUDIT_CURSOR = "cursor is not one this server gave."
FROM_TIME = "from must be an ISO 8601 time with offset."
TO_TIME = "to must be an ISO 8601 time with offset."
STATUSES = "status must be one of pending, sending, sent, no_quota, config_error, failed, skipped."
KINDS = "kind must be one of reminder, rectified."
HUGE_CURSOR = base64.urlsafe_b64encode(b"123" * 2000).decode()  # 6,000 digits

ERRORS = [
    # the public list: center, item, staff, level, cursor, limit
    ("public list", {"limit": "51"}, p("limit", LIMIT_50)),
    ("public list", {"limit": "0"}, p("limit", LIMIT_50)),
    ("public list", {"limit": "00020"}, p("limit", LIMIT_50)),
    ("public list", {"limit": "²"}, p("limit", LIMIT_50)),
    ("public list", {"level": "6"}, p("level", LEVEL_5)),
    ("public list", {"level": "4.0"}, p("level", LEVEL_5)),
    ("public list", {"cursor": "MTA="}, p("cursor", BAD_CURSOR)),
    ("public list", {"cursor": "LTE"}, p("cursor", BAD_CURSOR)),
    ("public list", {"cursor": "x" * 65}, too_long("cursor")),
    ("public list", {"center": "x" * 65}, too_long("center")),
    ("public list", {"staff": "x" * 65}, too_long("staff")),
    ("public list", {"cursor": "x" * 65, "limit": "0"}, too_long("cursor")),
    # the public figures: center, item, from, to
    ("public stats", {"from": "2026-13-01"}, p("from", FROM_DAY)),
    ("public stats", {"from": "20260301"}, p("from", FROM_DAY)),
    ("public stats", {"to": "2026-02-30"}, p("to", TO_DAY)),
    ("public stats", {"to": "yesterday"}, p("to", TO_DAY)),
    ("public stats", {"from": "bad", "to": "bad"}, p("from", FROM_DAY)),
    ("public stats", {"from": "2026-03-02", "to": "2026-03-01"}, p("from", AFTER)),
    ("public stats", {"from": "x" * 65}, too_long("from")),
    ("public stats", {"item": "x" * 65}, too_long("item")),
    # the admin ratings
    ("admin evaluations", {"level": "6"}, p("level", LEVELS)),
    ("admin evaluations", {"level": "x" * 65}, too_long("level")),
    ("admin evaluations", {"limit": "201"}, p("limit", LIMIT_200)),
    ("admin evaluations", {"limit": "0"}, p("limit", LIMIT_200)),
    ("admin evaluations", {"limit": "-1"}, p("limit", LIMIT_200)),
    ("admin evaluations", {"limit": "1" * 65}, too_long("limit")),
    ("admin evaluations", {"from": "2026-13-01"}, p("from", FROM_DAY)),
    ("admin evaluations", {"from": "2026-03-02", "to": "2026-03-01"}, p("from", AFTER)),
    ("admin evaluations", {"to": "x" * 65}, too_long("to")),
    ("admin evaluations", {"cursor": "xx"}, p("cursor", BAD_CURSOR)),
    ("admin evaluations", {"cursor": "x" * 65}, too_long("cursor")),
    ("admin evaluations", {"channel": "fax"}, p("channel", CHANNELS)),
    ("admin evaluations", {"comment_status": "x"}, p("comment_status", COMMENT)),
    ("admin evaluations", {"center": "x" * 65}, too_long("center")),
    ("admin evaluations", {"level": "6", "limit": "0"}, p("level", LEVELS)),
    ("admin evaluations", {"limit": "0", "from": "bad"}, p("limit", LIMIT_200)),
    ("admin evaluations", {"from": "bad", "cursor": "x" * 65}, p("from", FROM_DAY)),
    ("admin evaluations", {"cursor": "x" * 65, "center": "x" * 65}, too_long("cursor")),
    ("admin evaluations", {"channel": "fax", "cursor": "xx"}, p("channel", CHANNELS)),
    # the audit log
    ("audit log", {"cursor": "0"}, f("cursor", AUDIT_CURSOR)),
    ("audit log", {"cursor": "MTA"}, f("cursor", AUDIT_CURSOR)),
    ("audit log", {"cursor": "1" * 19}, f("cursor", AUDIT_CURSOR)),
    ("audit log", {"from": "yesterday"}, f("from", FROM_TIME)),
    ("audit log", {"to": "2026-03-01T00:00:00"}, f("to", TO_TIME)),
    ("audit log", {"limit": "201"}, f("limit", LIMIT_200)),
    ("audit log", {"limit": "x"}, f("limit", LIMIT_200)),
    ("audit log", {"cursor": "0", "limit": "0"}, f("cursor", AUDIT_CURSOR)),
    ("audit log", {"from": "x", "limit": "0"}, f("from", FROM_TIME)),
    # the messages (the cursor's error has always said ``parameter``)
    ("messages", {"status": "nonsense"}, f("status", STATUSES)),
    ("messages", {"kind": "x"}, f("kind", KINDS)),
    ("messages", {"limit": "201"}, f("limit", LIMIT_200)),
    ("messages", {"cursor": "xx"}, p("cursor", BAD_CURSOR)),
    ("messages", {"cursor": "x" * 65}, p("cursor", BAD_CURSOR)),
    ("messages", {"status": "x", "kind": "x"}, f("status", STATUSES)),
    ("messages", {"kind": "x", "limit": "0"}, f("kind", KINDS)),
    ("messages", {"limit": "0", "cursor": "xx"}, f("limit", LIMIT_200)),
    # "²".isdigit() but int("²") fails; int() refuses over 4,300 digits: no longer 500s
    ("admin evaluations", {"limit": "²"}, p("limit", LIMIT_200)),
    ("admin evaluations", {"limit": "١٢"}, p("limit", LIMIT_200)),
    ("audit log", {"limit": "²"}, f("limit", LIMIT_200)),
    ("audit log", {"limit": "1" * 5000}, f("limit", LIMIT_200)),
    ("messages", {"limit": "²"}, f("limit", LIMIT_200)),
    ("messages", {"cursor": HUGE_CURSOR}, p("cursor", BAD_CURSOR)),
]


@pytest.mark.parametrize(
    ("endpoint", "args", "expected"), ERRORS, ids=[f"{e}-{i}" for i, (e, _, _) in enumerate(ERRORS)]
)
def test_errors(endpoint, args, expected):
    with pytest.raises(errors.ContractError) as caught:
        PARSERS[endpoint](args)
    assert caught.value.status == 400
    assert caught.value.body()["error"] == expected


def test_public_values():
    parse_list, parse_stats = listing.parse_list_query, figures.parse_stats_query
    assert parse_list({}) == parse_list({"center": "", "limit": "", "cursor": ""})
    assert parse_list({}) == listing.ListQuery()
    query = {
        "center": "C",
        "item": "I",
        "staff": "S",
        "level": "2",
        "limit": "020",
        "cursor": "MTA",
    }
    assert parse_list(query) == listing.ListQuery("C", "I", "S", 2, 10, 20)
    assert parse_list({"limit": "50"}).limit == 50
    assert parse_stats({}) == parse_stats({"center": "", "from": "", "to": None})
    assert parse_stats({}) == figures.StatsQuery()
    query = {"center": "C", "item": "I", "from": "2026-03-01", "to": "2026-03-01"}
    start, end = datetime(2026, 2, 28, 16, 0), datetime(2026, 3, 1, 16, 0)
    assert parse_stats(query) == figures.StatsQuery("C", "I", start, end)
    # tickets, statistics and export import these from public
    assert query_args.decode_cursor(query_args.encode_cursor(42)) == 42
    assert query_args.day_start_utc(date(2026, 3, 1)) == start


def test_admin_evaluations_values():
    parse = admin_evaluations.parse_evaluation_query
    blank = dict.fromkeys(("center", "level", "limit", "from", "to", "cursor", "channel"), "")
    assert parse({}.get) == parse(blank.get) == admin_evaluations.EvaluationQuery()
    given = {
        "center": "C",
        "item": "I",
        "staff": "S",
        "level": "5",
        "from": "2026-03-01",
        "to": "2026-03-02",
        "channel": "sms",
        "comment_status": "hidden",
        "cursor": "MTA",
        "limit": "200",
    }
    assert parse(given.get) == admin_evaluations.EvaluationQuery(
        center="C",
        item="I",
        staff="S",
        level=5,
        start=datetime(2026, 2, 28, 16, 0),
        end=datetime(2026, 3, 2, 16, 0),
        channel="sms",
        comment_status="hidden",
        before_id=10,
        limit=200,
    )
    assert parse({"limit": "007"}.get).limit == 7


def test_audit_values():
    parse = audit_search.parse_query
    blank = dict.fromkeys(("action", "username", "from", "to", "cursor", "limit"), "")
    assert parse({}.get) == parse(blank.get) == audit_search.AuditQuery()
    given = {
        "action": "staff.",
        "username": "boss",
        "from": "2026-03-01T00:00:00+08:00",
        "to": "2026-03-02T00:00:00Z",
        "cursor": "9" * 18,
        "limit": "3",
    }
    assert parse(given.get) == audit_search.AuditQuery(
        "staff.", "boss", datetime(2026, 2, 28, 16), datetime(2026, 3, 2), int("9" * 18), 3
    )
    # the catalogue listing reuses parse_limit (handlers/admin_catalog.py)
    assert audit_search.parse_limit(None, 100, 500) == audit_search.parse_limit("", 100, 500)
    assert audit_search.parse_limit(None, 100, 500) == 100
    assert audit_search.parse_limit("500", 100, 500) == 500
    with pytest.raises(errors.ContractError) as caught:
        audit_search.parse_limit("501", 100, 500)
    assert caught.value.body()["error"] == f("limit", "limit must be 1 to 500.")
