"""Start-up: bind the listening socket, raise the descriptor limit, pick the engine, run it.

`serve(config)` is the one entry point (the CLI and tests call it). Errors a user can fix (a port
in use, a bad root) are raised as `StartupError` with a one-line message.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import ssl
import sys
import threading

from .logs import LogSink
from .responder import Site
from .service import inherited_listener


class StartupError(Exception):
    """The server cannot start; the message says why in one line."""


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) now in force."""
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
                  listen: bool = True) -> socket.socket:
    """A listening TCP socket on host:port (IPv6 if the host is an IPv6 address).

    With `reuse_port`, several processes may bind the same port and the kernel spreads
    connections among their listening sockets (SO_REUSEPORT); `listen=False` only holds the port.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
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
            raise StartupError(f"port {port} on {host} is already in use") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"permission denied to listen on {host}:{port}") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def url_for(sock: socket.socket, scheme: str = "http") -> str:
    """The URL a browser would use for a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


def make_tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """A server TLS context with the ssl module's recommended settings, TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load the TLS certificate/key: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def serve(config, *, banner=None, listener: socket.socket | None = None, ready=None) -> int:
    """Run the configured engine until SIGINT/SIGTERM; return the exit status.

    `banner(text)` receives the start-up line; `ready(engine)` is called once listening (tests).
    """
    config.validate()
    if config.workers > 1 and listener is None:
        from .workers import Supervisor
        return Supervisor(config).run(banner)
    soft, _ = raise_fd_limit()
    tls = make_tls_context(config.certfile, config.keyfile) if config.certfile else None
    if listener is None:
        # systemd socket activation (sd_listen_fds(3)): serve the socket we were handed.
        listener = inherited_listener()
    if listener is None:
        listener = bind_listener(config.host, config.port, config.backlog)
    # --certfile alone makes the main port HTTPS; with --tls-port, HTTP and HTTPS side by side.
    listeners = [(listener, tls if config.tls_port is None else None)]
    if tls is not None and config.tls_port is not None:
        try:
            listeners.append((bind_listener(config.host, config.tls_port, config.backlog), tls))
        except StartupError:
            listener.close()
            raise
    site = Site(config)
    logs = LogSink(access=not config.quiet, log_dir=config.log_dir, access_file=config.access_log)
    urls = [url_for(sock, "https" if context else "http") for sock, context in listeners]
    url = " and ".join(urls)
    if config.mode == "threaded":
        from .threaded import ThreadedServer
        engine = ThreadedServer(config, site, logs, listeners)
    else:
        from .reactor import Reactor
        engine = Reactor(config, site, logs, listeners)
    # Handlers first: once the banner says we serve, a SIGTERM must mean a graceful stop.
    if threading.current_thread() is threading.main_thread():
        engine.install_signal_handlers()
        # logrotate's convention: SIGUSR1 reopens the log files (the log writer's next round).
        signal.signal(signal.SIGUSR1, lambda signum, frame: logs.request_reopen())
    text = f"Serving {site.real_root} at {url} (mode: {config.mode}); press Ctrl+C to stop"
    if banner is not None:
        banner(text)
    if config.mode == "reactor" and soft < config.max_connections + 64:
        print(f"reactor_http: warning: the open-file limit is {soft}, below --max-connections "
              f"{config.max_connections}; raise it with `ulimit -n`", file=sys.stderr)
    logs.event(f"Server started on {url} (mode: {config.mode}, root: {site.real_root}, "
               f"pid {os.getpid()})")
    try:
        if ready is not None:
            ready(engine)
        status = engine.run()
    finally:
        logs.event("Server stopped")
        logs.flush()
        if threading.current_thread() is threading.main_thread():
            # The stop is done. Ignore further SIGTERM/SIGINT: at interpreter exit CPython resets
            # Python-level handlers to the default action (but leaves SIG_IGN alone), so a
            # second SIGTERM (systemd, a test, an impatient user) would turn exit 0 into death
            # by signal while the process is already on its way out.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
    return status
