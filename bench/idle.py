"""Idle capacity: hold N idle keep-alive connections, then time a fresh request.

Each idle connection is a plain non-blocking socket that has sent one complete
request and read its whole response, so the server holds it as an idle
keep-alive connection (not a half-open one). With all N held we read the
server's RSS (children included), time several fresh requests on new
connections (median), and finally check how many idle connections the server
kept open. Everything is bounded by deadlines; every socket is closed at the end.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import statistics
import time
from dataclasses import asdict, dataclass

from bench import procfs

#: Connections being set up at once. Far below the servers' listen backlog
#: (4096) so we measure holding connections, not SYN retries.
CONNECT_WINDOW = 256

#: Time allowed to open and prime all N connections: a fixed part plus a part
#: per connection (seconds). A server that cannot keep up is reported with the
#: number it did hold, not waited for forever.
OPEN_DEADLINE_BASE_S = 5.0
OPEN_DEADLINE_PER_CONN_S = 0.002

#: Give up opening early when no connection completed for this long (seconds):
#: a server at its connection or thread cap will not suddenly answer.
OPEN_STALL_S = 2.0

#: Fresh requests timed once the idle connections are held; the median is reported.
FRESH_SAMPLES = 7
#: Stop timing fresh requests after this many failures in a row.
FRESH_MAX_CONSECUTIVE_FAILURES = 2
#: A fresh request slower than this counts as failed (seconds).
FRESH_TIMEOUT_S = 1.0
#: Pause after opening so the server's memory settles before we read it (seconds).
SETTLE_S = 0.3

_RECV_SIZE = 65536


@dataclass
class IdleResult:
    requested: int
    answered: int           # connections whose primed request got its full response
    held: int               # of those, still open at the end of the probe
    open_seconds: float
    rss_before_kib: int | None
    rss_after_kib: int | None
    rss_per_conn_kib: float | None
    fresh_latency_ms: float | None  # median of the fresh requests that succeeded
    fresh_failures: int

    def to_dict(self) -> dict:
        return asdict(self)


def raise_nofile_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE toward wanted; return the new soft limit.

    The soft limit goes up to the hard limit; the hard limit itself goes up
    too when we are allowed to (root), so that servers started from here
    inherit room for their own connections.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass  # not privileged: stay within the hard limit
    target = hard if hard == resource.RLIM_INFINITY else min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def build_request(host: str, port: int, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"User-Agent: bench-idle-probe\r\n\r\n").encode("ascii")


def response_complete(buf: bytes) -> bool | None:
    """True when buf holds one whole response (head + Content-Length body),
    False when more is needed, None when it cannot be framed (no length)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = None
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        return None
    return len(buf) >= end + 4 + length


class _Pending:
    """One connection being primed: connect, send the request, read the response."""

    __slots__ = ("sock", "out", "buf")

    def __init__(self, sock: socket.socket, request: bytes):
        self.sock = sock
        self.out = request
        self.buf = b""


def _new_connection(addr, request: bytes) -> _Pending:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(addr)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, "connect failed")
    return _Pending(sock, request)


def _step(sel: selectors.BaseSelector, pending: _Pending) -> str:
    """Advance one connection; returns 'busy', 'done' or 'failed'."""
    sock = pending.sock
    try:
        if pending.out:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return "failed"
            sent = sock.send(pending.out)
            pending.out = pending.out[sent:]
            if not pending.out:
                sel.modify(sock, selectors.EVENT_READ, pending)
            return "busy"
        data = sock.recv(_RECV_SIZE)
    except BlockingIOError:
        return "busy"
    except OSError:
        return "failed"
    if not data:
        return "failed"
    pending.buf += data
    complete = response_complete(pending.buf)
    if complete is None:
        return "failed"
    return "done" if complete else "busy"


def open_idle_connections(host: str, port: int, path: str, n: int,
                          deadline_s: float) -> tuple[list, list]:
    """Open and prime up to n connections. Returns (idle sockets, unanswered sockets)."""
    addr = (host, port)
    request = build_request(host, port, path)
    sel = selectors.DefaultSelector()
    idle, started, in_flight = [], 0, 0
    deadline = time.monotonic() + deadline_s
    last_progress = time.monotonic()
    try:
        while (started < n or in_flight) and time.monotonic() < deadline:
            if time.monotonic() - last_progress > OPEN_STALL_S:
                break
            while started < n and in_flight < CONNECT_WINDOW:
                started += 1
                try:
                    pending = _new_connection(addr, request)
                except OSError:
                    continue
                sel.register(pending.sock, selectors.EVENT_WRITE, pending)
                in_flight += 1
            for key, _ in sel.select(timeout=0.1):
                state = _step(sel, key.data)
                if state == "busy":
                    continue
                sel.unregister(key.fileobj)
                in_flight -= 1
                last_progress = time.monotonic()
                if state == "done":
                    idle.append(key.fileobj)
                else:
                    key.fileobj.close()
        unanswered = [key.fileobj for key in list(sel.get_map().values())]
        for sock in unanswered:
            sel.unregister(sock)
        return idle, unanswered
    finally:
        sel.close()


def timed_fresh_request(host: str, port: int, path: str,
                        timeout: float = FRESH_TIMEOUT_S) -> float | None:
    """Seconds for connect + request + whole response on a new connection, or None."""
    request = build_request(host, port, path)
    start = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            buf = b""
            while True:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    return None
                buf += data
                complete = response_complete(buf)
                if complete is None:
                    return None
                if complete:
                    return time.perf_counter() - start
                if time.perf_counter() - start > timeout:
                    return None
    except OSError:
        return None


def time_fresh_requests(host: str, port: int, path: str, samples: int) -> list:
    """Up to `samples` timed fresh requests (None for each failure), stopping
    early after FRESH_MAX_CONSECUTIVE_FAILURES failures in a row."""
    timings, failures_in_a_row = [], 0
    for _ in range(samples):
        elapsed = timed_fresh_request(host, port, path)
        timings.append(elapsed)
        failures_in_a_row = failures_in_a_row + 1 if elapsed is None else 0
        if failures_in_a_row >= FRESH_MAX_CONSECUTIVE_FAILURES:
            break
    return timings


def count_still_open(socks: list) -> int:
    """How many idle sockets the server has not closed (no EOF/data pending)."""
    sel = selectors.DefaultSelector()
    try:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        closed = len(sel.select(timeout=0))
        return len(socks) - closed
    finally:
        sel.close()


def probe_idle_capacity(host: str, port: int, n: int, server_pid: int | None = None,
                        path: str = "/1k.bin", samples: int = FRESH_SAMPLES) -> IdleResult:
    """Hold n idle keep-alive connections to host:port; measure RSS and a fresh request."""
    raise_nofile_limit(n + 1000)
    rss_before = procfs.rss_kib(server_pid) if server_pid else None
    started = time.perf_counter()
    idle, unanswered = [], []
    try:
        idle, unanswered = open_idle_connections(
            host, port, path, n, OPEN_DEADLINE_BASE_S + OPEN_DEADLINE_PER_CONN_S * n)
        open_seconds = time.perf_counter() - started
        time.sleep(SETTLE_S)
        rss_after = procfs.rss_kib(server_pid) if server_pid else None
        timings = time_fresh_requests(host, port, path, samples)
        ok = [t for t in timings if t is not None]
        held = count_still_open(idle)
    finally:
        for sock in idle + unanswered:
            sock.close()
    per_conn = None
    if rss_before is not None and rss_after is not None and held:
        per_conn = (rss_after - rss_before) / held
    return IdleResult(
        requested=n, answered=len(idle), held=held, open_seconds=open_seconds,
        rss_before_kib=rss_before, rss_after_kib=rss_after, rss_per_conn_kib=per_conn,
        fresh_latency_ms=statistics.median(ok) * 1000 if ok else None,
        fresh_failures=len(timings) - len(ok),
    )
