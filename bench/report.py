"""Turn run records into summaries (medians, ratios to the reactor), JSON and Markdown.

Pure functions over plain data: no sockets, no processes, so tests can feed
them hand-made records.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from bench.scenarios import IDLE, LOCUST, WRK

REFERENCE = "reactor"   # every ratio is "this server / the reactor, same run"
#: bench/floor.py: the least any Python server can do (not a server). Where it ran, each
#: scenario also gets `reference / floor`.
FLOOR = "floor"
FLOOR_LABEL = "the floor, bench/floor.py, is the least any Python server can do: not a server"


# ---------------------------------------------------------------- published text

REPO = Path(__file__).resolve().parent.parent
#: The folders an absolute path of this machine starts with (what published results must not
#: name: they say where this machine keeps things, not what was measured).
MACHINE_PREFIXES = ("tmp", "var", "work", "home", "root", "usr", "opt", "srv", "mnt", "Users",
                    "private", "nix", "snap")
MACHINE_PATH = re.compile(r"(?<![\w.:/~$])/(?:%s)(?:/[^\s/`'\"(),;]+)+" % "|".join(MACHINE_PREFIXES))


def _prefix_path(match: re.Match) -> str:
    """A path inside the running interpreter's tree, as a published result says it."""
    return ".../" + "/".join(match.group(0).split("/")[-2:])


def _public_path(match: re.Match) -> str:
    """One absolute path, as a published result says it."""
    path = match.group(0)
    parts = path.split("/")
    name = parts[-1]
    if re.fullmatch(r"python[\d.]*", name) and parts[-2] == "bin":
        return "python"  # the interpreter, wherever it lives
    if parts[-2] in ("bin", "sbin"):
        return name  # a program on PATH: taskset, nginx, lighttpd
    if "bench" in parts[:-1] and parts[-2] == "bench":
        return f"bench/{name}"  # one of this repository's bench scripts
    match_work = re.search(r"/reactor-http-[\w-]+?-[\w]{8}(/.*)?$", path)
    if match_work:
        return "$WORK" + (match_work.group(1) or "")  # the run's temporary folder
    tail = [part for part in parts[-2:] if part and part not in MACHINE_PREFIXES]
    return ".../" + "/".join(tail or [name])  # anything else: its last names


def public(value):
    """`value` (str, or lists/dicts of them, recursively) with this machine's absolute paths
    replaced: the run's temporary folder by $WORK, programs and the interpreter by their names,
    bench scripts by their path in the repository, anything else by its last two names."""
    if isinstance(value, str):
        value = value.replace(sys.executable, "python")
        # The interpreter's own tree first: a virtual environment may live inside the checkout
        # (CI's does), and its files are not the repository's.
        value = re.sub(re.escape(sys.prefix) + r"(?:/[^\s/`'\"(),;]+)+", _prefix_path, value)
        value = value.replace(f"{REPO}/", "")
        temp = tempfile.gettempdir()
        value = re.sub(re.escape(temp) + r"/reactor-http-[\w-]+?-[\w]{8}(?![\w])", "$WORK", value)
        return MACHINE_PATH.sub(_public_path, value)
    if isinstance(value, dict):
        return {key: public(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(item) for item in value]
    return value


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def primary_metric(scenario) -> tuple:
    """(field, label, higher_is_better) that the ratio column compares."""
    if scenario.kind == IDLE:
        return "rss_per_conn_kib", "KiB per idle connection", False
    if scenario.group == "large":
        return "mb_per_s", "MB/s", True
    return "rps", "req/s", True


def _summarize_load(runs: list) -> dict:
    """wrk or locust runs -> medians, totals and per-CPU figures."""
    ok = [r for r in runs if r.ok]
    results = [r.result for r in ok]
    per_cpu, mb_per_cpu, cpu_share = [], [], []
    for r in ok:
        duration = r.result.get("duration_s") or 0
        if r.server_cpu_s and r.server_cpu_s > 0:
            per_cpu.append(r.result["requests"] / r.server_cpu_s)
            if "bytes" in r.result:
                mb_per_cpu.append(r.result["bytes"] / 1e6 / r.server_cpu_s)
            if duration:
                cpu_share.append(r.server_cpu_s / duration)
    return {
        "runs_ok": len(ok),
        "runs_failed": len(runs) - len(ok),
        "errors_text": sorted({r.error for r in runs if r.error}),
        "rps": _median(x["rps"] for x in results),
        "mb_per_s": _median(x.get("mb_per_s") for x in results),
        "latency_p50_ms": _median(x["latency_p50_ms"] for x in results),
        "latency_p99_ms": _median(x["latency_p99_ms"] for x in results),
        "requests_total": sum(x["requests"] for x in results),
        "errors": sum(x.get("errors", 0) for x in results),
        "non_2xx_3xx": sum(x.get("non_2xx_3xx", 0) for x in results),
        "failures": sum(x.get("failures", 0) for x in results),
        "failure_samples": [s for x in results for s in x.get("failure_samples", [])][:5],
        "rps_per_cpu_s": _median(per_cpu),
        "mb_per_cpu_s": _median(mb_per_cpu),
        "server_cpu_share": _median(cpu_share),
        "tool": results[0].get("tool", "locust") if results else None,
    }


def _summarize_idle(runs: list) -> dict:
    ok = [r for r in runs if r.ok]
    summary = {"runs_ok": len(ok), "runs_failed": len(runs) - len(ok),
               "errors_text": sorted({r.error for r in runs if r.error})}
    if ok:
        summary.update(ok[-1].result)
    return summary


def _flag(summary: dict, scenario) -> str:
    """Why this figure must not be trusted as-is ('' when nothing is wrong)."""
    reasons = []
    if summary.get("runs_failed"):
        reasons.append(f"{summary['runs_failed']} run(s) failed")
    if scenario.kind == IDLE:
        if summary.get("runs_ok") and summary.get("held", 0) < summary.get("requested", 0):
            reasons.append(f"held {summary.get('held')}/{summary.get('requested')}")
        if summary.get("fresh_failures"):
            reasons.append(f"{summary['fresh_failures']} fresh request(s) failed")
    else:
        for key, label in (("errors", "socket errors"), ("non_2xx_3xx", "non-2xx/3xx"),
                           ("failures", "failed checks")):
            if summary.get(key):
                reasons.append(f"{summary[key]} {label}")
    return "; ".join(reasons)


def summarize(records: list, scenarios: list, servers: list, reference: str = REFERENCE) -> list:
    """Per scenario: per server summary, its flag and its ratio to the reference
    (the reactor; bench/scaling.py passes reactor-1w). The key stays ratio_to_reactor."""
    out = []
    for scenario in scenarios:
        field, label, higher_better = primary_metric(scenario)
        per_server = {}
        for name in servers:
            runs = [r for r in records if r.scenario == scenario.key and r.server == name]
            if not runs:
                continue
            summary = _summarize_idle(runs) if scenario.kind == IDLE else _summarize_load(runs)
            summary["flag"] = _flag(summary, scenario)
            per_server[name] = summary
        ref_name = getattr(scenario, "reference", "") or reference
        ref_value = per_server.get(ref_name, {}).get(field)
        for summary in per_server.values():
            value = summary.get(field)
            summary["ratio_to_reactor"] = (value / ref_value
                                           if value is not None and ref_value else None)
        floor_value = per_server.get(FLOOR, {}).get(field)
        out.append({"key": scenario.key, "title": scenario.title, "kind": scenario.kind,
                    "reference": ref_name,
                    "reference_vs_floor": (ref_value / floor_value
                                           if ref_value and floor_value else None),
                    "group": scenario.group, "connections": scenario.connections,
                    "path": scenario.path, "close": scenario.close,
                    "metric": field, "metric_label": label, "higher_is_better": higher_better,
                    "servers": per_server})
    return out


def write_json(path: Path, meta: dict, summaries: list, records: list) -> None:
    """results.json: every figure, with no absolute path of this machine (see public)."""
    data = {"meta": meta, "scenarios": summaries, "runs": [r.to_dict() for r in records]}
    Path(path).write_text(json.dumps(public(json.loads(json.dumps(data, default=str))),
                                     indent=1))


# ---------------------------------------------------------------- Markdown

def _fmt(value, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _ratio(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _flag_cell(summary: dict) -> str:
    return f"**FLAGGED: {summary['flag']}**" if summary.get("flag") else "ok"


def _table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load_table(scenario: dict) -> str:
    large = scenario["metric"] == "mb_per_s"
    header = ["server", "MB/s" if large else "req/s", f"x {scenario.get('reference', REFERENCE)}",
              "p50 ms", "p99 ms",
              "MB per server-CPU-s" if large else "req per server-CPU-s", "server CPU",
              "errors", "non-2xx/3xx", "status"]
    rows = []
    for name, s in scenario["servers"].items():
        share = s.get("server_cpu_share")
        rows.append([name, _fmt(s["mb_per_s"] if large else s["rps"]),
                     _ratio(s["ratio_to_reactor"]), _fmt(s["latency_p50_ms"], ".2f"),
                     _fmt(s["latency_p99_ms"], ".2f"),
                     _fmt(s["mb_per_cpu_s"] if large else s["rps_per_cpu_s"]),
                     "n/a" if share is None else f"{share:.0%}",
                     s["errors"], s["non_2xx_3xx"], _flag_cell(s)])
    return _table(header, rows)


def _locust_table(scenario: dict) -> str:
    header = ["server", "req/s", "x reactor", "p50 ms", "p99 ms", "requests",
              "failed checks", "req per server-CPU-s", "status"]
    rows = [[name, _fmt(s["rps"]), _ratio(s["ratio_to_reactor"]),
             _fmt(s["latency_p50_ms"], ".1f"), _fmt(s["latency_p99_ms"], ".1f"),
             s["requests_total"], s["failures"], _fmt(s["rps_per_cpu_s"]), _flag_cell(s)]
            for name, s in scenario["servers"].items()]
    text = _table(header, rows)
    samples = [(name, sample) for name, s in scenario["servers"].items()
               for sample in s.get("failure_samples", [])]
    if samples:
        text += "\n\nFailed checks (first few per server):\n\n" + "\n".join(
            f"- {name}: `{req}`: {err} (x{count})" for name, (req, err, count) in samples)
    return text


def _idle_table(scenario: dict) -> str:
    header = ["server", "held / opened", "RSS before MiB", "RSS with idle MiB",
              "KiB per connection", "x reactor", "fresh request ms (median)", "status"]
    rows = []
    for name, s in scenario["servers"].items():
        mib = (lambda k: None if s.get(k) is None else s[k] / 1024)
        rows.append([name, f"{s.get('held', 0):,} / {s.get('requested', 0):,}",
                     _fmt(mib("rss_before_kib"), ".1f"), _fmt(mib("rss_after_kib"), ".1f"),
                     _fmt(s.get("rss_per_conn_kib"), ".2f"), _ratio(s["ratio_to_reactor"]),
                     _fmt(s.get("fresh_latency_ms"), ".2f", none="failed"), _flag_cell(s)])
    return _table(header, rows)


def render_markdown(meta: dict, summaries: list, plots: list, title: bool = True,
                    plot_dir: str = "") -> str:
    """The whole results.md: how it was run, then one table per scenario.

    title=False leaves out the top heading and plot_dir prefixes the plot links (for the
    copy embedded in bench/RESULTS.md)."""
    meta = public(meta)  # published: no absolute path of this machine
    out = ["# reactor_http bench results", ""] if title else []
    out += [f"- {key}: {value}" for key, value in meta.items() if not isinstance(value, (dict, list))]
    for key in ("servers", "notes"):
        if meta.get(key):
            out.append(f"- {key}:")
            items = meta[key].items() if isinstance(meta[key], dict) else enumerate(meta[key])
            out += [f"  - {k}: {v}" if isinstance(meta[key], dict) else f"  - {v}" for k, v in items]
    out += ["", "Ratios (`x reactor`) divide each server's figure by the reactor's in the same "
            "run (in the access-log scenarios, by reactor-log's). For idle connections the "
            "ratio compares KiB per connection (lower is better). "
            "Any run with errors, non-2xx/3xx answers or failed checks is flagged.", ""]
    for scenario in summaries:
        out += [f"## {scenario['title']}", ""]
        if not scenario["servers"]:
            out += ["(no server ran this scenario)", ""]
            continue
        if scenario["kind"] == WRK:
            out.append(_load_table(scenario))
            if scenario.get("reference_vs_floor") is not None:
                out += ["", f"{scenario['reference']} / floor: "
                        f"**{scenario['reference_vs_floor']:.2f}x** ({FLOOR_LABEL})."]
        elif scenario["kind"] == LOCUST:
            out.append(_locust_table(scenario))
        else:
            out.append(_idle_table(scenario))
        out.append("")
    if plots:
        out += ["## Plots", ""]
        for plot in plots:  # relative links: they work from the folder the Markdown is in
            out += [f"![{Path(plot).stem}]({plot_dir}{Path(plot).name})", ""]
    return "\n".join(out)
