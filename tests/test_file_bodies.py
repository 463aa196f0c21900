"""File bodies by both paths of sending.py: os.sendfile, and read-and-send (--no-sendfile, no
sendfile on the platform, sendfile refusing a descriptor, TLS).

Over real sockets, each engine with and without --no-sendfile gives the same bytes for whole
files, empty files, a range, multipart ranges and HEAD; a file that shrinks mid-send closes the
connection without garbage; a reader that stalls (over TLS too) does not hold up another client
and still gets every byte. Then units
over socket pairs: a sendfile refused after N bytes (or at once) goes on by read-and-send without
losing or repeating a byte, ENOSYS is remembered for the process, each way of reading a file at
an offset gives the same bytes, a TLS send refused with SSLWantWriteError is retried with the
same bytes, and the buffer a connection holds is bounded. Last, a server under
REACTOR_HTTP_SIMULATE=windows never calls os.sendfile, os.pread or os.preadv.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import sys
import threading

import pytest

from reactor_http import sending
from reactor_http.messages import Exchange, FileRegion, ResponsePlan
from tests.helpers.http import get, parse_multipart, read_response
from tests.helpers.servers import MODES, REPO, ServerProcess, server_env

# Bytes of the large test file: several read chunks (sending.READ_CHUNK), not a multiple of one.
LARGE = 3 * 1024 * 1024 + 7
# Bytes of the file a stalled reader asks for: more than the kernel buffers of both ends
# (loopback send buffers grow to 4 MiB), so the server must wait on that reader.
STALL_SIZE = 16 * 1024 * 1024
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: N\r\n\r\n"
VARIANTS = [(mode, flag) for mode in MODES for flag in ((), ("--no-sendfile",))]


@pytest.fixture(scope="module")
def files_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "large.bin").write_bytes(os.urandom(LARGE))
    (root / "empty.bin").write_bytes(b"")
    (root / "small.txt").write_bytes(b"small and quick\n")
    (root / "stall.bin").write_bytes(os.urandom(STALL_SIZE))
    return root


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: "-".join((v[0], *v[1])) or v[0])
def srv(request, files_root):
    mode, flags = request.param
    server = ServerProcess(files_root, mode, "--quiet", *flags)
    yield server
    server.stop()


# ---- over real sockets: the same bytes by either path -----------------------------------------

def test_a_whole_file_is_byte_exact(srv, files_root):
    response = get(srv, "/large.bin")
    assert response.status == 200
    assert response.body == (files_root / "large.bin").read_bytes()


def test_an_empty_file_has_an_empty_body(srv):
    response = get(srv, "/empty.bin")
    assert (response.status, response.headers["content-length"], response.body) == (200, "0", b"")


@pytest.mark.parametrize("first, last", [(0, 0), (100, 300_000), (LARGE - 5, LARGE - 1)])
def test_a_single_range_is_byte_exact(srv, files_root, first, last):
    data = (files_root / "large.bin").read_bytes()
    response = get(srv, "/large.bin", {"Range": f"bytes={first}-{last}"})
    assert response.status == 206
    assert response.headers["content-range"] == f"bytes {first}-{last}/{LARGE}"
    assert response.body == data[first:last + 1]


def test_multipart_ranges_are_byte_exact(srv, files_root):
    data = (files_root / "large.bin").read_bytes()
    response = get(srv, "/large.bin", {"Range": "bytes=0-4, 262140-262150, 1000000-1600000, -3"})
    assert response.status == 206
    parts = parse_multipart(response.headers["content-type"], response.body)
    assert [(r, d) for _, r, d in parts] == [
        (f"bytes 0-4/{LARGE}", data[0:5]), (f"bytes 262140-262150/{LARGE}", data[262140:262151]),
        (f"bytes 1000000-1600000/{LARGE}", data[1000000:1600001]),
        (f"bytes {LARGE - 3}-{LARGE - 1}/{LARGE}", data[-3:])]


def test_head_sends_no_body_and_the_connection_goes_on(srv, files_root):
    raw = (b"HEAD /large.bin HTTP/1.1\r\nHost: t\r\n\r\n"
           b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with srv.connect() as sock:
        sock.sendall(raw)
        buffer = bytearray()
        head = read_response(sock, buffer, head_only=True)
        after = read_response(sock, buffer)
    assert (head.status, head.headers["content-length"]) == (200, str(LARGE))
    assert after.body == (files_root / "small.txt").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_reader_does_not_hold_up_another_client(make_server, files_root, mode):
    # The first client reads the head and stops reading a body far larger than the kernel's
    # buffers: the server is left with most of it to send. Another client is answered
    # meanwhile (the reactor's loop is not blocked on the first socket), and the first one
    # then gets every byte.
    server = make_server(files_root, mode, "--quiet", "--no-sendfile")
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    stalled.settimeout(10)
    with stalled:
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /stall.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        assert read_response(stalled, buffer, head_only=True).status == 200
        other = get(server, "/small.txt")
        assert other.body == (files_root / "small.txt").read_bytes()
        body = bytes(buffer) + _read_to_end(stalled)
    assert body == (files_root / "stall.bin").read_bytes()


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_file_that_shrinks_mid_send_closes_without_garbage(make_server, tmp_path, mode):
    root = tmp_path / "shrink"
    root.mkdir()
    content = os.urandom(STALL_SIZE)
    target = root / "shrinking.bin"
    target.write_bytes(content)
    server = make_server(root, mode, "--quiet", "--no-sendfile", "--send-timeout", "10")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    with sock:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        buffer = bytearray()
        assert read_response(sock, buffer, head_only=True).status == 200
        kept = 1024 * 1024
        os.truncate(target, kept)  # the server waits on our full window
        body = bytearray(buffer)
        try:
            body += _read_to_end(sock)
        except ConnectionResetError:
            pass
    assert kept <= len(body) < len(content), "a shrunken file cannot fill its Content-Length"
    assert body[:kept] == content[:kept]
    # Past the new end only bytes read before the truncation can have gone out (the file's old
    # bytes: one chunk held in the buffer, and what the kernel had queued), never the next
    # response or anything else.
    assert bytes(body[kept:]) == content[kept:len(body)]
    assert get(server, "/shrinking.bin").body == content[:kept]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_over_tls_a_stalled_reader_gets_every_byte_and_others_are_served(make_server, files_root,
                                                                          tls_certificate, mode):
    # TLS always reads and sends: a stalled reader leaves the server with a chunk the SSL object
    # refused (SSLWantWriteError), retried unchanged when the reader drains; multipart ranges
    # come out byte-exact meanwhile on another connection.
    cert, key = tls_certificate
    server = make_server(files_root, mode, "--quiet", "--certfile", str(cert), "--keyfile",
                         str(key))
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", server.port))
    data = (files_root / "large.bin").read_bytes()
    with context.wrap_socket(raw, server_hostname="localhost") as stalled:
        stalled.sendall(b"GET /stall.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        assert read_response(stalled, buffer, head_only=True).status == 200
        with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                                 server_hostname="localhost") as other:
            other.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n"
                          b"Range: bytes=7-300000, 3000000-3000010\r\n\r\n")
            ranged = read_response(other, bytearray())
        parts = parse_multipart(ranged.headers["content-type"], ranged.body)
        assert [d for _, _, d in parts] == [data[7:300001], data[3000000:3000011]]
        body = bytes(buffer) + _read_to_end(stalled)
    assert body == (files_root / "stall.bin").read_bytes()


# ---- units over socket pairs: refusals, readers, TLS retries, the bound -----------------------

@pytest.fixture
def region_file(tmp_path):
    """An open descriptor on 1 MB of random bytes (the file's content beside it)."""
    data = os.urandom(1_000_003)
    path = tmp_path / "region.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def file_plan(fd: int, data: bytes, ranges=None) -> ResponsePlan:
    """A head, then the file (or the (first, count) ranges of it, with separators)."""
    if ranges is None:
        segments: tuple = (HEAD, FileRegion(fd, 0, len(data)))
    else:
        segments = (HEAD,) + tuple(piece for first, count in ranges
                                   for piece in (b"--sep\r\n", FileRegion(fd, first, count)))
        segments += (b"--sep--\r\n",)
    length = sum(len(s) if type(s) is bytes else s.count for s in segments) - len(HEAD)
    return ResponsePlan(200, segments, length, True, fd=fd)


def expected_bytes(plan: ResponsePlan, data: bytes) -> bytes:
    return b"".join(s if type(s) is bytes else data[s.offset:s.offset + s.count]
                    for s in plan.segments)


class Drain:
    """The far end of a socket pair, read to EOF on a thread."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while data := self.sock.recv(1 << 16):
            self.chunks.append(data)

    def received(self) -> bytes:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return b"".join(self.chunks)


def send_through_pair(plan: ResponsePlan, blocking: bool, **options) -> tuple[Exchange, bytes]:
    """Send a plan from one end of a socket pair (small send buffer: many partial sends) with
    send_blocking or send_available, and return the exchange and what the other end got."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    drain = Drain(theirs)
    exchange = Exchange(plan)
    try:
        if blocking:
            ours.settimeout(10)
            sending.send_blocking(ours, exchange, **options)
        else:
            ours.setblocking(False)
            left: Exchange | None = exchange
            while left is not None:
                left = sending.send_available(ours, left, **options)
                if left is not None:
                    assert select.select([], [ours], [], 10)[1], "never writable again"
    finally:
        ours.shutdown(socket.SHUT_WR)
        received = drain.received()
        ours.close()
        theirs.close()
    return exchange, received


class RefusingSendfile:
    """os.sendfile that moves `limit` bytes (in calls as they come), then refuses with `number`."""

    def __init__(self, limit: int, number: int):
        self.limit = limit
        self.number = number
        self.moved = 0
        self.calls = 0
        self.refusals = 0

    def __call__(self, out_fd, in_fd, offset, count):
        self.calls += 1
        if self.moved >= self.limit:
            self.refusals += 1
            raise OSError(self.number, os.strerror(self.number))
        sent = REAL_SENDFILE(out_fd, in_fd, offset, min(count, self.limit - self.moved))
        self.moved += sent
        return sent


# None on Windows, which has no os.sendfile: the refusal tests, which wrap it, skip there.
REAL_SENDFILE = getattr(os, "sendfile", None)


@pytest.mark.skipif(REAL_SENDFILE is None, reason="os.sendfile does not exist here (Windows)")
@pytest.mark.parametrize("blocking", [False, True], ids=["send_available", "send_blocking"])
@pytest.mark.parametrize("limit", [0, 100_001], ids=["at-once", "after-some"])
@pytest.mark.parametrize("number", [errno.EINVAL, errno.ENOTSOCK, errno.EOPNOTSUPP])
def test_a_refused_sendfile_goes_on_by_read_and_send(monkeypatch, region_file, blocking, limit,
                                                     number):
    fd, data = region_file
    fake = RefusingSendfile(limit, number)
    monkeypatch.setattr(os, "sendfile", fake)
    monkeypatch.setattr(sending, "sendfile_usable", True)
    plan = file_plan(fd, data, [(0, 300_000), (250_000, 500_000), (999_000, 1003)])
    exchange, received = send_through_pair(plan, blocking)
    assert received == expected_bytes(plan, data)
    assert exchange.sent == len(received) and fake.moved == limit
    assert exchange.file_buffer is not None
    # One refusal per exchange, not per region; the descriptor's refusal is not the platform's.
    assert fake.refusals == 1
    assert sending.sendfile_usable


@pytest.mark.parametrize("blocking", [False, True], ids=["send_available", "send_blocking"])
def test_enosys_stops_the_process_trying_sendfile(monkeypatch, region_file, blocking):
    fd, data = region_file
    fake = RefusingSendfile(50_000, errno.ENOSYS)
    monkeypatch.setattr(os, "sendfile", fake)
    monkeypatch.setattr(sending, "sendfile_usable", True)
    monkeypatch.setattr(sending, "_platform_refused", False)  # what the refusal sets
    plan = file_plan(fd, data)
    assert send_through_pair(plan, blocking)[1] == expected_bytes(plan, data)
    assert not sending.sendfile_usable
    calls = fake.calls
    assert send_through_pair(plan, blocking)[1] == expected_bytes(plan, data)
    assert fake.calls == calls, "sendfile tried again after ENOSYS"
    sending.use_sendfile(True)  # a server started later in the process cannot undo it
    assert not sending.sendfile_usable


def test_other_sendfile_errors_are_not_refusals(monkeypatch, region_file):
    fd, data = region_file
    monkeypatch.setattr(os, "sendfile", RefusingSendfile(0, errno.EIO))
    monkeypatch.setattr(sending, "sendfile_usable", True)
    with pytest.raises(OSError) as caught:
        send_through_pair(file_plan(fd, data), blocking=False)
    assert caught.value.errno == errno.EIO


@pytest.mark.parametrize("blocking", [False, True], ids=["send_available", "send_blocking"])
@pytest.mark.parametrize("reader", sorted(sending.READERS))
def test_every_way_of_reading_gives_the_same_bytes(monkeypatch, region_file, blocking, reader):
    fd, data = region_file
    monkeypatch.setattr(sending, "_read_at", sending.READERS[reader])
    monkeypatch.setattr(os, "sendfile", RefusingSendfile(0, errno.EINVAL))  # never used
    monkeypatch.setattr(sending, "sendfile_usable", False)  # as --no-sendfile leaves it
    plan = file_plan(fd, data, [(0, 1), (1, 600_000), (700_000, 300_003)])
    exchange, received = send_through_pair(plan, blocking)
    assert received == expected_bytes(plan, data)
    assert os.sendfile.calls == 0  # type: ignore[attr-defined]
    assert exchange.body_sent() == plan.body_length


def test_a_file_that_ends_early_raises_file_shrank(monkeypatch, region_file):
    fd, data = region_file
    monkeypatch.setattr(sending, "sendfile_usable", False)
    plan = ResponsePlan(200, (HEAD, FileRegion(fd, len(data) - 10, 20)), 20, True, fd=fd)
    with pytest.raises(sending.FileShrank):
        send_through_pair(plan, blocking=False)
    with pytest.raises(sending.FileShrank):
        send_through_pair(plan, blocking=True)


class WantWriteOnce:
    """A TLS socket stand-in: the first send of each chunk is refused with SSLWantWriteError;
    every send's bytes are recorded."""

    def __init__(self):
        self.attempts: list[bytes] = []
        self.accepted = bytearray()

    def send(self, data, *flags):
        self.attempts.append(bytes(data))
        if len(self.attempts) % 2:
            raise ssl.SSLWantWriteError
        self.accepted += data
        return len(data)

    def fileno(self):
        return -1


def test_a_tls_send_refused_is_retried_with_the_same_bytes_read_once(monkeypatch, region_file):
    fd, data = region_file
    reads = []
    real_read = sending._read_at

    def counting_read(file_buffer, fd, position, size):
        reads.append((position, size))
        return real_read(file_buffer, fd, position, size)

    monkeypatch.setattr(sending, "_read_at", counting_read)
    plan = ResponsePlan(200, (FileRegion(fd, 0, len(data)),), len(data), True, fd=fd)
    exchange: Exchange | None = Exchange(plan)
    sock = WantWriteOnce()
    while exchange is not None:
        exchange = sending.send_available(sock, exchange, tls=True)  # type: ignore[arg-type]
    assert bytes(sock.accepted) == data
    assert all(sock.attempts[i] == sock.attempts[i + 1] for i in range(0, len(sock.attempts), 2))
    assert len(reads) == -(-len(data) // sending.TLS_CHUNK)  # each byte read once


class Trickle:
    """A plain socket stand-in that takes at most `take` bytes per send."""

    def __init__(self, take: int):
        self.take = take
        self.accepted = bytearray()

    def send(self, data, flags=0):
        self.accepted += data[:self.take]
        return min(self.take, len(data))

    def fileno(self):
        return -1


def test_a_connection_holds_at_most_one_chunk(monkeypatch, region_file):
    fd, data = region_file
    monkeypatch.setattr(sending, "sendfile_usable", False)
    plan = ResponsePlan(200, (FileRegion(fd, 0, len(data)),), len(data), True, fd=fd)
    sock = Trickle(1000)
    exchange = sending.send_available(sock, Exchange(plan), budget=50_000)  # type: ignore[arg-type]
    assert exchange is not None and exchange.file_buffer is not None
    assert len(exchange.file_buffer.pending) <= sending.READ_CHUNK
    assert exchange.file_buffer.buffer is None or \
        len(exchange.file_buffer.buffer) <= sending.READ_CHUNK
    small = ResponsePlan(200, (FileRegion(fd, 0, 5000),), 5000, True, fd=fd)
    exchange = sending.send_available(Trickle(10), Exchange(small), budget=10)  # type: ignore[arg-type]
    assert exchange is not None and exchange.file_buffer is not None
    assert exchange.file_buffer.buffer is None or len(exchange.file_buffer.buffer) <= 5000
    assert bytes(sock.accepted) == data[:len(sock.accepted)]


# ---- a simulated Windows: never sendfile, never pread ----------------------------------------

# Started in place of `python -m reactor_http`: os.sendfile, os.pread and os.preadv stay on the
# host (Linux offers them), but calling one ends the server with status 3.
FORBIDDING_LAUNCHER = (
    "import os, runpy, sys\n"
    "def forbidden(*args):\n"
    "    os._exit(3)\n"
    "os.sendfile = os.pread = os.preadv = forbidden\n"
    "sys.argv[0] = 'reactor_http'\n"
    "runpy.run_module('reactor_http', run_name='__main__', alter_sys=True)\n")


@pytest.mark.parametrize("mode", MODES)
def test_simulated_windows_reads_and_sends_without_sendfile_or_pread(files_root, mode):
    server = ServerProcess.__new__(ServerProcess)
    server.root = files_root
    server.mode = mode
    server.start([sys.executable, "-c", FORBIDDING_LAUNCHER, "--root", str(files_root),
                  "--port", "0", "--mode", mode, "--quiet"],
                 env=server_env(REACTOR_HTTP_SIMULATE="windows"), cwd=REPO)
    try:
        data = (files_root / "large.bin").read_bytes()
        assert get(server, "/large.bin").body == data
        ranged = get(server, "/large.bin", {"Range": "bytes=5-300000, 2000000-2000009"})
        assert [d for _, _, d in parse_multipart(ranged.headers["content-type"], ranged.body)] \
            == [data[5:300001], data[2000000:2000010]]
    finally:
        status, _, err = server.stop()
    assert status != 3, err


@pytest.mark.skipif(not sending.FACTS.sendfile, reason="sendfile is this platform's")
@pytest.mark.parametrize("mode", MODES)
def test_no_sendfile_is_one_servers_choice_not_the_next_ones(monkeypatch, tmp_path, mode):
    # --no-sendfile once turned sendfile off for the rest of the process: a later server in the
    # same process (tests, an embedding program) read and sent although it had not asked to.
    from reactor_http.config import Config
    from reactor_http.server import _make_engine

    monkeypatch.setattr(sending, "sendfile_usable", True)
    for wanted in (False, True, False, True):
        config = Config(root=str(tmp_path), quiet=True, mode=mode, sendfile=wanted).validate()
        _make_engine(config, [], None)
        assert sending.sendfile_usable is wanted
