"""The suite's own shape: test modules never import one another or conftest.py, and conftest.py
defines fixtures (and pytest hooks) only; what test modules share lives in tests/helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TEST_MODULES = sorted(TESTS.glob("test_*.py"))
HELPERS = sorted((TESTS / "helpers").glob("*.py"))
# Module-level names pytest itself reads from a conftest.py.
CONFTEST_SETTINGS = {"pytest_plugins", "collect_ignore", "collect_ignore_glob"}


def imported_modules(source: str, package: tuple[str, ...]) -> set[str]:
    """The modules a module of `package` imports, at any depth of its code, as dotted names;
    relative imports are resolved against `package`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    """Is `name` a test module or conftest.py (imported as `test_x`, `tests.test_x`...)?"""
    parts = name.split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return bool(parts) and (parts[0] == "conftest" or
                            (parts[0].startswith("test_") and (TESTS / f"{parts[0]}.py").exists()))


@pytest.mark.parametrize("path", TEST_MODULES + HELPERS, ids=lambda path: path.name)
def test_no_module_imports_a_test_module_or_conftest(path):
    package = path.parent.relative_to(TESTS.parent).parts
    bad = sorted(name for name in imported_modules(path.read_text(), package) if forbidden(name))
    assert not bad, f"{path.name} imports {bad}: move what they share into tests/helpers"


def is_fixture(node) -> bool:
    """Is a function decorated with pytest.fixture (called or not)?"""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "fixture":
            return True
    return False


def test_conftest_defines_fixtures_and_hooks_only():
    tree = ast.parse((TESTS / "conftest.py").read_text())
    helpers = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            hook_or_fixture = node.name.startswith("pytest_") or is_fixture(node)
            if not node.name.startswith("_") and not hook_or_fixture:
                helpers.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            helpers += [target.id for target in targets if isinstance(target, ast.Name)
                        and not target.id.startswith("_") and target.id not in CONFTEST_SETTINGS]
    assert not helpers, f"conftest.py defines {helpers}: helpers belong in tests/helpers"


def test_the_import_check_sees_each_spelling():
    assert forbidden("conftest") and forbidden("tests.conftest")
    assert forbidden("test_responder_units") and forbidden("tests.test_responder_units")
    assert forbidden("tests.test_responder_units.body_of")
    assert not forbidden("tests.helpers.respond") and not forbidden("test_no_such_module")
    spellings = {"import test_paths": "test_paths",
                 "from test_paths import x": "test_paths",
                 "from tests.test_paths import x": "tests.test_paths",
                 "from . import test_paths": "tests.test_paths",
                 "from .conftest import x": "tests.conftest",
                 "def f():\n    from tests import test_paths": "tests.test_paths"}
    for source, name in spellings.items():
        assert name in imported_modules(source, ("tests",)), source
    assert "tests.test_paths" in imported_modules("from .. import test_paths",
                                                  ("tests", "helpers"))
