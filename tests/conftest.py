"""Shared fixtures: a real server process on 127.0.0.1 with an ephemeral port, and raw clients.

Servers run as `python -m reactor_http ... --port 0` subprocesses (the command a user runs); the
port is read from the start-up line. Server tests are parametrized over both engines.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "site"
MODES = ("reactor", "threaded")
_BANNER = re.compile(rb"at https?://(\[[^\]]+\]|[^:/]+):(\d+)/")


class ServerProcess:
    """A running server subprocess: its port, its process, and helpers to talk to it."""

    def __init__(self, root: Path, mode: str, *args: str, env=None, cwd=None):
        self.root = Path(root)
        self.mode = mode
        command = [sys.executable, "-m", "reactor_http", "--root", str(root), "--port", "0",
                   "--mode", mode, *args]
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, cwd=cwd or REPO)
        line = self.proc.stdout.readline()
        match = _BANNER.search(line)
        if not match:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
            raise RuntimeError(f"server did not start: {line!r} {out!r} {err!r}")
        self.banner = line.decode()
        self.host = "127.0.0.1"
        self.port = int(match.group(2))
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0):
        """Stop the server; return (exit status, stdout, stderr)."""
        if self._stopped:
            return self._result
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        self._result = (self.proc.returncode, out.decode(errors="replace"),
                        err.decode(errors="replace"))
        return self._result

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def recv_until_closed(sock: socket.socket, limit: int = 1 << 26) -> bytes:
    """Everything the peer sends until it closes (or the socket times out)."""
    chunks = []
    total = 0
    while total < limit:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


class RawResponse:
    """A response read off a raw socket: status, lower-cased headers, body."""

    def __init__(self, status: int, reason: str, headers: list, body: bytes, raw_head: bytes):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {}
        for name, value in headers:
            self.headers[name.lower()] = value
        self.body = body
        self.raw_head = raw_head

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {len(self.body)} bytes>"


def read_response(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> RawResponse:
    """Read one response from `sock` (framed by Content-Length); leftovers stay in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head: {bytes(buffer)!r}")
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    raw_head = bytes(buffer[:end])
    del buffer[:end + 4]
    lines = raw_head.decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "HTTP/1.1", lines[0]
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    status = int(status)
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
    if head_only or status in (204, 304) or 100 <= status < 200:
        length = 0
    while len(buffer) < length:
        data = sock.recv(max(65536, length - len(buffer)))
        if not data:
            raise ConnectionError("closed before the full body")
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return RawResponse(status, reason, headers, body, raw_head)


def exchange(server: ServerProcess, raw: bytes, head_only: bool = False) -> RawResponse:
    """Send raw request bytes on a new connection and read one response."""
    with server.connect() as sock:
        sock.sendall(raw)
        return read_response(sock, bytearray(), head_only)


def get(server: ServerProcess, path: str, headers: dict | None = None, method: str = "GET",
        version: str = "HTTP/1.1") -> RawResponse:
    """One request on a fresh connection, with Host and Connection: close."""
    fields = {"Host": f"127.0.0.1:{server.port}", "Connection": "close"}
    if headers:
        fields.update(headers)
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None) + "\r\n"
    return exchange(server, head.encode("latin-1"), head_only=(method == "HEAD"))


def assert_closed(sock: socket.socket, timeout: float = 5.0, expect_nothing: bool = True) -> bytes:
    """The server closes the connection (EOF or reset) before `timeout`; return what came first.

    With `expect_nothing`, no byte at all may arrive first; otherwise no further response may.
    """
    sock.settimeout(timeout)
    rest = b""
    try:
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        else:
            pytest.fail("server kept sending")
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"connection not closed within {timeout} s (got {rest[:100]!r})")
    if expect_nothing:
        assert rest == b"", rest[:200]
    assert b"HTTP/1.1" not in rest, rest[:200]
    return rest


def body_of(response) -> bytes:
    """The body bytes a responder Response would send, file regions read back; closes its fd."""
    from reactor_http.messages import FileRegion
    parts = []
    try:
        for segment in response.segments:
            if isinstance(segment, FileRegion):
                parts.append(os.pread(segment.fd, segment.count, segment.offset))
            else:
                parts.append(segment)
    finally:
        if response.fd is not None:
            os.close(response.fd)
            response.fd = None
    return b"".join(parts)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(scope="session")
def site_copy(tmp_path_factory) -> Path:
    """A copy of site/ plus files the tests need, shared read-only by the session's servers."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(SITE, root, dirs_exist_ok=True)
    (root / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "nolisting").mkdir()
    (root / "nolisting" / "a <b>&c.txt").write_text("x")
    (root / "nolisting" / "folder").mkdir()
    (root / ".env").write_text("SECRET=1\n")
    (root / "space name.txt").write_text("spaces\n")
    return root


@pytest.fixture(scope="module", params=MODES)
def server(request, site_copy):
    """A server per engine over the shared test site (module-scoped for speed)."""
    srv = ServerProcess(site_copy, request.param, "--quiet")
    yield srv
    srv.stop()


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def make_server():
    """Start servers with custom options; all are stopped at the end of the test."""
    started = []

    def start(root, mode, *args, **kwargs):
        srv = ServerProcess(root, mode, *args, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """A throwaway self-signed certificate for 127.0.0.1 / localhost: (cert path, key path)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60)
    return cert, key
