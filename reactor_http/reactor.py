"""The reactor: one thread, one selector, many connections, no blocking call on a socket.

Owns the socket side of the state machine in protocol.py: accepting in bounded batches, reading,
sending plans (try the syscall first, wait for writability only on EAGAIN), selector interest
derived from the protocol state and changed only when it differs, one deadline queue per timeout
kind, half-close and linger, and the graceful stop. Semantics live in protocol/responder.
"""

from __future__ import annotations

import errno
import logging
import selectors
import signal
import socket
import ssl
import time
import traceback

from . import sending
from .deadlines import DeadlineQueue
from .logs import escape
from .protocol import READ_STATES, WRITE_STATES, ConnState, HeadParser, HttpConnection
from .parser import Limits
from .stats import Stats

log = logging.getLogger("reactor_http")

# Bytes asked of one recv: a request head fits many times over (nginx reads 1 KiB, then 8 KiB).
RECV_SIZE = 65536
# Connections accepted per readiness event, so one burst cannot starve established clients.
ACCEPT_BATCH = 64
# After EMFILE/ENFILE (or any error that may repeat) on accept, stop accepting this long
# (seconds) instead of spinning.
ACCEPT_PAUSE = 0.5
# accept() errors that belong to one connection only: accept(2) passes a new connection's
# pending network error through and says to treat it like EAGAIN, so we skip that connection.
CONNECTION_ACCEPT_ERRORS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
    errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH})
# After our last response, wait this long (seconds) for the peer to close before we do, so it
# reads our answer instead of a reset (the "lingering close" of Apache and nginx).
LINGER_TIMEOUT = 2.0
# Bytes we read and drop while lingering before giving up on a chatty peer.
LINGER_MAX_BYTES = 256 * 1024
# Longest select() wait (seconds): the loop re-checks its flags at least this often.
MAX_WAIT = 1.0
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Conn:
    """The reactor's view of one client: its socket, protocol state, plan in progress, timer."""

    __slots__ = ("sock", "peer", "host", "proto", "plan", "cursor", "mask", "queue", "lingered",
                 "tls", "want_write")

    def __init__(self, sock: socket.socket, address, proto: HttpConnection, tls: bool = False):
        self.sock = sock
        self.tls = tls
        self.want_write = False  # TLS handshake waiting to write
        self.peer = format_peer(address)
        self.host = address[0] if isinstance(address, tuple) else str(address)
        self.proto = proto
        self.plan = None
        self.cursor = None
        self.mask = READ
        self.queue: DeadlineQueue | None = None
        self.lingered = 0


def format_peer(address) -> str:
    """host:port for IPv4, [host]:port for IPv6, as logs show a peer."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


class Listener:
    """A listening socket and, for HTTPS, the TLS context its connections are wrapped in."""

    __slots__ = ("sock", "tls")

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None):
        self.sock = sock
        self.tls = tls


def as_listeners(listener) -> list[Listener]:
    """Accept one socket, or a list of sockets / (socket, ssl_context) pairs."""
    if isinstance(listener, socket.socket):
        return [Listener(listener)]
    result = []
    for item in listener:
        if isinstance(item, Listener):
            result.append(item)
        elif isinstance(item, tuple):
            result.append(Listener(*item))
        else:
            result.append(Listener(item))
    return result


class Reactor:
    """The selectors loop serving one or more listening sockets (HTTP and HTTPS)."""

    def __init__(self, config, site, logs, listener):
        self.config = config
        self.site = site
        self.logs = logs
        self.listeners = as_listeners(listener)
        self.parser = HeadParser(Limits.from_config(config))
        self.stats = Stats(config, "reactor", self._connection_states)
        self.selector = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        self.listening = False
        self.accept_paused_until = 0.0
        # An accept error was logged; quiet until an accept succeeds.
        self.accept_error_logged = False
        self.stop_requested = False
        self.stopping = False
        self.drain_deadline = 0.0
        header = DeadlineQueue("header", config.header_timeout)
        send = DeadlineQueue("send", config.send_timeout)
        self.queue_for = {
            ConnState.HANDSHAKING: header,  # a TLS handshake must finish as fast as a head
            ConnState.IDLE: DeadlineQueue("idle", config.keepalive_timeout),
            ConnState.READING_HEAD: header,
            ConnState.READING_BODY: header,
            ConnState.WRITING_HEAD: send,
            ConnState.SENDING_BODY: send,
            ConnState.CLOSING: DeadlineQueue("linger", LINGER_TIMEOUT),
        }
        self.queues = list({id(q): q for q in self.queue_for.values()}.values())
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        # Non-blocking from the start: request_stop() may come from any thread, with or
        # without signal handlers, and draining the wakeup bytes must never block the loop.
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)

    def _connection_states(self):
        """The state of every live connection (for the status page, on demand only)."""
        return [conn.proto.state for conn in self.conns]

    # ---- lifecycle ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM request a graceful stop; the wakeup socket interrupts select()."""
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = True

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
        self.selector.register(self._wakeup_r, READ, None)
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
                self._close(conn, "stop")
            self._pause_accepting()
            for listener in self.listeners:
                listener.sock.close()
            self.selector.close()
            self._wakeup_r.close()
            self._wakeup_w.close()
            self.logs.flush()
        return 0

    def _loop_once(self, now: float) -> None:
        """One select() and everything it woke, then timers."""
        events = self.selector.select(self._wait_time(now))
        now = time.monotonic()
        for key, mask in events:
            data = key.data
            if type(data) is Conn:
                self._handle(data, mask, now)
            elif data is None:
                self._drain_wakeup()
            else:
                self._accept(data, now)
        for queue in self.queues:
            if len(queue):
                for conn in queue.pop_expired(now):
                    conn.queue = None
                    self._on_timeout(conn, now)
        if not self.listening and not self.stopping and now >= self.accept_paused_until and \
                len(self.conns) < self.config.max_connections:
            self._resume_accepting()

    def _wait_time(self, now: float) -> float:
        """Seconds until the nearest deadline, capped by MAX_WAIT."""
        wait = MAX_WAIT
        for queue in self.queues:
            deadline = queue.next_deadline()
            if deadline is not None and deadline - now < wait:
                wait = deadline - now
        if self.stopping:
            wait = min(wait, self.drain_deadline - now)
        if not self.listening and self.accept_paused_until > now:
            wait = min(wait, self.accept_paused_until - now)
        return max(wait, 0.0)

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except OSError:
            pass

    def _begin_stop(self, now: float) -> None:
        """Stop accepting, drop idle connections, give in-flight ones the drain bound."""
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
        for conn in list(self.conns):
            conn.proto.draining = True
        for conn in list(self.conns):
            if conn.proto.state is ConnState.IDLE:
                # A request may be waiting unread (a fresh connection always has one coming):
                # read first, and close only connections with nothing to answer.
                self._handle(conn, READ, now)
                if conn in self.conns and conn.proto.state is ConnState.IDLE and \
                        conn.proto.requests_served > 0:
                    conn.proto.abort("stop")
                    self._close(conn, "stop")

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

    def _accept(self, listener: Listener, now: float) -> None:
        """Accept a bounded batch of connections, until the backlog is empty or we are full."""
        limit = self.config.max_connections
        for _ in range(ACCEPT_BATCH):
            if len(self.conns) >= limit:
                self._pause_accepting()  # the kernel backlog holds the rest until a slot frees
                return
            try:
                sock, address = listener.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in CONNECTION_ACCEPT_ERRORS:
                    continue  # one connection's error, which accept(2) says to treat as EAGAIN
                # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or an error
                # that may repeat on every call (EINVAL, EBADF): pause briefly, never spin.
                if not self.accept_error_logged:
                    log.warning("accept failed (%s): pausing accepts for %.1f s",
                                exc.strerror, ACCEPT_PAUSE)
                    self.accept_error_logged = True
                self._pause_accepting()
                self.accept_paused_until = now + ACCEPT_PAUSE
                return
            self.accept_error_logged = False
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if listener.tls is not None:
                try:
                    sock = listener.tls.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
            proto = HttpConnection(self.site, parser=self.parser, tls=listener.tls is not None,
                                   stats=self.stats, peer=address[0])
            conn = Conn(sock, address, proto, listener.tls is not None)
            self.conns.add(conn)
            self.selector.register(sock, READ, conn)
            self._arm(conn, self.queue_for[proto.state], now)
            if self.logs.connection_enabled:
                self.logs.event(f"[+] New connection from {conn.peer}")

    # ---- per-connection events ---------------------------------------------------------------

    def _handle(self, conn: Conn, mask: int, now: float) -> None:
        """Run one readiness event for a connection; any failure closes only this connection."""
        proto = conn.proto
        start_state = proto.state
        start_served = proto.requests_served
        start_sent = conn.cursor.sent if conn.cursor is not None else -1
        try:
            if start_state is ConnState.HANDSHAKING:
                self._handshake(conn)
                if proto.state is ConnState.HANDSHAKING:
                    self._settle(conn, now, start_state, start_served, start_sent)
                    return
                mask = READ  # the request may have arrived with the client's Finished
            if mask & READ:
                if not self._read(conn, now):
                    return
            if mask & WRITE or (mask & READ and proto.state in READ_STATES):
                self._advance(conn, now)
        except sending.PEER_GONE:
            self._abort(conn, "reset")
            return
        except ssl.SSLError:
            # A client that cannot speak TLS (or speaks plain HTTP to the HTTPS port).
            self._abort(conn, "tls")
            return
        except sending.FileShrank as exc:
            log.warning("%s: %s; closing the connection", conn.peer, exc)
            self._abort(conn, "error")
            return
        except OSError as exc:
            if exc.errno in sending.PEER_GONE_ERRNOS:
                self._abort(conn, "reset")
                return
            self._crash(conn, exc)
            return
        except Exception as exc:  # the loop must outlive any one connection's bug
            self._crash(conn, exc)
            return
        self._settle(conn, now, start_state, start_served, start_sent)

    def _handshake(self, conn: Conn) -> None:
        """One non-blocking step of the TLS handshake; interest follows what it waits for."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.want_write = False
            return
        except ssl.SSLWantWriteError:
            conn.want_write = True
            return
        conn.want_write = False
        conn.proto.handshake_done()

    def _read(self, conn: Conn, now: float) -> bool:
        """recv once into the protocol; False if the connection is gone."""
        sock = conn.sock
        try:
            data = sock.recv(RECV_SIZE)
            if conn.tls and data:
                # Decrypted bytes the SSL object holds do not make the socket readable again.
                while sock.pending():
                    data += sock.recv(RECV_SIZE)
        except sending.WOULD_BLOCK:
            return True
        proto = conn.proto
        if proto.state is ConnState.CLOSING:
            conn.lingered += len(data)
            if not data or conn.lingered > LINGER_MAX_BYTES:
                proto.abort("close")
                self._close(conn, proto.close_reason)
                return False
            return True
        proto.receive(data)
        if proto.state is ConnState.CLOSED:
            self._close(conn, proto.close_reason)
            return False
        return True

    def _advance(self, conn: Conn, now: float) -> None:
        """Send what is pending, then answer buffered requests in order until we must wait."""
        proto = conn.proto
        sock = conn.sock
        while True:
            plan = conn.plan
            if plan is None:
                plan = proto.next_plan(now)
                if proto.internal_error is not None:
                    self._log_internal_error(conn)
                if plan is None:
                    return
                # The connection owns the plan (and any file it holds) before the first send,
                # so an error in that send still closes the file with the connection.
                conn.plan = plan
                conn.cursor = sending.Cursor()
            done = sending.send_available(sock, plan, conn.cursor, tls=conn.tls)
            if plan.first_region >= 0 and proto.state is ConnState.WRITING_HEAD and \
                    conn.cursor.index >= plan.first_region:
                proto.head_sent()
            if not done:
                return
            self._complete(conn, plan)
            if proto.state is not ConnState.READING_HEAD:
                return

    def _complete(self, conn: Conn, plan) -> None:
        """A plan is fully sent: log it, release its file, move the protocol on."""
        conn.plan = None
        conn.cursor = None
        plan.close()
        proto = conn.proto
        exchange = proto.exchange
        logs = self.logs
        if logs.access_enabled:
            logs.access(exchange.client or conn.host, exchange.request_line, exchange.status,
                        exchange.body_length)
        if logs.connection_enabled:
            self.logs.event(f"{conn.peer} \"{escape(exchange.request_line)}\" -> "
                            f"{exchange.status}")
        if proto.response_done(plan) is ConnState.CLOSING:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _settle(self, conn: Conn, now: float, start_state, start_served: int,
                start_sent: int) -> None:
        """After a handler: re-arm the state's timer and set selector interest if it changed."""
        state = conn.proto.state
        if state is ConnState.CLOSED:
            self._close(conn, conn.proto.close_reason)
            return
        queue = self.queue_for[state]
        # A new kind of wait or a new request starts its timer afresh. Otherwise: the header
        # timer runs from a request's first byte to the end of its body (as in the threaded
        # engine) and the linger timer from our close, so trickled bytes never extend them;
        # the send timer restarts only when bytes actually went out.
        if queue is not conn.queue or conn.proto.requests_served != start_served or \
                (start_state is ConnState.HANDSHAKING and state is not start_state):
            self._arm(conn, queue, now)
        elif state in WRITE_STATES:
            if conn.cursor is not None and conn.cursor.sent != start_sent:
                self._arm(conn, queue, now)
        if state is ConnState.HANDSHAKING:
            mask = WRITE if conn.want_write else READ
        else:
            mask = READ if state in READ_STATES else WRITE
        if mask != conn.mask:
            self.selector.modify(conn.sock, mask, conn)
            conn.mask = mask

    def _arm(self, conn: Conn, queue: DeadlineQueue, now: float) -> None:
        if conn.queue is not None and conn.queue is not queue:
            conn.queue.disarm(conn)
        queue.arm(conn, now)
        conn.queue = queue

    def _on_timeout(self, conn: Conn, now: float) -> None:
        """A connection's timer expired: 408 for a half-read request, otherwise close."""
        proto = conn.proto
        if conn.plan is not None:
            conn.plan.close()
            conn.plan = None
        start_state = proto.state
        plan = proto.timeout(now)
        if plan is None:
            self._close(conn, proto.close_reason)
            return
        if self.logs.connection_enabled:
            self.logs.event(f"{conn.peer} request head not complete in time -> 408")
        conn.plan = plan
        conn.cursor = sending.Cursor()
        try:
            self._advance(conn, now)
        except (OSError, sending.FileShrank):
            self._abort(conn, "reset")
            return
        self._settle(conn, now, start_state, -1, -1)

    # ---- closing -----------------------------------------------------------------------------

    def _abort(self, conn: Conn, reason: str) -> None:
        conn.proto.abort(reason)
        self._close(conn, conn.proto.close_reason)

    def _crash(self, conn: Conn, exc: BaseException) -> None:
        log.error("unexpected error on connection %s; closing it:\n%s", conn.peer,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        self._abort(conn, "error")

    def _log_internal_error(self, conn: Conn) -> None:
        exc = conn.proto.internal_error
        conn.proto.internal_error = None
        log.error("error while answering %s (sent 500):\n%s", conn.peer,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def _close(self, conn: Conn, reason: str) -> None:
        """Unregister and close a connection, its file, and its timer: exactly once."""
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        if conn.queue is not None:
            conn.queue.disarm(conn)
            conn.queue = None
        if conn.plan is not None:
            conn.plan.close()
            conn.plan = None
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn.proto.state is not ConnState.CLOSED:
            conn.proto.abort(reason or "close")
        if self.logs.connection_enabled:
            self.logs.event(f"[-] Disconnected {conn.peer} "
                            f"({conn.proto.close_reason_text})")
