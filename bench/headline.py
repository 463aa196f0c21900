"""`python -m bench.headline [results.json]`: the headline ratios of a bench run, as Markdown.

One row per scenario: the reactor's figure, then the reactor's ratio to each other server
measured in the same run (reactor / other, so above 1.0 means the reactor did better), the
reactor's ratio to the floor (bench/floor.py: the least any Python server can do, not a server)
where it ran, and the target against nginx where one was set. In the access-log scenarios the
reactor is reactor-log and nginx is nginx-log. The README quotes this table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "results.json"
#: The reactor / nginx ratios the project set itself as targets, by scenario key.
NGINX_TARGETS = {
    "small-keepalive-c1": 0.9, "small-keepalive-c64": 1.0, "small-keepalive-c256": 0.9,
    "small-close-c64": 0.8, "large-c4": 0.9,
    "small-keepalive-log-c64": 1.0, "small-keepalive-log-c256": 1.0,
}
#: Columns after the reactor's own figure, in order.
OTHERS = ("nginx", "lighttpd", "threaded", "http.server", "aiohttp", "sanic")
#: Servers of the access-log scenarios: name in those scenarios, by the name it stands for.
LOG_NAMES = {"reactor": "reactor-log", "nginx": "nginx-log"}


def _ratio(reactor: float, other: float | None, higher_is_better: bool) -> str:
    """reactor / other (inverted when lower is better), or a dash when missing."""
    if not other or not reactor:
        return "-"
    value = reactor / other if higher_is_better else other / reactor
    return f"{value:.2f}x"


def headline(results: dict) -> str:
    """The Markdown table for one results.json."""
    lines = ["| scenario | reactor | " + " | ".join(f"vs {name}" for name in OTHERS)
             + " | reactor / floor | target vs nginx |",
             "|---|---|" + "---|" * len(OTHERS) + "---|---|"]
    for scenario in results["scenarios"]:
        servers = scenario["servers"]
        if scenario.get("reference") == LOG_NAMES["reactor"]:
            servers = {name: servers[log] for name, log in LOG_NAMES.items() if log in servers}
        reactor = servers.get("reactor")
        if not reactor:
            continue
        if scenario["kind"] == "idle":
            metric, unit, better = "rss_per_conn_kib", "KiB/conn", False
        else:
            metric = scenario.get("metric", "rps")
            unit, better = scenario.get("metric_label", metric), True
        value = reactor.get(metric)
        if value is None:
            continue
        cells = [_ratio(value, (servers.get(name) or {}).get(metric), better) for name in OTHERS]
        cells.append(_ratio(value, (scenario["servers"].get("floor") or {}).get(metric), better))
        target = NGINX_TARGETS.get(scenario["key"])
        if target is not None and (servers.get("nginx") or {}).get(metric):
            met = value / servers["nginx"][metric] >= target
            target_text = f"{target:.1f}x ({'met' if met else 'not met'})"
        else:
            target_text = ""
        lines.append(f"| {scenario['title']} | {value:,.2f} {unit} | " + " | ".join(cells)
                     + f" | {target_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_RESULTS
    sys.stdout.write(headline(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
