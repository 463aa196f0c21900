"""`python -m bench.option_cost`: what a configuration costs the 1 KiB keep-alive path, same run.

Starts the reactor (or `--mode threaded`) once per variant, over a root holding one 1 KiB file,
pinned to the server CPU; drives each with `wrk -t1 -c64` from the load CPU, variants
interleaved round by round; prints per variant the median req/s and its ratio to the first.
A variant is `NAME=ARGS` (server arguments, shell-quoted); two variants are built in:

- `site-rules`: the same root with a 100-rule `_redirects` and a 100-rule `_headers` beside the
  file (issue 20's goal: at least 0.9x the same server without them); none of the rules names
  the file measured, as on a real site most requests match no rule;
- `site-rules-hit`: the same, plus a `_headers` block that matches the file (the answer
  carries its fields).

    python -m bench.option_cost                        # none, site-rules, site-rules-hit
    python -m bench.option_cost --variants none,site-rules --rounds 7 --duration 5
    python -m bench.option_cost --variant auth="--auth ann:pw" \
        --header "Authorization: Basic YW5uOnB3"

Every run is bounded (`--duration` seconds, `--rounds` rounds); every server started is stopped
by PID. Each answer is checked once before the load (status 200, 1,024 bytes), and a run with
errors or non-2xx answers is flagged, so a variant that answers 404 fast cannot pass for a
cheap one.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import loadgen, servers

PATH = "/1k.bin"
RULES = 100
BUILT_IN = ("none", "site-rules", "site-rules-hit")


def rule_files(count: int = RULES, hit: bool = False) -> dict[str, str]:
    """A `_redirects` and a `_headers` of `count` rules each, as a site's would look: moved
    sections with splats and placeholders, assets with long caching, pages revalidated."""
    redirects = ["# moved sections"]
    headers = []
    for number in range(count):
        kind = number % 4
        if kind == 0:
            redirects.append(f"/old{number}/*  /new{number}/:splat  301")
        elif kind == 1:
            redirects.append(f"/blog{number}/:year/:month/*  /posts/:year/:month/:splat  302")
        elif kind == 2:
            redirects.append(f"/app{number}/*  /index.html  200")
        else:
            redirects.append(f"/gone{number}  /404.html  410")
        headers += [f"/section{number}/*", f"  X-Section: {number}",
                    f"  Cache-Control: public, max-age={number + 60}"]
    if hit:
        headers += ["/*.bin", "  X-Binary: yes", "  Cache-Control: public, max-age=3600"]
    return {"_redirects": "\n".join(redirects) + "\n", "_headers": "\n".join(headers) + "\n"}


def make_root(base: Path, name: str) -> Path:
    """A root for variant `name`: the 1 KiB file, plus the rule files for the built-in ones."""
    root = base / name
    root.mkdir()
    (root / PATH.lstrip("/")).write_bytes(os.urandom(1024))
    if name.startswith("site-rules"):
        for file_name, text in rule_files(hit=name == "site-rules-hit").items():
            (root / file_name).write_text(text)
    return root


def start(root: Path, args: list, mode: str, cpu: int | None) -> tuple[subprocess.Popen, int]:
    """The reactor over `root` with `args`, ready to answer; (process, port)."""
    port = servers.free_port()
    command = servers.pinned([sys.executable, "-m", "reactor_http", "--root", str(root),
                              "--port", str(port), "--mode", mode, "--quiet",
                              "--keepalive-timeout", "300", "--max-requests", "1000000",
                              *args], cpu)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, body = servers.fetch(servers.HOST, port, PATH, timeout=1.0)
            if status == 200 and len(body) == 1024:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"the server with {args} did not answer {PATH} with 1,024 bytes")


def measure(variants: dict, args, base: Path) -> dict[str, list[float]]:
    """Rounds of every variant in turn: {name: [req/s per round]}."""
    figures: dict[str, list[float]] = {name: [] for name in variants}
    header = tuple(tuple(part.strip() for part in text.split(":", 1)) for text in args.header)
    for round_number in range(args.rounds):
        for name, server_args in variants.items():
            proc, port = start(base / name if name in BUILT_IN else base / "none",
                               server_args, args.mode, args.server_cpu)
            try:
                result = loadgen.run_wrk(f"http://{servers.HOST}:{port}{PATH}", 64,
                                         args.duration, cpu=args.load_cpu, headers=header)
            finally:
                servers.stop_process(proc, 15)
            flag = "" if not (result.errors or result.non_2xx_3xx) else \
                f"  FLAGGED: {result.errors} errors, {result.non_2xx_3xx} non-2xx/3xx"
            print(f"round {round_number + 1} {name}: {result.rps:,.0f} req/s{flag}", flush=True)
            figures[name].append(0.0 if flag else result.rps)
    return figures


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.option_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(BUILT_IN),
                        help="built-in variants to run, comma-separated (first: the reference)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="a variant of your own: server arguments over the plain root")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="a field every wrk request carries")
    parser.add_argument("--mode", default="reactor", choices=("reactor", "threaded"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 1 <= args.duration <= 60:
        parser.error("--rounds from 1 to 50, --duration from 1 to 60 seconds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not loadgen.wrk_available():
        print("bench.option_cost needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    variants: dict[str, list] = {}
    for name in filter(None, args.variants.split(",")):
        if name not in BUILT_IN:
            print(f"unknown built-in variant {name!r} (known: {', '.join(BUILT_IN)})",
                  file=sys.stderr)
            return 2
        variants[name] = []
    for text in args.variant:
        name, _, server_args = text.partition("=")
        variants[name] = shlex.split(server_args)
    with tempfile.TemporaryDirectory(prefix="option-cost-") as temp:
        base = Path(temp)
        make_root(base, "none")
        for name in variants:
            if name in BUILT_IN and name != "none":
                make_root(base, name)
        figures = measure(variants, args, base)
    reference = statistics.median(next(iter(figures.values())))
    print(f"\n{'variant':<16} {'median req/s':>14} {'ratio':>7}")
    for name, values in figures.items():
        median = statistics.median(values)
        ratio = median / reference if reference else 0.0
        print(f"{name:<16} {median:>14,.0f} {ratio:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
