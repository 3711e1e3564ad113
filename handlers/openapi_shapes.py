"""The JSON schema of an answer described in the contract's notation (api.md): a success's
``description`` such as ``{token, expires_in, user:{id, verified, name_masked}}`` becomes an
object requiring those keys, nested objects and arrays of objects alike, so /openapi.json
(and schemathesis against it) checks every answer's shape, not only the errors'.

The notation: ``{a, b?, c:{…}, d:[{…}], e:[code], f:{…}|null, g: true}`` followed by free
text. ``?`` marks an optional key; a nested object may be null (relations the answer leaves
out), and one followed by words (``key:{code, name} (day: {date})``) is not checked; keys stay
open (the contract may add fields). A description the parser does not read
whole (``the row``, ``{'1'..'5'}``) gives no schema: only what it states is checked.
"""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(\?)?\s*")


class _Unreadable(Exception):
    """Not the notation: the caller documents no schema."""


def answer_schema(description: str) -> dict[str, Any] | None:
    """The schema of an answer described as ``{…}`` (free text may follow), or None."""
    text = description.strip()
    if not text.startswith("{"):
        return None
    try:
        schema, _ = _object(text, 0)
    except _Unreadable:
        return None
    return schema


def _closing(text: str, start: int) -> int:
    """The index of the bracket closing the one at ``start``."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] in "{[":
            depth += 1
        elif text[index] in "}]":
            depth -= 1
            if depth == 0:
                return index
    raise _Unreadable(text)


def _split(body: str) -> list[str]:
    """The entries of an object's body: commas at depth 0."""
    entries, depth, start = [], 0, 0
    for index, char in enumerate(body):
        if char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "," and depth == 0:
            entries.append(body[start:index])
            start = index + 1
    entries.append(body[start:])
    return [e for e in entries if e.strip()]


def _object(text: str, start: int) -> tuple[dict[str, Any], int]:
    end = _closing(text, start)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for entry in _split(text[start + 1 : end]):
        key = _KEY.match(entry)
        if not key:
            raise _Unreadable(entry)
        name, optional = key.group(1), key.group(2)
        rest = entry[key.end() :]
        properties[name] = _value(rest[1:].strip()) if rest.startswith(":") else {}
        if not optional:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, end


def _value(text: str) -> dict[str, Any]:
    """The schema of what follows ``key:``: an object, an array, a boolean, or anything."""
    try:
        if text.startswith("{"):
            schema, end = _object(text, 0)
            if text[end + 1 :].strip() not in ("", "|null"):
                return {}  # ``key:{code, name} (day: {date})``: other shapes said in words
            return {"anyOf": [schema, {"type": "null"}]}  # a relation may be absent
        if text.startswith("["):
            inner = text[1 : _closing(text, 0)].strip()
            return {"type": "array", "items": _object(inner, 0)[0] if inner.startswith("{") else {}}
    except _Unreadable:
        return {}  # ``{'1'..'5'}``, ``{"<template_id>": n}``: said in words only
    if text in ("true", "false"):
        return {"const": text == "true"}
    return {}
