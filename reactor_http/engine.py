"""The engine layer: what both I/O drivers (reactor.py, threaded.py) do the same way.

Owns the socket-side policies that do not depend on the I/O model: listening sockets and their TLS
contexts, how an accepted socket is prepared, which accept() errors skip one connection and which
pause accepting (logged once), one TLS handshake step and what a plain-HTTP client on the HTTPS
port is told, how a failed connection's exception becomes a close reason, and every log line an
engine writes about a connection (opened, exchange done, exchange cut short, closed, errors).

Must not decide HTTP semantics or move the state machine: that is protocol.py's. Neither engine
imports the other; both import this.
"""

from __future__ import annotations

import logging
import signal
import socket
import _socket
import ssl
import traceback
from typing import cast

from . import sending
from .facilities import errno_codes, stop_signals
from .livereload import STREAM_SNDBUF
from .logs import clf_prefix, clf_tail, escape
from .messages import Exchange, ResponsePlan
from .protocol import CloseReason, HttpConnection

log = logging.getLogger("reactor_http")

# Bytes asked of one recv: a request head fits many times over (nginx reads 1 KiB, then 8 KiB).
RECV_SIZE = 65536
# After EMFILE/ENFILE (or any accept error that may repeat) stop accepting this long (seconds)
# instead of spinning on the same error.
ACCEPT_PAUSE = 0.5
# accept() errors that belong to one connection only: accept(2) passes a new connection's
# pending network error through and says to treat it like EAGAIN, so we skip that connection.
# (Those this platform defines: ENONET is Linux's alone.)
CONNECTION_ACCEPT_ERRORS = errno_codes(
    "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH")
# Access-line prefixes remembered, one per client address, before the cache starts over.
PREFIX_CACHE_ENTRIES = 4096
# Access-line tails remembered for replayed plans (entries), before the cache starts over. A
# plan holds its rendered answer (at most a 64 KiB body), so this bounds what the cache keeps
# alive to about 16 MiB.
TAIL_CACHE_ENTRIES = 256
# OpenSSL's reasons for a handshake that began with a plain HTTP request (nginx answers 497).
PLAINTEXT_REASONS = frozenset({"HTTP_REQUEST", "HTTPS_PROXY_REQUEST"})


class Listener:
    """A listening socket and, for HTTPS, the TLS context its connections are wrapped in."""

    __slots__ = ("sock", "tls", "_kind", "_socket_type")

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None):
        self.sock = sock
        self.tls = tls
        try:  # accepted sockets inherit it where the kernel allows (Linux): see prepare_accepted
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        # (family, type, proto) for accept(), read once: socket.accept() reads the family and
        # type properties on every call, each an int-to-enum conversion (about 1.6 us per
        # connection together). None: not a plain socket.socket, whose own accept() is used.
        self._kind = (sock.family, sock.type, sock.proto) if type(sock) is socket.socket \
            else None
        # What an accepted connection's socket is. Plain TCP: the C socket type itself, which
        # socket.socket only wraps in Python (its __init__ and close() wrappers cost about
        # 0.5 us per connection) and which has every method an engine calls on a connection
        # (recv, send, sendmsg, sendall, shutdown, fileno, setblocking, settimeout, close).
        # TLS: socket.socket, which SSLContext.wrap_socket needs.
        self._socket_type = socket.socket if tls is not None else _socket.socket

    def accept(self) -> tuple[_socket.socket, object]:
        """The listening socket's accept(): a connection's socket and its address."""
        kind = self._kind
        if kind is None:
            return self.sock.accept()
        # socket.socket._accept: the C accept(2) wrapper socket.accept() itself calls.
        fd, address = self.sock._accept()  # type: ignore[attr-defined]
        # socket.accept() would also make the new socket blocking for a listener with a
        # timeout when there is no default timeout; prepare_accepted sets the mode anyway.
        return self._socket_type(*kind, fileno=fd), address


def as_listeners(listener) -> list[Listener]:
    """Accept one socket, or a list of sockets / (socket, ssl_context) pairs / Listeners."""
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


def format_peer(address) -> str:
    """host:port for IPv4, [host]:port for IPv6, as logs show a peer."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def peer_host(address) -> str:
    """The peer's address without the port (what the access log and --trust-proxy use)."""
    return address[0] if isinstance(address, tuple) else str(address)


class EngineBase:
    """The stop request both engines share: SIGINT/SIGTERM (and SIGBREAK, Ctrl+Break on Windows)
    set a flag their loops read."""

    # Set from a signal handler, which must take no lock (a second SIGTERM arriving inside a
    # first handler's Event.set() deadlocked the threaded engine once): a plain attribute.
    stop_requested = False

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM (and SIGBREAK on Windows) request a graceful stop."""
        for signum in stop_signals():
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.stop_requested = True


class AcceptErrors:
    """The accept-error policy: skip one connection's error, pause on the rest, log once."""

    __slots__ = ("logged",)

    def __init__(self) -> None:
        # An error was logged; quiet until an accept succeeds again.
        self.logged = False

    def must_pause(self, exc: OSError) -> bool:
        """True if accepting must pause for ACCEPT_PAUSE; False to skip this connection."""
        if exc.errno in CONNECTION_ACCEPT_ERRORS:
            return False  # one connection's error, which accept(2) says to treat as EAGAIN
        # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or an error that may
        # repeat on every call (EINVAL, EBADF): pause briefly, never spin.
        if not self.logged:
            log.warning("accept failed (%s): pausing accepts for %.1f s",
                        exc.strerror, ACCEPT_PAUSE)
            self.logged = True
        return True

    def succeeded(self) -> None:
        """An accept worked: the next error is news again."""
        self.logged = False


# Whether accepted sockets come with TCP_NODELAY from their listener (Linux copies it): learnt
# from the first accepted socket, so later ones save a setsockopt each. None: not known yet.
_nodelay_inherited: bool | None = None


def prepare_accepted(sock: _socket.socket, listener: Listener,
                     blocking: bool) -> _socket.socket | None:
    """Set blocking mode and TCP_NODELAY; wrap for TLS (handshake not started). None if gone."""
    global _nodelay_inherited
    sock.setblocking(blocking)
    if not _nodelay_inherited:
        try:
            if _nodelay_inherited is None:
                _nodelay_inherited = bool(sock.getsockopt(socket.IPPROTO_TCP,
                                                          socket.TCP_NODELAY))
            if not _nodelay_inherited:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    if listener.tls is None:
        return sock
    try:
        # A TLS listener's accepted sockets are socket.socket (see Listener._socket_type).
        return listener.tls.wrap_socket(cast(socket.socket, sock), server_side=True,
                                        do_handshake_on_connect=False)
    except (OSError, ValueError):
        sock.close()
        return None


def open_connection(sock: _socket.socket, address, listener: Listener, *, blocking: bool,
                    site, parser, stats):
    """An accepted socket made ready, and the protocol object for it; None if it is gone."""
    ready = prepare_accepted(sock, listener, blocking)
    if ready is None:
        return None
    return ready, HttpConnection(site, parser=parser, tls=listener.tls is not None, stats=stats,
                                peer=peer_host(address))


def cap_stream_buffer(sock: _socket.socket) -> None:
    """A socket that became an event stream: its kernel send buffer capped at STREAM_SNDBUF.

    So a client that never reads stalls our sends (and starts the send timer) once that much
    is queued, instead of once an autotuned buffer has grown to megabytes. Streams only: a
    file body wants the large buffer.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
    except OSError:
        pass  # gone already: the next send or read says so


# What one handshake step needs next; HANDSHAKE_EOF: the client closed during the handshake.
HANDSHAKE_DONE, HANDSHAKE_READ, HANDSHAKE_WRITE, HANDSHAKE_EOF = 0, 1, 2, 3


def handshake_step(sock: ssl.SSLSocket) -> int:
    """One TLS handshake step: HANDSHAKE_DONE, HANDSHAKE_EOF, or what to wait for.

    Raises ssl.SSLError for a client that does not speak TLS.
    """
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return HANDSHAKE_READ
    except ssl.SSLWantWriteError:
        return HANDSHAKE_WRITE
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return HANDSHAKE_EOF
    return HANDSHAKE_DONE


def is_plaintext_on_tls(exc: BaseException) -> bool:
    """True if a TLS handshake failed because the client spoke plain HTTP."""
    return isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in PLAINTEXT_REASONS


def plain_socket(sock: ssl.SSLSocket) -> socket.socket:
    """The TCP socket under a failed TLS socket, to answer a plain-HTTP client in plain text."""
    timeout = sock.gettimeout()
    raw = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    raw.settimeout(timeout)
    return raw


def close_reason_for(exc: BaseException) -> CloseReason | None:
    """The close reason for an exception raised while serving a connection; None for a bug."""
    if isinstance(exc, sending.PEER_GONE):
        return CloseReason.RESET
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return CloseReason.SEND
    if isinstance(exc, ssl.SSLError):
        return CloseReason.TLS  # a client that cannot speak TLS
    if isinstance(exc, sending.FileShrank):
        log.warning("%s; closing the connection", exc)
        return CloseReason.ERROR
    if isinstance(exc, OSError) and exc.errno in sending.PEER_GONE_ERRNOS:
        return CloseReason.RESET
    return None


def format_exception(exc: BaseException) -> str:
    """A traceback as text, for one log record."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class ConnectionLog:
    """Every line an engine writes about a connection, in one place.

    `opened_text` is how the engine announces a connection in the dated connection log: the
    threaded engine keeps the seed design's "[+] New thread started for <peer>".
    """

    __slots__ = ("logs", "opened_text", "closed_suffix", "_prefixes", "_tails")

    def __init__(self, logs, opened_text: str, closed_suffix: str = ""):
        self.logs = logs
        # client address (with --auth's user, if any) -> its access-line prefix (bounded)
        self._prefixes: dict[str | tuple[str, str], str] = {}
        # replayed plan -> its access-line tail (request line, status, bytes); bounded
        self._tails: dict[ResponsePlan, str] = {}
        self.opened_text = opened_text
        self.closed_suffix = closed_suffix

    def opened(self, peer: str | None) -> None:
        """A connection was accepted."""
        if self.logs.connection_enabled:
            self.logs.event(f"[+] {self.opened_text} {peer}")

    def exchange(self, peer: str | None, host: str, exchange: Exchange) -> None:
        """A response has gone out whole: its access line and connection-log line.

        `peer` is None only while the connection log is off (the reactor names peers lazily).
        """
        logs = self.logs
        plan = exchange.plan
        if logs.access_enabled:
            if exchange.shared:  # a replayed plan: logged many times, its tail made once
                tail = self._tails.get(plan)
                if tail is None:
                    if len(self._tails) >= TAIL_CACHE_ENTRIES:
                        self._tails.clear()
                    tail = self._tails[plan] = clf_tail(plan.request_line, plan.status,
                                                        plan.body_length)
            else:
                length = plan.body_length
                if not length and plan.first_region >= 0:  # a produced body: what went out
                    length = exchange.body_sent()
                tail = clf_tail(plan.request_line, plan.status, length)
            client = exchange.client or host
            user = plan.user
            key = client if not user else (client, user)  # no tuple made without --auth
            prefix = self._prefixes.get(key)
            if prefix is None:
                if len(self._prefixes) >= PREFIX_CACHE_ENTRIES:
                    self._prefixes.clear()
                prefix = self._prefixes[key] = clf_prefix(client, user)
            logs.access_parts(prefix, tail)
        if logs.connection_enabled:
            logs.event(f'{peer} "{escape(plan.request_line)}" -> {plan.status}')

    def cut(self, peer: str | None, host: str, exchange: Exchange, reason_text: str) -> None:
        """A response started but did not finish: log it with the body bytes that went out."""
        logs = self.logs
        plan = exchange.plan
        body_sent = exchange.body_sent()
        if logs.access_enabled:
            logs.access(exchange.client or host, plan.request_line, plan.status, body_sent,
                        plan.user)
        if logs.connection_enabled:
            logs.event(f'{peer} "{escape(plan.request_line)}" -> {plan.status} cut after '
                       f'{body_sent} of {plan.body_length} body bytes ({reason_text})')

    def left_out(self, peer: str, text: str) -> None:
        """--archives: a file left out of an archive (`text` names it and why); called on the
        producer's thread. The connection log has it, else the error log."""
        if self.logs.connection_enabled:
            self.logs.event(f"{peer} {text}")
        else:
            log.warning("%s %s", peer, text)

    def timed_out_head(self, peer: str | None) -> None:
        """A request head or body did not arrive in time: a 408 goes out."""
        if self.logs.connection_enabled:
            self.logs.event(f"{peer} request head not complete in time -> 408")

    def closed(self, peer: str | None, reason_text: str) -> None:
        """A connection is gone."""
        if self.logs.connection_enabled:
            self.logs.event(f"[-] Disconnected {peer}{self.closed_suffix} ({reason_text})")

    def internal_error(self, peer: str, exc: BaseException) -> None:
        """The responder raised: the client got a 500; the traceback goes to the error log."""
        log.error("error while answering %s (sent 500):\n%s", peer, format_exception(exc))

    def crash(self, peer: str, exc: BaseException) -> None:
        """A bug while serving a connection: it is closed, the server goes on."""
        log.error("unexpected error on connection %s; closing it:\n%s", peer,
                  format_exception(exc))

    def plaintext_on_tls(self, peer: str | None) -> None:
        """A plain-HTTP client reached the HTTPS port."""
        if self.logs.connection_enabled:
            self.logs.event(f"{peer} sent plain HTTP to the HTTPS port -> 400")
