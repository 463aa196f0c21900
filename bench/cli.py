"""`python -m bench`: build the site, start the servers, run the plan, write results.

    python -m bench                 # full run (under 20 minutes)
    python -m bench --quick         # about 2 minutes
    python -m bench --smoke         # seconds: checks the bench itself works
    python -m bench --servers reactor,nginx --out /tmp/results
    python -m bench --publish       # full run into bench/results/ and bench/RESULTS.md

Results go to bench/out/ (git-ignored) unless --out says otherwise; the committed
bench/results/ and the generated parts of bench/RESULTS.md change only with --publish.
Only processes this command started are stopped, by PID, in `finally` (and
at exit, and on SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import (headline, idle, loadgen, locust_runner, plots, report, runner, scenarios,
                   servers)
from bench.sitegen import build_site

BENCH_DIR = Path(__file__).resolve().parent
#: Where every run writes unless told otherwise: git-ignored, so running the bench never
#: modifies a tracked file.
DEFAULT_OUT = BENCH_DIR / "out"
#: The published full run that bench/RESULTS.md embeds; written only with --publish.
PUBLISHED_OUT = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
#: The parts of RESULTS.md that --publish rewrites, between these marker lines.
HEADLINE_MARKERS = ("<!-- headline: written by python -m bench --publish -->",
                    "<!-- end of headline -->")
TABLES_MARKERS = ("<!-- all tables: written by python -m bench --publish -->",
                  "<!-- end of all tables -->")

#: File descriptors wanted: the bench holds 10,000 idle client sockets, and
#: servers started from it inherit the limit (lighttpd needs 2 fds per
#: connection: 16,000 connections -> 33,000 fds). Raising the hard limit works
#: only as root; otherwise each stays within the inherited hard limit.
FD_WANTED = 40_000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short run (about 2 minutes)")
    size.add_argument("--smoke", action="store_true",
                      help="tiny run that only checks the bench works (tests use it)")
    p.add_argument("--servers", default=",".join(servers.DEFAULT_ORDER),
                   help="comma-separated, in run order (default: %(default)s); "
                        "those not installed are skipped")
    p.add_argument("--out", type=Path, default=None,
                   help=f"results directory (default: {DEFAULT_OUT.relative_to(BENCH_DIR.parent)}"
                        ", git-ignored)")
    p.add_argument("--publish", action="store_true",
                   help=f"a full run that replaces the committed results: writes to "
                        f"{PUBLISHED_OUT.relative_to(BENCH_DIR.parent)} and rewrites the "
                        f"headline and the tables in {RESULTS_MD.relative_to(BENCH_DIR.parent)}")
    p.add_argument("--runs", type=int, help="override: runs per figure (median taken)")
    p.add_argument("--duration", type=int, help="override: seconds per wrk run")
    p.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator (auto: wrk when installed, else a slow Python loader)")
    p.add_argument("--no-locust", action="store_true", help="skip the locust scenario")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and load to CPUs")
    p.add_argument("--keep-temp", action="store_true",
                   help="keep the temporary site, configs and server logs")
    args = p.parse_args(argv)
    args.out = resolve_out(p, args)
    if args.publish and (args.no_plots or not plots.matplotlib_available()):
        # RESULTS.md embeds the PNGs in bench/results/: a publish without them would leave the
        # previous run's plots beside this run's tables.
        p.error("--publish writes the plots RESULTS.md embeds: it needs matplotlib "
                "(pip install matplotlib) and takes no --no-plots")
    return args


def resolve_out(parser, args) -> Path:
    """The results directory: --out, bench/results/ with --publish, else bench/out/."""
    if not args.publish:
        return args.out or DEFAULT_OUT
    if args.out is not None:
        parser.error("--publish writes to bench/results/; it takes no --out")
    if getattr(args, "smoke", False) or getattr(args, "quick", False):
        parser.error("--publish replaces the published full run: not with --smoke or --quick")
    return PUBLISHED_OUT


def replace_between(text: str, markers: tuple, block: str) -> str:
    """`text` with the lines between the two marker lines replaced by `block`."""
    begin, end = markers
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"markers not found: {begin!r} ... {end!r}")
    start += len(begin)
    return text[:start] + "\n" + block.strip("\n") + "\n" + text[stop:]


def publish_results_md(results_md: Path, headline_table: str, tables: str) -> None:
    """Rewrite the generated parts of RESULTS.md (the prose around them stays)."""
    text = replace_between(results_md.read_text(), HEADLINE_MARKERS, headline_table)
    results_md.write_text(replace_between(text, TABLES_MARKERS, tables))


def choose_profile(args) -> scenarios.Profile:
    profile = scenarios.SMOKE if args.smoke else scenarios.QUICK if args.quick else scenarios.FULL
    if args.runs:
        profile = replace(profile, runs=args.runs)
    if args.duration:
        profile = replace(profile, wrk_duration_s=args.duration)
    return profile


def choose_cpus(no_pin: bool) -> tuple:
    """(server CPU, load CPU), or (None, None) when there are fewer than two."""
    if no_pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def choose_loader(requested: str, log) -> str:
    if requested == "wrk" and not loadgen.wrk_available():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if requested == "auto":
        if loadgen.wrk_available():
            return "wrk"
        log("wrk is not installed: using the slow Python loader; its figures only show "
            "that the bench works, they do not compare servers (apt-get install wrk)")
        return "python"
    return requested


def select_servers(names: str, log, skipped: list | None = None) -> list:
    """The specs named, in order; those not installed are logged (and listed in `skipped`)."""
    chosen = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        spec = servers.SPECS.get(name)
        if spec is None:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(servers.SPECS)}")
        if spec.available():
            chosen.append(spec)
        else:
            log(f"skipping {name}: not installed")
            if skipped is not None:
                skipped.append(f"{name} skipped: not installed")
    return chosen


def _first_line(command: list) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else "n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_meta(profile, loader, server_cpu, load_cpu, argv) -> dict:
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(argv),
        "profile": profile.name,
        "runs per figure": profile.runs,
        "seconds per wrk run": profile.wrk_duration_s,
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pinning": (f"server on CPU {server_cpu}, load generator on CPU {load_cpu} (taskset)"
                    if server_cpu is not None else "none"),
        "open files limit (soft/hard)": "/".join(
            str(v) for v in resource.getrlimit(resource.RLIMIT_NOFILE)),
        "loader": loader + (f" ({_first_line(['wrk', '--version'])})" if loader == "wrk" else ""),
    }
    if locust_runner.locust_command():
        meta["locust"] = _first_line([*locust_runner.locust_command(), "--version"])
    meta["notes"] = list(profile.notes)
    return meta


def check_content(server, site) -> list:
    """Fetch every site file once (also warms caches); return mismatches."""
    problems = []
    for path, size in site.files.items():
        try:
            status, body = servers.fetch(servers.HOST, server.port, path, timeout=10)
        except OSError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if status != 200 or len(body) != size:
            problems.append(f"{path}: status {status}, {len(body)} bytes, expected {size}")
    return problems


def start_all(pool, specs, site, work_dir, server_cpu, meta, log) -> dict:
    running = {}
    meta["servers"] = {}
    for spec in specs:
        try:
            server = pool.start(spec, site.root, work_dir, cpu=server_cpu,
                                expected_size=site.files[servers.READY_PATH])
        except Exception as exc:
            log(f"could not start {spec.name}: {exc}")
            continue
        problems = check_content(server, site) if spec.serves_site else []
        if problems:
            meta["notes"].append(f"{spec.name} served wrong content: {'; '.join(problems[:3])}")
        log(f"started {spec.name} (pid {server.pid}, port {server.port})")
        running[spec.name] = server
        meta["servers"][spec.name] = f"{spec.description}: `{' '.join(map(str, server.command))}`"
    return running


@contextlib.contextmanager
def workspace(prefix: str, keep_temp: bool, meta: dict, log):
    """A temp dir and a ServerPool; on exit every server started is stopped (its exit status
    recorded in `meta`) and the dir removed unless `keep_temp`."""
    work_dir = Path(tempfile.mkdtemp(prefix=prefix))
    pool = servers.ServerPool()
    try:
        yield work_dir, pool
    finally:
        statuses = pool.close()
        if keep_temp:
            log(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
        meta["server exit statuses"] = ", ".join(f"{k}={v}" for k, v in statuses.items())


def _stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through finally: servers get stopped


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def log(message):
        print(message, flush=True)

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    profile = choose_profile(args)
    loader = choose_loader(args.loader, log)
    skipped = []
    specs = select_servers(args.servers, log, skipped)
    if not specs:
        log("no server to run")
        return 2
    idle.raise_nofile_limit(FD_WANTED)
    server_cpu, load_cpu = choose_cpus(args.no_pin)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # the bench and its probes stay off the server CPU
    with_locust = not args.no_locust and locust_runner.locust_command() is not None
    if not args.no_locust and not with_locust and profile.locust_runs:
        log("locust is not installed: skipping the locust scenario (pip install locust)")

    meta = machine_meta(profile, loader, server_cpu, load_cpu, argv)
    meta["notes"] += skipped
    try:
        with workspace("reactor-http-bench-", args.keep_temp, meta, log) as (work_dir, pool):
            log(f"building the bench site in {work_dir} ...")
            site = build_site(work_dir, large_size=profile.large_size)
            running = start_all(pool, specs, site, work_dir / "servers", server_cpu, meta, log)
            if not running:
                log("no server started")
                return 2
            order = [s.name for s in specs if s.name in running]
            scenario_list = scenarios.build_scenarios(profile, with_locust=with_locust)
            plan = scenarios.build_plan(scenario_list, order, profile,
                                        groups={s.name: s.groups for s in specs})
            log(f"{len(plan)} steps, profile {profile.name}, servers: {', '.join(order)}")
            ctx = runner.BenchContext(profile, site, load_cpu, loader, work_dir)
            records = runner.execute(plan, running, ctx)
    except KeyboardInterrupt:
        log("\ninterrupted: stopping the servers this bench started")
        return 130

    summaries = report.summarize(records, scenario_list, order)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_files = [] if args.no_plots else plots.make_plots(summaries, args.out, log)
    report.write_json(args.out / "results.json", meta, summaries, records)
    markdown = report.render_markdown(meta, summaries, plot_files)
    (args.out / "results.md").write_text(markdown)
    log("")
    log(markdown)
    log(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}"
        + "".join(f", {p}" for p in plot_files))
    if args.publish:
        tables = report.render_markdown(meta, summaries, plot_files, title=False,
                                        plot_dir=f"{PUBLISHED_OUT.name}/")
        publish_results_md(RESULTS_MD, headline.headline(
            json.loads((args.out / "results.json").read_text())), tables)
        log(f"published: rewrote the headline and the tables in {RESULTS_MD}")
    return 0
