"""Engine pieces driven directly, without a running server: accept(2) errors, blocking sends.

The Reactor here is built over a real listening socket but never run; its handlers are called
with stand-in sockets that fail the way the kernel can.
"""

from __future__ import annotations

import errno
import os
import socket

import pytest

from reactor_http.protocol import CloseReason


@pytest.fixture
def bare_reactor(site_copy):
    """A Reactor over a real listening socket, never run: for calling its handlers directly."""
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.reactor import Reactor
    from reactor_http.website import Site
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
    from reactor_http.messages import Exchange, ResponsePlan

    class RecordingSocket:
        def __init__(self):
            self.calls = []

        def sendall(self, data):
            self.calls.append(bytes(data))

    sock = RecordingSocket()
    exchange = Exchange(ResponsePlan(200, (b"HEAD\r\n\r\n", b"x" * 40000), 40000, True))
    sending.send_blocking(sock, exchange)
    assert exchange.sent == 40008
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
            bare_reactor._close(conn, CloseReason.STOP)
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


def turn_with(reactor, events) -> None:
    """One loop turn at clock 1.5 (the `accepted` connection's timers, armed at 1.0, have not
    run out) in which the poller reports `events`, a list of (fd, epoll bits)."""
    from unittest import mock
    with mock.patch.object(reactor.selector, "poll", lambda timeout: events), \
            mock.patch("time.monotonic", lambda: 1.5):
        reactor._loop_once(1.5)


def test_an_event_for_a_connection_closed_earlier_in_the_same_turn_is_skipped(accepted, caplog):
    # The first report ends the connection (the client closed); the second names the same
    # descriptor, which nothing is registered under any more: nothing is dispatched for it.
    reactor, conn, client = accepted
    fd = conn.sock.fileno()
    client.close()
    turn_with(reactor, [(fd, 0x001), (fd, 0x001)])
    assert conn not in reactor.conns and fd not in reactor.selector.data
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_hang_up_alone_wakes_a_reading_connection_to_find_the_eof(accepted):
    # epoll reports EPOLLHUP (0x10) whatever the interest: a reader must read and find the end.
    reactor, conn, client = accepted
    client.close()
    turn_with(reactor, [(conn.sock.fileno(), 0x010)])
    assert conn not in reactor.conns


def test_the_loop_instant_never_repeats_across_turns(accepted, monkeypatch):
    # Requests of one turn may share one stat because they share `now`: a clock too coarse to
    # tell two turns apart (Windows before Python 3.13 ticks every ~16 ms) must not merge them.
    reactor, conn, _ = accepted
    seen = []
    monkeypatch.setattr(type(reactor), "_handle",
                        lambda self, conn, mask, now: seen.append(now))
    fd = conn.sock.fileno()
    for _ in range(3):
        turn_with(reactor, [(fd, 0x001), (fd, 0x001)])
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[4] == seen[5]  # one turn, one now
    assert seen[0] < seen[2] < seen[4]


def test_a_500_from_a_bug_names_the_peer_with_the_connection_log_off(accepted, caplog,
                                                                      monkeypatch):
    from reactor_http import protocol
    from reactor_http.engine import format_peer

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the semantics")

    monkeypatch.setattr(protocol, "respond", broken)
    reactor, conn, client = accepted
    client.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    client.settimeout(5)
    reactor._handle(conn, 0x001, 1.5)
    assert client.recv(65536).startswith(b"HTTP/1.1 500 ")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(format_peer(client.getsockname()) in message and "a bug" in message
               for message in errors), errors


def test_a_failure_while_a_timer_fires_closes_that_connection_and_the_loop_serves_on(
        accepted, caplog, monkeypatch):
    # The loop's error boundary covers timers too: if the protocol raises while a timer fires,
    # that connection is closed with the error logged, and the next client is still served.
    from reactor_http.protocol import HttpConnection

    def broken(self, now):
        raise RuntimeError("a bug while a timer fired")

    reactor, conn, client = accepted
    with monkeypatch.context() as patch:
        patch.setattr(HttpConnection, "timeout", broken)
        reactor._on_timeout(conn, 2.0)
    assert conn not in reactor.conns
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("a bug while a timer fired" in message for message in errors), errors
    listener = reactor.listeners[0]
    second = socket.create_connection(listener.sock.getsockname())
    try:
        reactor._accept(listener, 3.0)
        (fresh,) = reactor.conns
        second.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        second.settimeout(5)
        reactor._handle(fresh, 0x001, 3.5)
        assert second.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        second.close()


def test_every_state_has_one_row_and_the_reactor_derives_its_timers_from_it(bare_reactor):
    from reactor_http.protocol import STATES, ConnState
    assert set(STATES) == set(ConnState)
    for state, facts in STATES.items():
        queue = bare_reactor.queue_for.get(state)
        if facts.timer is None:
            assert queue is None, state
        else:
            assert queue.name == facts.timer.value, state
            assert queue.duration == facts.timer.seconds(bare_reactor.config), state


def test_a_replayed_two_piece_answer_cut_short_logs_what_went_out(tmp_path, monkeypatch):
    # A cached 20 KB file is replayed as head + body (two pieces). 100 bytes go out, then the
    # peer resets: the cut line must count them (the connection's own copy of the shared
    # exchange holds the cursor), not 0.
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.reactor import Reactor
    from reactor_http.website import Site
    (tmp_path / "big.txt").write_bytes(b"x" * 20_000)
    config = Config(root=str(tmp_path), port=0, quiet=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reactor = Reactor(config, Site(config, single_thread=True), LogSink(access=False), listener)
    head = b"GET /big.txt HTTP/1.1\r\nHost: x\r\n\r\n"

    class Peer:
        """Sends the head on every read; takes 100 bytes, then resets."""

        def __init__(self, real):
            self.real, self.taken = real, 0

        def recv(self, size):
            return head

        def sendmsg(self, buffers, *args):
            if self.taken:
                raise ConnectionResetError
            self.taken = 100
            return 100

        send = sendmsg

        def __getattr__(self, name):
            return getattr(self.real, name)

    from reactor_http.engine import ConnectionLog
    cuts = []
    monkeypatch.setattr(ConnectionLog, "cut",
                        lambda self, peer, host, exchange, why: cuts.append(exchange.sent))
    client = socket.create_connection(listener.getsockname())
    try:
        listener.setblocking(False)
        reactor._accept(reactor.listeners[0], 1.0)
        (conn,) = reactor.conns
        real = conn.sock
        conn.sock = Peer(real)
        conn.sock.taken = -1  # the warm-up requests go out whole
        for now in (1.1, 1.2, 1.3):  # fill the answer cache, then replay it
            conn.sock.sendmsg = lambda buffers, *args: sum(len(b) for b in buffers)
            reactor._handle(conn, 0x001, now)
        assert conn in reactor.conns and not cuts
        conn.sock = Peer(real)
        reactor._handle(conn, 0x001, 1.4)
        assert cuts == [100]
    finally:
        for conn in list(reactor.conns):
            conn.sock = getattr(conn.sock, "real", conn.sock)
            reactor._close(conn, CloseReason.STOP)
        client.close()
        reactor.selector.close()
        listener.close()


# ---- at the connection cap -------------------------------------------------------------------

GET = b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def capped(site_copy):
    """(reactor capped at one connection, never run; its listener); everything closed after."""
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.reactor import Reactor
    from reactor_http.website import Site
    config = Config(root=str(site_copy), port=0, quiet=True, max_connections=1,
                    keepalive_timeout=60)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    reactor = Reactor(config, Site(config), LogSink(access=False), listener)
    reactor._resume_accepting()
    clients = []
    yield reactor, reactor.listeners[0], clients
    for conn in list(reactor.conns):
        reactor._close(conn, CloseReason.STOP)
    for client in clients:
        client.close()
    reactor.selector.close()
    listener.close()


def served_once(reactor, listener, clients, now: float):
    """A client connected and answered once at `now`: (its connection, its socket)."""
    import selectors
    client = socket.create_connection(listener.sock.getsockname())
    client.settimeout(5)
    clients.append(client)
    reactor._accept(listener, now)
    (conn,) = reactor.conns
    client.sendall(GET)
    wait_readable(conn.sock)
    reactor._handle(conn, selectors.EVENT_READ, now)
    assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    return conn, client


def wait_readable(sock) -> None:
    """Until what a peer sent is in `sock`'s kernel buffer (loopback: at once)."""
    import select
    poller = select.poll()  # (select() refuses descriptors past 1023, as in a full run)
    poller.register(sock, select.POLLIN)
    assert poller.poll(5000)


def test_at_the_cap_a_connection_answered_a_moment_ago_is_not_evicted(capped):
    # On a busy server the longest-idle connection has been idle for microseconds and its next
    # request is on the wire: a newcomer waits in the backlog instead, and the loop leaves the
    # readable listener alone (no spinning) until the connection has been quiet long enough.
    from reactor_http.protocol import EVICT_MIN_IDLE
    reactor, listener, clients = capped
    conn, _ = served_once(reactor, listener, clients, 1.0)
    clients.append(socket.create_connection(listener.sock.getsockname()))  # the newcomer
    reactor._accept(listener, 1.5)
    assert reactor.conns == {conn} and not reactor.listening
    assert reactor.evict_ready_at == 1.0 + EVICT_MIN_IDLE
    assert reactor._wait_time(1.5) <= EVICT_MIN_IDLE - 0.5
    assert reactor._evictable(1.0 + EVICT_MIN_IDLE) is conn  # then the loop resumes


def test_at_the_cap_a_connection_whose_next_request_arrived_is_never_evicted(capped):
    import selectors
    reactor, listener, clients = capped
    conn, client = served_once(reactor, listener, clients, 1.0)
    client.sendall(GET)  # its next request arrives, unread, as a newcomer connects
    wait_readable(conn.sock)
    clients.append(socket.create_connection(listener.sock.getsockname()))
    reactor._accept(listener, 100.0)
    assert reactor.conns == {conn} and not reactor.listening
    reactor._handle(conn, selectors.EVENT_READ, 100.0)
    assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")  # answered, not closed
    reactor._resume_accepting()
    reactor._accept(listener, 200.0)  # quiet since: it makes room now
    assert conn not in reactor.conns and len(reactor.conns) == 1
    assert client.recv(1) == b""


def test_a_client_that_asked_to_close_is_closed_without_lingering(capped):
    # nginx's heuristic: Connection: close and nothing more sent -> closed at once; one more
    # byte after the request and we linger (half-close, drain) as before.
    import selectors
    from reactor_http.protocol import ConnState
    reactor, listener, clients = capped
    for extra, lingers in ((b"", False), (b"\r\n", True)):
        client = socket.create_connection(listener.sock.getsockname())
        clients.append(client)
        reactor._accept(listener, 1.0)
        (conn,) = reactor.conns
        client.sendall(GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + extra)
        wait_readable(conn.sock)
        reactor._handle(conn, selectors.EVENT_READ, 1.0)
        if lingers:
            assert conn in reactor.conns and conn.proto.state is ConnState.CLOSING
            reactor._close(conn, CloseReason.CLOSE)
        else:
            assert conn not in reactor.conns and conn.proto.state is ConnState.CLOSED
            assert conn.proto.close_reason is CloseReason.CLOSE


@pytest.fixture
def threaded_pool(site_copy):
    """(a ThreadedServer never run, a function adding a connection idle since a time): the
    connections are socketpairs whose other end the test holds."""
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.protocol import HttpConnection
    from reactor_http.threaded import ThreadConn, ThreadedServer
    from reactor_http.website import Site
    config = Config(root=str(site_copy), port=0, quiet=True, keepalive_timeout=60)
    listener = socket.socket()
    server = ThreadedServer(config, Site(config), LogSink(access=False), listener)
    pairs = []

    def add(idle_since: float, waiting: bool = True):
        ours, theirs = socket.socketpair()
        pairs.append((ours, theirs))
        proto = HttpConnection(server.site)
        proto.receive(GET)
        exchange = proto.next_exchange(idle_since)
        exchange.close()
        proto.response_done(exchange.plan, idle_since)
        conn = ThreadConn(ours, ("127.0.0.1", 1), proto, False)
        conn.waiting = waiting
        server.active[proto] = conn
        return conn, theirs

    yield server, add
    for ours, theirs in pairs:
        ours.close()
        theirs.close()
    listener.close()


def test_threaded_eviction_spares_a_connection_whose_request_arrived(threaded_pool):
    # The acceptor decides under the lock a waiting thread takes before it reads, after a peek:
    # bytes of a next request keep the connection; the next quiet one goes, woken by a hang-up.
    import time
    server, add = threaded_pool
    now = time.monotonic()
    busy, busy_peer = add(now - 30)
    quiet, quiet_peer = add(now - 20)
    reading, _ = add(now - 40, waiting=False)  # its thread is reading: never chosen
    add(now)                                   # answered just now: busy, never chosen
    busy_peer.sendall(GET)
    server._evict_one()
    assert quiet.evicted and not busy.evicted and not reading.evicted
    quiet_peer.settimeout(5)
    assert quiet_peer.recv(1) == b""


def test_threaded_eviction_takes_one_connection_per_slot_however_slow_its_thread(
        threaded_pool):
    # The flaky case of old: the first victim's thread had not exited within the acceptor's
    # wait, so the same newcomer evicted a second connection. One eviction at a time.
    import time
    server, add = threaded_pool
    now = time.monotonic()
    first, _ = add(now - 30)
    second, _ = add(now - 20)
    server._evict_one()
    server._evict_one()
    assert first.evicted and not second.evicted
    server.evicting.clear()  # the first victim's thread has finished
    server._evict_one()
    assert second.evicted


def test_at_the_cap_a_stream_a_change_is_on_its_way_to_is_not_evicted(site_copy):
    # A stream is quiet since its last change; while a change is still being fanned out (over
    # several loop turns) it is not quiet: closing it would lose the change it is owed.
    import selectors
    from reactor_http.config import Config
    from reactor_http.livereload import STREAM_PATH, Hub
    from reactor_http.logs import LogSink
    from reactor_http.protocol import ConnState
    from reactor_http.reactor import Reactor
    from reactor_http.website import Site
    config = Config(root=str(site_copy), port=0, quiet=True, max_connections=1,
                    live_reload=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    reactor = Reactor(config, Site(config, live=Hub()), LogSink(access=False), listener)
    client = socket.create_connection(listener.getsockname())
    try:
        reactor._accept(reactor.listeners[0], 1.0)
        (conn,) = reactor.conns
        client.sendall(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_readable(conn.sock)
        reactor._handle(conn, selectors.EVENT_READ, 1.0)
        assert conn.proto.state is ConnState.STREAMING and conn in reactor.streams
        assert reactor._evictable(10.0) is conn  # quiet since it opened
        reactor.fanouts.append([b"event: change\ndata: /x\n\n", [conn], 0])
        assert reactor._evictable(10.0) is None  # a change is on its way to it
    finally:
        for conn in list(reactor.conns):
            reactor._close(conn, CloseReason.STOP)
        client.close()
        reactor.selector.close()
        listener.close()


def test_threaded_eviction_spares_a_stream_whose_change_has_rung(site_copy):
    # The threaded engine's twin of the reactor's rule: a stream whose thread has not yet woken
    # for a published change (its bell rang) is owed that change and is not quiet.
    import os
    import time
    from reactor_http.config import Config
    from reactor_http.livereload import STREAM_PATH, Hub
    from reactor_http.logs import LogSink
    from reactor_http.protocol import ConnState, HttpConnection
    from reactor_http.threaded import ThreadConn, ThreadedServer
    from reactor_http.website import Site
    config = Config(root=str(site_copy), port=0, quiet=True, live_reload=True)
    hub = Hub()
    listener = socket.socket()
    server = ThreadedServer(config, Site(config, live=hub), LogSink(access=False), listener)
    ours, theirs = socket.socketpair()
    bell, _ = hub.bell()
    try:
        proto = HttpConnection(server.site)
        proto.receive(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        exchange = proto.next_exchange(0.0)
        assert proto.response_done(exchange.plan, time.monotonic() - 30) is ConnState.STREAMING
        conn = ThreadConn(ours, ("127.0.0.1", 1), proto, False)
        conn.waiting, conn.bell = True, bell
        server.active[proto] = conn
        hub.publish(["/x.css"])  # rung: the thread is about to wake for it
        server._evict_one()
        assert not conn.evicted
        os.close(bell)  # the thread took the change and waits on a fresh bell
        bell, _ = hub.bell()
        conn.bell = bell
        server._evict_one()
        assert conn.evicted
    finally:
        os.close(bell)
        ours.close()
        theirs.close()
        listener.close()
        hub.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_threaded_server_that_stopped_leaves_no_descriptor_open(tmp_path):
    # Its stop socket pair (a pipe before) stayed open after run() returned: two descriptors
    # per server started in a process.
    from reactor_http.config import Config
    from reactor_http.server import _make_engine

    config = Config(root=str(tmp_path), quiet=True, mode="threaded").validate()
    before = len(os.listdir("/proc/self/fd"))
    _, logs, engine = _make_engine(config, [], None)
    engine.request_stop()
    assert engine.run() == 0
    assert all(sock.fileno() == -1 for sock in engine._stop_pair)
    # At most as many as before (in a full run, the collector may close others' meanwhile).
    assert len(os.listdir("/proc/self/fd")) <= before
