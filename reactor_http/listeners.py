"""Listening sockets: bind, TLS context, descriptor limit, URL (gunicorn's `sock.py`).

Used by the single-process start-up (server.py) and by the supervisor (workers.py) alike, so
neither imports the other. Errors a user can fix are one line: a port in use is a `StartupError`,
an unusable certificate a ValueError from tls.py.
"""

from __future__ import annotations

import errno
import socket

from .engine import Listener
from .facilities import FACTS
from .reachable import Bound, bound_of, http_url, local_url
from .service import inherited_listener
from .tls import make_tls_context


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


def raise_fd_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) now in force.

    None where there are no resource limits (Windows: its C runtime's descriptor table grows
    as needed, and the reactor's own ceiling there is select()'s, FACTS.connection_cap).
    """
    if not FACTS.rlimit:
        return None
    import resource  # Unix only: imported where FACTS says it exists

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = max(soft, 1 << 20)
    else:
        target = hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def bind_listener(host: str, port: int, backlog: int, *, reuse_port: bool = False,
                  listen: bool = True, option: str = "--port") -> socket.socket:
    """A listening TCP socket on host:port (IPv6 if the host is an IPv6 address).

    With `reuse_port`, several processes may bind the same port and the kernel spreads
    connections among their listening sockets (SO_REUSEPORT); `listen=False` only holds the port.
    `option` is the flag that named the port (--port or --tls-port): errors say it.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"--host {host!r}: cannot resolve it: {exc.strerror}") from None
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if FACTS.reuse_address:  # a restart binds over TIME_WAIT (not on Windows: see FACTS)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            try:  # `--host ::` serves IPv4 too where the system allows dual-stack
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                pass
        sock.bind(address)
        if listen:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{option} {port}: the port is already in use on {host}") \
                from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"{option} {port}: permission denied to listen on {host}:{port}") \
                from None
        raise StartupError(f"{option} {port}: cannot listen on {host}:{port} (--host): "
                           f"{exc.strerror}") from None
    return sock


def url_for(sock: socket.socket, scheme: str = "http") -> str:
    """The URL a browser would use for a bound socket."""
    host, port = sock.getsockname()[:2]
    return http_url(scheme, host, port)


def open_listeners(config) -> list[Listener]:
    """The configured listening sockets: inherited (socket activation) or bound, HTTP/HTTPS.

    --certfile alone makes the main port HTTPS; with --tls-port, HTTP and HTTPS side by side.
    """
    tls = make_tls_context(config.certfile, config.keyfile) if config.certfile else None
    # systemd socket activation (sd_listen_fds(3)): serve the socket we were handed.
    sock = inherited_listener()
    if sock is None:
        sock = bind_listener(config.host, config.port, config.backlog)
    listeners = [Listener(sock, tls if config.tls_port is None else None)]
    if tls is not None and config.tls_port is not None:
        try:
            listeners.append(Listener(bind_listener(config.host, config.tls_port,
                                                    config.backlog, option="--tls-port"), tls))
        except StartupError:
            sock.close()
            raise
    return listeners


def listeners_url(listeners) -> str:
    """What the start-up line says: each listener's URL, with its scheme."""
    return " and ".join(url_for(item.sock, "https" if item.tls else "http")
                        for item in listeners)


def listeners_bound(listeners) -> list[Bound]:
    """What each listener is bound to, with its scheme (the banner's URL lines)."""
    return [bound_of(item.sock, "https" if item.tls else "http") for item in listeners]


def browser_url(listeners) -> str:
    """The URL --open shows: the first listener's, this machine's loopback for a wildcard."""
    return local_url(listeners_bound(listeners[:1])[0])
