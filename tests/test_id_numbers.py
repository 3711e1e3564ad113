"""ID numbers of every age and origin (product rule 13), as a citizen and a window system use them.

The old check (a general-purpose resident-ID checker) compared the county code with the
birth year and refused everyone born before 1983 in most districts (440103 is listed from
1983): these tests try every birth year 1920–2010 in districts of several provinces, the
residence permits of Hong Kong, Macau and Taiwan, foreigners' permanent residence IDs and
wrong check characters — by the rule, at face verification and in a partner's case report.
The check characters here are computed by the tests' own MOD 11-2, not the module's.
"""

from __future__ import annotations

from datetime import date

import pytest

from wxbackend.services.citizens import id_numbers

#: Districts whose codes were created after many of their residents were born.
DISTRICTS = ("440103", "440106", "440111", "310115", "110105", "510107", "650102", "230102")
PERMITS = ("810000", "820000", "830000")
FOREIGN = ("911156", "931840", "944250")  # 9 + province + a nationality code


def mod11_2(first17: str) -> str:
    """ISO 7064 MOD 11-2, written from the standard: Σ digit·2^(17−i) mod 11 → check."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


def number(area: str, born: date, seq: str = "123") -> str:
    first17 = f"{area}{born:%Y%m%d}{seq}"
    return first17 + mod11_2(first17)


def wrong_check(valid: str) -> list[str]:
    return [valid[:17] + c for c in "0123456789X" if c != valid[17]]


@pytest.mark.parametrize("area", DISTRICTS)
def test_every_birth_year_1920_to_2010_is_valid_in_every_district(area):
    for year in range(1920, 2011):
        for month, day in ((1, 1), (2, 28), (12, 31)):
            value = number(area, date(year, month, day))
            assert id_numbers.id_kind(value) == id_numbers.RESIDENT, value
            assert id_numbers.is_resident_id(value)


def test_the_elderly_of_a_street_centre():
    for area, year in (("440103", 1950), ("440103", 1970), ("440106", 1970), ("440111", 1960)):
        assert id_numbers.is_resident_id(number(area, date(year, 6, 15)))
    assert id_numbers.is_resident_id(number("310115", date(1960, 3, 1)))
    assert id_numbers.is_resident_id(number("440103", date(1900, 1, 1)))  # the first day


@pytest.mark.parametrize("area", PERMITS)
def test_residence_permits_of_hong_kong_macau_taiwan(area):
    for year in (1935, 1960, 1983, 2005):
        value = number(area, date(year, 7, 9))
        assert id_numbers.id_kind(value) == id_numbers.PERMIT
        assert id_numbers.is_valid(value) and not id_numbers.is_resident_id(value)


@pytest.mark.parametrize("area", FOREIGN)
def test_foreigners_permanent_residence_ids(area):
    value = number(area, date(1971, 11, 30))
    assert id_numbers.id_kind(value) == id_numbers.FOREIGN_PERMANENT
    assert id_numbers.is_valid(value) and not id_numbers.is_resident_id(value)


def test_every_wrong_check_character_is_refused():
    for valid in (number("440103", date(1950, 5, 5)), number("810000", date(1980, 1, 2))):
        assert id_numbers.is_valid(valid)
        for bad in wrong_check(valid):
            assert id_numbers.id_kind(bad) is None, bad


def test_lower_case_x_and_full_width_digits_are_normalised():
    with_x = next(
        v
        for seq in range(100, 200)
        if (v := number("440103", date(1948, 2, 2), str(seq)))[-1] == "X"
    )
    wide = with_x[:-1].translate(str.maketrans("0123456789", "０１２３４５６７８９")) + "x"
    assert id_numbers.is_resident_id(wide)


@pytest.mark.parametrize(
    "value",
    [
        number("440103", date(1899, 12, 31)),  # before 1900
        "",
        "44010319500101123",  # 17 characters
        "4401031950010112345",  # 19
        "44010319500230123" + mod11_2("44010319500230123"),  # 30 February
        "44010319501301123" + mod11_2("44010319501301123"),  # month 13
        number("990103", date(1950, 1, 1)),  # unknown province
        number("000000", date(1950, 1, 1)),
        number("840000", date(1950, 1, 1)),  # not a permit prefix
        number("900103", date(1950, 1, 1)),  # 9 + unknown province
        "44010319500101123" + "Y",
        "44010A19500101123" + "1",
    ],
)
def test_malformed_numbers_are_refused(value):
    assert id_numbers.id_kind(value) is None


def test_a_birth_date_after_today_is_refused():
    today = date(2026, 12, 2)
    born_tomorrow = number("440103", date(2026, 12, 3))
    assert id_numbers.id_kind(born_tomorrow, today=today) is None
    assert id_numbers.id_kind(number("440103", today), today=today) == id_numbers.RESIDENT


# ---- over HTTP: face verification and a partner's case report --------------------------------

START = "/api/v1/identity/face/start"


@pytest.mark.asyncio
@pytest.mark.parametrize("area,year", [("440103", 1950), ("440106", 1970), ("310115", 1930)])
async def test_an_elderly_citizen_starts_face_verification(api, sandbox, area, year):
    token, _ = await api.login(sandbox)
    body = {"name": "黎明", "id_number": number(area, date(year, 4, 1))}
    status, answer = await api("POST", START, body, token=token)
    assert status == 200, answer
    assert answer["verify_id"]


@pytest.mark.asyncio
@pytest.mark.parametrize("area", [PERMITS[0], FOREIGN[0]])
async def test_face_verification_takes_resident_ids_only(api, sandbox, area):
    token, _ = await api.login(sandbox)
    body = {"name": "黎明", "id_number": number(area, date(1960, 4, 1))}
    status, answer = await api("POST", START, body, token=token)
    assert status == 400 and answer["error"]["code"] == "invalid_id_number", answer
    assert "回访" in answer["error"]["message"]  # told how they can rate instead
    assert (await sandbox.stats())["calls"].get("cityservice/face/identify/getverifyid", 0) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "value",
    [
        number("440103", date(1950, 1, 1)),
        number("440111", date(1925, 8, 8)),
        number("820000", date(1966, 6, 6)),
        number("830000", date(1999, 9, 9)),
        number("931840", date(1971, 11, 30)),
    ],
)
async def test_partner_reports_a_case_of_any_applicant(partner, value):
    status, answer = await partner.report_case(applicant={"name": "黎明", "id_number": value})
    assert status == 201, answer


@pytest.mark.asyncio
async def test_partner_report_with_a_wrong_check_character_is_422(partner):
    bad = wrong_check(number("440103", date(1950, 1, 1)))[0]
    status, answer = await partner.report_case(applicant={"name": "黎明", "id_number": bad})
    assert status == 422 and answer["error"]["code"] == "invalid_id_number", answer
