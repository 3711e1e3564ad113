"""The test suite's own layout: helpers live in tests/support/, no test module imports another
(a test imported by a second module would be collected twice, and the helpers it carries
would be hard to find)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module name a file imports (``import a.b`` and ``from a.b import c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") and name.split(".")[0] in ("tests", last)


def test_no_test_module_imports_another():
    offenders = {
        f"{path.relative_to(TESTS)} imports {name}"
        for path in sorted(TESTS.rglob("test_*.py"))
        for name in imported_modules(path)
        if is_test_module(name)
    }
    assert not offenders, sorted(offenders)


def test_support_modules_import_no_test_module():
    offenders = {
        f"support/{path.name} imports {name}"
        for path in sorted((TESTS / "support").glob("*.py"))
        for name in imported_modules(path)
        if is_test_module(name)
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_both_import_forms(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("import tests.test_a\nfrom tests.test_b import x\nfrom tests import test_c\n")
    found = {name for name in imported_modules(sample) if is_test_module(name)}
    assert found == {"tests.test_a", "tests.test_b", "tests.test_c"}
