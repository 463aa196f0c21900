"""`python -m bench.archive_load`: a folder archived (--archives) while 64 clients fetch 1 KiB.

A short, bounded measurement (not part of `python -m bench`). It writes a folder of
`--size-mib` MiB (files of FILE_MIB MiB of random bytes, so tar_gz has real work) and a 1 KiB
file, starts one server per engine with --archives, and for each engine runs wrk (`--clients`
keep-alive connections on the 1 KiB file, `--seconds` long, `--latency`) twice: alone (the
baseline), then while one client downloads the folder as `--format` again and again, reading
every byte as fast as it can. Reported per engine: the others' p50 and p99 latency alone and
during the archive, the archive's MB/s and how many were made, and the server's RSS growth
(its peak VmRSS, sampled every RSS_PERIOD_S, over its VmRSS after a warm-up). A run in which no
archive finished, or wrk answered nothing, is an error (exit status 1), never a zero.

    python -m bench.archive_load                                   # 200 MiB zip, both engines
    python -m bench.archive_load --format tar_gz --seconds 10
    python -m bench.archive_load --size-mib 8 --seconds 2 --json    # the smoke test's scale

Every run is bounded: wrk by `--seconds`, each archive download by RUN_TIMEOUT_S. Only the
servers this command starts are stopped, by PID. Take `flock /tmp/bench.lock` around it on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import servers

from bench.procfs import rss_kib

HOST = "127.0.0.1"
MIB = 1 << 20
#: Size of each file of the archived folder (MiB).
FILE_MIB = 4
#: Seconds between two RSS samples of the server.
RSS_PERIOD_S = 0.05
#: Seconds one archive download may take before the run is abandoned.
RUN_TIMEOUT_S = 120.0
#: Seconds the server may take to print its start-up line.
START_TIMEOUT_S = 30.0
#: Bytes per recv_into of the archive client: large, so it spends little CPU per byte.
RECV_BYTES = 1 << 20
BANNER = re.compile(rb"at https?://[^:/]+:(\d+)/")
REPO = Path(__file__).resolve().parent.parent
WRK_PERCENTILE = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_REQUESTS = re.compile(r"(\d+) requests in")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


class NothingMeasured(RuntimeError):
    """No archive finished, or wrk reported no request: nothing to report."""


def make_folder(root: Path, size_mib: int) -> None:
    """`size_mib` MiB of random files under root/folder, and root/small.txt (1 KiB)."""
    folder = root / "folder"
    folder.mkdir(parents=True)
    for number in range(max(1, size_mib // FILE_MIB)):
        (folder / f"part{number:03d}.bin").write_bytes(os.urandom(min(size_mib, FILE_MIB) * MIB))
    (root / "small.txt").write_bytes(b"x" * 1023 + b"\n")


def start_server(root: Path, mode: str) -> tuple[subprocess.Popen, int]:
    """One server with --archives on a free port: (process, port)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "reactor_http", "--root", str(root), "--port", "0",
               "--mode", mode, "--quiet", "--archives", "--max-requests", str(10 ** 9),
               "--archive-max-bytes", str(1 << 40)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (match := BANNER.search(seen)):
        line = proc.stderr.readline()
        if not line or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"server did not start: {seen[-2000:]!r}")
        seen += line
    threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
    return proc, int(match.group(1))


def _drain(stream) -> None:
    """Read the server's stderr to its end, so it never blocks on a full pipe."""
    while stream.read(65536):
        pass


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s: only the process we started."""
    servers.stop_process(proc, 5)


def download(port: int, kind: str) -> int:
    """One archive of /folder/, read to the end (HTTP/1.0: ends with the close): bytes read."""
    request = f"GET /folder/?download={kind} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode()
    view = memoryview(bytearray(RECV_BYTES))
    received = 0
    with socket.create_connection((HOST, port), timeout=RUN_TIMEOUT_S) as sock:
        sock.sendall(request)
        while count := sock.recv_into(view):
            received += count
    return received


def archive_loop(port: int, kind: str, stop: threading.Event, results: list) -> None:
    """Download the archive again and again until `stop`: (bytes, seconds) per whole one."""
    while not stop.is_set():
        start = time.perf_counter()
        received = download(port, kind)
        if not stop.is_set():
            results.append((received, time.perf_counter() - start))


def sample_rss(pid: int, stop: threading.Event, peak: list) -> None:
    """Record the server's highest VmRSS (KiB) until `stop`."""
    while not stop.is_set():
        value = rss_kib(pid, include_children=False)
        if value is not None and value > peak[0]:
            peak[0] = value
        stop.wait(RSS_PERIOD_S)


def wrk(port: int, clients: int, seconds: int) -> dict:
    """wrk on /small.txt: requests and the p50 / p99 latency (ms)."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s",
         f"http://{HOST}:{port}/small.txt"], capture_output=True, text=True,
        timeout=seconds + 30)
    found = {int(p): float(value) * UNITS[unit]
             for p, value, unit in WRK_PERCENTILE.findall(result.stdout)}
    requests = WRK_REQUESTS.search(result.stdout)
    if not requests or int(requests.group(1)) == 0 or 99 not in found:
        raise NothingMeasured(f"wrk answered nothing: {result.stdout[-500:]} {result.stderr}")
    return {"requests": int(requests.group(1)), "p50_ms": found[50], "p99_ms": found[99]}


def measure(root: Path, mode: str, args) -> dict:
    """One engine: wrk alone, then wrk while archives are made; RSS growth over the second."""
    proc, port = start_server(root, mode)
    try:
        wrk(port, args.clients, 1)  # warm-up: the caches, the connections' first costs
        alone = wrk(port, args.clients, args.seconds)
        base = rss_kib(proc.pid, include_children=False) or 0
        stop, peak, archives = threading.Event(), [base], []
        threads = [threading.Thread(target=archive_loop, args=(port, args.format, stop,
                                                               archives)),
                   threading.Thread(target=sample_rss, args=(proc.pid, stop, peak))]
        for thread in threads:
            thread.start()
        try:
            during = wrk(port, args.clients, args.seconds)
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not archives and time.monotonic() < deadline:  # at least one whole archive
                time.sleep(0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(RUN_TIMEOUT_S)
    finally:
        stop_server(proc)
    if not archives:
        raise NothingMeasured("no archive finished")
    total = sum(size for size, _ in archives)
    return {"engine": mode, "format": args.format, "size_mib": args.size_mib,
            "alone": alone, "during": during, "archives": len(archives),
            "archive_mb_s": round(total / sum(t for _, t in archives) / 1e6, 1),
            "rss_growth_mib": round((peak[0] - base) / 1024, 1)}


def report(result: dict) -> str:
    alone, during = result["alone"], result["during"]
    return (f"{result['engine']:9} {result['format']:6} {result['size_mib']} MiB: others p50 "
            f"{alone['p50_ms']:.2f} -> {during['p50_ms']:.2f} ms, p99 {alone['p99_ms']:.2f} -> "
            f"{during['p99_ms']:.2f} ms, {alone['requests']} -> {during['requests']} requests; "
            f"{result['archives']} archives at {result['archive_mb_s']} MB/s; RSS +"
            f"{result['rss_growth_mib']} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--format", choices=("zip", "tar", "tar_gz"), default="zip")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--engines", default="reactor,threaded")
    parser.add_argument("--json", action="store_true", help="one JSON object per engine")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("archive_load: error: needs wrk", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="archive-load-"))
    try:
        make_folder(root, args.size_mib)
        for mode in args.engines.split(","):
            result = measure(root, mode, args)
            print(json.dumps(result) if args.json else report(result), flush=True)
    except NothingMeasured as exc:
        print(f"archive_load: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
