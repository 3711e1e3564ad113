"""ID numbers (GB 11643) of every age and origin: what is valid, and which kind it is.

Product rule 13. An 18-character number is 17 digits and a check character (ISO 7064 MOD
11-2, ``X`` for 10), with a real birth date (1900-01-01 to today) at characters 7–14 and a
known province-level prefix. The six-digit area code is that of the office that *issued* the
number: it is never compared with the birth year (most district codes date from 1983 and are
carried by people born long before; a general-purpose checker that does compare them refuses
every citizen born before 1983 in most districts).

Kinds (:func:`id_kind`):

- ``resident`` — 居民身份证: a province-level prefix of GB/T 2260 (11 北京 … 65 新疆, 71 台湾).
- ``permit`` — 港澳台居民居住证: prefix 81 (Hong Kong), 82 (Macau), 83 (Taiwan).
- ``foreign_permanent`` — 外国人永久居留身份证 (2023 format): first digit 9, then a province
  code.

WeChat's face verification takes ``IDENTITY_CARD`` only (wechat.md), so only ``resident``
numbers can verify by face; every kind is a valid case applicant, and the others rate through
a phone/SMS callback.
"""

from __future__ import annotations

from datetime import date

from wxbackend.security import normalize_id_number as normalize

#: Province-level codes of GB/T 2260 (the first two digits of a resident ID).
PROVINCES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71",
    }
)  # fmt: skip
#: Prefixes of the Hong Kong, Macau and Taiwan residents' residence permits.
PERMIT_PREFIXES = frozenset({"81", "82", "83"})
_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK = "10X98765432"
EARLIEST_BIRTH = date(1900, 1, 1)

RESIDENT = "resident"
PERMIT = "permit"
FOREIGN_PERMANENT = "foreign_permanent"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def birth_date(number: str) -> date | None:
    """The birth date at characters 7–14, or None when it is not a real date."""
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def id_kind(value: str, today: date | None = None) -> str | None:
    """The kind of a valid 18-character ID number (:data:`RESIDENT`, :data:`PERMIT`,
    :data:`FOREIGN_PERMANENT`), or None when it is not valid. ``value`` is normalised first."""
    number = normalize(value)
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        return None
    if number[17] != check_character(number[:17]):
        return None
    born = birth_date(number)
    if born is None or not EARLIEST_BIRTH <= born <= (today or date.today()):
        return None
    if number[:2] in PROVINCES:
        return RESIDENT
    if number[:2] in PERMIT_PREFIXES:
        return PERMIT
    if number[0] == "9" and number[1:3] in PROVINCES:
        return FOREIGN_PERMANENT
    return None


def is_valid(value: str) -> bool:
    """Any valid kind: what a case applicant (or a staff member's ID) may carry."""
    return id_kind(value) is not None


def is_resident_id(value: str) -> bool:
    """A valid resident ID (居民身份证): what WeChat's face verification takes."""
    return id_kind(value) == RESIDENT
