"""The bench/ harness, at tiny scale: its pieces in isolation and a --smoke run.

No timing assertions: these tests check that the bench works (parses,
builds, probes, starts and stops servers, writes results), not how fast any
server is. Parts that need wrk or locust skip cleanly without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# The bench harness measures with POSIX tools (resource, /proc, signals): not on Windows.
pytest.importorskip("resource", reason="the bench harness is POSIX-only")

from bench import (cli, headline, idle, loadgen, locust_runner, plots, procfs, report,
                   scenarios, servers, sitegen)
from bench.runner import RunRecord

REPO = Path(__file__).resolve().parent.parent
KIB = 1024

WRK_SAMPLE = """Running 2s test @ http://127.0.0.1:59639/1k.bin
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   197.02us  744.38us  13.58ms   98.38%
    Req/Sec    64.81k     7.69k   73.00k    65.00%
  128839 requests in 2.00s, 157.03MB read
Requests/sec:  64392.78
Transfer/sec:     78.48MB
BENCH_JSON {"requests": 128839, "duration_us": 2000830, "bytes": 164656242, "errors_connect": 0, \
"errors_read": 2, "errors_write": 0, "errors_timeout": 1, "non_2xx_3xx": 5, "latency_p50_us": 113, \
"latency_p90_us": 159, "latency_p99_us": 2847, "latency_max_us": 13577, "latency_mean_us": 197.0}
"""


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    return sitegen.build_site(tmp_path_factory.mktemp("bench-site"), large_size=256 * KIB)


@pytest.fixture(scope="module")
def http11_server(tiny_site, tmp_path_factory):
    """The bench's HTTP/1.1 http.server competitor, serving the tiny site."""
    server = servers.start_server(servers.SPECS["http.server"], tiny_site.root,
                                  tmp_path_factory.mktemp("bench-work"),
                                  expected_size=sitegen.SMALL_SIZE)
    yield server
    assert servers.stop_server(server) == 0


# ---------------------------------------------------------------- pure pieces

def test_parse_wrk_output_reads_the_lua_report():
    result = loadgen.parse_wrk_output(WRK_SAMPLE)
    assert result.requests == 128839
    assert result.duration_s == pytest.approx(2.00083)
    assert result.errors == 3
    assert result.non_2xx_3xx == 5
    assert result.latency_p50_ms == pytest.approx(0.113)
    assert result.latency_p99_ms == pytest.approx(2.847)
    assert result.rps == pytest.approx(128839 / 2.00083)
    assert result.to_dict()["mb_per_s"] == pytest.approx(164656242 / 2.00083 / 1e6)


def test_parse_wrk_output_without_the_report_line_is_an_error():
    with pytest.raises(ValueError):
        loadgen.parse_wrk_output(WRK_SAMPLE.split("BENCH_JSON")[0])


def test_wrk_command_pins_and_adds_close_header():
    command = loadgen.wrk_command("http://127.0.0.1:1/1k.bin", 64, 3, close=True, cpu=1)
    assert "-c64" in command and "-d3s" in command
    assert "Connection: close" in command
    if command[0].endswith("taskset"):
        assert command[1:3] == ["-c", "1"]


def test_build_site_writes_files_of_the_stated_sizes(tiny_site):
    root = tiny_site.root
    assert (root / "1k.bin").stat().st_size == 1 * KIB
    assert (root / "64k.bin").stat().st_size == 64 * KIB
    assert (root / "large.bin").stat().st_size == 256 * KIB
    manifest = json.loads(tiny_site.manifest_path.read_text())
    assert manifest == tiny_site.files
    for path, size in manifest.items():
        file = root / ("index.html" if path == "/" else path.lstrip("/"))
        assert file.stat().st_size == size
    index = (root / "index.html").read_bytes()
    for asset, _ in sitegen.PAGE_ASSETS:
        assert asset.encode() in index


def test_response_framing_of_the_idle_probe():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    assert idle.response_complete(head + b"ab") is False
    assert idle.response_complete(head + b"abc") is True
    assert idle.response_complete(b"HTTP/1.1 200 OK\r\n") is False
    assert idle.response_complete(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") is None


def test_procfs_reads_this_process_and_its_children():
    assert procfs.rss_kib(os.getpid()) > 0
    assert procfs.cpu_seconds(os.getpid()) >= 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procfs.process_tree(os.getpid())
        assert procfs.rss_kib(os.getpid()) > procfs.rss_kib(os.getpid(), include_children=False)
    finally:
        child.kill()
        child.wait()
    assert procfs.rss_kib(2 ** 22 + 12345) is None  # no such pid


def test_procfs_user_cpu_is_part_of_the_cpu():
    pid = os.getpid()
    user = procfs.user_cpu_seconds(pid)
    assert user is not None and 0 <= user <= procfs.cpu_seconds(pid, include_children=False)
    assert procfs.user_cpu_seconds(2 ** 22 + 12345) is None


def test_plan_interleaves_servers():
    profile = scenarios.QUICK
    scenario_list = scenarios.build_scenarios(profile, with_locust=False)
    plan = scenarios.build_plan(scenario_list[:1], ["reactor", "nginx"], profile)
    assert [s.server for s in plan] == ["reactor", "nginx"] * profile.runs
    assert [s.run for s in plan] == [1, 1, 2, 2, 3, 3]


def _record(scenario, server, rps, errors=0, run=1):
    result = {"tool": "wrk", "requests": int(rps), "duration_s": 1.0, "bytes": int(rps) * 1000,
              "errors": errors, "non_2xx_3xx": 0, "latency_p50_ms": 1.0, "latency_p99_ms": 2.0,
              "rps": rps, "mb_per_s": rps / 1000}
    return RunRecord(scenario, server, run, ok=True, result=result, server_cpu_s=0.5)


def test_summaries_take_medians_ratios_and_flag_errors():
    scenario = scenarios.Scenario("s", "small", scenarios.WRK, connections=64)
    records = [_record("s", "reactor", v, run=i) for i, v in enumerate((100, 300, 200))]
    records += [_record("s", "nginx", v, errors=e, run=i)
                for i, (v, e) in enumerate(((400, 0), (50, 7), (600, 0)))]
    [summary] = report.summarize(records, [scenario], ["reactor", "nginx"])
    reactor, nginx = summary["servers"]["reactor"], summary["servers"]["nginx"]
    assert reactor["rps"] == 200 and nginx["rps"] == 400
    assert nginx["ratio_to_reactor"] == pytest.approx(2.0)
    assert reactor["rps_per_cpu_s"] == pytest.approx(400)
    assert reactor["flag"] == "" and "7 socket errors" in nginx["flag"]
    markdown = report.render_markdown({"profile": "test"}, [summary], [])
    assert "| nginx | 400 | 2.00x |" in markdown
    assert "FLAGGED" in markdown


def test_nginx_config_is_one_worker_sendfile_no_access_log(tmp_path):
    ctx = servers.LaunchContext(root=tmp_path, port=12345, workdir=tmp_path)
    text = servers.nginx_config(ctx)
    for needle in ("worker_processes 1;", "sendfile on;", "access_log off;",
                   "listen 127.0.0.1:12345", f"pid {tmp_path}/nginx.pid;"):
        assert needle in text


def test_floor_runs_only_keepalive_and_the_log_pair_only_their_scenarios():
    profile = scenarios.FULL
    scenario_list = scenarios.build_scenarios(profile, with_locust=False)
    names = ["reactor", "nginx", "floor", "reactor-log", "nginx-log"]
    plan = scenarios.build_plan(scenario_list, names, profile,
                                groups={n: servers.SPECS[n].groups for n in names})
    by_group = {}
    for step in plan:
        by_group.setdefault(step.scenario.group, set()).add(step.server)
    assert by_group["small-keepalive"] == {"reactor", "nginx", "floor"}
    assert by_group["small-keepalive-log"] == {"reactor-log", "nginx-log"}
    assert by_group["medium"] == by_group["idle"] == {"reactor", "nginx"}
    assert "medium-keepalive-c64" in {s.key for s in scenario_list}


def test_access_log_pair_logs_to_files_and_ratios_use_reactor_log(tmp_path):
    ctx = servers.LaunchContext(root=tmp_path, port=12345, workdir=tmp_path)
    assert f"access_log {tmp_path}/access.log;" in servers.nginx_config(ctx, access_log=True)
    command = servers.SPECS["reactor-log"].command(ctx)
    assert "--quiet" not in command
    assert command[command.index("--access-log") + 1] == str(tmp_path / "access.log")
    scenario = next(s for s in scenarios.build_scenarios(scenarios.QUICK, with_locust=False)
                    if s.group == "small-keepalive-log")
    records = [_record(scenario.key, "reactor-log", 100), _record(scenario.key, "nginx-log", 50)]
    [summary] = report.summarize(records, [scenario], ["reactor-log", "nginx-log"])
    assert summary["servers"]["nginx-log"]["ratio_to_reactor"] == pytest.approx(0.5)
    assert "| 1 KiB file, keep-alive, 64 connections, access log to a file | 100.00 req/s | 2.00x" \
        in headline.headline({"scenarios": [summary]})


def test_reactor_to_floor_ratio_in_report_and_headline():
    scenario = scenarios.Scenario("small-keepalive-c64", "small", scenarios.WRK, connections=64,
                                  group="small-keepalive")
    records = [_record("small-keepalive-c64", "reactor", 100),
               _record("small-keepalive-c64", "floor", 400)]
    [summary] = report.summarize(records, [scenario], ["reactor", "floor"])
    assert summary["reference_vs_floor"] == pytest.approx(0.25)
    assert "reactor / floor: **0.25x**" in report.render_markdown({}, [summary], [])
    assert headline.headline({"scenarios": [summary]}).rstrip().endswith("| 0.25x |  |")


def test_publish_is_explicit_and_rewrites_only_between_the_markers(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "matplotlib_available", lambda: True)
    assert cli.parse_args([]).out == cli.DEFAULT_OUT != cli.PUBLISHED_OUT
    assert cli.parse_args(["--publish"]).out == cli.PUBLISHED_OUT
    for refused in (["--publish", "--smoke"], ["--publish", "--quick"],
                    ["--publish", "--out", str(tmp_path)], ["--publish", "--no-plots"]):
        with pytest.raises(SystemExit):
            cli.parse_args(refused)
    results_md = tmp_path / "RESULTS.md"
    (begin, end), (begin2, end2) = cli.HEADLINE_MARKERS, cli.TABLES_MARKERS
    results_md.write_text(f"prose\n{begin}\nold\n{end}\nmore prose\n{begin2}\nold\n{end2}\n")
    cli.publish_results_md(results_md, "| new headline |", "new tables")
    assert results_md.read_text() == (f"prose\n{begin}\n| new headline |\n{end}\nmore prose\n"
                                      f"{begin2}\nnew tables\n{end2}\n")
    published = (REPO / "bench" / "RESULTS.md").read_text()
    for marker in cli.HEADLINE_MARKERS + cli.TABLES_MARKERS:
        assert published.count(marker) == 1


def test_publish_needs_matplotlib_so_the_plots_match_the_tables(monkeypatch):
    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.parse_args(["--publish"])
    assert cli.parse_args([]).out == cli.DEFAULT_OUT  # other runs go on without plots


def test_published_text_names_no_path_of_this_machine(tmp_path):
    work = f"{tempfile.gettempdir()}/reactor-http-bench-tcq3a8w1"
    meta = {"locust": f"locust 2.47.0 from {sys.prefix}/lib/site-packages/locust",
            "servers": {"reactor": f"`/usr/bin/taskset -c 0 {sys.executable} -m reactor_http "
                                   f"--root {work}/www`",
                        "floor": f"`/opt/venv/bin/python3 {REPO}/bench/floor.py "
                                 f"--root {work}/www`",
                        "nginx": f"`/usr/sbin/nginx -c /work/elsewhere/bench/x/nginx.conf`"},
            "notes": ["stdout to /dev/null, CPU from /proc/PID/stat"]}
    markdown = report.render_markdown(meta, [], [])
    assert "`taskset -c 0 python -m reactor_http --root $WORK/www`" in markdown
    assert "`python bench/floor.py --root $WORK/www`" in markdown
    assert "from .../site-packages/locust" in markdown
    assert "/dev/null" in markdown and "/proc/PID/stat" in markdown  # not machine paths
    report.write_json(tmp_path / "results.json", meta, [], [])
    for text in (markdown, (tmp_path / "results.json").read_text()):
        assert not report.MACHINE_PATH.search(text), report.MACHINE_PATH.search(text)
        assert str(REPO) not in text and sys.executable not in text


def test_markdown_embeds_plots_by_relative_links(tmp_path):
    files = [tmp_path / "rps_vs_connections.png", tmp_path / "idle_rss.png"]
    markdown = report.render_markdown({}, [], files, title=False, plot_dir="results/")
    assert "![rps_vs_connections](results/rps_vs_connections.png)\n\n" in markdown
    assert str(tmp_path) not in markdown


# ---------------------------------------------------------------- against a server

def test_floor_answers_every_pipelined_head_with_the_1k_file(tiny_site, tmp_path):
    import socket
    server = servers.start_server(servers.SPECS["floor"], tiny_site.root, tmp_path,
                                  expected_size=sitegen.SMALL_SIZE)
    try:
        body = (tiny_site.root / "1k.bin").read_bytes()
        with socket.create_connection((servers.HOST, server.port), timeout=5) as sock:
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            expected = 2 * (b"Content-Length: 1024\r\n\r\n" + body)
            data = b""
            while len(data) < len(expected) + 200 and data.count(body) < 2:
                chunk = sock.recv(65536)
                assert chunk, "the floor closed a kept-alive connection"
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.count(body) == 2
    finally:
        assert servers.stop_server(server) == 0


def test_idle_probe_holds_connections(http11_server):
    result = idle.probe_idle_capacity(servers.HOST, http11_server.port, 20,
                                      server_pid=http11_server.pid, samples=3)
    assert result.answered == 20
    assert result.held == 20
    assert result.rss_after_kib > 0
    assert result.fresh_latency_ms is not None and result.fresh_failures == 0


def test_python_loader_gets_correct_answers(http11_server):
    result = loadgen.run_python_load(servers.HOST, http11_server.port, "/1k.bin",
                                     connections=2, duration_s=5, max_requests=50)
    assert result.requests == 50
    assert result.errors == 0 and result.non_2xx_3xx == 0
    assert result.bytes == 50 * KIB


def test_python_loader_counts_bad_statuses(http11_server):
    result = loadgen.run_python_load(servers.HOST, http11_server.port, "/missing",
                                     connections=1, duration_s=5, max_requests=5)
    assert result.non_2xx_3xx == 5


def test_large_file_study_client_reads_whole_responses(http11_server, tiny_site):
    from bench import large_file_study
    moved, seconds, cpu, _ = large_file_study.fast_client(http11_server.port, sitegen.LARGE_PATH,
                                                          connections=2, duration_s=0.5)
    assert moved > 2 * tiny_site.large_size  # at least one whole response per connection
    assert seconds >= 0.5 and cpu >= 0


def test_large_file_study_line_shows_the_server_cpu_and_its_user_part():
    from bench import large_file_study
    line = large_file_study.describe("reactor", 1234.0, 0.25, 0.04, 0.3, 0.001, ratio="0.90x")
    assert "server 0.250 CPU-s/GB (user 0.040)" in line and "client 0.300" in line
    assert line.split("server ")[1].split()[0] == "0.250"  # what the instruments test reads


def test_large_file_study_variant_runs_the_reactor_from_its_folder(tmp_path):
    from bench import large_file_study
    ctx = servers.LaunchContext(root=tmp_path, port=12345, workdir=tmp_path)
    command = large_file_study.variant_spec("v", "/tmp/a b").command(ctx)
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[2].startswith("cd '/tmp/a b' && exec ") and "-m reactor_http" in command[2]


@pytest.mark.slow
@pytest.mark.skipif(not loadgen.wrk_available(), reason="wrk is not installed")
def test_wrk_run_is_parsed(http11_server):
    result = loadgen.run_wrk(http11_server.url + "/1k.bin", connections=2, duration_s=1,
                             max_requests=100)
    assert result.requests > 0
    assert result.errors == 0 and result.non_2xx_3xx == 0


@pytest.mark.slow
@pytest.mark.skipif(locust_runner.locust_command() is None, reason="locust is not installed")
def test_locust_run_is_parsed(http11_server, tiny_site, tmp_path):
    result = locust_runner.run_locust(http11_server.url, users=3, spawn_rate=3, duration_s=2,
                                      out_dir=tmp_path, manifest=tiny_site.manifest_path)
    assert result.requests > 0
    # http.server ignores Range (200, not 206): the locustfile must count that as failed.
    names = " ".join(str(sample) for sample in result.failure_samples)
    assert result.failures == 0 or "Range" in names


# ---------------------------------------------------------------- the whole command

def run_bench(tmp_path, server_names):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--servers", server_names,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").exists()
    return data, proc.stdout


def _check_smoke_results(data, names):
    keys = {s["key"] for s in data["scenarios"]}
    assert {"small-keepalive-c4", "idle-20"} <= keys
    for scenario in data["scenarios"]:
        assert set(scenario["servers"]) == set(names)
    for run in data["runs"]:
        assert run["ok"], run
    for name in names:
        assert f"{name}=0" in data["meta"]["server exit statuses"]  # graceful stop


@pytest.mark.slow
def test_smoke_run_with_http_server(tmp_path):
    data, stdout = run_bench(tmp_path, "http.server")
    _check_smoke_results(data, ["http.server"])
    assert "[  1/" in stdout  # progress lines


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_smoke_run_writes_to_the_ignored_folder_and_leaves_tracked_files_alone():
    def status():
        return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=30).stdout

    before = status()
    results = cli.DEFAULT_OUT / "results.json"
    results.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--servers", "floor"],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(results.read_text())["scenarios"]
    assert status() == before


@pytest.mark.slow
def test_smoke_run_with_reactor_and_threaded(tmp_path):
    data, _ = run_bench(tmp_path, "reactor,threaded")
    _check_smoke_results(data, ["reactor", "threaded"])
    small = next(s for s in data["scenarios"] if s["key"] == "small-keepalive-c4")
    assert small["servers"]["reactor"]["ratio_to_reactor"] == pytest.approx(1.0)


# ---------------------------------------------------------------- bench/scaling.py (workers)

def test_scaling_specs_add_workers_only_to_the_2_worker_variants(tmp_path):
    from bench import scaling
    ctx = servers.LaunchContext(root=tmp_path, port=12345, workdir=tmp_path)
    commands = {spec.name: spec.command(ctx) for spec in scaling.build_specs(reuse_port=False)}
    assert "--workers" not in commands["reactor-1w"]
    assert commands["reactor-2w"][-2:] == ["--workers", "2"]
    assert commands["reactor-1w"] == servers.SPECS["reactor"].command(ctx)
    one = servers.nginx_config(ctx)
    assert one == servers.nginx_config(ctx, workers=1)  # the default is unchanged
    assert "master_process off;" in one and "reuseport" not in one
    two = servers.nginx_config(ctx, workers=2, reuse_port=True)
    for needle in ("master_process on;", "worker_processes 2;", "backlog=4096 reuseport;"):
        assert needle in two


def test_scaling_summary_gives_ratios_factors_and_worker_split():
    from bench import scaling
    scenario = scenarios.Scenario("s", "small", scenarios.WRK, connections=64)
    records = []
    for name, rps, errors, split in (("reactor-1w", 100, 0, [0.5]),
                                     ("reactor-2w", 150, 0, [0.45, 0.3]),
                                     ("nginx-1w", 400, 0, [0.5]),
                                     ("nginx-2w", 600, 3, [0.6, 0.2])):
        record = _record("s", name, rps, errors=errors)
        record.result.update(load_cpu_s=0.4, worker_cpu_s=split)
        records.append(record)
    order = [v.name for v in scaling.VARIANTS]
    [summary] = scaling.summarize(records, [scenario], order)
    assert summary["servers"]["nginx-1w"]["ratio_to_reference"] == pytest.approx(4.0)
    assert summary["scaling"]["reactor-2w"]["rps_factor"] == pytest.approx(1.5)
    assert summary["scaling"]["nginx-2w"]["flagged"] is True
    assert summary["servers"]["nginx-2w"]["worker_split"] == pytest.approx([0.75, 0.25])
    assert summary["servers"]["reactor-1w"]["load_cpu_share"] == pytest.approx(0.4)
    markdown = scaling.render_markdown({"profile": "test", "notes": scaling.NOTES}, [summary])
    assert "| reactor-2w | 150 | 1.50x | 1.50x |" in markdown
    assert "75% / 25%" in markdown and "FLAGGED" in markdown


@pytest.mark.slow
@pytest.mark.skipif(not loadgen.wrk_available(), reason="wrk is not installed")
def test_scaling_smoke_run(tmp_path):
    names = ["reactor-1w", "reactor-2w"]
    bases = "reactor"
    if servers.nginx_available():
        names += ["nginx-1w", "nginx-2w"]
        bases = "reactor,nginx"
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench.scaling", "--smoke", "--servers", bases,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "scaling.json").read_text())
    assert "2w/1w" in (out / "scaling.md").read_text()
    [scenario] = data["scenarios"]
    assert set(scenario["servers"]) == set(names)
    assert scenario["servers"]["reactor-1w"]["ratio_to_reference"] == pytest.approx(1.0)
    for run in data["runs"]:
        assert run["ok"], run
        workers = 2 if run["server"].endswith("-2w") else 1
        assert len(run["result"]["worker_cpu_s"]) == workers
        assert run["result"]["processes"] == workers + (workers > 1)
    for name in names:
        assert f"{name}=0" in data["meta"]["server exit statuses"]  # graceful stop
