"""The public list against the log (part of ``wxbackend.verifylog``; standard library only).

The log's leaves are replayed into the latest public state of every first rating (levels,
channel, masked name, the comment's status and the SHA-256 of its public text, replies,
the ticket's status, the follow-up); every item of ``GET /api/v1/public/evaluations`` must
match it, and every first rating of a signed leaf must be listed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PUBLIC_LIST = "/api/v1/public/evaluations"
_COMPARED = ("overall", "channel", "name_masked", "stages", "targets")


def fetch_public_list(client: Any) -> list[dict[str, Any]]:
    """Every item of the public list (all pages, newest first)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 50}
        if cursor:
            query["cursor"] = cursor
        page = client.json(PUBLIC_LIST, **query)
        items.extend(page.get("items", []))
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def replay(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{first rating id: its latest logged public state}``."""
    states: dict[str, dict[str, Any]] = {}
    first_of: dict[str, str] = {}  # follow-up id → first rating id
    for entry in entries:
        leaf = json.loads(entry["leaf"])
        kind, evaluation = leaf.get("kind"), str(leaf.get("evaluation"))
        if kind == "rating":
            state = states.setdefault(
                evaluation,
                {"index": entry["index"], "replies": [], "ticket": None, "follow_up": None},
            )
            state.update({k: leaf.get(k) for k in (*_COMPARED, "comment")})
            state["indicators"] = leaf.get("indicators", [])
        elif kind == "follow_up":
            first_of[evaluation] = str(leaf.get("first"))
            if first_of[evaluation] in states:
                states[first_of[evaluation]]["follow_up"] = {
                    "overall": leaf.get("overall"),
                    "comment": leaf.get("comment"),
                }
        elif kind == "moderation":
            if evaluation in first_of and states.get(first_of[evaluation], {}).get("follow_up"):
                states[first_of[evaluation]]["follow_up"]["comment"] = leaf.get("comment")
            elif evaluation in states:
                states[evaluation]["comment"] = leaf.get("comment")
        elif kind == "reply" and evaluation in states:
            states[evaluation]["replies"].append(leaf.get("text_sha256"))
        elif kind == "ticket" and evaluation in states:
            states[evaluation]["ticket"] = leaf.get("status")
    return states


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _comment_problem(what: str, public: str | None, logged: dict[str, Any] | None) -> str | None:
    if public is not None:
        digest = _sha256(public)
        if logged is None or logged.get("sha256") != digest:
            return f"{what}: the public comment text differs from the log"
    elif logged is not None and logged.get("status") == "visible":
        return f"{what}: the comment is withheld but the log records no decision hiding it"
    return None


def _item_problems(item: dict[str, Any], state: dict[str, Any]) -> list[str]:
    what = f"evaluation {item.get('id')}"
    problems = []
    for key in _COMPARED:
        if item.get(key) != state.get(key):
            problems.append(
                f"{what}: {key} is {state.get(key)!r} in the log but "
                f"{item.get(key)!r} in the public list"
            )
    codes = [i.get("code") if isinstance(i, dict) else i for i in item.get("indicators") or []]
    if codes != state["indicators"]:
        problems.append(f"{what}: its indicators differ from the log")
    problem = _comment_problem(what, item.get("comment"), state.get("comment"))
    if problem:
        problems.append(problem)
    replies = [_sha256(str(r.get("text"))) for r in item.get("replies") or []]
    if replies != state["replies"]:
        problems.append(f"{what}: its public replies differ from the log")
    if state["ticket"] is not None and item.get("ticket_status") != state["ticket"]:
        problems.append(
            f"{what}: ticket status {item.get('ticket_status')!r} in the public "
            f"list, {state['ticket']!r} in the log"
        )
    follow_up, logged = item.get("follow_up"), state["follow_up"]
    if (follow_up is None) != (logged is None):
        problems.append(
            f"{what}: its follow-up is {'missing from' if logged else 'not in'} "
            f"the {'public list' if logged else 'log'}"
        )
    elif follow_up is not None:
        if follow_up.get("overall") != logged.get("overall"):
            problems.append(f"{what}: its follow-up's level differs from the log")
        problem = _comment_problem(
            f"{what} (follow-up)", follow_up.get("comment"), logged.get("comment")
        )
        if problem:
            problems.append(problem)
    return problems


def compare_public_list(
    report: Any, signed_size: int, entries: list[dict[str, Any]], listed: list[dict[str, Any]]
) -> None:
    """Report every difference between the public list and the log's replayed state."""
    states = replay(entries)
    before = len(report.problems)
    seen = set()
    for item in listed:
        key = str(item.get("id"))
        seen.add(key)
        state = states.get(key)
        if state is None:
            report.fail(f"evaluation {key} is in the public list but not in the log")
            continue
        for problem in _item_problems(item, state):
            report.fail(problem)
    for key, state in states.items():
        if key not in seen and state["index"] < signed_size:
            report.fail(
                f"evaluation {key} (leaf {state['index']}) is in the log but not in the public "
                "list (deleted?)"
            )
    if len(report.problems) == before:
        report.good(f"the public list ({len(listed)} ratings) matches the log")
