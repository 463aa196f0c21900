"""`python -m bench.scaling`: requests/s at 1 and 2 workers, reactor_http against nginx.

    python -m bench.scaling                 # 3 runs of 5 s per figure (about 3 minutes)
    python -m bench.scaling --quick         # 1 run of 2 s per figure (about 30 s)
    python -m bench.scaling --smoke         # seconds: checks this command works (tests)
    python -m bench.scaling --out /tmp/results
    python -m bench.scaling --publish       # full run into the committed bench/results/

Four servers in one run: reactor-1w, reactor-2w (`--workers 2`: a supervisor
and two reactor processes on one port), nginx-1w and nginx-2w (a master and
`worker_processes 2`). Nothing is pinned: the workers need both cores, and
wrk (2 threads) runs on the same cores, so load and servers share the
machine and the 2w/1w factor is bounded by that (see `NOTES`). Scenario:
the 1 KiB file over keep-alive at 64 and 256 connections; servers
interleaved (A B C D, A B C D, ...), median of the runs. Each run reads the
CPU of the server's whole process tree (supervisor/master and workers,
bench/procfs.py) for requests per server-CPU-second and the split between
workers, and wrk's own CPU. Writes scaling.json and scaling.md to --out (default bench/out/,
git-ignored; bench/results/ only with --publish).

Only processes this command started are stopped, by PID (bench/servers.py's
ServerPool), in `finally`, at exit and on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench import cli, loadgen, procfs, report, runner, scenarios, servers
from bench.sitegen import MIB, build_site

REFERENCE = "reactor-1w"
WRK_THREADS = 2
#: How long a multi-process server may take to show all its workers (seconds).
WORKERS_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Variant:
    name: str       # e.g. reactor-2w
    base: str       # reactor or nginx
    workers: int


VARIANTS = (Variant("reactor-1w", "reactor", 1), Variant("reactor-2w", "reactor", 2),
            Variant("nginx-1w", "nginx", 1), Variant("nginx-2w", "nginx", 2))


def _profile(name, runs, duration, connections, cap=0, notes=()) -> scenarios.Profile:
    return scenarios.Profile(name=name, runs=runs, wrk_duration_s=duration,
                             keepalive_connections=connections, idle_connections=(),
                             locust_users=0, locust_duration_s=0, locust_runs=0,
                             large_size=1 * MIB, wrk_request_cap=cap, extra_scenarios=False,
                             notes=list(notes))


FULL = _profile("scaling-full", 3, 5, (64, 256))
QUICK = _profile("scaling-quick", 1, 2, (64, 256),
                 notes=["quick profile: one 2 s run per figure, expect noise"])
SMOKE = _profile("scaling-smoke", 1, 1, (8,), cap=200,
                 notes=["smoke profile: checks the command runs; figures mean nothing"])

NOTES = [
    "Nothing is pinned: the 2-worker servers need both cores, and wrk (2 threads) runs on the "
    "same cores. Load and servers share the machine's CPUs, so on 2 cores the 2w/1w factor is "
    "bounded well below 2: every core a second worker gains is a core wrk also needs.",
    "`server CPU` is the CPU of the server's whole process tree (supervisor/master included) "
    "divided by the run's duration, in cores; `wrk CPU` likewise for the load generator. "
    "`worker split` is each worker's share of its workers' CPU (an uneven split means the "
    "connections were spread unevenly).",
]


def reuse_port_like_reactor() -> bool:
    """Whether reactor_http's workers use SO_REUSEPORT here (else one shared socket):
    nginx-2w is given the same arrangement so the two are compared like for like."""
    try:
        from reactor_http.workers import kernel_migrates_requests
        return hasattr(socket, "SO_REUSEPORT") and kernel_migrates_requests()
    except Exception:
        return False


def build_specs(variants=VARIANTS, reuse_port: bool | None = None) -> list:
    """One ServerSpec per variant (the names are the variant names)."""
    if reuse_port is None:
        reuse_port = reuse_port_like_reactor()
    sharing = "SO_REUSEPORT sockets" if reuse_port else "one shared listening socket"
    specs = []
    for v in variants:
        if v.base == "reactor":
            base = servers.SPECS["reactor"]
            command = servers.reactor_http_command("reactor", v.workers)
            desc = ("reactor_http, one reactor process" if v.workers == 1 else
                    f"reactor_http --workers {v.workers} (supervisor + {v.workers} reactors, "
                    f"{sharing})")
            specs.append(servers.ServerSpec(v.name, base.available, command, desc))
        elif v.base == "nginx":
            command = servers.nginx_command(v.workers, reuse_port=reuse_port and v.workers > 1)
            desc = ("nginx, 1 worker (no master), sendfile on" if v.workers == 1 else
                    f"nginx, master + {v.workers} workers ({sharing}), sendfile on")
            specs.append(servers.ServerSpec(v.name, servers.nginx_available, command, desc))
        else:
            raise ValueError(f"unknown base server {v.base!r}")
    return specs


def wait_for_workers(server, workers: int, timeout: float = WORKERS_TIMEOUT_S) -> int:
    """Wait until the server's process tree holds its workers (plus the parent when > 1)."""
    wanted = workers + (1 if workers > 1 else 0)
    deadline = time.monotonic() + timeout
    count = len(procfs.process_tree(server.pid))
    while count < wanted and time.monotonic() < deadline and server.alive():
        time.sleep(0.05)
        count = len(procfs.process_tree(server.pid))
    if count < wanted:
        raise RuntimeError(f"{server.name}: {count} processes after {timeout:.0f} s, "
                           f"expected {wanted}")
    return count


# ---------------------------------------------------------------- one run

def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(step, server, ctx: runner.BenchContext, workers: int):
    """runner.run_step plus wrk's CPU and each worker's CPU (never raises)."""
    before = procfs.cpu_seconds_by_pid(server.pid)
    load_before = _children_cpu_s()  # wrk is the only child waited for during the run
    record = runner.run_step(step, server, ctx)
    load_cpu = _children_cpu_s() - load_before
    after = procfs.cpu_seconds_by_pid(server.pid)
    if record.ok:
        worker_pids = [p for p in after if workers == 1 or p != server.pid]
        record.result["load_cpu_s"] = load_cpu
        record.result["worker_cpu_s"] = sorted(
            (after[p] - before.get(p, 0.0) for p in worker_pids), reverse=True)
        record.result["processes"] = len(after)
    return record


def execute(plan: list, running: dict, workers: dict, ctx: runner.BenchContext) -> list:
    progress = runner.Progress(plan, ctx.profile, ctx.out)
    records = []
    for index, step in enumerate(plan):
        progress.begin(index, step)
        record = run_step(step, running[step.server], ctx, workers[step.server])
        progress.end(record)
        records.append(record)
        time.sleep(runner.SETTLE_BETWEEN_STEPS_S)
    return records


# ---------------------------------------------------------------- summaries

def summarize(records: list, scenario_list: list, order: list, variants=VARIANTS) -> list:
    """report.summarize (ratios to reactor-1w) plus CPU figures and 2w/1w factors."""
    summaries = report.summarize(records, scenario_list, order, reference=REFERENCE)
    by_name = {v.name: v for v in variants}
    for scenario in summaries:
        for name, s in scenario["servers"].items():
            s["ratio_to_reference"] = s.pop("ratio_to_reactor")
            ok = [r for r in records if r.scenario == scenario["key"] and r.server == name
                  and r.ok]
            loads = [r.result["load_cpu_s"] / r.result["duration_s"] for r in ok
                     if r.result.get("duration_s") and "load_cpu_s" in r.result]
            s["load_cpu_share"] = report._median(loads)
            totals: list = []
            for r in ok:
                for i, v in enumerate(r.result.get("worker_cpu_s", [])):
                    totals.extend([0.0] * (i + 1 - len(totals)))
                    totals[i] += v
            whole = sum(totals)
            s["worker_split"] = [t / whole for t in totals] if whole > 0 else None
        scenario["scaling"] = {}
        for base in sorted({v.base for v in variants}):
            one = scenario["servers"].get(f"{base}-1w", {})
            for v in variants:
                if v.base != base or v.workers == 1 or v.name not in scenario["servers"]:
                    continue
                many = scenario["servers"][v.name]
                scenario["scaling"][v.name] = {
                    "workers": by_name[v.name].workers,
                    "rps_factor": _div(many.get("rps"), one.get("rps")),
                    "per_cpu_factor": _div(many.get("rps_per_cpu_s"), one.get("rps_per_cpu_s")),
                    "flagged": bool(many.get("flag") or one.get("flag")),
                }
    return summaries


def _div(a, b):
    return a / b if a is not None and b else None


def _split(value) -> str:
    return "n/a" if not value else " / ".join(f"{x:.0%}" for x in value)


def _cores(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render_markdown(meta: dict, summaries: list) -> str:
    meta = report.public(meta)  # published: no absolute path of this machine
    out = ["# reactor_http scaling: 1 and 2 workers against nginx", ""]
    out += [f"- {k}: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    if meta.get("servers"):
        out.append("- servers:")
        out += [f"  - {k}: {v}" for k, v in meta["servers"].items()]
    if meta.get("notes"):
        out.append("- notes:")
        out += [f"  - {n}" for n in meta["notes"]]
    out.append("")
    out += ["Ratios (`x reactor-1w`) divide each figure by reactor-1w's in the same run; "
            "`2w/1w` divides a 2-worker server's req/s by the same server's at 1 worker. "
            "Runs with socket errors or non-2xx/3xx answers are flagged.", ""]
    for scenario in summaries:
        out += [f"## {scenario['title']}", ""]
        header = ["server", "req/s", "x reactor-1w", "2w/1w", "p50 ms", "p99 ms",
                  "req per server-CPU-s", "server CPU (cores)", "wrk CPU (cores)",
                  "worker split", "errors", "non-2xx/3xx", "status"]
        rows = []
        for name, s in scenario["servers"].items():
            factor = scenario["scaling"].get(name, {}).get("rps_factor")
            rows.append([name, report._fmt(s["rps"]), report._ratio(s["ratio_to_reference"]),
                         "" if name.endswith("-1w") else report._ratio(factor),
                         report._fmt(s["latency_p50_ms"], ".2f"),
                         report._fmt(s["latency_p99_ms"], ".2f"),
                         report._fmt(s["rps_per_cpu_s"]), _cores(s.get("server_cpu_share")),
                         _cores(s.get("load_cpu_share")), _split(s.get("worker_split")),
                         s["errors"], s["non_2xx_3xx"], report._flag_cell(s)])
        out += [report._table(header, rows), ""]
    out += ["## Scaling, 2 workers / 1 worker", ""]
    rows = []
    for scenario in summaries:
        for name, f in scenario["scaling"].items():
            rows.append([scenario["title"], name, report._ratio(f["rps_factor"]),
                         report._ratio(f["per_cpu_factor"]),
                         "**FLAGGED**" if f["flagged"] else "ok"])
    out += [report._table(["scenario", "server", "req/s 2w/1w", "req per CPU-s 2w/1w",
                           "status"], rows) if rows else "(no 2-worker figure)", ""]
    return "\n".join(out)


def write_json(path: Path, meta: dict, summaries: list, records: list) -> None:
    data = {"meta": meta, "scenarios": summaries, "runs": [r.to_dict() for r in records]}
    Path(path).write_text(json.dumps(report.public(json.loads(json.dumps(data, default=str))),
                                     indent=1))


# ---------------------------------------------------------------- command

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scaling",
                                description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one 2 s run per figure")
    size.add_argument("--smoke", action="store_true", help="tiny run that checks the command")
    p.add_argument("--servers", default="reactor,nginx",
                   help="base servers to include (default: %(default)s); missing ones are "
                        "skipped")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default: bench/out, git-ignored)")
    p.add_argument("--publish", action="store_true",
                   help="a full run that replaces the committed scaling.json and scaling.md "
                        "in bench/results/")
    p.add_argument("--runs", type=int, help="override: runs per figure (median taken)")
    p.add_argument("--duration", type=int, help="override: seconds per wrk run")
    p.add_argument("--keep-temp", action="store_true", help="keep the site, configs and logs")
    args = p.parse_args(argv)
    args.out = cli.resolve_out(p, args)
    return args


def choose_profile(args) -> scenarios.Profile:
    profile = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.runs:
        profile = replace(profile, runs=args.runs)
    if args.duration:
        profile = replace(profile, wrk_duration_s=args.duration)
    return profile


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def log(message):
        print(message, flush=True)

    signal.signal(signal.SIGTERM, cli._stop_on_sigterm)
    if not loadgen.wrk_available():
        log("wrk is not installed (apt-get install wrk): the scaling bench needs it")
        return 2
    profile = choose_profile(args)
    bases = {b.strip() for b in args.servers.split(",") if b.strip()}
    variants = [v for v in VARIANTS if v.base in bases]
    reuse_port = reuse_port_like_reactor()
    specs = []
    for spec in build_specs(variants, reuse_port):
        if spec.available():
            specs.append(spec)
        else:
            log(f"skipping {spec.name}: not installed")
    if not specs:
        log("no server to run")
        return 2
    workers = {v.name: v.workers for v in variants}

    meta = cli.machine_meta(profile, "wrk", None, None, argv)
    meta["command"] = "python -m bench.scaling " + " ".join(argv)
    meta["pinning"] = "none: servers and load share all CPUs"
    meta["loader"] += f", {WRK_THREADS} threads"
    meta["listening"] = ("SO_REUSEPORT, one socket per worker" if reuse_port else
                         "one shared listening socket (reactor_http uses SO_REUSEPORT only "
                         "with net.ipv4.tcp_migrate_req=1; nginx-2w is set up alike)")
    meta["notes"] = NOTES + meta["notes"]
    try:
        with cli.workspace("reactor-http-scaling-", args.keep_temp, meta, log) as \
                (work_dir, pool):
            log(f"building the bench site in {work_dir} ...")
            site = build_site(work_dir, large_size=profile.large_size)
            running = cli.start_all(pool, specs, site, work_dir / "servers", None, meta, log)
            for name, server in list(running.items()):
                try:
                    wait_for_workers(server, workers[name])
                except RuntimeError as exc:
                    log(f"dropping {name}: {exc}")
                    meta["notes"].append(f"{name} dropped: {exc}")
                    del running[name]
            if not running:
                log("no server started")
                return 2
            order = [s.name for s in specs if s.name in running]
            scenario_list = scenarios.build_scenarios(profile, with_locust=False)
            plan = scenarios.build_plan(scenario_list, order, profile)
            log(f"{len(plan)} steps, profile {profile.name}, servers: {', '.join(order)}")
            ctx = runner.BenchContext(profile, site, None, "wrk", work_dir,
                                      wrk_threads=WRK_THREADS)
            records = execute(plan, running, workers, ctx)
    except KeyboardInterrupt:
        log("\ninterrupted: stopping the servers this bench started")
        return 130

    summaries = summarize(records, scenario_list, order, variants)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "scaling.json", meta, summaries, records)
    markdown = render_markdown(meta, summaries)
    (args.out / "scaling.md").write_text(markdown)
    log("")
    log(markdown)
    log(f"wrote {args.out / 'scaling.json'}, {args.out / 'scaling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
