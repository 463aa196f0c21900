"""The package's shape: no module named like a standard-library one, no import cycles (lazy ones
included), and the pure core loads no start-up or engine code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers.servers import REPO, server_env

PACKAGE = REPO / "reactor_http"
# Standard-library names of Pythons newer than the one running the tests (3.14 adds these).
NEWER_STDLIB = {"compression", "annotationlib"}


def modules() -> dict[str, Path]:
    """reactor_http's modules by name."""
    return {path.stem: path for path in PACKAGE.glob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The package modules a module imports, at any depth of its code (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reactor_http."):
            found.add(node.module.split(".")[1])
    return found & set(modules())


def test_no_module_is_named_like_a_standard_library_module():
    clashes = set(modules()) & (set(sys.stdlib_module_names) | NEWER_STDLIB)
    assert not clashes


def test_there_is_no_import_cycle_lazy_imports_included():
    graph = {name: imports_of(path) - {name} for name, path in modules().items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_supervisor_imports_nothing_of_the_start_up_code():
    assert "server" not in imports_of(PACKAGE / "workers.py")
    assert "cli" not in imports_of(PACKAGE / "workers.py")


def test_importing_the_parser_loads_no_start_up_or_engine_code():
    code = ("import sys, reactor_http.parser; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('reactor_http'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env=server_env(), cwd=REPO).stdout.split())
    assert "reactor_http.parser" in loaded
    assert not loaded & {f"reactor_http.{name}" for name in
                         ("server", "reactor", "threaded", "workers", "cli", "listeners")}


def test_importing_the_parser_loads_no_start_up_code():
    code = ("import sys, reactor_http.parser; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('reactor_http'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=20, check=True)
    loaded = set(result.stdout.split())
    assert "reactor_http.options" in loaded
    for heavy in ("cli", "config", "server", "reactor", "threaded", "workers", "logs"):
        assert f"reactor_http.{heavy}" not in loaded, loaded
