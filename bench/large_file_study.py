"""`python -m bench.large_file_study`: the 100 MiB file at 4 connections, servers side by side.

A short, bounded measurement for work on large-file throughput (not part of `python -m bench`).
It builds a site holding only the large file, starts each server pinned to the server CPU, drives
it from the load CPU with a client that reads 1 MiB per `recv_into` (or with `wrk -t1`), servers
interleaved, and prints per server the median MB/s, its ratio to the first server, the server's
CPU seconds per GB moved (and the user-space part of it: a Python server's interpreter), the
client's, and the share of bytes TCP retransmitted.

    python -m bench.large_file_study --servers lighttpd,reactor,nginx --runs 3 --duration 3
    python -m bench.large_file_study --variant big=/tmp/variants/big
    python -m bench.large_file_study --client wrk
    python -m bench.large_file_study --hold 60
    python -m bench.large_file_study --servers reactor,reactor-no-sendfile --runs 5

`--variant NAME=DIR` adds a reactor started from DIR (a folder holding a modified copy of the
`reactor_http` package), so a change is measured against the unchanged reactor and lighttpd in
the same run without touching the working tree. `--hold S` starts the servers, prints their PIDs
and ports, and waits S seconds (for `strace -p` and `ss -tmi` from another shell). Every server
started is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import cli, loadgen, procfs, servers
from bench.sitegen import LARGE_PATH, LARGE_SIZE, MIB, write_large_file

#: Seconds one wrk run may take beyond its duration before it is killed.
WRK_GRACE_S = 15
#: Bytes per recv_into of the fast client: large, so its per-call cost is negligible and what
#: it pays is the copy (wrk reads 8 KiB per call and runs out of CPU first).
CLIENT_RECV_BYTES = 1 << 20
#: Seconds the fast client waits in select before checking its deadline again.
CLIENT_POLL_S = 0.1
#: The file servers.wait_until_ready fetches, and its size in bytes.
READY_SIZE = 1024


#: A server name ending so (`reactor-no-sendfile`, `threaded-no-sendfile`) runs that engine of
#: reactor_http with --no-sendfile: file bodies read and sent instead of os.sendfile.
NO_SENDFILE = "-no-sendfile"


def spec_named(name: str) -> servers.ServerSpec:
    """The server `name` of servers.SPECS, or an engine of ours with --no-sendfile."""
    engine = name.removesuffix(NO_SENDFILE)
    if engine == name or engine not in ("reactor", "threaded"):
        return servers.SPECS[name]
    base = servers.reactor_http_command(engine)
    return servers.ServerSpec(name, servers.SPECS[engine].available,
                              lambda ctx: [*base(ctx), "--no-sendfile"],
                              f"reactor_http {engine} with --no-sendfile (read and send)")


def variant_spec(name: str, folder: str) -> servers.ServerSpec:
    """The reactor, run from `folder` (which holds a reactor_http package) instead of this tree."""
    base = servers.reactor_http_command("reactor")

    def command(ctx: servers.LaunchContext) -> list:
        inner = " ".join(shlex.quote(str(part)) for part in base(ctx))
        # exec: the shell becomes the server, so the PID we stop is the server's.
        return ["/bin/sh", "-c", f"cd {shlex.quote(folder)} && exec {inner}"]

    return servers.ServerSpec(name, lambda: True, command, f"reactor_http from {folder}")


def fast_client(port: int, path: str, connections: int, duration_s: float) -> tuple:
    """Keep-alive GETs of `path` on `connections` sockets for duration_s, bodies discarded.

    Returns (bytes read, seconds, CPU seconds this process used, retransmitted share)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {servers.HOST}\r\n\r\n".encode()
    view = memoryview(bytearray(CLIENT_RECV_BYTES))
    sel = selectors.DefaultSelector()
    left = {}   # socket -> body bytes still expected; None while reading the head
    heads = {}  # socket -> head bytes so far
    for _ in range(connections):
        sock = socket.create_connection((servers.HOST, port))
        sock.setblocking(False)
        sock.send(request)
        left[sock], heads[sock] = None, b""
        sel.register(sock, selectors.EVENT_READ)
    total = 0
    cpu_before = os.times()
    start = time.monotonic()
    deadline = start + duration_s
    try:
        while time.monotonic() < deadline:
            for key, _ in sel.select(CLIENT_POLL_S):
                sock = key.fileobj
                try:
                    n = sock.recv_into(view)
                except BlockingIOError:
                    continue
                if n == 0:
                    raise RuntimeError("the server closed a kept-alive connection")
                total += n
                if left[sock] is None:
                    heads[sock] += bytes(view[:n])
                    end = heads[sock].find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    length = int(re.search(rb"(?i)content-length:\s*(\d+)",
                                           heads[sock]).group(1))
                    left[sock] = length - (len(heads[sock]) - end - 4)
                    heads[sock] = b""
                else:
                    left[sock] -= n
                if left[sock] <= 0:  # a whole response: ask for the next
                    left[sock] = None
                    sock.send(request)
        elapsed = time.monotonic() - start
        cpu_after = os.times()
        retransmitted = retransmitted_share(port)
    finally:
        for sock in left:
            sel.unregister(sock)
            sock.close()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return total, elapsed, cpu, retransmitted


def retransmitted_share(port: int) -> float | None:
    """Bytes retransmitted / bytes sent over the server's open connections (from `ss -ti`)."""
    if shutil.which("ss") is None:
        return None
    text = subprocess.run(["ss", "-Htni", f"sport = :{port}"], capture_output=True,
                          text=True, timeout=10).stdout
    sent = sum(int(v) for v in re.findall(r"bytes_sent:(\d+)", text))
    again = sum(int(v) for v in re.findall(r"bytes_retrans:(\d+)", text))
    return again / sent if sent else None


def child_cpu_s() -> float:
    """CPU seconds (user + system) of every waited-for child so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(server, args, load_cpu) -> tuple:
    """One timed run against one server: (MB/s, server CPU-s/GB, of which user, client CPU-s/GB,
    retransmitted share)."""
    cpu_before = procfs.cpu_seconds(server.pid)
    user_before = procfs.user_cpu_seconds(server.pid) or 0.0
    if args.client == "wrk":
        command = loadgen.wrk_command(server.url + LARGE_PATH, args.connections,
                                      args.duration, cpu=load_cpu)
        wrk_before = child_cpu_s()
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=args.duration + WRK_GRACE_S)
        result = loadgen.parse_wrk_output(proc.stdout)
        moved, seconds, retransmitted = result.bytes, result.duration_s, None
        client_cpu = child_cpu_s() - wrk_before
    else:
        moved, seconds, client_cpu, retransmitted = fast_client(
            server.port, LARGE_PATH, args.connections, args.duration)
    server_cpu = procfs.cpu_seconds(server.pid) - cpu_before
    user_cpu = (procfs.user_cpu_seconds(server.pid) or 0.0) - user_before
    gb = moved / 1e9
    return (moved / seconds / 1e6, server_cpu / gb, user_cpu / gb, client_cpu / gb,
            retransmitted or 0.0)


def describe(name: str, mb_per_s: float, server: float, user: float, client: float,
             retrans: float, ratio: str = "") -> str:
    """One line of figures (`ratio`: the MB/s ratio to the reference, already formatted)."""
    return (f"{name:<12} {mb_per_s:8,.0f} MB/s {ratio:>6} server {server:.3f} CPU-s/GB "
            f"(user {user:.3f})  client {client:.3f} CPU-s/GB  "
            f"retransmitted {100 * retrans:.3f} %")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.large_file_study",
                                description=__doc__.splitlines()[0])
    p.add_argument("--servers", default="lighttpd,reactor,nginx",
                   help="comma-separated, in run order; the first is the ratios' reference "
                        "(default: %(default)s)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                   help="also run the reactor_http package found in DIR, named NAME")
    p.add_argument("--runs", type=int, default=3, help="runs per server (median taken)")
    p.add_argument("--duration", type=int, default=3, help="seconds per run")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--size-mib", type=int, default=LARGE_SIZE // MIB)
    p.add_argument("--client", choices=("fast", "wrk"), default="fast",
                   help="fast: 1 MiB per recv_into (default); wrk: wrk -t1, 8 KiB per read")
    p.add_argument("--hold", type=float, default=0,
                   help="start the servers, print their PIDs, wait this many seconds, stop")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.client == "wrk" and not loadgen.wrk_available():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    specs = [spec_named(n) for n in args.servers.split(",") if n]
    specs += [variant_spec(*v.split("=", 1)) for v in args.variant]
    specs = [s for s in specs if s.available()]
    server_cpu, load_cpu = cli.choose_cpus(no_pin=False)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # the fast client runs in this process
    work = Path(tempfile.mkdtemp(prefix="reactor-http-large-"))
    pool = servers.ServerPool()
    try:
        root = work / "www"
        root.mkdir()
        (root / servers.READY_PATH.lstrip("/")).write_bytes(b"x" * READY_SIZE)
        write_large_file(root / LARGE_PATH.lstrip("/"), args.size_mib * MIB)
        running = [pool.start(s, root, work / "servers", cpu=server_cpu,
                              expected_size=READY_SIZE) for s in specs]
        for server in running:
            print(f"{server.name}: pid {server.pid}, port {server.port}", flush=True)
        if args.hold:
            time.sleep(args.hold)
            return 0
        figures = {s.name: [] for s in running}
        for run in range(1, args.runs + 1):
            for server in running:
                row = run_once(server, args, load_cpu)
                figures[server.name].append(row)
                print(f"run {run} " + describe(server.name, *row), flush=True)
        medians = {name: [statistics.median(column) for column in zip(*rows)]
                   for name, rows in figures.items()}
        reference = running[0].name
        print(f"\nmedians of {args.runs} runs of {args.duration} s, {args.connections} "
              f"connections, {args.size_mib} MiB file, {args.client} client; "
              f"ratio to {reference}:")
        for name, row in medians.items():
            print(describe(name, *row, ratio=f"{row[0] / medians[reference][0]:.2f}x"))
    finally:
        pool.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
