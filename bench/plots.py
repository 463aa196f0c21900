"""PNG plots of the summaries (matplotlib, optional).

`make_plots` returns the files it wrote; without matplotlib it writes none
and says so. Each plot reads only the summaries, never the raw runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _series(summaries: list, group: str, field: str) -> dict:
    """server -> [(x = connections, y = field)] over the scenarios of a group."""
    series = {}
    for scenario in summaries:
        if scenario["group"] != group:
            continue
        for name, s in scenario["servers"].items():
            if s.get(field) is not None:
                series.setdefault(name, []).append((scenario["connections"], s[field]))
    return series


def _line_plot(ax, series: dict, xlabel: str, ylabel: str, logx: bool = True):
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def _save(plt, fig, path: Path) -> bool:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_rps_vs_connections(plt, summaries, path: Path) -> bool:
    series = _series(summaries, "small-keepalive", "rps")
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _line_plot(ax, series, "keep-alive connections", "requests/s (1 KiB file)")
    ax.set_title("Requests per second vs connections")
    return _save(plt, fig, path)


def plot_latency(plt, summaries, path: Path) -> bool:
    p50 = _series(summaries, "small-keepalive", "latency_p50_ms")
    p99 = _series(summaries, "small-keepalive", "latency_p99_ms")
    if not p50:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _line_plot(left, p50, "keep-alive connections", "p50 latency (ms)")
    _line_plot(right, p99, "keep-alive connections", "p99 latency (ms)")
    for ax in (left, right):
        ax.set_yscale("log")
    fig.suptitle("Latency, 1 KiB file (wrk)")
    return _save(plt, fig, path)


def plot_idle_rss(plt, summaries, path: Path) -> bool:
    rss = {name: [(x, kib / 1024) for x, kib in pts]
           for name, pts in _series(summaries, "idle", "rss_after_kib").items()}
    latency = _series(summaries, "idle", "fresh_latency_ms")
    if not rss:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _line_plot(left, rss, "idle keep-alive connections", "server RSS (MiB)")
    left.set_title("Memory while holding idle connections")
    if latency:
        _line_plot(right, latency, "idle keep-alive connections", "fresh request (ms, median)")
    right.set_title("A fresh request's latency meanwhile")
    return _save(plt, fig, path)


def plot_large_mbps(plt, summaries, path: Path) -> bool:
    scenario = next((s for s in summaries if s["group"] == "large"), None)
    if scenario is None:
        return False
    bars = [(n, s["mb_per_s"]) for n, s in scenario["servers"].items() if s.get("mb_per_s")]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names, values = zip(*bars)
    ax.bar(names, values)
    ax.set_ylabel("MB/s")
    ax.set_title(scenario["title"])
    ax.grid(True, axis="y", alpha=0.3)
    return _save(plt, fig, path)


PLOTS = (
    ("rps_vs_connections.png", plot_rps_vs_connections),
    ("latency_p50_p99.png", plot_latency),
    ("idle_rss.png", plot_idle_rss),
    ("large_file_mbps.png", plot_large_mbps),
)


def make_plots(summaries: list, out_dir: Path, log=print) -> list:
    """Write every plot that has data; returns their paths ([] without matplotlib)."""
    if not matplotlib_available():
        log("matplotlib is not installed: skipping plots (pip install matplotlib)")
        return []
    plt = _pyplot()
    written = []
    for filename, plot in PLOTS:
        path = Path(out_dir) / filename
        if plot(plt, summaries, path):
            written.append(path)
    return written


def main(argv=None) -> int:
    """`python -m bench.plots RESULTS_JSON`: the plots of a finished run, written beside it.

    Plots read only the summaries, so those of a published run can be remade from its
    results.json (say, where the run itself had no matplotlib)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=main.__doc__)
    parser.add_argument("results_json", type=Path)
    args = parser.parse_args(argv)
    summaries = json.loads(args.results_json.read_text())["scenarios"]
    if not matplotlib_available():
        print("matplotlib is not installed (pip install matplotlib)")
        return 1
    for path in make_plots(summaries, args.results_json.parent):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
