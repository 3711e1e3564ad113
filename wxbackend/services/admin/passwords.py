"""What an admin password must be (issue 12 item 14): long, varied, not a common one.

At least :data:`MIN_LENGTH` characters (at most :data:`MAX_LENGTH`), at least two character
classes (lower case, upper case, digits, letters without case such as 汉字, anything else),
no single repeated character, not a run like ``123456789012`` or ``abcdefghijkl``, and not in
the shipped list of common passwords (``wxbackend/data/common-passwords.txt``) — also not one
of those with digits or symbols added at the end (``password2024!``). Ten spaces and
``1111111111`` used to be accepted.
"""

from __future__ import annotations

import functools
import re
import string
from importlib import resources

MIN_LENGTH = 12
MAX_LENGTH = 256
_TRAILING = re.compile(r"[\d\W_]+$")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased."""
    text = resources.files("wxbackend").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def _classes(password: str) -> int:
    kinds = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
        any(c.isalpha() and not c.islower() and not c.isupper() for c in password),  # 汉字
    )
    return sum(kinds)


def _is_run(password: str) -> bool:
    """One character repeated, or a steady run of code points (``123456…``, ``abcdef…``)."""
    steps = {ord(b) - ord(a) for a, b in zip(password, password[1:], strict=False)}
    return len(steps) == 1 and abs(next(iter(steps))) <= 1


def problem(password: str) -> str | None:
    """Why ``password`` is refused (for the message after ``password:``), or None."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    if not password.strip(string.whitespace):
        return "not only spaces"
    if _classes(password) < 2:
        return "mix at least two of lower case, upper case, digits and symbols"
    lowered = password.lower()
    stem = _TRAILING.sub("", lowered)
    if _is_run(lowered) or lowered in common_passwords() or stem in common_passwords():
        return "too common or too easy to guess"
    return None
