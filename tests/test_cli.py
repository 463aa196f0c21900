"""The command line over real processes: --help, --version, the positional port, the start-up
line, and start-up errors in one line with exit status 2 (a missing, non-folder or unreadable root,
a port in use, bad values, an unusable log folder).

What follows from each option's declaration, and the checks of their values, are in
test_options.py; stopping (SIGINT, SIGTERM) is in test_shutdown.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from tests.helpers.http import read_response
from tests.helpers.platforms import needs_fork
from tests.helpers.servers import REPO, SITE, banner_line, read_banner, run_cli, server_env
from reactor_http import __version__, cli

ABC = (SITE / "abc.txt").read_bytes()


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2 and one stderr line, "reactor-http: error: ...", containing `words`."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reactor-http: error: "), lines[0]
    for word in words:
        assert word in lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(path: str = "/abc.txt", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


# ---- command line --------------------------------------------------------------------------

def test_help_documents_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--root", "--host", "--port", "--mode", "--keepalive-timeout",
                   "--max-requests", "--log-dir", "--quiet", "--version", "--no-listing",
                   "--max-age", "--immutable", "--cors", "--spa", "--dotfiles",
                   "--follow-symlinks", "PORT"):
        assert option in result.stdout, option


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"reactor_http {__version__}"


def test_positional_port(make_server, mode):
    # The reference server first: started after free_port, it may be given that very port.
    srv = make_server(SITE, mode, "--quiet")  # a reference server, to compare the banner shape
    for _ in range(5):  # a port another test took meanwhile: try another
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "reactor_http", str(port), "--root",
                                 str(SITE), "--mode", mode, "--quiet"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=server_env(), cwd=REPO)
        banner = banner_line(read_banner(proc))
        if "already in use" not in banner:
            break
        proc.communicate(timeout=15)
    try:
        assert f"http://127.0.0.1:{port}/" in banner
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request(close=True))
            assert read_response(sock, bytearray()).body == ABC
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert srv.banner.replace(str(srv.port), "PORT") == banner.replace(str(port), "PORT")


def test_port_given_twice_differently_is_an_error():
    result = run_cli("8123", "--port", "8124", "--root", str(SITE))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_banner(make_server, mode):
    srv = make_server(SITE, mode, "--quiet")
    assert srv.banner.count("\n") == 1
    assert f"http://127.0.0.1:{srv.port}/" in srv.banner
    assert mode in srv.banner
    assert "Ctrl+C" in srv.banner


def test_missing_root_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_cli("--root", str(tmp_path / "nope"), "--port", "0"), "nope")


def test_root_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("--root", str(tmp_path / "file"), "--port", "0"))


def test_unreadable_root_is_a_one_line_error():
    """A folder we may not read: as root, the server runs as `nobody` to make that true."""
    base = tempfile.mkdtemp(prefix="reactor-unreadable-")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "root")
        os.mkdir(root, 0o000)
        os.chmod(root, 0o000)
        kwargs = {}
        python = sys.executable
        if os.geteuid() == 0:
            python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or ""
            if not python or subprocess.run([python, "-c", "import sys; assert sys.version_info"
                                             " >= (3, 10)"], user=65534).returncode != 0:
                pytest.skip("no system python runnable by an unprivileged user")
            kwargs = {"user": 65534, "group": 65534}
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
        result = subprocess.run([python, "-m", "reactor_http", "--root", root, "--port", "0"],
                                capture_output=True, text=True, timeout=20, env=env, cwd="/",
                                **kwargs)
        assert_one_line_error(result, "readable")
    finally:
        os.chmod(os.path.join(base, "root"), 0o755)
        shutil.rmtree(base)


def test_unreadable_root_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert cli.main(["--root", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "readable" in err


def test_port_in_use_is_a_one_line_error(mode):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("--root", str(SITE), "--port", str(port), "--mode", mode)
    assert_one_line_error(result, f"--port {port}", "in use")


@needs_fork()
def test_port_in_use_with_workers_names_the_option():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("--root", str(SITE), "--port", str(port), "--workers", "2")
    assert_one_line_error(result, f"--port {port}", "in use")


def test_tls_port_in_use_names_the_tls_option(tls_certificate):
    certfile, keyfile = tls_certificate
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("--root", str(SITE), "--port", "0", "--certfile", str(certfile),
                         "--keyfile", str(keyfile), "--tls-port", str(port))
    assert_one_line_error(result, f"--tls-port {port}", "in use")


def test_an_unresolvable_host_names_the_option():
    result = run_cli("--root", str(SITE), "--port", "0", "--host", "no-such-host.invalid")
    assert_one_line_error(result, "--host")


@pytest.mark.parametrize("args", [["--max-age", "-1"], ["--keepalive-timeout", "0"],
                                  ["--max-requests", "0"], ["--port", "70000"]])
def test_bad_values_are_one_line_errors(args):
    assert_one_line_error(run_cli("--root", str(SITE), *args))


def test_unusable_log_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = run_cli("--root", str(SITE), "--port", "0", "--log-dir", str(tmp_path / "a-file"))
    assert_one_line_error(result, "log")


def test_config_without_tomllib_says_which_python_it_needs(tmp_path, monkeypatch, capsys):
    """Python 3.10 has no tomllib: there this is the real thing; later, its import is made to
    fail. Either way --config is refused in one line, exit status 2, before anything starts."""
    path = tmp_path / "site.toml"
    path.write_text("cors = true\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` raises ImportError

    def serve(config, banner):
        raise AssertionError("served without reading the file")
    monkeypatch.setattr(cli, "serve", serve)
    assert cli.main(["--config", str(path), "--root", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "reactor-http: error: --config needs Python 3.11 or later (its tomllib reads TOML); "
        "this is Python "), lines
