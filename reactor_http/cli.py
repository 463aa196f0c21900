"""Command line: argparse -> Config, logging set-up, the start-up line, then `serve()`.

No HTTP logic here. Errors a user can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ._version import __version__
from .config import Config
from .logs import open_access_file
from .server import StartupError, serve
from .service import pid_file

DEFAULTS = Config()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every option documented."""
    p = argparse.ArgumentParser(
        prog="reactor-http",
        description="Serve a folder over HTTP/1.1 from a single-threaded selectors reactor "
                    "(or, to compare, one thread per connection).")
    p.add_argument("port_positional", nargs="?", type=int, metavar="PORT",
                   help="port to listen on, as in `python -m http.server 8080`")
    p.add_argument("--root", default=".", help="folder to serve (default: the current folder)")
    p.add_argument("--host", default=DEFAULTS.host,
                   help=f"address to bind (default: {DEFAULTS.host}; `::` for IPv6 + IPv4)")
    p.add_argument("--port", type=int, default=None,
                   help=f"port to listen on (default: {DEFAULTS.port}; 0 picks a free one)")
    p.add_argument("--mode", choices=("reactor", "threaded"), default=DEFAULTS.mode,
                   help="I/O engine: one selectors loop (default) or one thread per connection")
    p.add_argument("--workers", type=_workers, default=DEFAULTS.workers, metavar="N|auto",
                   help="reactor processes sharing the port via SO_REUSEPORT, supervised by a "
                        "parent; `auto` = one per CPU (default: 1, no parent)")
    t = p.add_argument_group("TLS")
    t.add_argument("--certfile", default=None, metavar="PEM",
                   help="serve HTTPS with this certificate chain (TLS 1.2+, the ssl module's "
                        "recommended ciphers)")
    t.add_argument("--keyfile", default=None, metavar="PEM",
                   help="the private key, if not in --certfile")
    t.add_argument("--tls-port", type=int, default=None, metavar="PORT",
                   help="serve HTTPS on this port and plain HTTP on --port, side by side")
    g = p.add_argument_group("connections and limits")
    g.add_argument("--keepalive-timeout", type=float, default=DEFAULTS.keepalive_timeout,
                   metavar="SECONDS", help="close idle keep-alive connections after this (default: 5)")
    g.add_argument("--max-requests", type=int, default=DEFAULTS.max_requests, metavar="N",
                   help="requests per connection before it closes (default: 100)")
    g.add_argument("--header-timeout", type=float, default=DEFAULTS.header_timeout,
                   metavar="SECONDS", help="a request head must arrive within this (default: 10)")
    g.add_argument("--send-timeout", type=float, default=DEFAULTS.send_timeout, metavar="SECONDS",
                   help="drop a client that accepts no bytes for this long (default: 30)")
    g.add_argument("--max-head-bytes", type=int, default=DEFAULTS.max_head_bytes, metavar="BYTES",
                   help="largest request head; larger gets 431 (default: 8192)")
    g.add_argument("--max-target-bytes", type=int, default=DEFAULTS.max_target_bytes,
                   metavar="BYTES", help="longest request-target; longer gets 414 (default: 4096)")
    g.add_argument("--max-header-count", type=int, default=DEFAULTS.max_header_count, metavar="N",
                   help="most header fields in a request; more gets 431 (default: 100)")
    g.add_argument("--max-body-bytes", type=int, default=DEFAULTS.max_body_bytes, metavar="BYTES",
                   help="largest request body read and discarded; larger gets 413 (default: 1 MiB)")
    g.add_argument("--max-connections", type=int, default=DEFAULTS.max_connections, metavar="N",
                   help="reactor: open connections before accepting pauses (default: 10000)")
    g.add_argument("--max-threads", type=int, default=DEFAULTS.max_threads, metavar="N",
                   help="threaded: connection threads at most (default: 256)")
    g.add_argument("--drain-timeout", type=float, default=DEFAULTS.drain_timeout,
                   metavar="SECONDS", help="on SIGTERM/SIGINT, let responses finish this long "
                                           "(default: 5)")
    s = p.add_argument_group("what is served")
    s.add_argument("--no-listing", action="store_true",
                   help="answer 404 for folders without index.html instead of listing them")
    s.add_argument("--max-age", type=int, default=None, metavar="SECONDS",
                   help="send Cache-Control: public, max-age=SECONDS with files")
    s.add_argument("--immutable", action="store_true",
                   help="add `immutable` to Cache-Control (for fingerprinted assets)")
    s.add_argument("--cors", action="store_true",
                   help="send Access-Control-Allow-Origin: * and answer CORS preflights")
    s.add_argument("--spa", action="store_true",
                   help="single-page app: unknown paths without a file extension get /index.html")
    s.add_argument("--dotfiles", choices=("deny", "allow"), default=DEFAULTS.dotfiles,
                   help="serve names starting with a dot? (default: deny, so .git and .env are 404)")
    s.add_argument("--follow-symlinks", action="store_true",
                   help="follow symlinks that lead outside the root (default: only inside)")
    o = p.add_argument_group("logging")
    o.add_argument("--log-dir", default=None, metavar="DIR",
                   help="write the dated connection log DDMMYYconnectionLog.txt in DIR")
    o.add_argument("--quiet", action="store_true", help="no access lines on stdout")
    o.add_argument("--access-log", default=None, metavar="FILE",
                   help="also append access lines to FILE; SIGUSR1 reopens it (logrotate: "
                        "rename, then signal)")
    d = p.add_argument_group("deployment")
    d.add_argument("--worker-timeout", type=float, default=DEFAULTS.worker_timeout,
                   metavar="SECONDS", help="--workers: kill and replace a worker whose loop has "
                                           "not turned for this long (default: 30)")
    d.add_argument("--pid-file", default=None, metavar="FILE",
                   help="write the server's pid to FILE at start; removed at exit")
    d.add_argument("--trust-proxy", action="append", default=[], metavar="ADDR",
                   help="a proxy (address or CIDR; repeatable) whose X-Forwarded-For is "
                        "believed: the access log shows the client it reports (default: none)")
    d.add_argument("--status", default=None, metavar="PATH",
                   help="serve live counters at PATH: JSON, or Prometheus text when the client "
                        "asks for text/plain (default: off)")
    d.add_argument("--status-allow", action="append", default=[], metavar="ADDR",
                   help="clients (address or CIDR; repeatable) that may read --status; others "
                        "get 404 (default: loopback only)")
    p.add_argument("--version", action="version", version=f"reactor_http {__version__}")
    p.epilog = ("systemd socket activation: started with LISTEN_PID=<our pid> and LISTEN_FDS>=1 "
                "(sd_listen_fds(3)), the server serves the listening socket on fd 3 instead of "
                "binding --host/--port; further sockets are closed with a warning. "
                "SIGTERM/SIGINT stop gracefully; SIGUSR1 reopens the log files.")
    return p


def _workers(text: str) -> int:
    """--workers: a positive count or `auto` (the CPUs this process may run on)."""
    if text == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            (os.cpu_count() or 1)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number or `auto`") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def config_from_args(args: argparse.Namespace) -> Config:
    """Turn parsed arguments into a Config (not yet validated)."""
    port = args.port if args.port is not None else (
        args.port_positional if args.port_positional is not None else DEFAULTS.port)
    return Config(
        root=args.root, host=args.host, port=port, mode=args.mode,
        keepalive_timeout=args.keepalive_timeout, max_requests=args.max_requests,
        log_dir=args.log_dir, quiet=args.quiet, header_timeout=args.header_timeout,
        send_timeout=args.send_timeout, max_head_bytes=args.max_head_bytes,
        max_target_bytes=args.max_target_bytes, max_header_count=args.max_header_count,
        max_body_bytes=args.max_body_bytes, max_connections=args.max_connections,
        max_threads=args.max_threads, drain_timeout=args.drain_timeout,
        listing=not args.no_listing, max_age=args.max_age, immutable=args.immutable,
        cors=args.cors, spa=args.spa, dotfiles=args.dotfiles,
        follow_symlinks=args.follow_symlinks, workers=args.workers,
        worker_timeout=args.worker_timeout, certfile=args.certfile,
        keyfile=args.keyfile, tls_port=args.tls_port,
        access_log=args.access_log, pid_file=args.pid_file,
        trust_proxy=tuple(args.trust_proxy), status_path=args.status,
        status_allow=tuple(args.status_allow))


def prepare_log_dir(path: str) -> None:
    """Create the connection-log folder now, so an unusable one is a one-line error, not a trace."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot use log dir {path!r}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"log dir {path!r} is not writable")


def prepare_access_log(path: str) -> None:
    """Open the access log once now, so an unusable path is a one-line error, not a trace."""
    try:
        os.close(open_access_file(path))
    except OSError as exc:
        raise ValueError(f"cannot write access log {path!r}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m reactor_http` and the `reactor-http` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is not None and args.port_positional is not None and \
            args.port != args.port_positional:
        parser.error("give the port once: either PORT or --port")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args).validate()
        if config.log_dir is not None:
            prepare_log_dir(config.log_dir)
        if config.access_log is not None:
            prepare_access_log(config.access_log)
        with pid_file(config.pid_file):
            return serve(config, banner=lambda text: print(text, flush=True))
    except (ValueError, StartupError) as exc:
        print(f"reactor-http: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
