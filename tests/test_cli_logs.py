"""The command line, the logs and connection management, over real processes and sockets.

CLI: --help, --version, the positional port, one-line errors with exit status 2. Logs: Common Log
Format access lines on stdout (unless --quiet) with client bytes escaped, and the dated connection
log of the seed design (DDMMYYconnectionLog.txt). Connections: the Keep-Alive field, max requests,
the idle timeout, pipelining, and the bad request the seed design's test client sends. Stopping
(SIGINT, SIGTERM) is in test_shutdown.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from tests.helpers.http import assert_closed, get, read_response
from tests.helpers.polling import wait_until
from tests.helpers.servers import REPO, SITE, read_banner, run_cli, server_env
from reactor_http import __version__, cli
from reactor_http.logs import connection_log_name, escape

CLF = re.compile(r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                 r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-)')
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
    port = free_port()
    srv = make_server(SITE, mode, "--quiet")  # a reference server, to compare the banner shape
    proc = subprocess.Popen([sys.executable, "-m", "reactor_http", str(port), "--root", str(SITE),
                             "--mode", mode, "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=server_env(), cwd=REPO)
    try:
        banner = read_banner(proc).decode()
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
    assert_one_line_error(result, str(port), "in use")


@pytest.mark.parametrize("args", [["--max-age", "-1"], ["--keepalive-timeout", "0"],
                                  ["--max-requests", "0"], ["--port", "70000"]])
def test_bad_values_are_one_line_errors(args):
    assert_one_line_error(run_cli("--root", str(SITE), *args))


def test_unusable_log_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = run_cli("--root", str(SITE), "--port", "0", "--log-dir", str(tmp_path / "a-file"))
    assert_one_line_error(result, "log")


# ---- access log ----------------------------------------------------------------------------

def test_access_log_lines(make_server, mode):
    srv = make_server(SITE, mode)
    get(srv, "/abc.txt")
    get(srv, "/nope")
    get(srv, "/abc.txt", method="HEAD")
    status, out, err = srv.stop()
    assert status == 0, err
    lines = [line for line in out.splitlines() if line]  # the fixture has read the banner
    parsed = [CLF.fullmatch(line) for line in lines]
    assert all(parsed), lines
    # Lines are written when a response is done; across connections (threads) order may vary.
    entries = sorted((m["request"], m["status"], m["bytes"]) for m in parsed)
    not_found = [e for e in entries if e[1] == "404"]
    assert entries == sorted([("GET /abc.txt HTTP/1.1", "200", str(len(ABC))),
                              ("HEAD /abc.txt HTTP/1.1", "200", "-")] + not_found)
    assert [e[0] for e in not_found] == ["GET /nope HTTP/1.1"] and not_found[0][2].isdigit()


def test_quiet_has_no_access_lines(make_server, mode):
    srv = make_server(SITE, mode, "--quiet")
    get(srv, "/abc.txt")
    status, out, _ = srv.stop()
    assert status == 0
    assert out == ""  # the fixture has read the banner line; nothing may follow it


def test_access_log_escapes_client_bytes(make_server, mode):
    srv = make_server(SITE, mode)
    get(srv, '/quote"back\\slash')
    with srv.connect() as sock:
        sock.sendall(b"GET /\x1b[2J\x07\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, bytearray()).status == 400
    status, out, _ = srv.stop()
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out and "\xff" not in out
    lines = out.splitlines()
    assert len(lines) == 2, lines
    assert all(CLF.fullmatch(line) for line in lines), lines
    lines.sort(key=lambda line: '" 400 ' in line)  # order across connections may vary
    assert '"GET /quote\\"back\\\\slash HTTP/1.1" 404' in lines[0]
    assert "\\x1b[2J\\x07\\xff" in lines[1] and '" 400 ' in lines[1]


def test_escape_unit():
    assert escape('a"b\\c\x00\x1f\x7f\x80\xff') == 'a\\"b\\\\c\\x00\\x1f\\x7f\\x80\\xff'
    assert escape("GET /ok HTTP/1.1") == "GET /ok HTTP/1.1"


# ---- responses cut short -----------------------------------------------------------------------

CUT_SIZE = 16 * 1024 * 1024 + 3  # bytes: far more than the socket buffers hold


@pytest.fixture(scope="module")
def cut_root(tmp_path_factory):
    """A root with one file too big to go out before the client reads it."""
    root = tmp_path_factory.mktemp("cut")
    (root / "big.bin").write_bytes(os.urandom(CUT_SIZE))
    return root


def _cut_lines(access_log, log_dir):
    """The access lines for /big.bin and the connection-log lines saying a response was cut."""
    access = [CLF.fullmatch(line) for line in access_log.read_text().splitlines()
              if "/big.bin" in line] if access_log.exists() else []
    cut = [line for line in _log_text(log_dir).splitlines() if "cut after" in line]
    return access, cut


def test_an_aborted_download_gets_its_access_line_with_the_bytes_sent(make_server, mode, cut_root,
                                                                     tmp_path):
    # As nginx logs $body_bytes_sent: every response that started gets its line.
    access_log, log_dir = tmp_path / "access.log", tmp_path / "logs"
    srv = make_server(cut_root, mode, "--quiet", "--access-log", str(access_log), "--log-dir",
                      str(log_dir))
    sock = srv.connect()
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    received = 0
    while received < 256 * 1024:
        received += len(sock.recv(65536))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # a reset, mid-body
    assert wait_until(lambda: all(_cut_lines(access_log, log_dir)), timeout=20), \
        _cut_lines(access_log, log_dir)
    status, _, err = srv.stop()
    assert status == 0, err
    (line,), (cut,) = _cut_lines(access_log, log_dir)
    assert line["status"] == "200" and line["request"] == "GET /big.bin HTTP/1.1"
    sent = int(line["bytes"])
    assert 0 < sent < CUT_SIZE
    assert f"cut after {sent} of {CUT_SIZE} body bytes (connection reset)" in cut, cut


def test_a_response_cut_by_the_drain_bound_gets_its_access_line(make_server, mode, cut_root,
                                                               tmp_path):
    access_log, log_dir = tmp_path / "access.log", tmp_path / "logs"
    srv = make_server(cut_root, mode, "--quiet", "--access-log", str(access_log), "--log-dir",
                      str(log_dir), "--drain-timeout", "1")
    with srv.connect() as sock:  # never reads: the response cannot finish
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: '"GET /big.bin HTTP/1.1" -> 200' not in _log_text(log_dir)
                        and "New" in _log_text(log_dir), timeout=10)
        status, _, err = srv.stop()
    assert status == 0, err
    (line,), (cut,) = _cut_lines(access_log, log_dir)
    assert line["status"] == "200" and 0 <= int(line["bytes"] if line["bytes"] != "-" else 0) \
        < CUT_SIZE
    assert "(drain timeout)" in cut, cut


# ---- connection log ------------------------------------------------------------------------

def _log_text(log_dir) -> str:
    return "".join(p.read_text() for p in sorted(log_dir.glob("*connectionLog.txt")))


@pytest.mark.slow
def test_connection_log(make_server, mode, tmp_path):
    log_dir = tmp_path / "logs"
    started = time.time()
    srv = make_server(SITE, mode, "--quiet", "--log-dir", str(log_dir), "--keepalive-timeout",
                      "0.5", "--max-requests", "2")
    ports = {}
    # Client closes after one keep-alive exchange.
    with srv.connect() as sock:
        ports["eof"] = sock.getsockname()[1]
        sock.sendall(request())
        assert read_response(sock, bytearray()).status == 200
    # Max requests: the second response closes the connection.
    with srv.connect() as sock:
        ports["max"] = sock.getsockname()[1]
        sock.sendall(request() + request("/nope"))
        buffer = bytearray()
        read_response(sock, buffer)
        assert read_response(sock, buffer).headers["connection"] == "close"
        assert_closed(sock)
    # Idle timeout.
    with srv.connect() as sock:
        ports["idle"] = sock.getsockname()[1]
        sock.sendall(request())
        read_response(sock, bytearray())
        assert_closed(sock)
    # A protocol error, with control characters in what the client sent.
    with srv.connect() as sock:
        ports["error"] = sock.getsockname()[1]
        sock.sendall(b"BAD\x1b[31m\r\n\r\n")
        assert read_response(sock, bytearray()).status == 400
        assert_closed(sock)
    reasons = {"eof": "client closed", "max": "max requests", "idle": "idle timeout",
               "error": "error"}

    def all_disconnects_logged() -> bool:
        text = _log_text(log_dir)
        return all(re.search(rf"\[-\] Disconnected 127\.0\.0\.1:{ports[kind]}\b.*\({reason}\)",
                             text) for kind, reason in reasons.items())

    # A close is logged just after it happens (a client's close may even reach the server after
    # our signal): wait until every connection's line is written before stopping.
    assert wait_until(all_disconnects_logged, timeout=10), _log_text(log_dir)
    status, _, err = srv.stop(signal.SIGTERM)
    assert status == 0, err

    names = [p.name for p in log_dir.iterdir()]
    assert len(names) == 1
    assert names[0] in {connection_log_name(started), connection_log_name(time.time())}
    assert re.fullmatch(r"\d{6}connectionLog\.txt", names[0])
    text = _log_text(log_dir)
    assert "\x1b" not in text
    lines = text.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d,\d{3} ", line) for line in lines), lines
    assert f"127.0.0.1:{srv.port}" in lines[0] and mode in lines[0]
    assert "start" in lines[0].lower()
    for kind, port in ports.items():
        peer = rf"127\.0\.0\.1:{port}\b"
        assert re.search(rf"\[\+\] New .*{peer}", text), kind
        reason = reasons[kind]
        assert re.search(rf"\[-\] Disconnected {peer}.*\({reason}\)", text), (kind, text)
    assert re.search(rf'127\.0\.0\.1:{ports["max"]} "GET /abc.txt HTTP/1.1" -> 200', text)
    assert re.search(rf'127\.0\.0\.1:{ports["max"]} "GET /nope HTTP/1.1" -> 404', text)
    assert re.search(rf'127\.0\.0\.1:{ports["error"]} "BAD\\x1b\[31m" -> 400', text), text
    assert "stopped" in lines[-1].lower()


# ---- connection management ---------------------------------------------------------------

def test_post_without_host_or_body_is_a_4xx_and_close(server):
    """The seed design's test client sends a raw `POST /test/ HTTP/1.1` with no Host and no body."""
    with server.connect() as sock:
        sock.sendall(b"POST /test/ HTTP/1.1\r\n\r\n")
        response = read_response(sock, bytearray())
        assert 400 <= response.status < 500
        assert response.headers["connection"] == "close"
        assert_closed(sock)


def test_keep_alive_header_reflects_options(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--keepalive-timeout", "7", "--max-requests", "3")
    with srv.connect() as sock:
        buffer = bytearray()
        sock.sendall(request())
        response = read_response(sock, buffer)
        assert response.headers["connection"] == "keep-alive"
        assert response.headers["keep-alive"] == "timeout=7, max=3"


def test_closes_after_max_requests(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--max-requests", "3")
    with srv.connect() as sock:
        buffer = bytearray()
        seen = []
        for _ in range(3):
            sock.sendall(request())
            response = read_response(sock, buffer)
            assert response.body == ABC
            seen.append(response.headers["connection"])
        assert seen == ["keep-alive", "keep-alive", "close"]
        assert_closed(sock)


@pytest.mark.slow
def test_idle_connection_closed_after_keepalive_timeout(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--keepalive-timeout", "0.5")
    with srv.connect() as sock:
        sock.sendall(request())
        assert read_response(sock, bytearray()).status == 200
        assert_closed(sock)
    with srv.connect() as sock:  # never sent a byte: closed too
        assert_closed(sock)


def test_pipelined_requests_answered_in_order(server):
    paths = ["/abc.txt", "/style.css", "/nope", "/test.png", "/sub/", "/index.html"]
    raw = b"".join(request(p) for p in paths) + request("/abc.txt", close=True)
    with server.connect() as sock:
        sock.sendall(raw)
        buffer = bytearray()
        responses = [read_response(sock, buffer) for _ in range(len(paths) + 1)]
        assert_closed(sock)
    expected = [(SITE / "abc.txt").read_bytes(), (SITE / "style.css").read_bytes(), None,
                (SITE / "test.png").read_bytes(), (SITE / "sub" / "index.html").read_bytes(),
                (SITE / "index.html").read_bytes(), ABC]
    for response, body in zip(responses, expected):
        if body is None:
            assert response.status == 404
        else:
            assert response.status == 200 and response.body == body


def test_pipelined_byte_by_byte(server):
    raw = request("/abc.txt") + request("/style.css", close=True)
    with server.connect() as sock:
        for i in range(len(raw)):
            sock.send(raw[i:i + 1])
        buffer = bytearray()
        assert read_response(sock, buffer).body == ABC
        assert read_response(sock, buffer).body == (SITE / "style.css").read_bytes()
