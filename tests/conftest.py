"""Shared fixtures: a real server process on 127.0.0.1 with an ephemeral port, and raw clients.

Servers run as `python -m reactor_http ... --port 0` subprocesses (the command a user runs); the
port is read from the start-up line, within BANNER_TIMEOUT. Server tests are parametrized over both
engines. Helpers more than one test module uses live here: test modules never import each other.
"""

from __future__ import annotations

import os
import re
import selectors
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
BANNER = re.compile(rb"at https?://(\[[^\]]+\]|[^:/]+):(\d+)/")
#: Seconds a server may take to print its start-up line: generous for a loaded 2-core machine
#: (start-up normally takes well under a second), bounded so a hung server fails its own test
#: instead of hanging the suite.
BANNER_TIMEOUT = 30.0
#: The content of the file outside `escape_root`: seeing it in a response means an escape.
OUTSIDE_SECRET = b"TOP SECRET"


def server_env(**extra: str) -> dict:
    """The environment for a `python -m reactor_http` child: this checkout first on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def read_banner(proc: subprocess.Popen, timeout: float = BANNER_TIMEOUT) -> bytes:
    """The first line `proc` writes to stdout (b"" if it exits first), read with a deadline.

    Reads one byte at a time, so nothing after the line is taken from the pipe (a later
    communicate() gets the rest). If no full line comes in `timeout` seconds, the process is
    killed and the calling test fails with what it wrote to stderr.
    """
    fd = proc.stdout.fileno()
    line = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                proc.kill()
                _, err = proc.communicate(timeout=10)
                pytest.fail(f"no start-up line within {timeout} s: got {bytes(line)!r}; "
                            f"stderr {err[-2000:]!r}")
            byte = os.read(fd, 1)
            if not byte:
                break
            line += byte
    return bytes(line)


def run_cli(*args: str, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m reactor_http ARGS` to completion (for commands that exit by themselves)."""
    return subprocess.run([sys.executable, "-m", "reactor_http", *args], capture_output=True,
                          text=True, timeout=timeout, env=server_env(), cwd=REPO, **kwargs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(parent_pid: int) -> set[int]:
    """The children of a process (a --workers supervisor's workers), from /proc."""
    children = set()
    for task in os.listdir(f"/proc/{parent_pid}/task"):
        try:
            with open(f"/proc/{parent_pid}/task/{task}/children") as file:
                children.update(int(pid) for pid in file.read().split())
        except FileNotFoundError:
            pass
    return children


class ServerProcess:
    """A running server subprocess: its port, its process, and helpers to talk to it."""

    def __init__(self, root: Path, mode: str, *args: str, env=None, cwd=None, popen_kwargs=None):
        """Start the server; `popen_kwargs` go to Popen (e.g. user= or preexec_fn=)."""
        self.root = Path(root)
        self.mode = mode
        command = [sys.executable, "-m", "reactor_http", "--root", str(root), "--port", "0",
                   "--mode", mode, *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=server_env(**(env or {})), cwd=cwd or REPO,
                                     **(popen_kwargs or {}))
        line = read_banner(self.proc)
        match = BANNER.search(line)
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


def parse_multipart(content_type: str, body: bytes):
    """(content-type, content-range, bytes) for each part of a multipart/byteranges body."""
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    chunks = body.split(b"--" + boundary)
    assert chunks[0] in (b"", b"\r\n")
    assert chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, data = chunk[2:-2].partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields[b"Content-Type"].decode(), fields[b"Content-Range"].decode(), data))
    return parts


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


@pytest.fixture
def escape_root(tmp_path):
    """A root whose derived paths (index, SPA index, 404.html, .gz/.br) link to a secret outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(OUTSIDE_SECRET + b"\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "index.html").symlink_to(secret)
    (root / "index.html").symlink_to(secret)           # the root's index and the SPA index
    (root / "404.html").symlink_to(secret)
    (root / "app.js").write_text("console.log(1)\n")
    os.utime(root / "app.js", (1, 1))                    # older than the siblings
    (root / "app.js.gz").symlink_to(secret)
    (root / "app.js.br").symlink_to(secret)
    # A symlink that stays inside the root must keep working.
    (root / "real.html").write_text("<p>real</p>")
    (root / "inside").mkdir()
    (root / "inside" / "index.html").symlink_to(root / "real.html")
    (root / "lib.js").write_text("lib()\n")
    os.utime(root / "lib.js", (1, 1))
    (root / "lib.js.gz").symlink_to(root / "real.html")
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


# ---- a server's side of a connection, from /proc/net/tcp --------------------------------------

def tcp_table() -> list[tuple[int, int, int, int, int, int]]:
    """(local port, remote port, state, send queue, receive queue, inode) of every IPv4 socket."""
    table = []
    with open("/proc/net/tcp") as file:
        next(file)
        for line in file:
            fields = line.split()
            send_queue, receive_queue = (int(part, 16) for part in fields[4].split(":"))
            table.append((int(fields[1].rsplit(":", 1)[1], 16),
                          int(fields[2].rsplit(":", 1)[1], 16), int(fields[3], 16),
                          send_queue, receive_queue, int(fields[9])))
    return table


def tcp_entry(table, local_port: int, remote_port: int):
    """One connection's row in `table`, or None; a row still owned by a process comes first."""
    rows = [row for row in table if row[0] == local_port and row[1] == remote_port]
    rows.sort(key=lambda row: row[5] == 0)
    return rows[0] if rows else None


def server_ports(sock: socket.socket) -> tuple[int, int]:
    """(server port, client port) of a connected socket, to watch it after it is closed."""
    return sock.getpeername()[1], sock.getsockname()[1]


# ---- --live-reload: a stream whose client never reads ------------------------------------------

# A path component as long as names may be (bytes): a change to a file under a chain of such
# folders is announced with a data line of about 4 KB, so a few hundred fill a socket.
LONG_NAME = 250
# Receive buffer (bytes) of a client that stops reading: small, so the server stalls soon.
SMALL_RCVBUF = 4096


def stall_stream(root: Path, stalled: socket.socket, each_round=None) -> None:
    """Change files with long paths under `root` until the server's send to `stalled` stalls.

    `stalled` is an open --live-reload stream whose client reads nothing more. Rounds of 32
    changes (about 120 KB of events) go on while the kernel takes each whole; once it takes
    less than half a round, the rest waits in the server (under its byte budget even after
    one more round) and its send timer runs. `each_round(data_marker)` is called after each
    round with the data line of its last change (for a stream that does read).
    """
    deep = root
    for index in range(14):
        deep = deep / (chr(ord("a") + index) * LONG_NAME)
    deep.mkdir(parents=True)
    names = [f"{index:02d}" * (LONG_NAME // 2) for index in range(32)]
    paths = [(deep / name).relative_to(root).as_posix() for name in names]
    round_bytes = sum(len(f"event: change\ndata: /{path}\n\n") for path in paths)
    last = f"data: /{paths[-1]}\n".encode()
    ports = server_ports(stalled)
    for rounds in range(64):
        before = tcp_entry(tcp_table(), *ports)[3]
        for name in names:
            (deep / name).write_bytes(str(rounds).encode())
        if each_round is not None:
            each_round(last)
        else:
            time.sleep(0.3)  # a round's changes are announced within 0.3 s
        after = tcp_entry(tcp_table(), *ports)
        # The client's small buffer takes a few KB of the first round.
        if after is None or after[5] == 0 or after[3] - before < round_bytes // 2:
            return
    pytest.fail("the server's send to a stream that is not read never stalled")
