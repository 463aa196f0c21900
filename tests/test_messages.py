"""One channel and one prefix for the process's own messages.

Every message of the process itself (the start-up line, warnings, errors a user can fix, the
supervisor's and the workers' notes, the log writer's and the file watcher's troubles) goes
through the `reactor_http` logger, whose one handler (cli.configure_logging) writes it to stderr
with every line starting with cli.PREFIX. stdout is the access log and carries none of them.
The source check makes sure no module writes a message of its own by another way.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from pathlib import Path

import pytest

from tests.helpers.http import get
from tests.helpers.platforms import needs_fork
from tests.helpers.servers import REPO, SITE, run_cli
from reactor_http import cli
from reactor_http.logs import LogSink

PACKAGE = REPO / "reactor_http"
PREFIX = cli.PREFIX
CLF = re.compile(r'127\.0\.0\.1 - - \[[^\]]+\] "[^"]*" \d{3} (?:\d+|-)')


def assert_all_prefixed(stderr: str) -> list[str]:
    """Every line of `stderr` starts with the one prefix; its lines."""
    lines = stderr.splitlines()
    assert lines, "no process message at all"
    assert all(line.startswith(PREFIX) for line in lines), lines
    return lines


# ---- real processes ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", [("reactor",), ("threaded",),
                                    pytest.param(("reactor", "--workers", "2"),
                                                 marks=[pytest.mark.slow, needs_fork()])],
                         ids=["reactor", "threaded", "workers"])
def test_a_short_run_writes_every_process_message_with_the_prefix(make_server, tmp_path, engine):
    mode, *args = engine
    server = make_server(SITE, mode, "--log-dir", str(tmp_path / "logs"), *args)
    assert server.banner.startswith(PREFIX + "Serving ") and "press Ctrl+C" in server.banner
    assert get(server, "/no-such-file").status == 404
    status, out, err = server.stop()
    assert status == 0, err
    lines = assert_all_prefixed(err)
    assert server.banner.rstrip("\n") in lines
    # stdout is the access log alone: no process message there, and its lines have no prefix.
    access = out.splitlines()
    assert access and all(CLF.fullmatch(line) for line in access), access
    assert any('"GET /no-such-file HTTP/1.1" 404' in line for line in access), access
    # The dated connection log is not a process message either: it keeps its own format.
    logged = [line for path in (tmp_path / "logs").iterdir()
              for line in path.read_text().splitlines()]
    assert logged and not any(line.startswith(PREFIX) for line in logged)


def test_a_start_up_error_is_one_prefixed_line_with_status_2():
    result = run_cli("--root", str(SITE / "no-such-folder"), "--port", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = assert_all_prefixed(result.stderr)
    assert line.startswith(PREFIX + "error: ") and "no-such-folder" in line
    assert result.stdout == ""


def test_an_argument_error_is_prefixed_on_every_line():
    result = run_cli("--max-age", "abc")
    assert result.returncode == 2
    lines = assert_all_prefixed(result.stderr)
    assert lines[0].startswith(PREFIX + "error: --max-age") and len(lines) == 3


# ---- the format, in process -------------------------------------------------------------------

@pytest.fixture
def configured():
    """cli.configure_logging() for one test; the logger is put back as it was afterwards."""
    logger = logging.getLogger("reactor_http")
    handlers, level = list(logger.handlers), logger.level
    cli.configure_logging()
    cli.configure_logging()  # twice: still one handler
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_one_handler_and_the_level_shown_from_warning_up(configured, capsys):
    assert sum(isinstance(h, cli.MessageHandler) for h in configured.handlers) == 1
    configured.info("Serving %s", "here")
    configured.warning("a warning")
    configured.error("an error:\n%s", "Traceback (most recent call last):\n  File \"x\"\n")
    logging.getLogger("reactor_http.workers").warning("from a child logger")
    assert capsys.readouterr().err.splitlines() == [
        "reactor-http: Serving here",
        "reactor-http: warning: a warning",
        "reactor-http: error: an error:",
        "reactor-http: Traceback (most recent call last):",
        'reactor-http:   File "x"',
        "reactor-http: warning: from a child logger"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_the_log_writer_reports_through_the_channel(configured, capsys):
    sink = LogSink(access=False, access_file="/dev/full")  # every write fails: ENOSPC
    sink.access("127.0.0.1", "GET / HTTP/1.1", 200, 5)
    assert sink.flush(timeout=10)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["reactor-http: error: cannot write access log: No space left on device"]


def test_a_stderr_that_is_gone_costs_the_message_only(configured, monkeypatch):
    class Closed:
        def write(self, text):
            raise ValueError("I/O operation on closed file")

        def flush(self):
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr("sys.stderr", Closed())
    # Neither raises nor tries to print "--- Logging error ---" (on this stderr, that raises).
    configured.error("nobody reads this")


# ---- the source -------------------------------------------------------------------------------

#: Where a module may write to a standard stream itself, by (file, enclosing class or function):
#: the one handler of process messages, and `python -m reactor_http.options`, a developer tool
#: that prints the README table (or its usage) and never runs in the server.
ALLOWED = {("cli.py", "MessageHandler"), ("options.py", "main")}
#: sys.stdout is the access log's stream (logs.py writes it) and may be named; writing to it
#: directly would bypass the log writer.
STREAM_NAMES = {"stderr", "__stderr__"}


def stray_outputs(path: Path) -> list[str]:
    """Ways `path` writes to the terminal or configures logging other than through the one
    channel: print(), sys.stderr in any use, sys.stdout.write, logging.basicConfig,
    warnings.warn, a logger named other than `reactor_http` or `reactor_http.<child>`."""
    found = []

    def visit(node: ast.AST, scopes: tuple[str, ...]) -> None:
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        allowed = any((path.name, scope) in ALLOWED for scope in scopes)
        if isinstance(node, ast.Call) and not allowed:
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                found.append(f"{where}: print()")
            if isinstance(func, ast.Attribute):
                dotted = ast.unparse(func)
                if dotted in ("sys.stdout.write", "logging.basicConfig", "warnings.warn"):
                    found.append(f"{where}: {dotted}()")
                if func.attr == "getLogger":
                    name = node.args[0] if node.args else None
                    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)
                            and re.fullmatch(r"reactor_http(\.\w+)*", name.value)):
                        found.append(f"{where}: {ast.unparse(node)}")
        if (isinstance(node, ast.Attribute) and node.attr in STREAM_NAMES
                and isinstance(node.value, ast.Name) and node.value.id == "sys" and not allowed):
            found.append(f"{where}: sys.{node.attr}")
        if isinstance(node, (ast.ImportFrom)) and node.module == "sys" and any(
                alias.name in STREAM_NAMES | {"stdout"} for alias in node.names):
            found.append(f"{where}: from sys import ...")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scopes = (*scopes, node.name)
        for child in ast.iter_child_nodes(node):
            visit(child, scopes)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), ())
    return found


def test_no_module_writes_a_message_around_the_channel():
    found = [entry for path in sorted(PACKAGE.glob("*.py")) for entry in stray_outputs(path)]
    assert not found, found


@pytest.mark.parametrize("line", [
    "print('hi')", "import sys\nsys.stderr.write('x')", "import sys\nf(file=sys.stderr)",
    "import sys\nsys.stdout.write('x')", "import logging\nlogging.basicConfig()",
    "import warnings\nwarnings.warn('x')", "import logging\nlogging.getLogger('other')",
    "import logging\nlogging.getLogger()", "from sys import stderr"])
def test_the_source_check_catches_each_way(tmp_path, line):
    path = tmp_path / "module.py"
    path.write_text("def f(*args, **kwargs):\n    pass\n\n\ndef g():\n" +
                    "".join(f"    {part}\n" for part in line.splitlines()))
    assert stray_outputs(path), line
    path.write_text("import logging\nlog = logging.getLogger('reactor_http.workers')\n")
    assert not stray_outputs(path)
