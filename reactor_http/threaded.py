"""The threaded engine: one thread per connection on a blocking socket, as the original did.

It exists to be compared with the reactor, so it shares everything but the I/O: the same
`HttpConnection` state machine, parser, responder and plans, and `sending.send_blocking`.
Threads are bounded by `max_threads`: the acceptor takes a slot before it accepts, so overload
waits in the kernel backlog instead of exhausting memory.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import threading
import time
import traceback

from . import sending
from .logs import escape
from .parser import Limits
from .protocol import ConnState, HeadParser, HttpConnection
from .stats import LockedStats
from .reactor import (ACCEPT_PAUSE, CONNECTION_ACCEPT_ERRORS, LINGER_MAX_BYTES, LINGER_TIMEOUT,
                      RECV_SIZE, as_listeners, format_peer)

log = logging.getLogger("reactor_http")

# How often the acceptor looks up from accept() to notice a stop request (seconds).
POLL_INTERVAL = 0.2


class ThreadedServer:
    """Accept on a blocking socket and hand each connection to its own thread."""

    def __init__(self, config, site, logs, listener):
        self.config = config
        self.site = site
        self.logs = logs
        self.listeners = as_listeners(listener)
        self.parser = HeadParser(Limits.from_config(config))
        self.stats = LockedStats(config, "threaded", self._connection_states)
        self.slots = threading.BoundedSemaphore(config.max_threads)
        self.stop_event = threading.Event()
        # Set by the signal handler, which must take no lock: Event.set() takes one, and a second
        # SIGTERM arriving inside the first handler's set() deadlocked the main thread.
        self.stop_requested = False
        self.accept_error_logged = False
        self.active: dict[socket.socket, HttpConnection] = {}
        self.active_lock = threading.Lock()

    def _connection_states(self):
        """The state of every live connection (for the status page, on demand only)."""
        with self.active_lock:
            return [proto.state for proto in self.active.values()]

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM set a flag that the acceptor loop (awake every POLL_INTERVAL) reads."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = True

    def request_stop(self) -> None:
        """Ask the server to stop gracefully (from any thread, not from a signal handler)."""
        self.stop_requested = True
        self.stop_event.set()

    def run(self) -> int:
        """Accept until stopped, then drain; return the exit status."""
        self.logs.start()  # the sink's writer thread writes the logs out
        waiter = selectors.DefaultSelector()
        for listener in self.listeners:
            listener.sock.setblocking(False)
            waiter.register(listener.sock, selectors.EVENT_READ, listener)
        try:
            while not self.stop_requested:
                if not self.slots.acquire(timeout=POLL_INTERVAL):
                    continue  # all threads busy: new connections wait in the backlog
                if not self._accept_one(waiter):
                    self.slots.release()
        finally:
            self.stop_event.set()  # connection threads see it from here on
            waiter.close()
            for listener in self.listeners:
                listener.sock.close()
            self._drain()
            self.logs.flush()
        return 0

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
                if exc.errno in CONNECTION_ACCEPT_ERRORS:
                    continue  # one connection's error, which accept(2) says to treat as EAGAIN
                if not self.accept_error_logged:  # once, until an accept succeeds again
                    log.warning("accept failed (%s): pausing accepts for %.1f s",
                                exc.strerror, ACCEPT_PAUSE)
                    self.accept_error_logged = True
                self.stop_event.wait(ACCEPT_PAUSE)
                return False
            self.accept_error_logged = False
            sock.setblocking(True)
            thread = threading.Thread(target=self._serve_connection,
                                      args=(sock, address, listener.tls),
                                      name=f"conn-{format_peer(address)}", daemon=True)
            thread.start()
            return True
        return False

    def _drain(self) -> None:
        """Stop: wake idle keep-alive connections so they close; the rest finish within the bound.

        A fresh connection (nothing served yet) is not idle: its request is on its way, and it
        is answered with Connection: close. Only the read side is shut, so a request that raced
        in after the state was read still gets its response written.
        """
        self.logs.event("Stopping: no longer accepting connections")
        deadline = time.monotonic() + self.config.drain_timeout
        with self.active_lock:
            for proto in self.active.values():
                proto.draining = True
        while time.monotonic() < deadline:
            with self.active_lock:
                if not self.active:
                    return
                for sock, proto in self.active.items():
                    if proto.state is ConnState.IDLE and proto.requests_served:
                        _shutdown_quietly(sock, socket.SHUT_RD)
            time.sleep(0.05)

    def _serve_connection(self, sock: socket.socket, address, tls=None) -> None:
        """One connection's whole life, on this thread."""
        peer = format_peer(address)
        if tls is not None:
            # The handshake, on this thread, bounded like a request head (slowloris guard).
            sock.settimeout(self.config.header_timeout)
            try:
                sock = tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError):
                sock.close()
                self.slots.release()
                return
        proto = HttpConnection(self.site, parser=self.parser, stats=self.stats,
                               peer=address[0] if isinstance(address, tuple) else "")
        with self.active_lock:
            self.active[sock] = proto
        if self.logs.connection_enabled:
            self.logs.event(f"[+] New thread started for {peer}")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._converse(sock, proto, peer)
        except sending.FileShrank as exc:
            log.warning("%s: %s; closing the connection", peer, exc)
            proto.abort("error")
        except (TimeoutError, socket.timeout):
            proto.abort("send")
        except (ConnectionError, OSError):
            proto.abort("reset")
        except Exception as exc:
            log.error("unexpected error on connection %s; closing it:\n%s", peer,
                      "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            proto.abort("error")
        finally:
            with self.active_lock:
                self.active.pop(sock, None)
            sock.close()
            if self.logs.connection_enabled:
                self.logs.event(f"[-] Disconnected {peer}, killing thread "
                                f"({proto.close_reason_text})")
            self.slots.release()

    def _converse(self, sock: socket.socket, proto: HttpConnection, peer: str) -> None:
        """Read requests and send responses until the protocol says the connection ends."""
        config = self.config
        head_deadline = 0.0
        while True:
            if self.stop_event.is_set() and proto.state is ConnState.IDLE and \
                    proto.requests_served:
                proto.abort("stop")
                return
            # Timers: idle wait, or what is left of the head deadline (slowloris guard).
            if proto.state is ConnState.IDLE:
                sock.settimeout(config.keepalive_timeout)
            else:
                sock.settimeout(max(head_deadline - time.monotonic(), 0.001))
            try:
                data = sock.recv(RECV_SIZE)
            except (TimeoutError, socket.timeout):
                plan = proto.timeout(time.monotonic())
                if plan is not None:
                    self._send(sock, proto, plan, peer)
                    self._linger(sock)
                return
            was_idle = proto.state is ConnState.IDLE
            proto.receive(data)
            if proto.state is ConnState.CLOSED:
                return
            if was_idle:
                head_deadline = time.monotonic() + config.header_timeout
            while True:
                plan = proto.next_plan(time.monotonic())
                if proto.internal_error is not None:
                    exc, proto.internal_error = proto.internal_error, None
                    log.error("error while answering %s (sent 500):\n%s", peer,
                              "".join(traceback.format_exception(type(exc), exc,
                                                                 exc.__traceback__)))
                if plan is None:
                    break
                state = self._send(sock, proto, plan, peer)
                if state is ConnState.CLOSING:
                    self._linger(sock)
                    return
                if state is ConnState.READING_HEAD:
                    head_deadline = time.monotonic() + config.header_timeout
                else:
                    break

    def _send(self, sock: socket.socket, proto: HttpConnection, plan, peer: str):
        """Send a plan with the send timeout; log it; return the protocol's next state."""
        sock.settimeout(self.config.send_timeout)
        try:
            sending.send_blocking(sock, plan, on_head_sent=proto.head_sent)
        finally:
            plan.close()
        exchange = proto.exchange
        self.logs.access(exchange.client or peer.rsplit(":", 1)[0].strip("[]"),
                         exchange.request_line,
                         exchange.status, exchange.body_length)
        if self.logs.connection_enabled:
            self.logs.event(f'{peer} "{escape(exchange.request_line)}" -> {exchange.status}')
        return proto.response_done(plan)

    def _linger(self, sock: socket.socket) -> None:
        """Half-close and drain briefly so the peer reads our last response, not a reset."""
        _shutdown_quietly(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_TIMEOUT
        drained = 0
        try:
            while drained <= LINGER_MAX_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                sock.settimeout(remaining)
                data = sock.recv(RECV_SIZE)
                if not data:
                    return
                drained += len(data)
        except OSError:
            return


def _shutdown_quietly(sock: socket.socket, how: int) -> None:
    """shutdown(2) on the raw socket, ignoring errors.

    The base-class method on purpose: SSLSocket.shutdown() also drops the TLS state, after
    which a response written by the connection's thread would go out in clear text.
    """
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass
