"""The code's shape: no function in reactor_http/ over MAX_LINES lines or MAX_PARAMETERS
parameters, so each one fits on a screen and its inputs stay few enough to name (STYLE.md,
"Shape to avoid": deciding and writing interleaved in one long function).

Lines count from `def` to the function's last line, docstring included (decorators not);
parameters are every name the signature binds, *args and **kwargs included, self and cls of
a method not. Nested functions are measured on their own, named `outer.inner`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reactor_http"
MAX_LINES = 50
MAX_PARAMETERS = 8


def functions(tree: ast.AST, prefix: str = "", in_class: bool = False):
    """(qualified name, node, is a method) of every function in `tree`, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node, in_class
            yield from functions(node, f"{prefix}{node.name}.", False)
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.", True)
        else:
            yield from functions(node, prefix, in_class)


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    """The names a signature binds, without a method's self or cls."""
    args = node.args
    names = [arg.arg for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [arg.arg for arg in (args.vararg, args.kwarg) if arg is not None]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if method and not static and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def excess(source: str) -> dict[str, str]:
    """Qualified name -> what it exceeds, for every function of `source` over a limit."""
    found = {}
    for name, node, method in functions(ast.parse(source)):
        lines = node.end_lineno - node.lineno + 1
        parameters = parameter_count(node, method)
        over = []
        if lines > MAX_LINES:
            over.append(f"{lines} lines")
        if parameters > MAX_PARAMETERS:
            over.append(f"{parameters} parameters")
        if over:
            found[name] = ", ".join(over)
    return found


def offenders() -> dict[tuple[str, str], str]:
    """(module, function) -> what it exceeds, over the whole package."""
    return {(path.stem, name): what for path in sorted(PACKAGE.glob("*.py"))
            for name, what in excess(path.read_text()).items()}


def test_no_function_is_over_the_limits():
    found = sorted(f"{module}.{name}: {what}" for (module, name), what in offenders().items())
    assert not found, (f"over {MAX_LINES} lines or {MAX_PARAMETERS} parameters; split them into "
                       f"named helpers: {found}")


@pytest.mark.parametrize("source, expected", [
    ("def f(a, b):\n" + "    x = 1\n" * 49, {}),                       # 50 lines: fine
    ("def f(a, b):\n" + "    x = 1\n" * 50, {"f": "51 lines"}),
    ("def f(a, b, c, d, e, f, g, h):\n    pass\n", {}),                # 8 parameters: fine
    ("def f(a, b, c, d, e, f, g, h, i):\n    pass\n", {"f": "9 parameters"}),
    ("def f(a, /, b, *c, d, **e):\n    pass\n", {}),
    ("def f(a, /, b, *c, d, e, f, g, h, **i):\n    pass\n", {"f": "9 parameters"}),
    ("class C:\n    def m(self, a, b, c, d, e, f, g, h):\n        pass\n", {}),
    ("class C:\n    @staticmethod\n    def m(self, a, b, c, d, e, f, g, h):\n        pass\n",
     {"C.m": "9 parameters"}),
    ("def self_is_a_name(self, a, b, c, d, e, f, g, h):\n    pass\n",
     {"self_is_a_name": "9 parameters"}),
    ("class C:\n    def m(self):\n        def inner(a, b, c, d, e, f, g, h, i):\n"
     "            pass\n", {"C.m.inner": "9 parameters"}),
    ('def f():\n    """Doc\n' + "\n" * 48 + '    """\n    pass\n', {"f": "52 lines"}),
], ids=["50-lines", "51-lines", "8-params", "9-params", "every-kind", "every-kind-9",
        "self-not-counted", "staticmethod-self-counted", "function-self-counted", "nested",
        "docstring-counted"])
def test_the_measure(source, expected):
    assert excess(source) == expected
