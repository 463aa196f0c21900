"""Every knob of the server in one frozen dataclass: its unit, its default and why.

Owns validation of values; knows nothing about sockets, argparse or HTTP parsing.
"""

from __future__ import annotations

import dataclasses
import os

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
        if self.workers > 1 and self.mode != "reactor":
            raise ValueError("--workers needs --mode reactor")
        for name in ("workers", "max_requests", "max_head_bytes", "max_target_bytes", "max_header_count",
                     "max_connections", "max_threads", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_body_bytes < 0:
            raise ValueError("max-body-bytes must not be negative")
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("max-age must not be negative")
        if not os.path.isdir(self.root):
            raise ValueError(f"root {self.root!r} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"root {self.root!r} is not readable")
        return self
