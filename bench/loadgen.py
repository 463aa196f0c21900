"""Load generators: wrk (the real one) and a small Python fallback.

`run_wrk` runs wrk with bench/wrk_report.lua, pinned to the load CPU, and
`parse_wrk_output` turns its output into a `LoadResult`. When wrk is not
installed, `run_python_load` produces the same `LoadResult` from a few
blocking http.client threads: far too slow to compare servers, but enough to
check that the whole bench pipeline works (tests, --smoke).
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.servers import pinned

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
JSON_MARKER = "BENCH_JSON "

#: wrk counts a response slower than this as a timeout error (seconds).
#: wrk's default is 2 s; a thread-per-connection server queuing 1,024
#: connections behind its thread cap can legitimately exceed it, and we want
#: that to show as an error, not be hidden.
WRK_TIMEOUT_S = 2

#: Grace beyond the run's duration before we kill a wrk that did not stop.
WRK_GRACE_S = 15

#: Per-request socket timeout of the Python fallback loader (seconds).
PY_LOADER_TIMEOUT_S = 5.0


@dataclass
class LoadResult:
    tool: str
    requests: int
    duration_s: float
    bytes: int
    errors: int             # connect/read/write/timeout errors
    non_2xx_3xx: int        # responses outside 200-399
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Body+head bytes read per second, in MB (10^6 bytes)."""
        return self.bytes / self.duration_s / 1e6 if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rps"] = self.rps
        d["mb_per_s"] = self.mb_per_s
        return d


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def parse_wrk_output(text: str) -> LoadResult:
    """Parse wrk's stdout; needs the BENCH_JSON line printed by wrk_report.lua."""
    for line in text.splitlines():
        if line.startswith(JSON_MARKER):
            data = json.loads(line[len(JSON_MARKER):])
            break
    else:
        raise ValueError("no BENCH_JSON line in wrk output (was wrk run with "
                         "bench/wrk_report.lua?):\n" + text[-2000:])
    return LoadResult(
        tool="wrk",
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        bytes=data["bytes"],
        errors=(data["errors_connect"] + data["errors_read"]
                + data["errors_write"] + data["errors_timeout"]),
        non_2xx_3xx=data["non_2xx_3xx"],
        latency_p50_ms=data["latency_p50_us"] / 1000,
        latency_p90_ms=data["latency_p90_us"] / 1000,
        latency_p99_ms=data["latency_p99_us"] / 1000,
        latency_max_ms=data["latency_max_us"] / 1000,
    )


def wrk_command(url: str, connections: int, duration_s: int, threads: int = 1,
                close: bool = False, max_requests_per_thread: int = 0,
                cpu: int | None = None, headers: tuple = ()) -> list:
    """The wrk command line for one run (pinned to cpu when given); `headers`: (name, value)."""
    command = ["wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{duration_s}s",
               "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(WRK_SCRIPT)]
    if close:
        command += ["-H", "Connection: close"]
    for name, value in headers:
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if max_requests_per_thread:
        command += ["--", str(max_requests_per_thread)]
    return pinned(command, cpu)


def run_wrk(url: str, connections: int, duration_s: int, close: bool = False,
            max_requests: int = 0, cpu: int | None = None, threads: int = 1,
            headers: tuple = ()) -> LoadResult:
    """Run wrk once and parse its report (one thread by default: it has one CPU to itself)."""
    command = wrk_command(url, connections, duration_s, threads=threads, close=close,
                          max_requests_per_thread=max_requests, cpu=cpu, headers=headers)
    proc = subprocess.run(command, capture_output=True, text=True,
                          timeout=duration_s + WRK_GRACE_S)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk_output(proc.stdout)


# ---------------------------------------------------------------- fallback

def _percentile(sorted_values: list, fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Tally:
    """Shared counters of the Python loader's threads."""

    def __init__(self, max_requests: int):
        self.lock = threading.Lock()
        self.remaining = max_requests
        self.latencies: list = []
        self.bytes = 0
        self.errors = 0
        self.bad_status = 0

    def claim(self) -> bool:
        with self.lock:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            return True


def _loader_thread(host, port, path, close, deadline, tally: _Tally, extra: tuple = ()):
    conn = None
    headers = {"Connection": "close"} if close else {}
    headers.update(extra)
    while time.monotonic() < deadline and tally.claim():
        start = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=PY_LOADER_TIMEOUT_S)
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - start
            with tally.lock:
                tally.latencies.append(elapsed)
                tally.bytes += len(body)
                if not 200 <= resp.status < 400:
                    tally.bad_status += 1
            if close or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            with tally.lock:
                tally.errors += 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def run_python_load(host: str, port: int, path: str, connections: int, duration_s: float,
                    max_requests: int, close: bool = False, headers: tuple = ()) -> LoadResult:
    """A slow but dependency-free load: bounded by max_requests and duration_s."""
    tally = _Tally(max_requests)
    deadline = time.monotonic() + duration_s
    threads = [threading.Thread(target=_loader_thread,
                                args=(host, port, path, close, deadline, tally, headers),
                                daemon=True)
               for _ in range(max(1, connections))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + PY_LOADER_TIMEOUT_S + 1)
    elapsed = time.perf_counter() - start
    lat = sorted(tally.latencies)
    ms = 1000.0
    return LoadResult(
        tool="python", requests=len(lat), duration_s=elapsed, bytes=tally.bytes,
        errors=tally.errors, non_2xx_3xx=tally.bad_status,
        latency_p50_ms=statistics.median(lat) * ms if lat else 0.0,
        latency_p90_ms=_percentile(lat, 0.90) * ms,
        latency_p99_ms=_percentile(lat, 0.99) * ms,
        latency_max_ms=(lat[-1] * ms) if lat else 0.0,
    )
