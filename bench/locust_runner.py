"""Run bench/locustfile.py headless against one server and read its CSV stats."""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.servers import pinned

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"

#: Seconds locust may take beyond -t (start-up, stopping users, writing CSV).
LOCUST_GRACE_S = 30
#: Seconds a user may take to finish its current task when the time is up.
LOCUST_STOP_TIMEOUT_S = 2


@dataclass
class LocustResult:
    requests: int
    failures: int
    rps: float
    latency_p50_ms: float
    latency_p99_ms: float
    duration_s: float
    failure_samples: list = field(default_factory=list)  # [(name, error, count)]

    def to_dict(self) -> dict:
        return asdict(self)


def locust_command() -> list | None:
    """How to run locust here: its script, or `python -m locust`, or None."""
    exe = shutil.which("locust")
    if exe:
        return [exe]
    if importlib.util.find_spec("locust") is not None:
        return [sys.executable, "-m", "locust"]
    return None


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def parse_locust_csv(prefix: str | Path, duration_s: float) -> LocustResult:
    """Read PREFIX_stats.csv (Aggregated row) and PREFIX_failures.csv."""
    prefix = str(prefix)
    with open(prefix + "_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    total = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if total is None:
        raise ValueError(f"no Aggregated row in {prefix}_stats.csv")
    samples = []
    failures_path = Path(prefix + "_failures.csv")
    if failures_path.exists():
        with open(failures_path, newline="") as f:
            for row in csv.DictReader(f):
                samples.append((row.get("Name"), row.get("Error"), int(_number(row.get("Occurrences")))))
    return LocustResult(
        requests=int(_number(total["Request Count"])),
        failures=int(_number(total["Failure Count"])),
        rps=_number(total["Requests/s"]),
        latency_p50_ms=_number(total.get("50%") or total.get("Median Response Time")),
        latency_p99_ms=_number(total.get("99%")),
        duration_s=duration_s,
        failure_samples=samples[:5],
    )


def run_locust(url: str, users: int, spawn_rate: int, duration_s: int, out_dir: Path,
               manifest: Path | None = None, large_path: str = "/large.bin",
               cpu: int | None = None, tag: str = "locust") -> LocustResult:
    """One headless locust run, bounded by -t (and by a subprocess timeout)."""
    base = locust_command()
    if base is None:
        raise RuntimeError("locust is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / tag
    command = pinned([*base, "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
                      "-r", str(spawn_rate), "-t", f"{duration_s}s", "--host", url,
                      "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
                      "--stop-timeout", str(LOCUST_STOP_TIMEOUT_S)], cpu)
    env = dict(os.environ, BENCH_LARGE_PATH=large_path)
    if manifest is not None:
        env["BENCH_MANIFEST"] = str(manifest)
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=duration_s + LOCUST_GRACE_S)
    # locust exits 1 when any request failed; that is a result, not a crash.
    if not Path(str(prefix) + "_stats.csv").exists():
        raise RuntimeError(f"locust failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return parse_locust_csv(prefix, duration_s)
