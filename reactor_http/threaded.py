"""The threaded engine: one thread per connection on a blocking socket, as the seed design did.

It exists to be compared with the reactor, so it shares everything but the I/O: the same
`HttpConnection` state machine (TLS handshake, linger, stop and eviction decisions included),
parser, responder and exchanges, `sending.send_blocking`, and engine.py's policies and log lines.
Threads are bounded by `max_threads`: the acceptor takes a slot before it accepts, so overload
waits in the kernel backlog instead of exhausting memory; at the cap, the keep-alive connection (or
event stream) quiet longest, for at least the protocol's minimum, is closed to admit a client
waiting in the backlog.
"""

from __future__ import annotations

import _socket
import functools
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import cast

from . import archive, livereload, sending
from .engine import (ACCEPT_PAUSE, RECV_SIZE, AcceptErrors, ConnectionLog, EngineBase, Listener,
                     as_listeners, cap_stream_buffer, close_reason_for, format_peer,
                     is_plaintext_on_tls, peer_host, open_connection, plain_socket)
from .messages import Exchange
from .parser import Limits
from .poller import ReadWait
from .protocol import LINGER_TIMEOUT, CloseReason, ConnState, HeadParser, HttpConnection
from .stats import LockedStats

# How often the acceptor looks up from accept() to notice a stop request (seconds).
POLL_INTERVAL = 0.2
# After the drain bound, how long cut connections' threads get to log and close (seconds).
CUT_GRACE = 1.0


class ThreadConn:
    """One connection as its thread sees it: socket, protocol, the exchange being sent."""

    __slots__ = ("sock", "proto", "peer", "host", "tls", "exchange", "waiting", "evicted",
                 "bell", "lock", "idle_wait", "produce")

    def __init__(self, sock: _socket.socket, address, proto: HttpConnection, tls: bool):
        self.sock = sock
        self.proto = proto
        self.peer = format_peer(address)
        self.host = peer_host(address)
        self.tls = tls
        self.exchange: Exchange | None = None  # owns its file and cursor
        # True while the thread waits idle for a request (or on its stream) and has read
        # nothing since; `evicted` once the acceptor chose it to make room at the cap (only
        # while waiting, after a peek found nothing unread). The thread ends a wait, and the
        # acceptor makes its choice, under this connection's own lock: one uncontended lock
        # per request, not the engine's active_lock that every thread shares.
        self.waiting = False
        self.evicted = False
        self.lock = threading.Lock()
        # --live-reload: the bell a stream's thread waits on (readable once a change is out).
        self.bell: int | None = None
        # The wait between requests (its socket and the engine's stop socket), made at the
        # first one and kept: one per connection, not one per request.
        self.idle_wait: ReadWait | None = None
        # --archives: how this connection's thread makes a produced body (None: archives off).
        self.produce: Callable | None = None


class ThreadedServer(EngineBase):
    """Accept on a blocking socket and hand each connection to its own thread.

    SIGINT/SIGTERM set the stop flag (EngineBase), which the acceptor reads every POLL_INTERVAL.
    """

    def __init__(self, config, site, logs, listener):
        self.config = config
        self.site = site
        self.logs = logs
        self.clog = ConnectionLog(logs, "New thread started for", ", killing thread")
        self.listeners = as_listeners(listener)
        self.parser = HeadParser(Limits.from_config(config), site)
        sending.use_sendfile(config.sendfile)  # --no-sendfile: file bodies read and sent
        self.stats = LockedStats(config, "threaded", self._connection_states,
                                 compression=site.compression)
        self.slots = threading.BoundedSemaphore(config.max_threads)
        self.stop_event = threading.Event()
        self.stop_requested = False
        # Past the drain bound: connections still open are cut, and say so.
        self.drain_expired = False
        self.accept_errors = AcceptErrors()
        self.active: dict[HttpConnection, ThreadConn] = {}
        # Connections chosen to make room whose threads have not closed them yet.
        self.evicting: set[HttpConnection] = set()
        self.active_lock = threading.Lock()
        # Readable once a stop begins: every idle wait polls it beside its socket. A socket
        # pair, not a pipe: Windows' select() waits on sockets only.
        self._stop_pair = socket.socketpair()
        self._stop_r = self._stop_pair[0].fileno()

    def _connection_states(self):
        """The state of every live connection (for the status page, on demand only)."""
        with self.active_lock:
            return [proto.state for proto in self.active]

    def request_stop(self) -> None:
        """Ask the server to stop gracefully (from any thread, not from a signal handler)."""
        self.stop_requested = True
        self.stop_event.set()

    # ---- accepting ---------------------------------------------------------------------------

    def run(self) -> int:
        """Accept until stopped, then drain; return the exit status."""
        self.logs.start()  # the sink's writer thread writes the logs out
        waiter = selectors.DefaultSelector()
        for listener in self.listeners:
            listener.sock.setblocking(False)
            waiter.register(listener.sock, selectors.EVENT_READ, listener)
        try:
            while not self.stop_requested:
                if not self.slots.acquire(blocking=False):
                    # Every thread is busy. A client waiting in the backlog takes the place of
                    # the connection quiet longest, if one may make room (_evict_one).
                    if not waiter.select(POLL_INTERVAL):
                        continue  # nobody is waiting
                    self._evict_one()
                    if not self.slots.acquire(timeout=POLL_INTERVAL):
                        continue  # new connections wait in the backlog
                if not self._accept_one(waiter):
                    self.slots.release()
        finally:
            self.stop_event.set()
            waiter.close()
            for listener in self.listeners:
                listener.sock.close()
            self._drain()
            self._close_stop_pair()
            self.logs.flush()
        return 0

    def _close_stop_pair(self) -> None:
        """Release the stop socket pair once no connection thread can be waiting on it."""
        with self.active_lock:
            if self.active:
                return  # a thread cut at the drain bound may still poll it: leave it open
        for sock in self._stop_pair:
            sock.close()

    def _accept_one(self, waiter: selectors.BaseSelector) -> bool:
        """Wait briefly for a connection on any listener; start its thread. True if one was."""
        for key, _ in waiter.select(POLL_INTERVAL):
            listener = key.data
            try:
                sock, address = listener.sock.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if self.stop_requested:
                    return False
                if self.accept_errors.must_pause(exc):
                    self.stop_event.wait(ACCEPT_PAUSE)
                    return False
                continue
            self.accept_errors.succeeded()
            thread = threading.Thread(target=self._serve_connection,
                                      args=(sock, address, listener),
                                      name=f"conn-{format_peer(address)}", daemon=True)
            thread.start()
            return True
        return False

    def _evict_one(self) -> None:
        """Close the connection quiet longest, if one may make room for a client in the backlog.

        Only one whose thread waits idle (or on a stream), quiet for at least the protocol's
        minimum (HttpConnection.evictable_at), with nothing of a next request in the kernel.
        The choice is made under the connection's lock, which the thread takes before it reads
        what woke it, so a request that arrived is either seen here (and the connection kept)
        or read and answered there, never lost. One eviction at a time: a second newcomer
        waits for the first slot to come back instead of evicting another one meanwhile.
        """
        now = time.monotonic()
        with self.active_lock:
            if self.evicting:
                return  # a slot is on its way
            candidates = []
            for proto, conn in self.active.items():
                at = proto.evictable_at()
                if conn.waiting and at is not None and at <= now:
                    candidates.append((cast(float, proto.idle_since), conn))
            for _, victim in sorted(candidates, key=lambda pair: pair[0]):
                with victim.lock:
                    # Still waiting (its wait may have ended since the scan), and a stream's
                    # rung bell is a change it is owed: not quiet either.
                    if not victim.waiting or _bytes_waiting(victim.sock, victim.bell):
                        continue
                    victim.evicted = True
                    self.evicting.add(victim.proto)
                    # Its wait wakes (a hang-up), sees `evicted` and closes the connection.
                    _shutdown_quietly(victim.sock, socket.SHUT_RDWR)
                    return

    def _wait_evictable(self, conn: ThreadConn, poller, timeout: float,
                        bell: int | None = None) -> set[int] | None:
        """poller.wait(`timeout` seconds) while the acceptor may evict `conn` (a stream's: with
        the `bell` it waits on); None if it did."""
        conn.bell = bell
        conn.waiting = True  # after the bell: the acceptor reads both under conn.lock
        try:
            ready = poller.wait(timeout)
        finally:
            with conn.lock:
                conn.waiting = False
                evicted = conn.evicted
        if evicted:
            conn.proto.evict()
            return None
        return ready

    # ---- stopping ----------------------------------------------------------------------------

    def _drain(self) -> None:
        """Stop: wake every idle wait; connections finish within the drain bound, then are cut."""
        self.logs.event("Stopping: no longer accepting connections")
        with self.active_lock:
            for proto in self.active:
                # A request read from now on is answered with Connection: close (RFC 9112
                # section 9.6), also on a thread that is in the middle of reading one.
                proto.draining = True
        self._stop_pair[1].send(b"\0")  # never read: stays readable for every idle wait
        deadline = time.monotonic() + self.config.drain_timeout
        if self._wait_idle_threads(deadline):
            return
        self.drain_expired = True
        with self.active_lock:
            for conn in self.active.values():
                _shutdown_quietly(conn.sock, socket.SHUT_RDWR)
        self._wait_idle_threads(time.monotonic() + CUT_GRACE)

    def _wait_idle_threads(self, deadline: float) -> bool:
        """Wait until no connection is open, or the deadline; True if none is."""
        while time.monotonic() < deadline:
            with self.active_lock:
                if not self.active:
                    return True
            time.sleep(0.02)
        return False

    # ---- one connection ----------------------------------------------------------------------

    def _serve_connection(self, sock: _socket.socket, address, listener: Listener) -> None:
        """One connection's whole life, on this thread: from accept to CLOSED."""
        conn = None
        try:
            opened = open_connection(sock, address, listener, blocking=True, site=self.site,
                                     parser=self.parser, stats=self.stats)
            if opened is None:
                return
            sock, proto = opened
            if self.site.rules is not None:  # a new client sees every edit made before it came
                self.site.rules_stand(time.monotonic(), force=True)
            conn = ThreadConn(sock, address, proto, listener.tls is not None)
            if self.site.archive_slots is not None:
                conn.produce = functools.partial(self._produce, conn.peer)
            with self.active_lock:
                self.active[proto] = conn
            self.clog.opened(conn.peer)
            try:  # the error boundary: a failure, even in a timeout's handling, ends this one
                try:
                    if proto.state is ConnState.HANDSHAKING:
                        self._handshake(conn)
                    if proto.state is not ConnState.CLOSED:
                        self._converse(conn)
                except TimeoutError:
                    if proto.state is not ConnState.CLOSED:
                        # A send timeout, counted as the reactor counts it.
                        proto.timeout(time.monotonic())
            except Exception as exc:
                reason = CloseReason.DRAIN if self.drain_expired else close_reason_for(exc)
                if reason is None:
                    self.clog.crash(conn.peer, exc)
                    reason = CloseReason.ERROR
                proto.abort(reason)
        finally:
            try:
                if conn is not None:
                    self._finish(conn)
            finally:
                self.slots.release()  # the slot comes back even if closing failed

    def _finish(self, conn: ThreadConn) -> None:
        """Log a response cut short, close the socket, forget the connection."""
        proto = conn.proto
        if proto.state is not ConnState.CLOSED:
            proto.abort(CloseReason.DRAIN if self.drain_expired else CloseReason.CLOSE)
        exchange = conn.exchange
        if exchange is not None:
            conn.exchange = None
            self.clog.cut(conn.peer, conn.host, exchange, proto.close_reason_text)
            exchange.close()
        conn.sock.close()
        # Logged before the connection leaves `active`: the stop waits for `active` to empty,
        # so "Server stopped" comes after every connection's line.
        self.clog.closed(conn.peer, proto.close_reason_text)
        with self.active_lock:
            self.active.pop(proto, None)
            self.evicting.discard(proto)

    def _handshake(self, conn: ThreadConn) -> None:
        """The TLS handshake, bounded like a request head (slowloris guard)."""
        proto = conn.proto
        sock = cast(ssl.SSLSocket, conn.sock)  # only a TLS connection handshakes
        sock.settimeout(self.config.header_timeout)
        try:
            sock.do_handshake()
        except TimeoutError:
            proto.timeout(time.monotonic())
            return
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            proto.receive(b"")  # the client closed during the handshake
            return
        except ssl.SSLError as exc:
            if not is_plaintext_on_tls(exc):
                raise
            # Plain HTTP on the HTTPS port: answer in plain text on the TCP socket underneath.
            with self.active_lock:
                conn.sock = plain_socket(sock)
            conn.tls = False
            self.clog.plaintext_on_tls(conn.peer)
            if self._send(conn, proto.plaintext_on_tls(time.monotonic())) is ConnState.CLOSING:
                self._linger(conn)
            return
        proto.handshake_done()

    def _converse(self, conn: ThreadConn) -> None:
        """Read requests and send responses until the protocol says the connection ends."""
        config = self.config
        proto = conn.proto
        sock = conn.sock
        head_deadline = 0.0
        while True:
            was_idle = proto.state is ConnState.IDLE
            if was_idle:
                if not self._wait_idle(conn):
                    return
                sock.settimeout(config.header_timeout)
            else:  # what is left of the head deadline (slowloris guard)
                sock.settimeout(max(head_deadline - time.monotonic(), 0.001))
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                exchange = proto.timeout(time.monotonic())
                if exchange is not None:
                    self.clog.timed_out_head(conn.peer)
                    if self._send(conn, exchange) is ConnState.CLOSING:
                        self._linger(conn)
                return
            exchange = proto.take_request(data, time.monotonic()) if was_idle else None
            if exchange is None:
                proto.receive(data)
                if proto.state is ConnState.CLOSED:
                    return
            if was_idle:
                head_deadline = time.monotonic() + config.header_timeout
            answered = self._answer_buffered(conn, exchange, head_deadline)
            if answered is None:
                return
            head_deadline = answered

    def _answer_buffered(self, conn: ThreadConn, exchange: Exchange | None,
                         head_deadline: float) -> float | None:
        """Carry out `exchange` (if any) and every request already buffered after it.

        Returns the head deadline for what is still buffered (restarted when a pipelined request
        began), or None once the connection has ended (it lingered, closed or streamed).
        """
        proto = conn.proto
        while True:
            if exchange is None:
                exchange = proto.next_exchange(time.monotonic())
            if proto.internal_error is not None:
                exc, proto.internal_error = proto.internal_error, None
                self.clog.internal_error(conn.peer, exc)
            if exchange is None:
                return head_deadline
            state = self._send(conn, exchange)
            exchange = None
            if state is ConnState.CLOSING:
                self._linger(conn)
                return None
            if state is ConnState.STREAMING:
                self._stream(conn)
                return None
            if state is not ConnState.READING_HEAD:
                return head_deadline
            head_deadline = time.monotonic() + self.config.header_timeout

    def _wait_idle(self, conn: ThreadConn) -> bool:
        """Wait for the next request; True if the socket is readable, else the connection ended.

        Also wakes for a graceful stop: what has already arrived is answered, a connection
        answered less than STOP_GRACE ago gets that long for a request on its way, and the
        protocol decides which connection is closed at once.
        """
        proto = conn.proto
        sock = conn.sock
        if conn.tls and cast(ssl.SSLSocket, sock).pending():
            return True
        poller = conn.idle_wait
        if poller is None:
            poller = conn.idle_wait = ReadWait()
            poller.register(sock)
            poller.register(self._stop_r)
        ready = self._wait_evictable(conn, poller, self.config.keepalive_timeout)
        if ready is None:
            return False  # evicted to make room at the cap
        if not ready:
            proto.timeout(time.monotonic())
            return False
        if sock.fileno() in ready:
            return True
        # Stopping.
        wait = proto.begin_stop(time.monotonic())
        poller = ReadWait()  # the socket alone from now on (the stop socket stays readable)
        poller.register(sock)
        if poller.wait(0):
            return True  # a request has arrived: answered, with Connection: close
        if wait is None:  # fresh: its first request is on its way (bounded by the drain)
            wait = self.config.keepalive_timeout
        elif not wait:
            proto.abort(CloseReason.STOP)
            return False
        if poller.wait(wait):
            return True
        proto.timeout(time.monotonic())  # idle while stopping: closed as "server stopping"
        return False

    def _send(self, conn: ThreadConn, exchange: Exchange) -> ConnState:
        """Carry out an exchange with the send timeout; log it; return the protocol's next state."""
        conn.sock.settimeout(self.config.send_timeout)
        exchange = conn.exchange = exchange.own()  # send_blocking counts what it sends
        sending.send_blocking(conn.sock, exchange, on_head_sent=conn.proto.head_sent,
                              tls=conn.tls, produce=conn.produce)
        sent_at = time.monotonic()  # idle from here: before the log line (eviction order)
        conn.exchange = None
        exchange.close()
        self.clog.exchange(conn.peer, conn.host, exchange)
        return conn.proto.response_done(exchange.plan, sent_at, exchange.sent)

    def _produce(self, peer: str, body, emit) -> None:
        """--archives: make a produced body on this connection's thread, sending as it goes
        (`emit`: a send with the send timeout, which ends it for a client that stops reading).
        The same producer as the reactor's (archive.produce), without a feed: the socket's
        own buffer is the bound on how far it runs ahead."""
        slots = self.site.archive_slots
        slots.enter()
        try:
            archive.produce(body, emit, lambda text: self.clog.left_out(peer, text))
        finally:
            slots.leave()

    def _stream(self, conn: ThreadConn) -> None:
        """--live-reload: hold an event stream on this thread until EOF, a stop or an error.

        Waits on the socket (EOF; bytes are dropped), the stop pipe and the hub's bell; sends
        each change, and a heartbeat comment every HEARTBEAT_INTERVAL, with the send timeout
        (a socket.timeout ends the connection as a send timeout, in _serve_connection).
        """
        proto = conn.proto
        sock = conn.sock
        hub = self.site.live
        sock.settimeout(self.config.send_timeout)
        cap_stream_buffer(sock)
        bell, seq = hub.bell()
        try:
            next_beat = time.monotonic() + livereload.HEARTBEAT_INTERVAL
            while True:
                poller = self._stream_poller(sock, bell)
                ready = self._wait_evictable(conn, poller, next_beat - time.monotonic(), bell)
                if ready is None:
                    return  # evicted to make room at the cap: the page reconnects
                if self._stop_r in ready:
                    proto.begin_stop(time.monotonic())
                    # A stream ends at once on a stop; the page reconnects.
                    proto.abort(CloseReason.STOP)
                    return
                if sock.fileno() in ready:
                    data = sock.recv(RECV_SIZE)
                    proto.receive(data)
                    if proto.state is ConnState.CLOSED:
                        return
                message = b""
                if bell in ready:
                    socket.close(bell)
                    bell, _ = hub.bell()
                    seq, message = hub.since(seq)
                elif time.monotonic() >= next_beat:
                    message = livereload.HEARTBEAT
                if message:
                    next_beat = time.monotonic() + livereload.HEARTBEAT_INTERVAL
                    proto.notify(len(message), None if message is livereload.HEARTBEAT
                                 else time.monotonic())  # a change: quiet time restarts
                    if proto.state is ConnState.CLOSED:
                        return
                    sock.sendall(message)
        finally:
            socket.close(bell)

    def _stream_poller(self, sock, bell: int):
        """What a stream thread waits on: its socket (EOF), the stop socket and the hub's bell."""
        poller = ReadWait()
        poller.register(sock)
        poller.register(self._stop_r)
        poller.register(bell)
        return poller

    def _linger(self, conn: ThreadConn) -> None:
        """Half-close and let the protocol drain the peer until it closes or the timer ends."""
        proto = conn.proto
        sock = conn.sock
        if not proto.linger_wanted and not _bytes_waiting(sock):
            proto.close_at_once()  # the client asked to close and sent nothing more
            return
        _shutdown_quietly(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_TIMEOUT
        while proto.state is ConnState.CLOSING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proto.timeout(time.monotonic())
                return
            sock.settimeout(remaining)
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                proto.timeout(time.monotonic())
                return
            except OSError:
                proto.abort(CloseReason.RESET)
                return
            proto.receive(data)


def _bytes_waiting(sock: _socket.socket, bell: int | None = None) -> bool:
    """True if the peer has sent bytes (or its close) nobody has read, in the TLS layer or the
    kernel, or `bell` (a stream's) has rung. A zero-timeout poll: a peek with recv would first
    wait out the socket's timeout."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = ReadWait()
    poller.register(sock)
    if bell is not None:
        poller.register(bell)
    return bool(poller.wait(0))


def _shutdown_quietly(sock: _socket.socket, how: int) -> None:
    """shutdown(2) on the raw socket, ignoring errors.

    The base-class method on purpose: SSLSocket.shutdown() also drops the TLS state, after
    which a response written by the connection's thread would go out in clear text.
    """
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass
