"""The reactor: one thread, one poller (epoll on Linux), many connections, no blocking call on a
socket.

Owns the socket side of the state machine in protocol.py: accepting in bounded batches, reading,
sending exchanges (try the syscall first, wait for writability only on EAGAIN), interest and
timers taken from the state table (protocol.STATES; interest changed only when it differs, one
deadline queue per kind of timer), and carrying out the protocol's lifecycle decisions (linger,
stop, eviction at the cap).
Semantics live in protocol/responder; what both engines do alike lives in engine.py.
"""

from __future__ import annotations

import collections
import itertools
import _socket
import math
import signal
import socket
import ssl
import threading
import time
from typing import cast

from . import archive, livereload, sending
from .deadlines import DeadlineQueue
from .engine import (ACCEPT_PAUSE, HANDSHAKE_DONE, HANDSHAKE_EOF, HANDSHAKE_WRITE, RECV_SIZE,
                     AcceptErrors, ConnectionLog, EngineBase, Listener, as_listeners,
                     cap_stream_buffer, close_reason_for, format_peer, handshake_step,
                     is_plaintext_on_tls, open_connection, peer_host, plain_socket)
from .messages import Exchange, ProducedBody
from .parser import Limits
from .poller import READ, WRITE, Poller, ready_mask
from .protocol import (READ_STATES, SEND_TIMER_STATES, STATES, STOP_GRACE, CloseReason,
                       ConnState, HeadParser, HttpConnection, Interest, Timer, evict_min_idle)
from .sending import send_available, send_slice
from .stats import Stats

# Connections accepted per readiness event, so one burst cannot starve established clients.
ACCEPT_BATCH = 64
# At the connection cap, this many of the longest-idle connections (and of the oldest event
# streams) are looked at for one that may be closed to admit a new one (fresh connections
# waiting for a first request, and ones whose next request has arrived, are skipped).
EVICT_SCAN = 64
# Longest select() wait (seconds): the loop re-checks its flags at least this often.
MAX_WAIT = 1.0
# Seconds between two heartbeats (when a supervisor asked for them): well inside any sane
# --worker-timeout, and no per-request cost.
HEARTBEAT_INTERVAL = 1.0
# --live-reload: streams sent a change per loop turn. A change to 10,000 streams then goes out
# over about 20 turns, and an ordinary request waits for one slice (a few ms), not for all.
FANOUT_SLICE = 512
WOULD_BLOCK = sending.WOULD_BLOCK
PEEK = socket.MSG_PEEK
IDLE, READING_HEAD, WRITING_HEAD = ConnState.IDLE, ConnState.READING_HEAD, ConnState.WRITING_HEAD
HANDSHAKING, CLOSING, CLOSED = ConnState.HANDSHAKING, ConnState.CLOSING, ConnState.CLOSED
STREAMING, SENDING_BODY = ConnState.STREAMING, ConnState.SENDING_BODY
AWAITING_BODY = ConnState.AWAITING_BODY
# The poller interest of each kind of wait in protocol.STATES that _settle sets (a stream's is
# set by _stream_settle). NONE (a produced body's producer is behind) is no interest at all:
# epoll still reports an error or a hang-up, which closes the connection (_loop_once).
INTEREST_MASKS = {Interest.READ: READ, Interest.WRITE: WRITE, Interest.HANDSHAKE: None,
                  Interest.NONE: 0}
# What the wake-up socket's events are dispatched to (signals, request_stop, --live-reload).
WAKEUP = object()


class Conn:
    """The reactor's view of one client: its socket, protocol state, exchange in progress, timer."""

    __slots__ = ("sock", "address", "peer", "host", "proto", "exchange", "mask", "queue",
                 "armed_served", "armed_sent", "tls", "want_write", "outbox")

    def __init__(self, sock: _socket.socket, address, proto: HttpConnection, tls: bool = False,
                 named: bool = True):
        self.sock = sock
        self.tls = tls
        self.want_write = False  # TLS handshake waiting to write
        self.address = address
        # host:port as logs show the peer. Made up front when `named` (the connection log is
        # on: its lines name the peer); else None, and a line written with that log off (an
        # error's) asks peer_name().
        self.peer: str | None = format_peer(address) if named else None
        self.host = peer_host(address)
        self.proto = proto
        # The exchange being sent (it owns its file and cursor), or None.
        self.exchange: Exchange | None = None
        self.mask = READ
        # The timer queue armed, and the progress it was armed at: requests served and bytes of
        # the exchange sent (see _settle).
        self.queue: DeadlineQueue | None = None
        self.armed_served = 0
        self.armed_sent = 0
        self.outbox: bytes | None = None  # --live-reload: a stream's bytes not yet sent

    def peer_name(self) -> str:
        """host:port as logs show the peer, whether or not the connection log is on."""
        peer = self.peer
        if peer is None:
            peer = self.peer = format_peer(self.address)
        return peer


def peer_bytes_waiting(conn: Conn) -> bool:
    """True if the peer has sent bytes (or its close, or an error is pending) that nobody has
    read yet: in the TLS layer, or in the kernel (a peek on the non-blocking socket)."""
    sock = conn.sock
    if conn.tls and cast(ssl.SSLSocket, sock).pending():
        return True
    try:
        _socket.socket.recv(sock, 1, PEEK)  # the raw socket's, also under TLS
    except WOULD_BLOCK:
        return False
    except OSError:
        return True  # the next read reports it
    return True


class Reactor(EngineBase):
    """The readiness loop serving one or more listening sockets (HTTP and HTTPS)."""

    def __init__(self, config, site, logs, listener, heartbeat=None):
        self.config = config
        # Called about once a second while the loop turns (the supervisor's liveness check).
        self.heartbeat = heartbeat
        self.next_heartbeat = 0.0
        self.site = site
        self.logs = logs
        self.clog = ConnectionLog(logs, "New connection from")
        # Whether a finished exchange writes any log line (checked once per response).
        self.logging = logs.access_enabled or logs.connection_enabled
        # Whether the connection log is on: only then are a connection's opened/closed lines,
        # their text and its peer's name made.
        self.connection_logging = logs.connection_enabled
        self.listeners = as_listeners(listener)
        self.parser = HeadParser(Limits.from_config(config), site)
        sending.use_sendfile(config.sendfile)  # --no-sendfile: file bodies read and sent
        self.stats = Stats(config, "reactor", self._connection_states,
                           compression=site.compression)
        # Requests answered in one loop turn share one `now` (a site made with single_thread
        # shares one stat per file per instant). Each turn's `now` is later than the last one's
        # (see _loop_once).
        self.instant = 0.0
        # Readiness: epoll itself on Linux (poller.py); register/modify/unregister by socket.
        self.selector = Poller()
        self.conns: set[Conn] = set()
        self.listening = False
        self.accept_paused_until = 0.0
        # Paused at the connection cap: when a connection may next have been quiet long enough
        # to make room (protocol.evict_min_idle), so the loop looks again then, not every turn.
        self.evict_ready_at = 0.0
        self.accept_errors = AcceptErrors()
        self.stop_requested = False
        self.stopping = False
        self.drain_deadline = 0.0
        # One deadline queue per kind of timer, and each state's queue, from protocol.STATES.
        by_timer = {timer: DeadlineQueue(timer.value, timer.seconds(config)) for timer in Timer}
        self.idle_queue = by_timer[Timer.IDLE]
        self.queue_for = {state: by_timer[facts.timer] for state, facts in STATES.items()
                          if facts.timer is not None}
        self.queues = list(by_timer.values())
        # Each waiting state's poller interest, from protocol.STATES (None: the handshake's).
        self.mask_for: dict[ConnState, int | None] = {
            state: INTEREST_MASKS[facts.interest] for state, facts in STATES.items()
            if facts.interest in INTEREST_MASKS}
        self._init_wakeup()
        self._init_streams(site.live)
        # --archives: connections whose producer made more since they waited for it (appended
        # on producer threads, taken by the loop after the wake-up socket rang).
        self.produced: collections.deque[Conn] = collections.deque()

    def _init_wakeup(self) -> None:
        """The socket pair through which signals, stop requests and live reload wake the loop."""
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        # Non-blocking from the start: request_stop() may come from any thread, with or
        # without signal handlers, and draining the wakeup bytes must never block the loop.
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._wakeup_installed = False

    def _init_streams(self, live) -> None:
        """--live-reload: the hub wakes the loop through the wake-up socket; open streams."""
        self.live = live
        # Open streams, oldest first (a dict as an ordered set): each change goes to all of
        # them, so they are in the order they were last quiet from (for eviction at the cap).
        self.streams: dict[Conn, None] = {}
        # Fan-outs in progress: [message, the streams it goes to, how many were served].
        self.fanouts: collections.deque = collections.deque()
        if live is not None:
            self.live_seq = live.seq
            self.next_beat = time.monotonic() + livereload.HEARTBEAT_INTERVAL
            live.add_listener(self._live_wake)

    def _connection_states(self):
        """The state of every live connection (for the status page, on demand only)."""
        return [conn.proto.state for conn in self.conns]

    # ---- lifecycle ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM request a graceful stop; the wakeup socket interrupts select()."""
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        self._wakeup_installed = True
        super().install_signal_handlers()

    def request_stop(self) -> None:
        """Ask the loop to stop gracefully (callable from another thread)."""
        self.stop_requested = True
        try:
            self._wakeup_w.send(b"\0")
        except OSError:
            pass

    def run(self) -> int:
        """Serve until stopped; return the exit status."""
        for listener in self.listeners:
            listener.sock.setblocking(False)
        self.selector.register(self._wakeup_r, READ, WAKEUP)
        self.logs.start()  # log output is written on the sink's thread, never on this one
        self._resume_accepting()
        try:
            while True:
                now = time.monotonic()
                if self.stop_requested and not self.stopping:
                    self._begin_stop(now)
                if self.stopping and (not self.conns or now >= self.drain_deadline):
                    break
                self._loop_once(now)
        finally:
            for conn in list(self.conns):
                self._close(conn, CloseReason.DRAIN)  # still busy when the drain bound ran out
            self._pause_accepting()
            for listener in self.listeners:
                listener.sock.close()
            self.selector.close()
            if self._wakeup_installed and threading.current_thread() is threading.main_thread():
                # Before the socket closes: a later signal must not write to a closed (or
                # reused) descriptor, which Python reports as an ignored exception.
                signal.set_wakeup_fd(-1)
                self._wakeup_installed = False
            self._wakeup_r.close()
            self._wakeup_w.close()
            self.logs.flush()
        return 0

    def _loop_once(self, now: float) -> None:
        """One select() and everything it woke, then timers."""
        events = self.selector.poll(self._wait_time(now))
        now = time.monotonic()
        if now <= self.instant:
            # Requests of one turn share `now` (and may share one stat): a clock too coarse to
            # tell two turns apart must not make them one instant.
            now = math.nextafter(self.instant, math.inf)
        self.instant = now
        data_for = self.selector.data
        handle = self._handle
        for fd, mask in events:
            data = data_for.get(fd)  # None: closed by an earlier event of this turn
            if type(data) is Conn:
                if mask != READ and mask != data.mask:
                    # an error or hang-up, or readiness beyond the interest: as `selectors`
                    # says it (plain readiness within the interest is already that)
                    mask = ready_mask(mask, data.mask)
                    if not mask:
                        if data.proto.state is AWAITING_BODY:
                            # No interest, yet a report: an error or hang-up. The peer is gone;
                            # waiting for the producer would only repeat this report.
                            self._abort(data, CloseReason.RESET)
                        continue
                handle(data, mask, now)
            elif data is WAKEUP:
                self._drain_wakeup()
            elif data is not None:
                self._accept(cast(Listener, data), now)
        for queue in self.queues:
            if queue.entries:
                for conn in queue.pop_expired(now):
                    conn.queue = None
                    self._on_timeout(conn, now)
        if self.heartbeat is not None and now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_INTERVAL
            self.heartbeat()
        if self.streams and now >= self.next_beat:
            self.next_beat = now + livereload.HEARTBEAT_INTERVAL
            self._stream_fanout(livereload.HEARTBEAT, now)
        elif self.fanouts:
            self._fanout_slice(now)
        if not self.listening and not self.stopping and now >= self.accept_paused_until and \
                (len(self.conns) < self.config.max_connections or
                 (now >= self.evict_ready_at and self._evictable(now) is not None)):
            self._resume_accepting()

    def _wait_time(self, now: float) -> float:
        """Seconds until the nearest deadline, capped by MAX_WAIT."""
        wait = MAX_WAIT
        for queue in self.queues:
            deadline = queue.next_deadline()
            if deadline is not None and deadline - now < wait:
                wait = deadline - now
        if self.fanouts:
            return 0.0  # a fan-out goes on in the next turn, after what is ready now
        if self.stopping:
            wait = min(wait, self.drain_deadline - now)
        if not self.listening:
            if self.accept_paused_until > now:
                wait = min(wait, self.accept_paused_until - now)
            elif self.evict_ready_at > now:
                wait = min(wait, self.evict_ready_at - now)
        return max(wait, 0.0)

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except OSError:
            pass
        if self.produced:
            self._resume_produced(time.monotonic())
        live = self.live
        if live is not None and live.seq != self.live_seq:
            self.live_seq, message = live.since(self.live_seq)
            if message:
                self._stream_fanout(message, time.monotonic())

    def _begin_stop(self, now: float) -> None:
        """Stop accepting; answer what has arrived; close idle connections; drain the rest."""
        self.stopping = True
        self.drain_deadline = now + self.config.drain_timeout
        # Connections the kernel already queued for us get their answer: with SO_REUSEPORT
        # workers, closing a listener would otherwise reset them.
        if self.listening:
            for listener in self.listeners:
                for _ in range(16):
                    before = len(self.conns)
                    self._accept(listener, now)
                    if len(self.conns) - before < ACCEPT_BATCH:
                        break
        self._pause_accepting()
        # Refuse new connections from now on (RFC 9112 section 9.6: a server stopping closes
        # gracefully); with inherited-socket workers this closes only our copy of the socket.
        for listener in self.listeners:
            listener.sock.close()
        self.logs.event("Stopping: no longer accepting connections")
        # An idle connection answered just before the stop waits only STOP_GRACE for a request
        # on its way; one idle for longer is closed, once what the kernel holds has been read.
        stop_queue = DeadlineQueue("stop", STOP_GRACE)
        self.queues.append(stop_queue)
        decisions = [(conn, conn.proto.begin_stop(now)) for conn in list(self.conns)]
        for conn, wait in decisions:
            if wait is None:
                continue  # it finishes what it is doing (or its first request), then closes
            if conn.proto.state is STREAMING:
                self._close(conn, CloseReason.STOP)  # a stream ends at once; the page reconnects
                continue
            # Bytes the kernel already holds are a request to answer (with Connection: close).
            self._handle(conn, READ, now)
            if conn in self.conns and conn.proto.state is ConnState.IDLE:
                if wait:
                    self._arm(conn, stop_queue, now)
                else:
                    self._close(conn, CloseReason.STOP)

    # ---- accepting ---------------------------------------------------------------------------

    def _resume_accepting(self) -> None:
        if not self.listening:
            for listener in self.listeners:
                self.selector.register(listener.sock, READ, listener)
            self.listening = True

    def _pause_accepting(self) -> None:
        if self.listening:
            for listener in self.listeners:
                self.selector.unregister(listener.sock)
            self.listening = False

    def _evictable(self, now: float) -> Conn | None:
        """The connection quiet longest, if it may be closed to admit a new one now.

        Candidates are the oldest idle keep-alive connection and the oldest event stream that
        the protocol lets go (HttpConnection.evictable_at) and nothing waits on: no byte of a
        next request in the kernel (a non-blocking peek), no message going out to a stream.
        With none, evict_ready_at says when to look again.
        """
        ready_at = now + evict_min_idle(self.config.keepalive_timeout)
        best = None
        best_since = now
        # While a change is being fanned out (over a few turns) no stream is quiet: each is
        # owed it, and one closed meanwhile would reconnect without it.
        streams = () if self.fanouts else itertools.islice(self.streams, EVICT_SCAN)
        for conns in (self.idle_queue.oldest(EVICT_SCAN), streams):
            for conn in conns:
                at = conn.proto.evictable_at()
                if at is None or conn.outbox:
                    continue
                if at > now:
                    ready_at = min(ready_at, at)
                    break  # the rest of this queue has been quiet for less time still
                if peer_bytes_waiting(conn):
                    continue  # its next request has arrived: it is answered, not closed
                since = cast(float, conn.proto.idle_since)
                if since < best_since:
                    best, best_since = conn, since
                break
        if best is None:
            self.evict_ready_at = ready_at
        return best

    def _accept(self, listener: Listener, now: float) -> None:
        """Accept a bounded batch of connections, until the backlog is empty or we are full."""
        limit = self.config.max_connections
        conns = self.conns
        tls = listener.tls is not None
        named = self.connection_logging
        for _ in range(ACCEPT_BATCH):
            victim = None
            if len(conns) >= limit:
                # At the cap: the connection quiet longest makes room (as nginx does, but
                # only one quiet for a while: see protocol.EVICT_MIN_IDLE), once a newcomer
                # is really there; with none, the kernel backlog holds the rest for now and
                # the listener is left alone until a slot frees or one has been quiet enough.
                victim = None if self.stopping else self._evictable(now)
                if victim is None:
                    self._pause_accepting()
                    return
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if self.accept_errors.must_pause(exc):
                    self._pause_accepting()
                    self.accept_paused_until = now + ACCEPT_PAUSE
                    return
                continue
            self.accept_errors.succeeded()
            if victim is not None:
                victim.proto.evict()
                self._close(victim, CloseReason.EVICTED)
            opened = open_connection(sock, address, listener, blocking=False, site=self.site,
                                     parser=self.parser, stats=self.stats)
            if opened is None:
                continue
            sock, proto = opened
            conn = Conn(sock, address, proto, tls, named)
            conns.add(conn)
            self.selector.register(sock, READ, conn)
            queue = conn.queue = self.queue_for[proto.state]  # no timer to disarm yet
            queue.arm(conn, now)
            if named:
                self.clog.opened(conn.peer)

    # ---- per-connection events ---------------------------------------------------------------

    def _handle(self, conn: Conn, mask: int, now: float) -> None:
        """Run one readiness event for a connection; any failure closes only this connection.

        The dominant event takes a short route: an idle plain-TCP connection receives exactly one
        known request (protocol.take_request), its answer (head and body in one object) goes out
        in one send, and the connection is idle again on the same timer queue with the same
        interest. Anything else (an answer in pieces, a partial send, at any step) continues on
        the general route with what has happened so far.
        """
        proto = conn.proto
        if mask == READ and proto.state is IDLE and not conn.tls:
            sock = conn.sock
            try:
                try:
                    data = sock.recv(RECV_SIZE)
                except WOULD_BLOCK:
                    return  # a spurious wake-up (or a read at a stop): nothing has changed
                exchange = proto.take_request(data, now) if data else None
                if exchange is None:
                    self._handle_data(conn, data, now)
                    return
                conn.exchange = exchange  # held before the first send
                if not exchange.plan.one_piece:  # head and body apart: sent piece by piece
                    self._advance(conn, now)
                else:
                    left = send_available(sock, exchange)
                    if left is not None:
                        conn.exchange = left  # the rest goes out when the socket is writable
                    elif self._complete(conn, exchange, now) is IDLE and \
                            conn.queue is self.idle_queue:
                        # A new request restarts the timer (_arm's work, for this case only).
                        self.idle_queue.arm(conn, now)
                        conn.armed_served = proto.requests_served
                        return
            except Exception as exc:  # the loop must outlive any one connection's failure
                self._fail(conn, exc)
                return
            self._settle(conn, now)
            return
        if mask == WRITE and proto.state is SENDING_BODY and self._send_slice(conn, now):
            return
        self._handle_general(conn, mask, now)

    def _send_slice(self, conn: Conn, now: float) -> bool:
        """A file body in progress, its socket writable: send one turn's slice of it.

        The other half of the short route, for the large-file event: one sendfile per ready
        connection per wake-up (sending.TURN_BUDGET), the send timer restarted on progress, no
        change of state or interest. False when the body's last slice is next (or over TLS):
        the general route sends it, completes the exchange and answers what is buffered.
        """
        exchange = conn.exchange
        if exchange is None or conn.tls:
            return False
        try:
            if not send_slice(conn.sock, exchange):
                return False
        except Exception as exc:  # the loop must outlive any one connection's failure
            self._fail(conn, exc)
            return True
        queue = conn.queue
        if queue is not None and exchange.sent != conn.armed_sent:
            queue.arm(conn, now)  # _settle's rule: the send timer restarts on progress
            conn.armed_sent = exchange.sent
        return True

    def _handle_data(self, conn: Conn, data: bytes, now: float) -> None:
        """An idle plain-TCP connection received `data` that took no short route."""
        proto = conn.proto
        try:
            proto.receive(data)
            if proto.state is CLOSED:
                self._close(conn, proto.close_reason)
                return
            self._advance(conn, now)
        except Exception as exc:
            self._fail(conn, exc)
            return
        self._settle(conn, now)

    def _fail(self, conn: Conn, exc: Exception) -> None:
        """A connection's I/O failed (or a bug surfaced): close it with the reason, log a bug."""
        reason = close_reason_for(exc)
        if reason is None:
            self.clog.crash(conn.peer_name(), exc)
            reason = CloseReason.ERROR
        self._abort(conn, reason)

    def _handle_general(self, conn: Conn, mask: int, now: float) -> None:
        """Any readiness event, in any state: the general route."""
        proto = conn.proto
        start_state = proto.state
        if start_state is STREAMING:
            self._stream_io(conn, mask, now)
            return
        try:
            if start_state is ConnState.HANDSHAKING:
                if not self._handshake(conn, now):
                    self._settle(conn, now)
                    return
                # The handshake is over: the next wait's timer starts now.
                self._arm(conn, self.queue_for[proto.state], now)
                # The request may have arrived with the client's Finished; a plain-HTTP client
                # has a 400 to be sent.
                mask = READ if proto.state is ConnState.IDLE else WRITE
            # Only a waiting-to-read state reads: epoll reports errors on a writing socket as
            # readable too, and its send then meets the error.
            if mask & READ and proto.state in READ_STATES:
                sock = conn.sock
                try:
                    data = sock.recv(RECV_SIZE)
                    if conn.tls and data:
                        # Decrypted bytes the SSL object holds do not make the socket readable.
                        while cast(ssl.SSLSocket, sock).pending():
                            data += sock.recv(RECV_SIZE)
                except WOULD_BLOCK:
                    data = None
                if data is not None:
                    # The common case by its shorter route (one whole known request), else the
                    # bytes go to the protocol's buffer.
                    exchange = proto.take_request(data, now) if start_state is IDLE else None
                    if exchange is not None:
                        conn.exchange = exchange
                    else:
                        proto.receive(data)  # in CLOSING it drains and counts lingering bytes
                        if proto.state is CLOSED:
                            self._close(conn, proto.close_reason)
                            return
                    self._advance(conn, now)
            elif mask & WRITE:
                self._advance(conn, now)
        except Exception as exc:  # the loop must outlive any one connection's failure or bug
            self._fail(conn, exc)
            return
        self._settle(conn, now)

    def _handshake(self, conn: Conn, now: float) -> bool:
        """One non-blocking TLS handshake step; True once the connection can move on."""
        try:
            step = handshake_step(cast(ssl.SSLSocket, conn.sock))
        except ssl.SSLError as exc:
            if not is_plaintext_on_tls(exc):
                raise
            # Plain HTTP on the HTTPS port: answer in plain text on the TCP socket underneath.
            self.selector.unregister(conn.sock)
            conn.sock = plain_socket(cast(ssl.SSLSocket, conn.sock))
            conn.tls = False
            self.selector.register(conn.sock, conn.mask, conn)
            self.clog.plaintext_on_tls(conn.peer)
            conn.exchange = conn.proto.plaintext_on_tls(now)
            return True
        if step == HANDSHAKE_DONE:
            conn.want_write = False
            conn.proto.handshake_done()
            return True
        if step == HANDSHAKE_EOF:
            conn.proto.receive(b"")  # the client closed: CLOSED, settled by the caller
            return False
        conn.want_write = step == HANDSHAKE_WRITE
        return False

    def _advance(self, conn: Conn, now: float) -> None:
        """Send what is pending, then answer buffered requests in order until we must wait."""
        proto = conn.proto
        sock = conn.sock
        while True:
            exchange = conn.exchange
            if exchange is None:
                exchange = proto.next_exchange(now)
                if proto.internal_error is not None:
                    exc, proto.internal_error = proto.internal_error, None
                    self.clog.internal_error(conn.peer_name(), exc)
                if exchange is None:
                    return
                # The connection owns the exchange (and any file it holds) before the first
                # send, so an error in that send still closes the file with the connection.
                conn.exchange = exchange
            if exchange.shared and not exchange.plan.one_piece:
                # Piece by piece: the connection's own copy holds the cursor as it moves.
                exchange = conn.exchange = exchange.own()
            left = send_available(sock, exchange, tls=conn.tls)
            first_region = exchange.plan.first_region
            if first_region >= 0 and proto.state is WRITING_HEAD and \
                    (left is None or left.index >= first_region):
                proto.head_sent()
            if left is not None:
                conn.exchange = left
                if left.index == first_region and \
                        type(left.plan.segments[first_region]) is ProducedBody:
                    self._await_producer(conn, left)
                return
            if self._complete(conn, exchange, now) is not READING_HEAD:
                return

    def _complete(self, conn: Conn, exchange: Exchange, now: float) -> ConnState:
        """An exchange is fully sent: log it, release its file, move the protocol on."""
        conn.exchange = None
        if exchange.fd is not None:
            exchange.close()
        if self.logging:
            self.clog.exchange(conn.peer, conn.host, exchange)
        proto = conn.proto
        state = proto.response_done(exchange.plan, now, exchange.sent)
        if state is CLOSING:
            if not proto.linger_wanted and not peer_bytes_waiting(conn):
                proto.close_at_once()  # the client asked to close and sent nothing more
                return CLOSED
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return state

    def _settle(self, conn: Conn, now: float) -> None:
        """After a handler: re-arm the state's timer and set selector interest if it changed.

        A new kind of wait or a new request starts its timer afresh. Otherwise: the header
        timer runs from a request's first byte to the end of its body (as in the threaded
        engine) and the linger timer from our close, so trickled bytes never extend them; the
        send timer restarts only when bytes actually went out since it was armed.
        """
        proto = conn.proto
        state = proto.state
        if state is CLOSED:
            self._close(conn, proto.close_reason)
            return
        if state is STREAMING:
            self._stream_settle(conn, now)
            return
        queue = self.queue_for[state]
        exchange = conn.exchange
        if queue is not conn.queue or proto.requests_served != conn.armed_served or \
                (exchange is not None and exchange.sent != conn.armed_sent and
                 state in SEND_TIMER_STATES):
            self._arm(conn, queue, now)
        mask = self.mask_for[state]
        if mask is None:  # a TLS handshake waits for what its last step asked
            mask = WRITE if conn.want_write else READ
        if mask != conn.mask:
            self.selector.modify(conn.sock, mask, conn)
            conn.mask = mask

    def _arm(self, conn: Conn, queue: DeadlineQueue, now: float) -> None:
        """(Re)start `queue`'s timer for `conn`, noting the progress it was armed at."""
        if conn.queue is not None and conn.queue is not queue:
            conn.queue.disarm(conn)
        queue.arm(conn, now)
        conn.queue = queue
        conn.armed_served = conn.proto.requests_served
        exchange = conn.exchange
        conn.armed_sent = exchange.sent if exchange is not None else 0

    def _on_timeout(self, conn: Conn, now: float) -> None:
        """A connection's timer expired: 408 for a half-read request, otherwise close.

        Guarded like every handler: a failure here closes this connection, never the loop.
        """
        proto = conn.proto
        try:
            exchange = proto.timeout(now)
            if exchange is None:
                self._close(conn, proto.close_reason)
                return
            self.clog.timed_out_head(conn.peer)
            conn.exchange = exchange
            self._advance(conn, now)
        except Exception as exc:
            self._fail(conn, exc)
            return
        self._settle(conn, now)

    # ---- --archives: produced bodies ----------------------------------------------------------

    def _await_producer(self, conn: Conn, exchange: Exchange) -> None:
        """A produced body is next and the socket took all there was: start its producer if it
        has none, and wait for it (no interest, AWAITING_BODY) unless it has made more."""
        feed = exchange.feed
        if feed is None:
            body = exchange.plan.segments[exchange.index]
            peer = conn.peer_name()
            feed = exchange.feed = archive.start_feed(
                body, lambda text: self.clog.left_out(peer, text), self.site.archive_slots)
        if feed.wait(lambda: self._producer_wake(conn)):
            conn.proto.body_starved()

    def _producer_wake(self, conn: Conn) -> None:
        """A producer made more for `conn` (on the producer's thread): wake the loop."""
        self.produced.append(conn)
        try:
            self._wakeup_w.send(b"\3")
        except OSError:
            pass  # full: the loop is already due to wake; closed: it has stopped

    def _resume_produced(self, now: float) -> None:
        """Send again on each connection whose producer woke the loop (if still waiting)."""
        produced = self.produced
        while produced:
            conn = produced.popleft()
            if conn in self.conns and conn.proto.state is AWAITING_BODY:
                try:
                    conn.proto.body_produced()
                except Exception as exc:
                    self._fail(conn, exc)
                    continue
                self._handle_general(conn, WRITE, now)

    # ---- --live-reload's event streams -------------------------------------------------------

    def _live_wake(self) -> None:
        """The hub published a change (on the watcher's thread): wake the loop."""
        try:
            self._wakeup_w.send(b"\1")
        except OSError:
            pass  # full: the loop is already due to wake; closed: it has stopped

    def _stream_settle(self, conn: Conn, now: float) -> None:
        """A stream's head is out: it waits for events with no timer, reading only for EOF."""
        if conn not in self.streams:
            self.streams[conn] = None
            cap_stream_buffer(conn.sock)
            if conn.queue is not None:
                conn.queue.disarm(conn)
                conn.queue = None
        mask = READ | WRITE if conn.outbox else READ
        if mask != conn.mask:
            self.selector.modify(conn.sock, mask, conn)
            conn.mask = mask

    def _stream_fanout(self, message: bytes, now: float) -> None:
        """Send `message` to every open stream, FANOUT_SLICE streams per loop turn."""
        self.fanouts.append([message, list(self.streams), 0])
        if len(self.fanouts) == 1:
            self._fanout_slice(now)

    def _fanout_slice(self, now: float) -> None:
        """The next slice of the oldest fan-out: queue the message, send what each takes."""
        fanout = self.fanouts[0]
        message, conns, start = fanout
        end = fanout[2] = start + FANOUT_SLICE
        if end >= len(conns):
            self.fanouts.popleft()
        streams = self.streams
        for conn in conns[start:end]:
            if conn not in streams:
                continue  # closed since the change
            outbox = conn.outbox
            conn.outbox = outbox + message if outbox else message
            try:
                # A change (not a heartbeat) restarts the stream's quiet time (eviction).
                conn.proto.notify(len(conn.outbox),
                                  None if message is livereload.HEARTBEAT else now)
                if conn.proto.state is CLOSED:
                    self._close(conn, conn.proto.close_reason)
                elif not outbox:  # nothing was waiting: try at once
                    self._stream_flush(conn, now)
            except Exception as exc:
                self._fail(conn, exc)

    def _stream_io(self, conn: Conn, mask: int, now: float) -> None:
        """A stream's socket is ready: read (EOF ends it; bytes are dropped), send the rest."""
        proto = conn.proto
        try:
            if mask & READ:
                try:
                    data = conn.sock.recv(RECV_SIZE)
                except WOULD_BLOCK:
                    data = None
                if data is not None:
                    proto.receive(data)
                    if proto.state is CLOSED:
                        self._close(conn, proto.close_reason)
                        return
            if conn.outbox:
                self._stream_flush(conn, now)
        except Exception as exc:
            self._fail(conn, exc)

    def _stream_flush(self, conn: Conn, now: float) -> None:
        """Send what the socket takes; the send timer runs while bytes remain, from progress."""
        data = conn.outbox
        assert data is not None  # callers flush only a stream with bytes queued
        try:
            sent = conn.sock.send(data)
        except WOULD_BLOCK:
            sent = 0
        if sent == len(data):
            conn.outbox = None
            if conn.queue is not None:
                conn.queue.disarm(conn)
                conn.queue = None
        else:
            if sent:
                conn.outbox = data[sent:]
            if sent or conn.queue is None:
                self._arm(conn, self.queue_for[STREAMING], now)
        self._stream_settle(conn, now)

    # ---- closing -----------------------------------------------------------------------------

    def _abort(self, conn: Conn, reason: CloseReason) -> None:
        conn.proto.abort(reason)
        self._close(conn, conn.proto.close_reason)

    def _close(self, conn: Conn, reason: CloseReason | None) -> None:
        """Unregister and close a connection, its file, and its timer: exactly once.

        A response cut short (reset, send timeout, the drain bound) still gets its access
        line, with the body bytes that went out.
        """
        try:
            self.conns.remove(conn)
        except KeyError:
            return  # closed already
        if self.streams:
            self.streams.pop(conn, None)
        conn.outbox = None
        if conn.queue is not None:
            conn.queue.disarm(conn)
            conn.queue = None
        proto = conn.proto
        if proto.state is not ConnState.CLOSED:
            proto.abort(reason or CloseReason.CLOSE)
        exchange = conn.exchange
        if exchange is not None:
            conn.exchange = None
            self.clog.cut(conn.peer, conn.host, exchange,
                          reason.value if reason is not None else proto.close_reason_text)
            exchange.close()
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if self.connection_logging:
            self.clog.closed(conn.peer, proto.close_reason_text)
