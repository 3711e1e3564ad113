"""RFC 8785 (JSON Canonicalization Scheme) for the values a leaf holds (standard library).

Objects with string keys (sorted by their UTF-16 code units), arrays, strings, integers,
booleans and null; no whitespace; strings escaped as ECMAScript's ``JSON.stringify`` does
(``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other control characters as ``\\u00xx``; every
other character as itself, UTF-8). Floats are refused: a leaf never needs one, and integers
serialize the same in every implementation.
"""

from __future__ import annotations

from typing import Any

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: ECMAScript's safe integer range: larger integers would not round-trip as JSON numbers.
MAX_SAFE_INTEGER = 2**53 - 1


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            raise ValueError("a lone surrogate cannot be canonicalized")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def canonical_json(value: Any) -> str:
    """The RFC 8785 text of ``value``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integer outside the interoperable range")
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("object keys must be strings")
        keys = sorted(value, key=_utf16_key)
        return "{" + ",".join(f"{_string(k)}:{canonical_json(value[k])}" for k in keys) + "}"
    raise TypeError(f"cannot canonicalize {type(value).__name__}")
