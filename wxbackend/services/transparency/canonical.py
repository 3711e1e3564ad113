"""RFC 8785 (JSON Canonicalization Scheme) for the values a leaf holds (standard library).

Objects with string keys (sorted by their UTF-16 code units), arrays, strings, integers,
booleans and null; no whitespace; strings escaped as ECMAScript's ``JSON.stringify`` does
(``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other control characters as ``\\u00xx``; every
other character as itself, UTF-8). Python's JSON encoder with ``ensure_ascii=False`` escapes
exactly so, so it writes the text once the values are checked and the objects ordered.
Floats are refused: a leaf never needs one, and integers serialize the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

#: ECMAScript's safe integer range: larger integers would not round-trip as JSON numbers.
MAX_SAFE_INTEGER = 2**53 - 1
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _ordered(value: Any) -> Any:
    """``value`` checked, its objects' keys in UTF-16 order (lone surrogates refused)."""
    kind = type(value)
    if kind is str:
        value.encode("utf-8")  # a lone surrogate raises here
        return value
    if kind is dict:
        keys = list(value)
        if not all(type(k) is str for k in keys):
            raise TypeError("object keys must be strings")
        if not all(k.isascii() for k in keys):  # ASCII keys: code point order is UTF-16's
            keys.sort(key=_utf16_key)
        else:
            keys.sort()
        return {k: _ordered(value[k]) for k in keys}
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise ValueError("integer outside the interoperable range")
    if kind is list or kind is tuple:
        return [_ordered(v) for v in value]
    if value is None or kind is bool:
        return value
    raise TypeError(f"cannot canonicalize {kind.__name__}")


def canonical_json(value: Any) -> str:
    """The RFC 8785 text of ``value``."""
    return _ENCODER.encode(_ordered(value))
