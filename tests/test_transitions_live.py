"""Every row of the protocol's transition table, taken over real sockets, in each engine.

One server per engine runs with REACTOR_HTTP_TRACE_TRANSITIONS naming a file, so at exit it writes
every (state, event) move its connections made. Real clients drive it through every path a
connection can take (keep-alive, pipelining, request bodies, each timeout, each kind of client
close and reset, lingering close, TLS, a graceful stop), then the server is stopped and the set of
moves it made must be exactly the table's rows minus the ones listed below as unreachable, each
with its reason. A move outside the table is recorded before it raises, so it fails the check too.

Waits on the server are observed, not slept out: /proc/net/tcp says when the server has read what
a client sent (its receive queue is empty), when it has closed a connection (the socket no longer
belongs to a file) and when it has closed its listener.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import struct
import time

import pytest

from tests.helpers.http import read_response
from tests.helpers.livereload import SMALL_RCVBUF, stall_stream
from tests.helpers.polling import wait_until
from tests.helpers.procfs import server_ports
from tests.helpers.procfs import tcp_entry as _entry
from tests.helpers.procfs import tcp_table as _tcp_table
from tests.helpers.servers import MODES, ServerProcess
from reactor_http.protocol import LINGER_MAX_BYTES, STOP_GRACE, TRANSITIONS, ConnState, Event
from reactor_http.website import SMALL_FILE_MAX
from reactor_http.server import TRACE_ENV

S, E = ConnState, Event

# Rows no test over sockets can reach, per engine, and why. Every other row must be reached.
_NO_READ_WHILE_WRITING = ("neither engine reads while a response is going out: pipelined bytes "
                          "wait in the kernel (backpressure)")
_ABORT_ONLY_LIVE = ("both engines abort only a connection that is still open; the row makes a "
                    "second abort harmless")
_PRODUCER_STALL = ("an archive's producer silent for the whole send timeout (a disk that stops "
                   "answering): nothing a client can cause")
_AWAITING_CLOSED = ("a connection waiting for its producer is closed by a hang-up or error "
                    "reported in the instant before the producer's next piece, or at the drain "
                    "bound: no client can time that")
_INLINE_PRODUCER = ("the threaded engine makes an archive on the connection's thread, sending "
                    "as it goes: it never waits for a producer")
UNREACHABLE = {
    "reactor": {
        (S.WRITING_HEAD, E.DATA): _NO_READ_WHILE_WRITING,
        (S.SENDING_BODY, E.DATA): _NO_READ_WHILE_WRITING,
        (S.CLOSED, E.ABORT): _ABORT_ONLY_LIVE,
        (S.AWAITING_BODY, E.TIMEOUT): _PRODUCER_STALL,
        (S.AWAITING_BODY, E.ABORT): _AWAITING_CLOSED,
    },
    "threaded": {
        (S.WRITING_HEAD, E.DATA): _NO_READ_WHILE_WRITING,
        (S.SENDING_BODY, E.DATA): _NO_READ_WHILE_WRITING,
        (S.CLOSED, E.ABORT): _ABORT_ONLY_LIVE,
        (S.SENDING_BODY, E.STARVED): _INLINE_PRODUCER,
        (S.AWAITING_BODY, E.PRODUCED): _INLINE_PRODUCER,
        (S.AWAITING_BODY, E.TIMEOUT): _INLINE_PRODUCER,
        (S.AWAITING_BODY, E.ABORT): _INLINE_PRODUCER,
    },
}

# Head, body and TLS handshake timer (seconds): short for a fast test, long enough that a loaded
# machine finishes a multi-step request (the graceful-stop scenario) well inside it.
HEADER_TIMEOUT = 2.0
# Keep-alive timer (seconds): well above STOP_GRACE, so the stop scenario's idle connection is
# still open (and idle for longer than STOP_GRACE) when the stop begins.
KEEPALIVE_TIMEOUT = 3.0
# Send timer (seconds): a client that stops reading is dropped after this long.
SEND_TIMEOUT = 2.0
# Every client socket's timeout (seconds): a server that stops answering fails a step, never hangs.
SOCKET_TIMEOUT = 10.0
# Longest wait for one thing the server should do (seconds), timers included.
DEADLINE = 20.0
# Where the traced server answers with its counters (connections by state among them).
STATUS_PATH = "/server-status"
# /proc/net/tcp socket states (include/net/tcp_states.h).
TCP_LISTEN = 0x0A

SMALL = b"small file\n"
MID_SIZE = SMALL_FILE_MAX - 4096        # kept in memory: head and body go out as one segment
LARGE_SIZE = 4 * SMALL_FILE_MAX         # sent from the file: WRITING_HEAD, then SENDING_BODY


def _send_buffer_max() -> int:
    """The most bytes the kernel may buffer for one TCP sender (tcp_wmem's maximum)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as file:
            return int(file.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20


# ---- watching the server's side of a connection (/proc/net/tcp) -----------------------------

def wait_server_accepted(sock: socket.socket, what: str) -> None:
    """Wait until the server process has accepted `sock` (its socket belongs to a file).

    Until then the server's side sits in the listener's queue, owned by no file, and would
    pass for closed.
    """
    server_port, client_port = server_ports(sock)

    def accepted() -> bool:
        theirs = _entry(_tcp_table(), server_port, client_port)
        return theirs is not None and theirs[5] != 0

    assert wait_until(accepted, DEADLINE), f"the server did not accept {what}"


def wait_server_read(sock: socket.socket, what: str) -> None:
    """Wait until the server process has accepted `sock` and read every byte sent on it."""
    server_port, client_port = server_ports(sock)

    def all_read() -> bool:
        table = _tcp_table()
        ours = _entry(table, client_port, server_port)
        theirs = _entry(table, server_port, client_port)
        return ours is not None and ours[3] == 0 and theirs is not None and theirs[5] != 0 \
            and theirs[4] == 0

    assert wait_until(all_read, DEADLINE), f"the server did not read {what}"


def wait_server_closed(ports: tuple[int, int], what: str) -> None:
    """Wait until the server process has closed its socket of a connection it has accepted."""
    server_port, client_port = ports

    def released() -> bool:
        theirs = _entry(_tcp_table(), server_port, client_port)
        return theirs is None or theirs[5] == 0

    assert wait_until(released, DEADLINE), f"the server did not close {what}"


def connections_in(port: int, state: ConnState) -> int:
    """How many connections the server's status page says are in `state`."""
    with connect(port) as sock:
        sock.sendall(request(STATUS_PATH, CLOSE))
        page = expect_response(sock, bytearray(), connection="close")
    return json.loads(page.body)["connections"][state.value]


def wait_connection_state(port: int, state: ConnState, what: str) -> None:
    """Wait until the status page shows a connection in `state`.

    The reactor answers the page between two handlers, so a connection it shows in a state
    has settled there (not one passing through it inside a send loop).
    """
    assert wait_until(lambda: connections_in(port, state) > 0, DEADLINE), \
        f"no connection in {state.name}: {what}"


def wait_listener_closed(port: int) -> None:
    """Wait until nothing listens on `port` any more (a graceful stop has begun)."""
    assert wait_until(lambda: not any(row[0] == port and row[2] == TCP_LISTEN
                                    for row in _tcp_table()), DEADLINE), \
        "the server kept listening after SIGTERM"


# ---- clients ---------------------------------------------------------------------------------

def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A TCP client socket with a timeout (and, if asked, a small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before the handshake
    sock.settimeout(SOCKET_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a reset, not an orderly end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def request(path: str, fields: str = "") -> bytes:
    """A GET request head for `path` with Host and the given extra field lines."""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode("ascii")


CLOSE = "Connection: close\r\n"
# Sent after a request: the client may be sending more, so our close lingers.
MORE = b"\r\n"


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (an orderly end or a reset)."""
    data = b""
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        pass
    pytest.fail(f"the server did not close the connection (got {data[:80]!r})")


def expect_response(sock: socket.socket, buffer: bytearray, status: int = 200,
                    connection: str = "keep-alive"):
    """Read one response and check its status and Connection field."""
    response = read_response(sock, buffer)
    assert response.status == status, response
    assert response.headers.get("connection") == connection, response
    return response


# ---- scenarios: each leaves no connection open -----------------------------------------------

def keep_alive_then_client_closes(port: int) -> None:
    """Two requests on one connection, the client closes while idle; one that sends nothing."""
    with connect(port) as sock:
        ports = server_ports(sock)
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(request("/small.txt"))
            assert expect_response(sock, buffer).body == SMALL
    wait_server_closed(ports, "a keep-alive connection the client closed")
    with connect(port) as sock:
        ports = server_ports(sock)
        wait_server_read(sock, "a connection that sends nothing")
    wait_server_closed(ports, "a fresh connection the client closed")


def pipelined_then_close(port: int) -> None:
    """Three requests in one send, the last with Connection: close; the client closes last."""
    with connect(port) as sock:
        ports = server_ports(sock)
        sock.sendall(request("/small.txt") * 2 + request("/small.txt", CLOSE))
        buffer = bytearray()
        expect_response(sock, buffer)
        expect_response(sock, buffer)
        expect_response(sock, buffer, connection="close")
        assert read_until_closed(sock) == b""
    wait_server_closed(ports, "a pipelined connection")


def file_bodies(port: int) -> None:
    """A body sent from the file: alone, pipelined before a small one, and with close."""
    with connect(port) as sock:
        ports = server_ports(sock)
        buffer = bytearray()
        sock.sendall(request("/large.bin"))
        assert len(expect_response(sock, buffer).body) == LARGE_SIZE
        sock.sendall(request("/large.bin") + request("/small.txt"))
        assert len(expect_response(sock, buffer).body) == LARGE_SIZE
        assert expect_response(sock, buffer).body == SMALL
        sock.sendall(request("/large.bin", CLOSE))
        assert len(expect_response(sock, buffer, connection="close").body) == LARGE_SIZE
        assert read_until_closed(sock) == b""
    wait_server_closed(ports, "a connection that fetched a large file")


def archive_download(port: int) -> None:
    """--archives: the root as a tar, read whole (the reactor waits for its producer at least
    once: it starts it when the head is out, with nothing made yet)."""
    with connect(port) as sock:
        ports = server_ports(sock)
        sock.sendall(request("/?download=tar", CLOSE))
        data = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n0\r\n\r\n"), data[:200]
    wait_server_closed(ports, "a connection that downloaded an archive")


def request_bodies_and_split_head(port: int) -> None:
    """A head in two reads; bodies framed by Content-Length and chunked, each in two reads."""
    with connect(port) as sock:
        ports = server_ports(sock)
        buffer = bytearray()
        sock.sendall(b"GET /small.txt HTTP/1.1\r\n")
        wait_server_read(sock, "the first half of a head")
        sock.sendall(b"Host: x\r\n\r\n")
        expect_response(sock, buffer)
        sock.sendall(request("/small.txt", "Content-Length: 10\r\n") + b"01234")
        wait_server_read(sock, "half a Content-Length body")
        sock.sendall(b"56789")
        expect_response(sock, buffer)
        sock.sendall(request("/small.txt", "Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n")
        wait_server_read(sock, "the first chunk of a body")
        sock.sendall(b"0\r\n\r\n")
        expect_response(sock, buffer)
    wait_server_closed(ports, "a connection that sent bodies")


PARTIAL_HEAD = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n"
PARTIAL_BODY = request("/small.txt", "Content-Length: 100\r\n") + b"0123456789"


def client_ends_mid_request(port: int) -> None:
    """The client ends (orderly, then by a reset) in the middle of a head and of a body."""
    for partial in (PARTIAL_HEAD, PARTIAL_BODY):
        with connect(port) as sock:
            ports = server_ports(sock)
            sock.sendall(partial)
            wait_server_read(sock, "a partial request")
            sock.shutdown(socket.SHUT_WR)
            assert read_until_closed(sock) == b"", "no answer to a request cut short"
        wait_server_closed(ports, "a connection closed mid-request")
        sock = connect(port)
        ports = server_ports(sock)
        sock.sendall(partial)
        wait_server_read(sock, "a partial request")
        reset(sock)
        wait_server_closed(ports, "a connection reset mid-request")


def client_resets_mid_response(port: int, pipelined: int) -> None:
    """A reset while a file body is going out, and while in-memory responses are."""
    sock = connect(port, rcvbuf=SMALL_RCVBUF)
    ports = server_ports(sock)
    sock.sendall(request("/huge.bin"))
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # the head is out: the body is going
    # Stalled, not still inside the send call that sent the head: the reset meets a
    # connection known to be sending its body.
    wait_connection_state(port, S.SENDING_BODY, "a client that stopped reading a large file")
    reset(sock)
    wait_server_closed(ports, "a connection reset while a file was going out")
    sock = connect(port, rcvbuf=SMALL_RCVBUF)
    ports = server_ports(sock)
    sock.sendall(request("/mid.bin") * pipelined)
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    reset(sock)
    wait_server_closed(ports, "a connection reset while responses were going out")


def lingering_close(port: int) -> None:
    """After our close: a client that sends a little, then closes; one that sends too much.

    Each had sent more than its request (a stray CRLF, as old clients send after a body), so
    the server lingers: one that sent nothing more after Connection: close is closed at once
    (nginx's heuristic, Event.NO_LINGER), which every other scenario here takes.
    """
    with connect(port) as sock:
        ports = server_ports(sock)
        sock.sendall(request("/small.txt", CLOSE) + MORE)
        expect_response(sock, bytearray(), connection="close")
        assert read_until_closed(sock) == b""  # we have half-closed: lingering
        sock.sendall(b"late bytes the server drains\r\n")
        wait_server_read(sock, "bytes sent after the server's close")
    wait_server_closed(ports, "a lingering connection the client closed")
    with connect(port) as sock:
        ports = server_ports(sock)
        sock.sendall(request("/small.txt", CLOSE) + MORE)
        expect_response(sock, bytearray(), connection="close")
        assert read_until_closed(sock) == b""
        chunk = b"x" * 16384
        try:
            for _ in range(LINGER_MAX_BYTES // len(chunk) + 8):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on us, as it should
    wait_server_closed(ports, "a lingering connection over its byte budget")


def tls_paths(tls_port: int, cert) -> None:
    """A TLS handshake done; a client gone mid-handshake; one that is not TLS; plain HTTP."""
    context = ssl.create_default_context(cafile=str(cert))
    with context.wrap_socket(connect(tls_port), server_hostname="localhost") as sock:
        ports = server_ports(sock)
        sock.sendall(request("/small.txt"))
        assert expect_response(sock, bytearray()).body == SMALL
    wait_server_closed(ports, "a TLS connection")
    # A client that sends its hello, reads the server's first flight, then closes.
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    machine = client.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        machine.do_handshake()
    with connect(tls_port) as sock:
        ports = server_ports(sock)
        sock.sendall(outgoing.read())
        assert sock.recv(65536), "no server hello"
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
    wait_server_closed(ports, "a TLS connection closed mid-handshake")
    # Neither TLS nor HTTP: the handshake fails.
    with connect(tls_port) as sock:
        ports = server_ports(sock)
        sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        read_until_closed(sock)
    wait_server_closed(ports, "a connection that does not speak TLS")
    # Plain HTTP on the HTTPS port: a 400 in clear text, then close.
    with connect(tls_port) as sock:
        ports = server_ports(sock)
        sock.sendall(request("/small.txt"))
        expect_response(sock, bytearray(), status=400, connection="close")
        assert read_until_closed(sock) == b""
    wait_server_closed(ports, "plain HTTP on the HTTPS port")


def timers(port: int, tls_port: int, pipelined: int) -> None:
    """Every timer at once: idle, head, body, handshake, linger, and send in both write states."""
    idle = connect(port)
    handshake = connect(tls_port)
    slow_head = connect(port)
    slow_head.sendall(b"GET /small.txt HTTP/1.1\r\n")
    slow_body = connect(port)
    slow_body.sendall(PARTIAL_BODY)
    linger = connect(port)
    linger.sendall(request("/small.txt", CLOSE) + MORE)
    stalled_file = connect(port, rcvbuf=SMALL_RCVBUF)
    stalled_file.sendall(request("/huge.bin"))
    stalled_memory = connect(port, rcvbuf=SMALL_RCVBUF)
    stalled_memory.sendall(request("/mid.bin") * pipelined)
    clients = [idle, handshake, slow_head, slow_body, linger, stalled_file, stalled_memory]
    watched = [(server_ports(linger), "a lingering connection at its timer"),
               (server_ports(stalled_file), "a connection that stopped reading a file"),
               (server_ports(stalled_memory), "a connection that stopped reading responses")]
    try:
        wait_server_accepted(stalled_file, "a client that will stop reading a file")
        wait_server_accepted(stalled_memory, "a client that will stop reading responses")
        expect_response(linger, bytearray(), connection="close")
        assert read_until_closed(linger) == b""  # lingering; the client neither sends nor closes
        for sock in (slow_head, slow_body):
            reply = read_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
        assert read_until_closed(idle) == b""
        assert read_until_closed(handshake) == b""
        for ports, what in watched:
            wait_server_closed(ports, what)
    finally:
        for sock in clients:
            sock.close()


def graceful_stop(server: ServerProcess) -> None:
    """SIGTERM with one connection idle between requests and one in the middle of a head."""
    port = server.port
    idle = connect(port)
    idle.sendall(request("/small.txt"))
    expect_response(idle, bytearray())
    time.sleep(2 * STOP_GRACE)  # idle for longer than STOP_GRACE: closed at once by the stop
    busy = connect(port)
    busy.sendall(PARTIAL_HEAD)
    wait_server_read(busy, "the start of a request")
    try:
        server.proc.send_signal(signal.SIGTERM)
        wait_listener_closed(port)
        assert read_until_closed(idle) == b""
        busy.sendall(b"\r\n")
        assert read_response(busy, bytearray()).status == 200
        read_until_closed(busy)
    finally:
        idle.close()
        busy.close()


def open_stream(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A --live-reload event stream, its head and retry line read."""
    sock = connect(port, rcvbuf)
    sock.sendall(request("/__livereload"))
    data = b""
    while b"retry: 1000\n\n" not in data:  # changes may follow at once
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    assert b"text/event-stream" in data, data
    return sock


def read_event(sock: socket.socket) -> bytes:
    """Read up to one whole change event on a stream."""
    data = b""
    while b"event: change\n" not in data or not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def event_streams(port: int, root) -> socket.socket:
    """Streams: a change reaches one, bytes it sends are dropped, it closes (EOF); one that
    never reads is dropped by the send timer. Returns one more, open, for the stop to close."""
    with open_stream(port) as sock:
        ports = server_ports(sock)
        sock.sendall(b"stray bytes")
        wait_server_read(sock, "bytes sent on a stream")
        (root / "changed.txt").write_bytes(b"new\n")
        assert b"data: /changed.txt\n" in read_event(sock)
    wait_server_closed(ports, "a stream its client closed")
    # A client that never reads: dropped by the send timer (its unsent bytes stay below the
    # stream's byte budget).
    stalled = open_stream(port, rcvbuf=SMALL_RCVBUF)
    ports = server_ports(stalled)
    stall_stream(root, stalled)
    wait_server_closed(ports, "a stream whose client never reads")
    stalled.close()
    return open_stream(port)


def make_root(root, huge_size: int) -> None:
    """The served folder: a small, a mid-size (in memory), a large and a huge (sparse) file."""
    root.mkdir()
    (root / "small.txt").write_bytes(SMALL)
    (root / "mid.bin").write_bytes(b"m" * MID_SIZE)
    (root / "large.bin").write_bytes(bytes(range(256)) * (LARGE_SIZE // 256))
    with open(root / "huge.bin", "wb") as file:
        file.truncate(huge_size)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_every_reachable_transition_is_taken_over_sockets(mode, tmp_path, tls_certificate):
    cert, key = tls_certificate
    # More than the kernel can buffer between a stalled client and us, so sends really block.
    huge_size = 4 * _send_buffer_max()
    pipelined = 2 * _send_buffer_max() // MID_SIZE + 64
    make_root(tmp_path / "root", huge_size)
    trace = tmp_path / "transitions.txt"
    server = ServerProcess(tmp_path / "root", mode, "--quiet", "--certfile", str(cert),
                           "--keyfile", str(key), "--tls-port", "0",
                           "--header-timeout", str(HEADER_TIMEOUT),
                           "--keepalive-timeout", str(KEEPALIVE_TIMEOUT),
                           "--send-timeout", str(SEND_TIMEOUT), "--drain-timeout", "10",
                           "--status", STATUS_PATH, "--live-reload", "--archives",
                           env={TRACE_ENV: str(trace)})
    try:
        match = re.search(r"and https://127\.0\.0\.1:(\d+)/", server.banner)
        assert match, server.banner
        tls_port = int(match.group(1))
        keep_alive_then_client_closes(server.port)
        pipelined_then_close(server.port)
        file_bodies(server.port)
        archive_download(server.port)
        request_bodies_and_split_head(server.port)
        client_ends_mid_request(server.port)
        client_resets_mid_response(server.port, pipelined)
        lingering_close(server.port)
        tls_paths(tls_port, cert)
        timers(server.port, tls_port, pipelined)
        stream = event_streams(server.port, tmp_path / "root")
        graceful_stop(server)
        server.proc.wait(timeout=DEADLINE)
        assert read_until_closed(stream) == b""  # the stop closed it at once
        stream.close()
    finally:
        status, _, err = server.stop()
    assert status == 0, err
    assert "ProtocolViolation" not in err and "Traceback" not in err, err
    # The status page sends every request the usual route (it decides per request), so the
    # shortcut of a whole known request, (IDLE, WHOLE_REQUEST), is taken on a plain server.
    plain = ServerProcess(tmp_path / "root", mode, "--quiet", env={TRACE_ENV: str(trace)})
    try:
        keep_alive_then_client_closes(plain.port)
    finally:
        status, _, err = plain.stop()
    assert status == 0, err
    assert "ProtocolViolation" not in err and "Traceback" not in err, err
    seen = set()
    for line in trace.read_text(encoding="ascii").splitlines():
        state, event = line.split()
        seen.add((ConnState[state], Event[event]))
    expected = set(TRANSITIONS) - set(UNREACHABLE[mode])
    missing = sorted(f"{state.name} {event.name}" for state, event in expected - seen)
    unexpected = sorted(f"{state.name} {event.name}" for state, event in seen - expected)
    assert not missing and not unexpected, (
        f"rows never taken: {missing}; rows taken that should not be: {unexpected}")


def test_unreachable_rows_are_rows_of_the_table():
    for mode in MODES:
        assert set(UNREACHABLE[mode]) <= set(TRANSITIONS), mode


@pytest.mark.parametrize("mode", MODES)
def test_a_request_in_progress_when_a_stop_begins_is_answered_with_close(mode, make_server,
                                                                         tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "small.txt").write_bytes(SMALL)
    server = make_server(root, mode, "--quiet")
    with connect(server.port) as busy:
        busy.sendall(PARTIAL_HEAD)
        wait_server_read(busy, "the start of a request")
        server.proc.send_signal(signal.SIGTERM)
        wait_listener_closed(server.port)
        busy.sendall(b"\r\n")
        # RFC 9112 section 9.6: a server that means to close after this response says so.
        expect_response(busy, bytearray(), connection="close")
        assert read_until_closed(busy) == b""
    assert server.proc.wait(timeout=DEADLINE) == 0
