"""The one-off instruments in bench/ (not part of `python -m bench`), each run briefly.

An instrument that measures nothing must say so, not print zeros: each test here runs one for a
few seconds at tiny scale and checks that it measured something (a count or a time above zero).
No timing assertions beyond "more than nothing". Self-contained: no conftest helpers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The bench harness measures with POSIX tools (resource, /proc, signals): not on Windows.
pytest.importorskip("resource", reason="the bench harness is POSIX-only")

from bench import compression_stall, micro

REPO = Path(__file__).resolve().parent.parent


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m ARGS` from the repository root, output captured; fails the test on a hang."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------- bench/compression_stall.py

def test_compression_stall_refuses_a_log_without_turns(tmp_path):
    log = tmp_path / "stall.log"
    log.write_text("gzip 1.0 0.5\n")
    with pytest.raises(compression_stall.NothingMeasured, match="no loop turn"):
        compression_stall.loop_turns(log, 0.0, compress=True)
    log.write_text("turn 1.0 0.001\n")
    with pytest.raises(compression_stall.NothingMeasured, match="zlib.compress"):
        compression_stall.loop_turns(log, 0.0, compress=True)
    figures = compression_stall.loop_turns(log, 0.5, compress=False)
    assert figures["turns"] == 1 and figures["turn_max_ms"] == pytest.approx(1.0)
    with pytest.raises(compression_stall.NothingMeasured, match="no timing log"):
        compression_stall.loop_turns(tmp_path / "missing.log", 0.0, compress=False)


@pytest.mark.slow
def test_compression_stall_times_the_loop_that_runs():
    proc = run_module("-m", "bench.compression_stall", "--size-mib", "1", "--clients", "4",
                      "--runs", "1", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = json_lines(proc.stdout)
    assert [r["compress"] for r in runs] == [True, False]
    for run in runs:
        assert run["turns"] > 0 and run["turn_max_ms"] > 0, run
        assert run["probes"] > 0 and run["finished"], run
    assert runs[0]["gzip_calls"] > 0 and runs[0]["gzip_ms"] > 0
    assert runs[0]["after"] == "gzip"


@pytest.mark.slow
def test_compression_stall_fails_loudly_when_it_times_nothing():
    # The launcher as it would be if the loop stopped calling what it patches: no turn recorded.
    script = ("import sys, bench.compression_stall as c\n"
              "c.LAUNCHER = c.LAUNCHER.replace('poller.poll = timed_poll', 'pass')\n"
              "sys.exit(c.main(['--size-mib', '1', '--clients', '2', '--runs', '1']))\n")
    proc = run_module("-c", script)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no loop turn" in proc.stderr


# ---------------------------------------------------------------- bench/micro.py

def test_micro_measures_every_part_above_zero():
    proc = run_module("-m", "bench.micro", "--iterations", "200", "--repeats", "2", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert [row["key"] for row in data["parts"]] == [key for key, *_ in micro.PARTS]
    for row in data["parts"]:
        assert row["us"] > 0 and len(row["repeats_us"]) == 2, row
    assert data["meta"]["cpu"] and data["meta"]["iterations"] == 200


def test_micro_fails_when_a_part_measures_nothing(monkeypatch, capsys):
    def nothing(bench):
        return lambda n: (0, n)

    monkeypatch.setattr(micro, "PARTS", [("nothing", "a part that takes no time", "", nothing)])
    assert micro.main(["--iterations", "10", "--repeats", "1"]) == 1
    assert "no time measured for nothing" in capsys.readouterr().err


def test_micro_table_has_a_row_per_part():
    meta = {"cpu": "x", "cpus": 2, "python": "3", "system": "s", "repeats": 1, "iterations": 1}
    rows = [{"part": "p", "us": 1.5, "what": "w"}]
    assert "| p | 1.500 | w |" in micro.render(meta, rows)


# ---------------------------------------------------------------- bench/large_file_study.py

@pytest.mark.slow
def test_large_file_study_moves_bytes_through_the_reactor():
    proc = run_module("-m", "bench.large_file_study", "--servers", "reactor", "--runs", "1",
                      "--duration", "1", "--size-mib", "8", "--connections", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("run 1 reactor")]
    mb_per_s = float(line.split()[3].replace(",", ""))
    server_cpu = float(line.split("server ")[1].split()[0])
    assert mb_per_s > 0 and server_cpu > 0, line
    assert "ratio to reactor" in proc.stdout


# ---------------------------------------------------------------- bench/streams.py

@pytest.mark.slow
def test_streams_holds_streams_and_times_a_fan_out():
    proc = run_module("-m", "bench.streams", "--mode", "reactor", "--streams", "20")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [result] = json_lines(proc.stdout)
    assert result["mode"] == "reactor" and result["held"] == 20, result
    assert result["delivered"] == 20 and result["fanout_seconds"] > 0, result
    assert result["rss_after_kib"] > 0 and result["baseline_latency_ms"] > 0, result


# ---------------------------------------------------------------- bench/archive_load.py

@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_archive_load_measures_archives_and_the_others(tmp_path):
    done = run_module("-m", "bench.archive_load", "--size-mib", "4", "--seconds", "1",
                      "--clients", "4", "--json")
    assert done.returncode == 0, done.stderr
    results = json_lines(done.stdout)
    assert [result["engine"] for result in results] == ["reactor", "threaded"]
    for result in results:
        assert result["archives"] > 0 and result["archive_mb_s"] > 0
        assert result["alone"]["requests"] > 0 and result["during"]["requests"] > 0
