"""Options: declared once (options.OPTIONS) and everything that follows from it.

Also the two option-driven behaviours fixed here: a trusted proxy's unusable X-Forwarded-For
grants nothing (--trust-proxy with --status), and access lines reach a terminal at once.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys

import pytest

from conftest import MODES, REPO, SITE, get, read_response


# ---- --trust-proxy with --status: an unusable X-Forwarded-For grants nothing -------------------

@pytest.mark.parametrize("mode", MODES)
def test_unparseable_forwarded_for_from_a_trusted_proxy_is_not_loopback(site_copy, make_server,
                                                                       mode):
    """The proxy is loopback, which may read /status; a client behind it that sends garbage
    (or nothing usable) in X-Forwarded-For must not be taken for the proxy."""
    server = make_server(site_copy, mode, "--trust-proxy", "127.0.0.1", "--status", "/status")
    assert get(server, "/status").status == 200                                # the proxy itself
    assert get(server, "/status", {"X-Forwarded-For": "::1"}).status == 200    # a local client
    assert get(server, "/status", {"X-Forwarded-For": "garbage"}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": ""}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": "203.0.113.9, "}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": "203.0.113.9"}).status == 404
    _, out, _ = server.stop()
    clients = sorted(line.split(" ", 1)[0] for line in out.splitlines())
    # Logged as what they are: "-" (no client address known), never the proxy's address.
    assert clients == sorted(["127.0.0.1", "::1", "-", "-", "-", "203.0.113.9"]), out


# ---- access lines on a terminal -----------------------------------------------------------------

def test_access_lines_reach_a_terminal_at_once(tmp_path):
    """With the writer's interval set to an hour, a terminal still gets each line as it comes
    (files and pipes get them within the interval, about a second)."""
    main, secondary = pty.openpty()
    code = ("import sys, reactor_http.logs as logs; logs.FLUSH_INTERVAL = 3600.0; "
            "from reactor_http.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code, "--root", str(SITE), "--port", "0"],
                            stdout=secondary, stderr=subprocess.PIPE, env=env, cwd=REPO)
    os.close(secondary)
    try:
        seen = read_terminal_until(main, b"press Ctrl+C")
        port = int(seen.split(b"http://127.0.0.1:", 1)[1].split(b"/", 1)[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(sock, bytearray()).status == 200
        line = read_terminal_until(main, b'"GET /abc.txt HTTP/1.1" 200')
        assert b"127.0.0.1 - - [" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        os.close(main)


def read_terminal_until(fd: int, marker: bytes, timeout: float = 20.0) -> bytes:
    """Bytes read from a pty until `marker` appears; fails after `timeout` seconds."""
    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {marker!r} on the terminal within {timeout} s: {seen!r}"
        seen += os.read(fd, 4096)
    return seen
