"""Engine pieces driven directly, without a running server: accept(2) errors, blocking sends.

The Reactor here is built over a real listening socket but never run; its handlers are called
with stand-in sockets that fail the way the kernel can.
"""

from __future__ import annotations

import errno
import socket

import pytest


@pytest.fixture
def bare_reactor(site_copy):
    """A Reactor over a real listening socket, never run: for calling its handlers directly."""
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.reactor import Reactor
    from reactor_http.responder import Site
    config = Config(root=str(site_copy), port=0, quiet=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reactor = Reactor(config, Site(config), LogSink(access=False), listener)
    yield reactor
    reactor.selector.close()
    listener.close()


def test_an_unexpected_accept_error_does_not_stop_the_reactor(bare_reactor):
    # accept(2) passes pending network errors through (ENETDOWN, EHOSTUNREACH...); its man page
    # says to treat them like EAGAIN: skip the error and go on accepting, never end the loop.
    from reactor_http.reactor import Listener

    class FailingSocket:
        def __init__(self):
            self.calls = 0

        def accept(self):
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.ENETDOWN, "Network is down")
            raise BlockingIOError

    failing = FailingSocket()
    bare_reactor._accept(Listener(failing), 0.0)
    assert failing.calls == 2  # the error was skipped and accepting went on


def test_a_persistent_accept_error_pauses_accepting_instead_of_spinning(bare_reactor):
    # An error that repeats on every accept() (EINVAL on a listener shut down elsewhere, EBADF)
    # pauses accepting after one try; skipping it and retrying would spin the loop.
    from reactor_http.reactor import Listener

    class BrokenListener:
        def __init__(self):
            self.calls = 0

        def accept(self):
            self.calls += 1
            raise OSError(errno.EINVAL, "Invalid argument")

    broken = BrokenListener()
    bare_reactor._accept(Listener(broken), 100.0)
    assert broken.calls == 1
    assert bare_reactor.accept_paused_until > 100.0


def test_send_blocking_sends_a_head_and_body_in_one_call():
    # The threaded engine's send of a head and an in-memory body: one sendall, not two
    # small writes (a 16-64 KiB body would otherwise go out as two segments).
    from reactor_http import sending
    from reactor_http.messages import ResponsePlan

    class RecordingSocket:
        def __init__(self):
            self.calls = []

        def sendall(self, data):
            self.calls.append(bytes(data))

    sock = RecordingSocket()
    plan = ResponsePlan(200, [b"HEAD\r\n\r\n", b"x" * 40000], 40000, True)
    cursor = sending.Cursor()
    sending.send_blocking(sock, plan, cursor)
    assert cursor.sent == 40008
    assert sock.calls == [b"HEAD\r\n\r\n" + b"x" * 40000]


@pytest.fixture
def accepted(bare_reactor):
    """(reactor, its one accepted connection, the client socket); closed afterwards."""
    bare_reactor.listeners[0].sock.setblocking(False)  # as run() sets it
    client = socket.create_connection(bare_reactor.listeners[0].sock.getsockname())
    try:
        bare_reactor._accept(bare_reactor.listeners[0], 1.0)
        (conn,) = bare_reactor.conns
        yield bare_reactor, conn, client
    finally:
        for conn in list(bare_reactor.conns):
            bare_reactor._close(conn, "stop")
        client.close()


def test_a_read_event_with_nothing_to_read_leaves_an_idle_connection_alone(accepted, caplog):
    # A spurious wake-up (or the read a stop does on every idle connection) meets EAGAIN: the
    # connection stays open and idle, nothing is logged as an error.
    import selectors
    from reactor_http.protocol import ConnState
    reactor, conn, client = accepted
    reactor._handle(conn, selectors.EVENT_READ, 2.0)
    assert conn in reactor.conns
    assert conn.proto.state is ConnState.IDLE
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    client.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    reactor._handle(conn, selectors.EVENT_READ, 3.0)  # the request, then EAGAIN
    client.settimeout(5)
    assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    reactor._handle(conn, selectors.EVENT_READ, 4.0)
    assert conn in reactor.conns and conn.proto.state is ConnState.IDLE


def test_a_connection_not_logged_still_names_its_peer_when_an_error_needs_it(accepted):
    # With the connection log off the reactor does not format a connection's address up front;
    # an error's log line (crash, internal error) still gets host:port, made on demand.
    from reactor_http.engine import format_peer
    _, conn, client = accepted
    assert conn.peer is None
    assert conn.peer_name() == format_peer(client.getsockname()) == conn.peer_name()


def test_an_unexpected_error_names_the_peer_with_the_connection_log_off(accepted, caplog):
    # The error log is always on: its line names the peer even when nothing else is logged.
    from reactor_http.engine import format_peer
    reactor, conn, client = accepted
    reactor._fail(conn, RuntimeError("a bug"))
    assert conn not in reactor.conns
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(format_peer(client.getsockname()) in message for message in errors), errors
