"""Every knob of the server in one frozen dataclass: its unit, its default and why.

Owns validation of values; knows nothing about sockets, argparse or HTTP parsing.
"""

from __future__ import annotations

import dataclasses
import math
import os

from .addresses import parse_networks

MODES = ("reactor", "threaded")
DOTFILE_POLICIES = ("deny", "allow")


@dataclasses.dataclass(frozen=True)
class Config:
    """The server's settings. Times are seconds, sizes are bytes."""

    root: str = "."
    host: str = "127.0.0.1"
    port: int = 8000
    mode: str = "reactor"
    # Keep-alive idle timeout: the original's 5 s (nginx: 75 s, Apache: 5 s).
    keepalive_timeout: float = 5.0
    # Requests per connection before we close it: the original's "max=100" (nginx: 1000).
    max_requests: int = 100
    log_dir: str | None = None
    quiet: bool = False
    # Slowloris guard: a request head must be complete this long after its first byte
    # (Apache mod_reqtimeout: 20-40 s; nginx client_header_timeout: 60 s).
    header_timeout: float = 10.0
    # A client that accepts no bytes for this long is dropped (nginx send_timeout: 60 s).
    send_timeout: float = 30.0
    # Whole request head, request line included (nginx: 1 KiB + 4 x 8 KiB; h11: 16 KiB).
    max_head_bytes: int = 8192
    # Request-target length; longer -> 414 (RFC 9112 section 3 recommends supporting 8000 octets).
    max_target_bytes: int = 4096
    # Header field lines per request (Apache LimitRequestFields: 100).
    max_header_count: int = 100
    # Request bodies are read and discarded up to this size (nginx client_max_body_size: 1 MiB).
    max_body_bytes: int = 1 << 20
    # Reactor: stop accepting beyond this many open connections; the kernel backlog holds the rest.
    max_connections: int = 10_000
    # Threaded engine: at most this many connection threads.
    max_threads: int = 256
    # Graceful stop: in-flight responses get this long to finish.
    drain_timeout: float = 5.0
    # Listen backlog (the kernel caps it at net.core.somaxconn).
    backlog: int = 1024
    listing: bool = True
    max_age: int | None = None
    immutable: bool = False
    cors: bool = False
    spa: bool = False
    dotfiles: str = "deny"
    follow_symlinks: bool = False
    # Reactor processes on one port (SO_REUSEPORT), supervised by a parent; 1 = no parent.
    workers: int = 1
    # --workers: a worker whose loop sends no heartbeat (about one a second) for this long is
    # killed and replaced (seconds; gunicorn's --timeout: 30). It means stuck, not busy: a loop
    # that is serving, however loaded, turns many times a second.
    worker_timeout: float = 30.0
    # Set by the supervisor in each worker: (slot, of N). None in a single process.
    worker: tuple[int, int] | None = None
    # Access lines also go to this file (O_APPEND; reopened on SIGUSR1 for logrotate).
    access_log: str | None = None
    # Our pid is written here at start and the file removed at exit (for init scripts, monit).
    pid_file: str | None = None
    # Proxies (addresses or CIDR) whose X-Forwarded-For we believe: the access log then shows
    # the client the proxy saw (its last entry) instead of the proxy. Empty: believe nobody.
    trust_proxy: tuple[str, ...] = ()
    # URL path of the live counters page (JSON / Prometheus); None: no status page (the default,
    # so a plain static server reveals nothing about itself).
    status_path: str | None = None
    # Clients (addresses or CIDR) that may read the status page; empty means loopback only.
    status_allow: tuple[str, ...] = ()
    # TLS: with a certificate (PEM; the key may be in the same file) the port serves HTTPS,
    # or, with tls_port, HTTPS is served there beside plain HTTP on `port`.
    certfile: str | None = None
    keyfile: str | None = None
    tls_port: int | None = None

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad setting; return self."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.dotfiles not in DOTFILE_POLICIES:
            raise ValueError(f"dotfiles must be one of {', '.join(DOTFILE_POLICIES)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, not {self.port}")
        for name in ("keepalive_timeout", "header_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive")
        if self.drain_timeout < 0:
            raise ValueError("drain-timeout must not be negative")
        if not (math.isfinite(self.worker_timeout) and self.worker_timeout > 0):
            raise ValueError("--worker-timeout must be a finite, positive number of seconds")
        if self.workers > 1 and self.mode != "reactor":
            raise ValueError("--workers needs --mode reactor")
        if (self.keyfile or self.tls_port is not None) and not self.certfile:
            raise ValueError("--keyfile and --tls-port need --certfile")
        if self.tls_port is not None and self.workers > 1:
            raise ValueError("--tls-port is not supported with --workers; serve HTTPS on --port")
        if self.tls_port is not None and not 0 <= self.tls_port <= 65535:
            raise ValueError(f"tls-port must be 0-65535, not {self.tls_port}")
        if self.certfile and not os.path.isfile(self.certfile):
            raise ValueError(f"certificate file {self.certfile!r} does not exist")
        if self.keyfile and not os.path.isfile(self.keyfile):
            raise ValueError(f"key file {self.keyfile!r} does not exist")
        for name in ("workers", "max_requests", "max_head_bytes", "max_target_bytes", "max_header_count",
                     "max_connections", "max_threads", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_body_bytes < 0:
            raise ValueError("max-body-bytes must not be negative")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("max-age must not be negative")
        if self.status_path is not None and not self.status_path.startswith("/"):
            raise ValueError(f"status path must start with '/', not {self.status_path!r}")
        for name in ("trust_proxy", "status_allow"):
            try:
                parse_networks(tuple(getattr(self, name)))
            except ValueError as exc:
                raise ValueError(f"{name.replace('_', '-')}: {exc}") from None
        if not os.path.isdir(self.root):
            raise ValueError(f"root {self.root!r} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"root {self.root!r} is not readable")
        return self
