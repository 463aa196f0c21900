"""Execute a plan: run each step against its server, record figures and server CPU.

Every step reads the server's CPU time (utime+stime, children included)
before and after, so each result carries requests per server-CPU-second:
the figure that stays honest when the load generator, not the server, is
the bottleneck. A failing step is recorded with its error and the bench goes
on; a server that died is reported, never silently skipped.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import idle, loadgen, locust_runner, procfs
from bench.scenarios import IDLE, LOCUST, WRK, Profile, Step, estimate_seconds
from bench.servers import HOST, RunningServer
from bench.sitegen import Site

#: Pause between steps so TIME_WAIT sockets and the previous run's tail do
#: not overlap the next measurement (seconds).
SETTLE_BETWEEN_STEPS_S = 0.1

#: Python fallback loader: requests per run cap (it is only a plumbing check).
PY_LOADER_MAX_REQUESTS = 2000


@dataclass
class BenchContext:
    profile: Profile
    site: Site
    load_cpu: int | None
    loader: str            # "wrk" or "python"
    work_dir: Path
    out: object = sys.stdout
    wrk_threads: int = 1   # bench/scaling.py: 2 unpinned threads


@dataclass
class RunRecord:
    scenario: str
    server: str
    run: int
    ok: bool
    error: str | None = None
    result: dict = field(default_factory=dict)
    server_cpu_s: float | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Prints what is running, i/N, elapsed and an estimate of the time left."""

    def __init__(self, steps: list, profile: Profile, out=sys.stdout):
        self.estimates = [estimate_seconds(s, profile) for s in steps]
        self.total = len(steps)
        self.out = out
        self.started = time.monotonic()

    def time_left(self, done: int) -> float:
        """Remaining estimate, scaled by how fast the finished steps really went."""
        elapsed = time.monotonic() - self.started
        done_estimate = sum(self.estimates[:done])
        scale = elapsed / done_estimate if done_estimate > 0 and done else 1.0
        return sum(self.estimates[done:]) * scale

    def begin(self, index: int, step: Step) -> None:
        pct = 100 * index // max(1, self.total)
        elapsed = time.monotonic() - self.started
        print(f"[{index + 1:>3}/{self.total} {pct:>3}%] {step.scenario.key:<22} "
              f"{step.server:<11} run {step.run}/{step.runs}  "
              f"elapsed {format_duration(elapsed)}, left ~{format_duration(self.time_left(index))}",
              end="", file=self.out, flush=True)

    def end(self, record: RunRecord) -> None:
        print(f"  -> {describe(record)}", file=self.out, flush=True)


def describe(record: RunRecord) -> str:
    """One short human line for a finished step."""
    if not record.ok:
        return f"FAILED: {record.error}"
    r = record.result
    if "held" in r:
        text = f"held {r['held']}/{r['requested']}"
        if r["rss_per_conn_kib"] is not None:
            text += f", {r['rss_per_conn_kib']:.1f} KiB/conn"
        lat = r["fresh_latency_ms"]
        return text + (f", fresh request {lat:.2f} ms" if lat is not None
                       else ", fresh request FAILED")
    bad = r.get("errors", 0) + r.get("non_2xx_3xx", 0) + r.get("failures", 0)
    flag = f"  !! {bad} errors/bad statuses" if bad else ""
    if "mb_per_s" in r and r.get("path") == "large":
        return f"{r['mb_per_s']:,.0f} MB/s{flag}"
    return f"{r['rps']:,.0f} req/s, p50 {r['latency_p50_ms']:.2f} ms, " \
           f"p99 {r['latency_p99_ms']:.2f} ms{flag}"


def _run_wrk_step(step: Step, server: RunningServer, ctx: BenchContext) -> dict:
    s = step.scenario
    if ctx.loader == "wrk":
        result = loadgen.run_wrk(server.url + s.path, s.connections, ctx.profile.wrk_duration_s,
                                 close=s.close, max_requests=ctx.profile.wrk_request_cap,
                                 cpu=ctx.load_cpu, threads=ctx.wrk_threads, headers=s.headers)
    else:
        cap = ctx.profile.wrk_request_cap or PY_LOADER_MAX_REQUESTS
        result = loadgen.run_python_load(HOST, server.port, s.path, min(s.connections, 16),
                                         ctx.profile.wrk_duration_s, cap, close=s.close,
                                         headers=s.headers)
    data = result.to_dict()
    data["path"] = s.group
    return data


def _run_locust_step(step: Step, server: RunningServer, ctx: BenchContext) -> dict:
    p = ctx.profile
    result = locust_runner.run_locust(
        server.url, p.locust_users, max(1, p.locust_users // 2), p.locust_duration_s,
        ctx.work_dir / "locust", manifest=ctx.site.manifest_path, cpu=ctx.load_cpu,
        tag=f"{server.name}-run{step.run}")
    return result.to_dict()


def _run_idle_step(step: Step, server: RunningServer, ctx: BenchContext) -> dict:
    result = idle.probe_idle_capacity(HOST, server.port, step.scenario.connections,
                                      server_pid=server.pid, path=step.scenario.path)
    return result.to_dict()


RUNNERS = {WRK: _run_wrk_step, LOCUST: _run_locust_step, IDLE: _run_idle_step}


def run_step(step: Step, server: RunningServer, ctx: BenchContext) -> RunRecord:
    """Run one step, never raising: failures become a record with ok=False."""
    record = RunRecord(step.scenario.key, step.server, step.run, ok=False)
    if not server.alive():
        record.error = f"server not running (exit status {server.proc.returncode})"
        return record
    cpu_before = procfs.cpu_seconds(server.pid)
    started = time.monotonic()
    try:
        record.result = RUNNERS[step.scenario.kind](step, server, ctx)
        record.ok = True
    except Exception as exc:  # a failed run is a result to report, not a crash
        record.error = f"{type(exc).__name__}: {exc}"
    record.wall_s = time.monotonic() - started
    cpu_after = procfs.cpu_seconds(server.pid)
    if cpu_before is not None and cpu_after is not None:
        record.server_cpu_s = cpu_after - cpu_before
    if record.ok and not server.alive():
        record.ok = False
        record.error = f"server exited during the run (status {server.proc.returncode})"
    return record


def execute(plan: list, servers: dict, ctx: BenchContext) -> list:
    """Run every step of the plan in order, printing progress; returns the records."""
    progress = Progress(plan, ctx.profile, ctx.out)
    records = []
    for index, step in enumerate(plan):
        progress.begin(index, step)
        record = run_step(step, servers[step.server], ctx)
        progress.end(record)
        records.append(record)
        time.sleep(SETTLE_BETWEEN_STEPS_S)
    return records
