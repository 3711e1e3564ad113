"""Tests for wxbackend.services.catalogue.importer and .rows: the catalogue import (目录导入)."""

import copy
import json
from pathlib import Path

import pytest

from models.catalog import Center, Department, ServiceItem, Staff, Window
from models.migrations import migrate
from tests.support.databases import POSTGRES, both_databases
from wxbackend.db import database, make_peewee_database
from wxbackend.security import Keys, LookupHasher, normalize_id_number
from wxbackend.services.catalogue.importer import import_catalog, load_catalog_file
from wxbackend.services.catalogue.rows import CatalogError, validate_catalog
from wxbackend.settings import load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "catalog.example.json"
ID_NUMBER = "440100198001011232"  # the example's test number (valid GB 11643 check digit)
TABLES = (Center, Department, ServiceItem, Staff, Window)


@pytest.fixture
def db(tmp_path, request, db_backend):
    """The models on a fresh database: SQLite, or PostgreSQL where the test is marked
    ``both_databases``."""
    overrides = {
        "database": {"url": f"sqlite:///{tmp_path}/t.db"},
        "server": {"data_dir": str(tmp_path)},
    }
    if db_backend == POSTGRES:
        overrides.update(request.getfixturevalue("postgres_settings"))
    settings = load_settings(env={}, overrides=overrides)
    peewee_db = make_peewee_database(settings)
    database.initialize(peewee_db)
    migrate(peewee_db)
    yield peewee_db
    peewee_db.close()


@pytest.fixture
def hasher():
    return LookupHasher(Keys(master=b"\x01" * 32, hash_key=b"\x03" * 32))


@pytest.fixture
def example():
    return load_catalog_file(str(EXAMPLE))


def counts():
    return {m.__name__: m.select().count() for m in TABLES}


@both_databases
def test_example_imports(db, hasher, example):
    report = import_catalog(example, hasher)
    assert report.counts["centers"] == {"created": 1, "updated": 0, "unchanged": 0}
    assert report.counts["departments"]["created"] == 3
    assert report.counts["items"]["created"] == 8
    assert report.counts["staff"]["created"] == 6
    assert report.counts["windows"]["created"] == 4
    assert counts() == {
        "Center": 1,
        "Department": 3,
        "ServiceItem": 8,
        "Staff": 6,
        "Window": 4,
    }
    w1 = Window.get(Window.code == "HL-W01")
    assert w1.staff.staff_no == "HL001" and w1.center.code == "440103-HL"
    approver = Staff.get(Staff.staff_no == "HL101")
    assert approver.role == "approver" and approver.department.code == "HL-LABOR"
    assert Department.get(Department.code == "HL-LABOR").credit_code == "11440103MB2C000008"


@both_databases
def test_second_import_is_all_unchanged(db, hasher, example):
    import_catalog(example, hasher)
    before = counts()
    report = import_catalog(example, hasher)
    assert report.total("created") == 0 and report.total("updated") == 0
    assert report.total("unchanged") == 1 + 3 + 8 + 6 + 4
    assert counts() == before


def test_changed_name_is_updated(db, hasher, example):
    import_catalog(example, hasher)
    old = Staff.get(Staff.staff_no == "HL003").updated_at
    data = copy.deepcopy(example)
    data["staff"][2]["name"] = "  李志刚 "
    data["windows"][0]["staff_no"] = "HL003"
    report = import_catalog(data, hasher)
    assert report.counts["staff"] == {"created": 0, "updated": 1, "unchanged": 5}
    assert report.counts["windows"] == {"created": 0, "updated": 1, "unchanged": 3}
    staff = Staff.get(Staff.staff_no == "HL003")
    assert staff.name == "李志刚" and staff.updated_at >= old
    assert Window.get(Window.code == "HL-W01").staff.staff_no == "HL003"


def test_references_resolve_against_database(db, hasher, example):
    import_catalog(example, hasher)
    data = {
        "items": [{"code": "440103-SY-009", "name": "就业困难人员认定", "department": "HL-LABOR"}],
        "windows": [
            {"code": "HL-W05", "name": "5号窗口", "center": "440103-HL", "staff_no": "HL101"}
        ],
    }
    report = import_catalog(data, hasher)
    assert report.counts["items"]["created"] == 1 and report.counts["windows"]["created"] == 1


def test_id_number_stored_only_as_hash(db, hasher, example, tmp_path):
    import_catalog(example, hasher)
    staff = Staff.get(Staff.staff_no == "HL002")
    assert staff.id_hash == hasher.hash(normalize_id_number(ID_NUMBER), "id_number")
    assert Staff.select().where(Staff.id_hash.is_null(False)).count() == 1
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert ID_NUMBER.encode() not in raw
    assert ID_NUMBER.encode("utf-16-le") not in raw


def test_full_width_id_number_hashes_the_same(db, hasher, example):
    data = copy.deepcopy(example)
    data["staff"][1]["id_number"] = "４４０１００１９８００１０１１２３２"
    import_catalog(data, hasher)
    assert Staff.get(Staff.staff_no == "HL002").id_hash == hasher.hash(ID_NUMBER, "id_number")


def _bad(example, section, index, **changes):
    data = copy.deepcopy(example)
    row = data[section][index]
    for key, value in changes.items():
        if value is None:
            row.pop(key, None)
        else:
            row[key] = value
    return data


BAD_CASES = {
    "unknown department": (
        lambda ex: _bad(ex, "staff", 3, department="HL-NOPE"),
        'staff[3] (HL004): unknown department "HL-NOPE"',
    ),
    "unknown center": (
        lambda ex: _bad(ex, "departments", 1, center="440103-XX"),
        'departments[1] (HL-CIVIL): unknown center "440103-XX"',
    ),
    "unknown window staff": (
        lambda ex: _bad(ex, "windows", 2, staff_no="HL999"),
        'windows[2] (HL-W03): unknown staff_no "HL999"',
    ),
    "missing field": (
        lambda ex: _bad(ex, "items", 4, name=None),
        "items[4] (440103-MZ-002): missing field name",
    ),
    "empty name": (
        lambda ex: _bad(ex, "items", 4, name="   "),
        "items[4] (440103-MZ-002): name must not be empty",
    ),
    "not a string": (
        lambda ex: _bad(ex, "centers", 0, area_code=440103),
        "centers[0] (440103-HL): area_code must be a string",
    ),
    "bad area code": (
        lambda ex: _bad(ex, "centers", 0, area_code="4401"),
        "centers[0] (440103-HL): area_code",
    ),
    "bad code": (
        lambda ex: _bad(ex, "items", 0, code="事项 1"),
        "items[0]: code",
    ),
    "too long": (
        lambda ex: _bad(ex, "staff", 0, name="名" * 65),
        "staff[0] (HL001): name is longer than 64",
    ),
    "bad role": (
        lambda ex: _bad(ex, "staff", 4, role="boss"),
        'staff[4] (HL101): role "boss" must be one of window, approver',
    ),
    "bad photo url": (
        lambda ex: _bad(ex, "staff", 1, photo_url="javascript:alert(1)"),
        "staff[1] (HL002): photo_url must be an http(s) URL",
    ),
    "bad credit code": (
        lambda ex: _bad(ex, "departments", 2, credit_code="11440103MB2C000009"),
        "departments[2] (HL-GENERAL): invalid credit_code",
    ),
    "unknown field": (
        lambda ex: _bad(ex, "windows", 1, floor="2F"),
        'windows[1] (HL-W02): unknown field "floor"',
    ),
    "duplicate code": (
        lambda ex: _bad(ex, "items", 5, code="440103-SY-001"),
        'items[5] (440103-SY-001): duplicate code "440103-SY-001" (also items[0])',
    ),
    "department of another center": (
        lambda ex: {
            **ex,
            "centers": ex["centers"]
            + [{"code": "440103-CN", "name": "冲口街", "area_code": "440103"}],
            "staff": ex["staff"][:3]
            + [{**ex["staff"][3], "center": "440103-CN"}]
            + ex["staff"][4:],
        },
        'staff[3] (HL004): department "HL-GENERAL" belongs to center "440103-HL"',
    ),
    "window staff of another center": (
        lambda ex: {
            **ex,
            "centers": ex["centers"]
            + [{"code": "440103-CN", "name": "冲口街", "area_code": "440103"}],
            "windows": ex["windows"]
            + [{"code": "CN-W01", "name": "1号", "center": "440103-CN", "staff_no": "HL001"}],
        },
        'windows[4] (CN-W01): staff "HL001" works in another center',
    ),
    "unknown section": (
        lambda ex: {**ex, "counters": []},
        'catalog: unknown section "counters"',
    ),
    "row not an object": (
        lambda ex: {**ex, "windows": ex["windows"] + ["HL-W09"]},
        "windows[4]: must be an object",
    ),
    "last row bad after valid rows": (
        lambda ex: {**ex, "windows": ex["windows"][:3] + [{**ex["windows"][3], "center": "X"}]},
        'windows[3] (HL-W04): unknown center "X"',
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
@pytest.mark.parametrize("preloaded", [False, True], ids=["empty-db", "after-import"])
def test_bad_file_names_row_and_writes_nothing(db, hasher, example, case, preloaded):
    if preloaded:
        import_catalog(example, hasher)
    make, expected = BAD_CASES[case]
    data = make(copy.deepcopy(example))
    # Make every good row differ from the database, so a partial write would show.
    for row in data.get("items", []):
        if isinstance(row, dict) and isinstance(row.get("name"), str) and row["name"].strip():
            row["name"] += "（新）"
    before = counts()
    names = [s.name for s in ServiceItem.select().order_by(ServiceItem.id)]
    with pytest.raises(CatalogError) as info:
        import_catalog(data, hasher)
    assert expected in str(info.value)
    assert counts() == before
    assert [s.name for s in ServiceItem.select().order_by(ServiceItem.id)] == names


def test_bad_id_number_not_echoed(db, hasher, example):
    bad_number = "440100198001011233"  # wrong check digit
    data = _bad(example, "staff", 5, id_number=bad_number)
    with pytest.raises(CatalogError) as info:
        import_catalog(data, hasher)
    message = str(info.value)
    assert message == "staff[5] (HL102): invalid id_number"
    assert info.value.section == "staff" and info.value.index == 5
    assert bad_number not in message and "1233" not in message
    assert all(n == 0 for n in counts().values())


def test_moving_department_cannot_strand_stored_staff(db, hasher, example):
    import_catalog(example, hasher)
    data = {
        "centers": [{"code": "440103-CN", "name": "冲口街", "area_code": "440103"}],
        "departments": [{**example["departments"][0], "center": "440103-CN"}],
    }
    before = counts()
    with pytest.raises(CatalogError, match=r"departments\[0\] \(HL-LABOR\).*HL001"):
        import_catalog(data, hasher)
    assert counts() == before


def test_validate_writes_nothing_and_normalises(db, hasher, example):
    data = _bad(example, "departments", 0, credit_code="11440103-MB2C-000008")
    rows = validate_catalog(data, hasher)
    assert rows.departments[0]["credit_code"] == "11440103MB2C000008"
    assert "id_number" not in rows.staff[1] and rows.staff[1]["id_hash"]
    assert all(n == 0 for n in counts().values())


def test_load_catalog_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "centers": [\n    {"code": "A",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"line 3 column"):
        load_catalog_file(str(bad))
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog_file(str(tmp_path / "missing.json"))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"centers": []}), encoding="utf-8")
    assert load_catalog_file(str(good)) == {"centers": []}


def test_example_file_is_valid_without_database_rows(db, hasher, example):
    rows = validate_catalog(example, hasher)
    assert len(rows.items) == 8 and {s["role"] for s in rows.staff} == {"window", "approver"}
