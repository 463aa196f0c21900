"""Live-reload capacity: hold N event streams, announce one change, time its fan-out.

Starts `python -m reactor_http --live-reload` (either engine) on a temporary site, opens N
streams (`GET /__livereload`) on plain non-blocking sockets and reads each one's head, then:
the server's RSS per stream (RSS with N held minus RSS before, over N), one file changed on
disk, the time from the change until every held stream has received its event (the fan-out,
which includes the watcher's coalescing window of up to 0.1 s), and meanwhile the latency of
ordinary requests on fresh connections (median and worst). Everything is bounded by deadlines;
every socket and the server are closed at the end.

    python -m bench.streams --mode reactor --streams 10000
    python -m bench.streams --mode threaded --streams 200   # a thread per stream

The threaded engine holds one thread per stream, bounded by --max-threads (256 by default,
raised to N here up to its 10,000 ceiling): its figures show what a thread per stream costs.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench import procfs
from bench.idle import raise_nofile_limit

#: Streams being set up at once (far below the listen backlog).
CONNECT_WINDOW = 256
#: Seconds allowed to open all streams: a fixed part plus a part per stream.
OPEN_DEADLINE_BASE_S = 5.0
OPEN_DEADLINE_PER_STREAM_S = 0.002
#: Seconds allowed for one change to reach every stream before the probe gives up.
FANOUT_DEADLINE_S = 10.0
#: Pause before reading RSS, so the server's memory settles (seconds).
SETTLE_S = 0.5
#: Seconds between two ordinary requests timed during the fan-out.
PROBE_INTERVAL_S = 0.01
#: An ordinary request slower than this counts as failed (seconds).
PROBE_TIMEOUT_S = 2.0
#: Ordinary requests timed before the change (the baseline latency).
BASELINE_SAMPLES = 20

STREAM_REQUEST = b"GET /__livereload HTTP/1.1\r\nHost: bench\r\n\r\n"
PAGE_REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def start_server(root: str, mode: str, streams: int) -> tuple[subprocess.Popen, int]:
    """The server with --live-reload on a free port; (process, port)."""
    command = [sys.executable, "-m", "reactor_http", "--root", root, "--port", "0", "--mode",
               mode, "--quiet", "--live-reload", "--max-connections", str(max(streams + 100,
                                                                               10_000))]
    if mode == "threaded":
        command += ["--max-threads", str(min(max(streams + 16, 256), 10_000))]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = ""  # the start-up line is on stderr, after any start-up warning
    while "127.0.0.1:" not in line:
        line = proc.stderr.readline().decode()
        if not line:
            raise RuntimeError(f"the server did not start: {proc.stderr.read()!r}")
    port = int(line.split("127.0.0.1:")[1].split("/")[0])
    return proc, port


def open_streams(port: int, n: int) -> list[socket.socket]:
    """Open up to `n` streams and read each one's head; the ones that got it."""
    sel = selectors.DefaultSelector()
    held: list[socket.socket] = []
    started = 0
    pending: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + OPEN_DEADLINE_BASE_S + OPEN_DEADLINE_PER_STREAM_S * n
    while len(held) < n and time.monotonic() < deadline:
        while started < n and len(pending) < CONNECT_WINDOW:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            sel.register(sock, selectors.EVENT_WRITE)
            pending[sock] = b""
            started += 1
        if not pending:
            break
        for key, mask in sel.select(0.5):
            sock = key.fileobj
            try:
                if mask & selectors.EVENT_WRITE:
                    sock.send(STREAM_REQUEST)
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                del pending[sock]
                continue
            pending[sock] += data
            if b"retry:" in pending[sock]:
                sel.unregister(sock)
                del pending[sock]
                held.append(sock)
    for sock in pending:
        sock.close()
    sel.close()
    return held


def timed_request(port: int) -> float | None:
    """Seconds for one ordinary request on a fresh connection; None if it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(PAGE_REQUEST)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    return time.perf_counter() - started if data.startswith(b"HTTP/1.1 200") else None


def fan_out(root: str, held: list[socket.socket], marker: bytes) -> tuple[float | None, int]:
    """Change a file; (seconds until every stream has its event, streams that got it)."""
    sel = selectors.DefaultSelector()
    for sock in held:
        sel.register(sock, selectors.EVENT_READ, bytearray())
    waiting = len(held)
    started = time.monotonic()
    with open(os.path.join(root, "changed.css"), "w") as file:
        file.write(f"/* {time.time()} */\n")
    deadline = started + FANOUT_DEADLINE_S
    got = 0
    while waiting and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            try:
                data = key.fileobj.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            buffer = key.data
            buffer += data
            if not data or marker in buffer:
                sel.unregister(key.fileobj)
                waiting -= 1
                got += bool(data)
    took = time.monotonic() - started
    sel.close()
    return (took if got == len(held) else None), got


def probe(mode: str, n: int) -> dict:
    """One run: streams held, memory per stream, fan-out time, request latency meanwhile."""
    raise_nofile_limit(n + 1024)
    root = tempfile.mkdtemp(prefix="bench-streams-")
    with open(os.path.join(root, "small.txt"), "w") as file:
        file.write("small\n")
    proc, port = start_server(root, mode, n)
    held: list[socket.socket] = []
    try:
        time.sleep(SETTLE_S)
        rss_before = procfs.rss_kib(proc.pid)
        baseline = [t for t in (timed_request(port) for _ in range(BASELINE_SAMPLES)) if t]
        opened = time.monotonic()
        held = open_streams(port, n)
        open_seconds = time.monotonic() - opened
        time.sleep(SETTLE_S)
        rss_after = procfs.rss_kib(proc.pid)
        during: list[float] = []
        failures = 0
        stop = threading.Event()

        def prober():
            nonlocal failures
            while not stop.is_set():
                took = timed_request(port)
                if took is None:
                    failures += 1
                else:
                    during.append(took)
                stop.wait(PROBE_INTERVAL_S)

        thread = threading.Thread(target=prober)
        thread.start()
        try:
            fanout, delivered = fan_out(root, held, b"data: /changed.css\n")
        finally:
            stop.set()
            thread.join()
        per_stream = (rss_after - rss_before) / len(held) if held and rss_after and \
            rss_before else None
        return {
            "mode": mode, "requested": n, "held": len(held),
            "open_seconds": round(open_seconds, 2),
            "rss_before_kib": rss_before, "rss_after_kib": rss_after,
            "rss_per_stream_kib": round(per_stream, 2) if per_stream is not None else None,
            "fanout_seconds": round(fanout, 3) if fanout is not None else None,
            "delivered": delivered,
            "baseline_latency_ms": _ms(statistics.median(baseline)) if baseline else None,
            "latency_during_fanout_ms": _ms(statistics.median(during)) if during else None,
            "latency_during_fanout_max_ms": _ms(max(during)) if during else None,
            "requests_during_fanout": len(during), "request_failures": failures,
        }
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def main(argv=None) -> int:
    """Command line: one probe per mode, as JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("reactor", "threaded", "both"), default="both")
    parser.add_argument("--streams", type=int, default=1000, help="streams to hold")
    args = parser.parse_args(argv)
    modes = ("reactor", "threaded") if args.mode == "both" else (args.mode,)
    for mode in modes:
        print(json.dumps(probe(mode, args.streams)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
