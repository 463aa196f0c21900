"""`python -m bench.compression_stall`: does compressing a large file stall the reactor's loop?

A short, bounded measurement (not part of `python -m bench`). It writes a 10 MiB JavaScript file,
starts the reactor, and while 64 clients ask for that file with `Accept-Encoding: gzip` at once
(the first requests of a cold cache: the file is compressed on the background thread while they
get the identity body), a probe on its own keep-alive connection asks for a tiny file every
millisecond and records each answer's latency. The longest probe latency bounds the longest
time the loop did not turn; the server also times each turn of its loop (from the poller's
wait returning to the next wait: `reactor_http.reactor.Poller.poll`, the call the loop makes), so
the longest turns overall and while gzip ran are known exactly. A run that records no loop turn
(the loop no longer waits where the launcher looks) or, with compression on, no gzip call, is an
error: the command says so and exits with status 1 instead of reporting 0 ms.
The same load with `--no-compress` gives the baseline; the difference is what compression costs
the loop.

    python -m bench.compression_stall --runs 3
    python -m bench.compression_stall --size-mib 10 --clients 64
    python -m bench.compression_stall --size-mib 1 --clients 4 --runs 1 --json   # seconds

Only the servers this command starts are stopped, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import multiprocessing
import tempfile
import time
from pathlib import Path

from bench import servers

from bench.sitegen import MIB, render_script

HOST = "127.0.0.1"
#: Seconds between two probe requests (the sampling period of the loop's responsiveness).
PROBE_PERIOD_S = 0.001
#: Seconds any one run may take before it is abandoned (bounded run).
RUN_TIMEOUT_S = 60.0
#: Seconds the server may take to write its start-up line.
START_TIMEOUT_S = 30.0
#: Bytes per recv_into of the load clients: large, so the client spends little CPU per byte.
RECV_BYTES = 1 << 20
BANNER = re.compile(rb"at https?://[^:/]+:(\d+)/")
REPO = Path(__file__).resolve().parent.parent
#: Runs the server with its loop timed: every turn (from Poller.poll returning to the next call)
#: and every zlib.compress call are written, as "turn START SECONDS" and "gzip START SECONDS"
#: lines, to the file named by STALL_LOG when the server exits.
LAUNCHER = """
import atexit, os, runpy, sys, time, zlib
import reactor_http.reactor as reactor
turns, gzips, last = [], [], [None]
# The loop's own wait: the class the reactor polls through (reactor_http.poller.Poller, epoll
# itself on Linux). A reactor that no longer has it must fail here, not measure nothing.
poller = getattr(reactor, "Poller", None)
if poller is None or not callable(getattr(poller, "poll", None)):
    sys.exit("compression_stall: reactor_http.reactor.Poller.poll not found: the launcher no "
             "longer times the loop that runs; update LAUNCHER in bench/compression_stall.py")
poll = poller.poll
def timed_poll(self, timeout):
    now = time.perf_counter()
    if last[0] is not None:
        turns.append((last[0], now - last[0]))
    events = poll(self, timeout)
    last[0] = time.perf_counter()
    return events
poller.poll = timed_poll
compress = zlib.compress
def timed_compress(*args, **kwargs):
    start = time.perf_counter()
    body = compress(*args, **kwargs)
    gzips.append((start, time.perf_counter() - start))
    return body
zlib.compress = timed_compress
def write():
    with open(os.environ["STALL_LOG"], "w") as log:
        log.writelines(f"turn {a} {b}\\n" for a, b in turns)
        log.writelines(f"gzip {a} {b}\\n" for a, b in gzips)
atexit.register(write)
sys.argv = ["reactor_http"] + sys.argv[1:]
runpy.run_module("reactor_http", run_name="__main__", alter_sys=True)
"""

def start_server(root: Path, log: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """The reactor on a free port, its loop timed into `log`: (process, port)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), STALL_LOG=str(log))
    command = [sys.executable, "-c", LAUNCHER, "--root", str(root), "--port", "0",
               "--quiet", "--max-requests", str(10 ** 9), *args]
    errors = log.with_suffix(".stderr")
    with open(errors, "wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    # The start-up line is written to stderr (the file), with every process message.
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (match := BANNER.search(errors.read_bytes())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"server did not start: "
                               f"{errors.read_text(errors='replace')[-2000:].strip()}")
        time.sleep(0.05)
    return proc, int(match.group(1))


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s: only the process we started."""
    servers.stop_process(proc, 5)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, int]:
    """(head, body length) of one Content-Length framed response; the body is discarded."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(buffer) < length:
        data = sock.recv(RECV_BYTES)
        if not data:
            raise ConnectionError("closed in the body")
        buffer += data
    del buffer[:length]
    return head, length


def probe(port: int, stop, results) -> None:
    """Ask for /tiny.txt every PROBE_PERIOD_S on one connection until `stop` is set; send the
    latencies (seconds) to `results`. Runs in its own process, so the load's Python never
    delays it."""
    request = f"GET /tiny.txt HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    latencies = []
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        while not stop.is_set():
            start = time.perf_counter()
            sock.sendall(request)
            read_response(sock, buffer)
            latencies.append((start, time.perf_counter() - start))
            time.sleep(PROBE_PERIOD_S)
    results.send(latencies)


def load(port: int, clients: int, path: str, deadline: float) -> dict:
    """`clients` connections ask for `path` at once; read every body to its end (one thread)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\n"
               f"Connection: close\r\n\r\n").encode()
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(clients):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    for sock in socks:
        sock.sendall(request)
        selector.register(sock, selectors.EVENT_READ)
    view = memoryview(bytearray(RECV_BYTES))
    received = 0
    heads = []
    open_count = clients
    while open_count and time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            try:
                count = sock.recv_into(view)
            except BlockingIOError:
                continue
            if len(heads) < clients and count and view[:5] == b"HTTP/":
                heads.append(bytes(view[:count]).split(b"\r\n\r\n", 1)[0])
            received += count
            if count == 0:
                selector.unregister(sock)
                sock.close()
                open_count -= 1
    for sock in socks:
        sock.close()
    coded = sum(b"content-encoding: gzip" in head.lower() for head in heads)
    return {"bytes": received, "coded": coded, "finished": open_count == 0}


class NothingMeasured(RuntimeError):
    """The server's log holds no loop turn (or no gzip call where one had to run)."""


def loop_turns(log: Path, started: float, compress: bool) -> dict:
    """The longest loop turns from the server's log: overall (and when, in seconds after the
    load began), and while zlib.compress ran. Raises NothingMeasured when the log holds no turn,
    or no gzip call in a run with compression on: 0 ms would then be a reading of nothing."""
    if not log.exists():
        raise NothingMeasured(f"the server wrote no timing log ({log.name}): did it exit "
                              f"gracefully?")
    turns, gzips = [], []
    for line in log.read_text().splitlines():
        kind, start, seconds = line.split()
        (turns if kind == "turn" else gzips).append((float(start), float(seconds)))
    if not turns:
        raise NothingMeasured("the server recorded no loop turn: the launcher's timed poll was "
                              "never called, so it does not time the loop that runs")
    if compress and not gzips:
        raise NothingMeasured("compression was on but the server recorded no zlib.compress "
                              "call: the launcher no longer times the compressor")
    longest = max(turns, key=lambda turn: turn[1])
    during = [seconds for start, seconds in turns for g_start, g_seconds in gzips
              if start < g_start + g_seconds and start + seconds > g_start]
    # Turns that began after gzip had begun: the loop's pace while the thread works, without
    # the turn that took the requests (and started the compression job).
    inside = [seconds for start, seconds in turns for g_start, g_seconds in gzips
              if g_start <= start < g_start + g_seconds]
    return {"turns": len(turns), "gzip_calls": len(gzips),
            "turn_max_ms": longest[1] * 1000, "turn_max_at_s": longest[0] - started,
            "turn_max_gzip_ms": max(during, default=0.0) * 1000,
            "turn_max_inside_gzip_ms": max(inside, default=0.0) * 1000,
            "gzip_ms": sum(seconds for _, seconds in gzips) * 1000}


def one_run(root: Path, compress: bool, clients: int) -> dict:
    """One cold-cache run: the probe's latencies and the loop's turns while the load runs."""
    log = root / "stall.log"
    log.unlink(missing_ok=True)  # a log left by an earlier run must not stand for this one's
    proc, port = start_server(root, log, *(() if compress else ("--no-compress",)))
    try:
        stop = multiprocessing.Event()
        receiver, sender = multiprocessing.Pipe(duplex=False)
        prober = multiprocessing.Process(target=probe, args=(port, stop, sender), daemon=True)
        prober.start()
        time.sleep(0.3)  # the probe's steady state first
        started = time.perf_counter()
        result = load(port, clients, "/big.js", time.monotonic() + RUN_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
        stop.set()
        latencies = receiver.recv() if receiver.poll(10) else []
        prober.join(10)
        if prober.is_alive():
            prober.kill()
        # perf_counter is system-wide (CLOCK_MONOTONIC): the probe's clock is ours.
        during = [latency for at, latency in latencies if at >= started] or [0.0]
        # After the load: when does a request get the compressed body (compression done)?
        after, length = "identity", 0
        while time.perf_counter() - started < RUN_TIMEOUT_S:
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(f"GET /big.js HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: "
                             f"gzip\r\n\r\n".encode())
                head, length = read_response(sock, bytearray())
            if b"content-encoding: gzip" in head.lower() or not compress:
                after = "gzip" if compress else "identity"
                break
            time.sleep(0.05)
        ready = time.perf_counter() - started
        stop_server(proc)
        return {"compress": compress, "seconds": elapsed, **result,
                **loop_turns(log, started, compress),
                "probe_max_ms": max(during) * 1000, "probe_p99_ms":
                    sorted(during)[int(0.99 * (len(during) - 1))] * 1000,
                "probe_median_ms": statistics.median(during) * 1000, "probes": len(during),
                "after": after, "after_bytes": length, "ready_s": ready}
    finally:
        stop_server(proc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=10, help="size of the script (MiB)")
    parser.add_argument("--clients", type=int, default=64, help="clients asking at once")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind, interleaved")
    parser.add_argument("--json", action="store_true",
                        help="print each run as one JSON line instead of a sentence")
    args = parser.parse_args(argv)
    try:
        run_all(args)
    except (NothingMeasured, RuntimeError) as exc:
        print(f"compression_stall: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_all(args) -> None:
    """Every run, interleaved (compress, no-compress, ...), printed as it ends."""
    with tempfile.TemporaryDirectory(prefix="compression-stall-") as folder:
        root = Path(folder)
        (root / "big.js").write_bytes(render_script(args.size_mib * MIB))
        (root / "tiny.txt").write_bytes(b"tiny\n")
        from reactor_http import content_coding as compression
        data = (root / "big.js").read_bytes()
        started = time.perf_counter()
        body = compression.compress(data, "gzip")
        took = time.perf_counter() - started
        if not args.json:
            print(f"gzip level {compression.GZIP_LEVEL} of the {args.size_mib} MiB script in "
                  f"this process: {took * 1000:.0f} ms, {len(body) / len(data):.1%} of the size")
        for run in range(args.runs):
            for compress in (True, False):
                r = one_run(root, compress, args.clients)
                if args.json:
                    print(json.dumps({"run": run + 1, "size_mib": args.size_mib,
                                      "clients": args.clients, **r}), flush=True)
                    continue
                label = "compress   " if compress else "no-compress"
                print(f"run {run + 1} {label}: {r['seconds']:.2f} s for {args.clients} x "
                      f"{args.size_mib} MiB ({r['bytes'] / MIB:.0f} MiB received, "
                      f"{r['coded']} gzip answers), probe: {r['probes']} answers, "
                      f"median {r['probe_median_ms']:.2f} ms, p99 {r['probe_p99_ms']:.2f} ms, "
                      f"max {r['probe_max_ms']:.2f} ms; {r['after']} ({r['after_bytes']:,} bytes) "
                      f"served {r['ready_s']:.2f} s after the load began; {r['turns']:,} loop "
                      f"turns, the longest {r['turn_max_ms']:.2f} ms at {r['turn_max_at_s']:.2f} s"
                      + (f", longest during the {r['gzip_ms']:.0f} ms of gzip "
                         f"{r['turn_max_gzip_ms']:.2f} ms ({r['turn_max_inside_gzip_ms']:.2f} ms "
                         f"among those begun after gzip began)" if compress else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
