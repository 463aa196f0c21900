"""`python -m bench.micro`: where each microsecond of the reactor's per-request work goes.

In-process and bounded (not part of `python -m bench`): a Site on a temporary folder holding a
1 KiB file, one HeadParser, the engine's counters, and the request head wrk sends, and then each
part of the reactor's work for the dominant case (a keep-alive GET of a small cached file) timed
alone, without the network: the head memo, the protocol's short and general routes, the
responder's answer cache, the Date field, the `--status` counters, the access line, the idle
timer, and readiness (the one part that needs descriptors: socket pairs with a byte waiting).
Prints one row per part, microseconds per request, the median of `--repeats` repeats of
`--iterations` requests each; `--json` prints the same as one JSON object. Every figure must be
above zero, or the command fails (exit status 1): an instrument must be able to fail.

    python -m bench.micro                      # about 10 s
    python -m bench.micro --iterations 2000 --repeats 3 --json

Every row includes the cost of its own timing loop and of one Python call into this module's
protocol adapter (the "timing loop" row measures that alone): the reactor pays neither.
bench/RESULTS.md ("Where each microsecond goes") is written from this command's output.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The reactor_http pieces measured, imported from where they live now (one place to update).
from reactor_http.config import Config
from reactor_http.deadlines import DeadlineQueue
from reactor_http.engine import ConnectionLog
from reactor_http.logs import LogSink
from reactor_http.parser import Limits, parse_head
from reactor_http.poller import READ, Poller
from reactor_http.protocol import HeadParser, HttpConnection
from reactor_http.responder import respond
from reactor_http.website import Site
from reactor_http.stats import Stats

#: The bench's small file and the request head wrk sends for it.
FILE_NAME = "1k.bin"
FILE_SIZE = 1024
HEAD = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
#: Connections in a loop turn of the 64-connection scenario (each sends one request per turn).
TURN = 64
#: The fake engine clock advances this much per loop turn (seconds): far below the answer
#: cache's lifetime, so the cached answer stays valid for millions of turns.
TICK = 1e-6
PEER = "127.0.0.1"


# ==== THE PROTOCOL ADAPTER ======================================================================
# The only code in this module that calls HttpConnection's API (the protocol is being reshaped:
# when take_request / next_exchange / response_done change, change this function and nothing else).

def protocol_adapter(site, parser, stats):
    """(connect, short, general) for driving the protocol as the reactor does.

    connect() -> a new idle keep-alive connection.
    short(conn, data, now) -> the exchange, by the short route: `data` is one whole request
        head seen before, its answer cached (the reactor's `take_request` then `response_done`
        once the single send went out).
    general(conn, data, now) -> the exchange, by the general route (`receive`,
        `next_exchange`, `response_done`).
    The exchange (messages.Exchange) is what the engine hands to ConnectionLog.exchange.
    """

    def connect():
        return HttpConnection(site, parser=parser, stats=stats, peer=PEER)

    def short(conn, data, now):
        exchange = conn.take_request(data, now)
        conn.response_done(exchange.plan, now)
        return exchange

    def general(conn, data, now):
        conn.receive(data)
        exchange = conn.next_exchange(now)
        conn.response_done(exchange.plan, now)
        return exchange

    return connect, short, general

# ================================================================================================


class AppendOnlyLogs:
    """A logs object whose access line is only appended (with its timestamp), never written:
    what ConnectionLog.exchange costs the loop, without the writer thread."""

    access_enabled = True
    connection_enabled = False

    def __init__(self):
        self.lines = []

    def access_parts(self, prefix: str, tail: str) -> None:
        self.lines.append((prefix, time.time(), tail))


class Bench:
    """The pieces every part uses, built once on a temporary folder."""

    def __init__(self, root: Path):
        self.root = root
        (root / FILE_NAME).write_bytes(os.urandom(FILE_SIZE))
        self.path = str(root / FILE_NAME)
        config = Config(root=str(root), quiet=True, max_requests=10 ** 9).validate()
        self.config = config
        # As the reactor makes it: requests of one loop turn (one `now`) may share one stat.
        self.site = Site(config, single_thread=True)
        self.parser = HeadParser(Limits.from_config(config), self.site)
        self.stats = Stats(config, "reactor", compression=self.site.compression)
        self.connect, self.short, self.general = protocol_adapter(self.site, self.parser,
                                                                  self.stats)
        self.now = 1000.0
        self.check()

    def tick(self) -> float:
        self.now += TICK
        return self.now

    def check(self) -> None:
        """Both routes answer the head with the whole file and keep the connection; else the
        figures would time something else, so stop here."""
        for name, route in (("general", self.general), ("short", self.short)):
            conn = self.connect()
            exchange = route(conn, HEAD, self.tick())  # the general route first: it fills caches
            plan = exchange.plan if exchange is not None else None
            if plan is None or plan.status != 200 or plan.body_length != FILE_SIZE or \
                    not plan.keep_alive:
                raise SystemExit(f"bench.micro: the {name} route did not answer {HEAD!r} with "
                                 f"a kept-alive 200 of {FILE_SIZE} bytes (got {exchange!r}); "
                                 f"update protocol_adapter")


# ---------------------------------------------------------------- the parts
# Each returns run(n): (nanoseconds, requests) for about n requests.


def arrivals(head: bytes, n: int) -> list[bytes]:
    """`n` equal copies of `head`, each its own object, as recv() returns them: a bytes object
    caches its hash, so reusing one would hide the cost of hashing each arrival."""
    return [bytes(bytearray(head)) for _ in range(n)]


def part_loop(b: Bench):
    conn = b.connect()

    def noop(conn, data, now):
        return None

    def run(n):
        now, datas = b.now, arrivals(HEAD, n)
        start = time.perf_counter_ns()
        for data in datas:
            noop(conn, data, now)
        return time.perf_counter_ns() - start, n
    return run


def part_memo(b: Bench):
    parse = b.parser.parse_head
    parse(HEAD)

    def run(n):
        datas = arrivals(HEAD, n)
        start = time.perf_counter_ns()
        for data in datas:
            parse(data)
        return time.perf_counter_ns() - start, n
    return run


def part_parse(b: Bench):
    limits = b.parser.limits

    def run(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            parse_head(HEAD, limits)
        return time.perf_counter_ns() - start, n
    return run


def part_short_same_turn(b: Bench):
    conn, short = b.connect(), b.short
    now = b.tick()
    short(conn, HEAD, now)

    def run(n):
        datas = arrivals(HEAD, n)
        start = time.perf_counter_ns()
        for data in datas:
            short(conn, data, now)
        return time.perf_counter_ns() - start, n
    return run


def part_short_first_of_turn(b: Bench):
    """64 connections, each with its own head for the same file (User-Agent differs): each
    request is its head's first in the turn; the turn's stat is made (untimed) beforehand."""
    short = b.short
    heads = [HEAD[:-2] + f"User-Agent: micro-{i}\r\n\r\n".encode() for i in range(TURN + 1)]
    conns = [b.connect() for _ in heads]
    for conn, head in zip(conns, heads):
        b.general(conn, head, b.tick())  # memoise the head
    primer, primer_head = conns[-1], heads[-1]
    pairs = list(zip(conns[:-1], heads[:-1]))

    def run(n):
        elapsed = 0
        turns = max(1, n // TURN)
        for _ in range(turns):
            now = b.tick()
            short(primer, primer_head, now)  # the turn's stat
            datas = [(conn, bytes(bytearray(head))) for conn, head in pairs]
            start = time.perf_counter_ns()
            for conn, data in datas:
                short(conn, data, now)
            elapsed += time.perf_counter_ns() - start
        return elapsed, turns * TURN
    return run


def part_short_fresh_stat(b: Bench):
    conn, short = b.connect(), b.short

    def run(n):
        now, datas = b.now, arrivals(HEAD, n)
        start = time.perf_counter_ns()
        for data in datas:
            now += TICK
            short(conn, data, now)
        elapsed = time.perf_counter_ns() - start
        b.now = now
        return elapsed, n
    return run


def part_turn_of_64(b: Bench):
    """A loop turn of the 64-connection scenario, as the reactor's short route runs it, with the
    syscalls left out: per connection the readiness lookup, the short route and the idle timer
    re-armed; the first request of the turn stats, the other 63 reuse its plan."""
    short = b.short
    conns = [b.connect() for _ in range(TURN)]
    data_for = {fd: conn for fd, conn in enumerate(conns)}
    events = [(fd, READ) for fd in data_for]
    idle = DeadlineQueue("idle", b.config.keepalive_timeout)

    def run(n):
        turns = max(1, n // TURN)
        now = b.now
        datas = [arrivals(HEAD, TURN) for _ in range(turns)]
        start = time.perf_counter_ns()
        for arrived in datas:
            now += TICK
            for (fd, mask), data in zip(events, arrived):
                conn = data_for.get(fd)
                short(conn, data, now)
                idle.arm(conn, now)
        elapsed = time.perf_counter_ns() - start
        b.now = now
        return elapsed, turns * TURN
    return run


def part_general(b: Bench):
    conn, general = b.connect(), b.general
    now = b.tick()

    def run(n):
        datas = arrivals(HEAD, n)
        start = time.perf_counter_ns()
        for data in datas:
            general(conn, data, now)
        return time.perf_counter_ns() - start, n
    return run


def part_respond(b: Bench):
    request = parse_head(HEAD, b.parser.limits)[0]
    site, now = b.site, b.tick()
    respond(request, site, now)

    def run(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            respond(request, site, now)
        return time.perf_counter_ns() - start, n
    return run


def part_stat(b: Bench):
    path, stat = b.path, os.stat

    def run(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            stat(path)
        return time.perf_counter_ns() - start, n
    return run


def part_date(b: Bench):
    field = b.site.dates.field

    def run(n):
        start = time.perf_counter_ns()
        for _ in range(n):
            field()
        return time.perf_counter_ns() - start, n
    return run


def part_counters(b: Bench):
    stats = Stats(b.config, "reactor")

    def run(n):
        done = stats.response_done
        start = time.perf_counter_ns()
        for _ in range(n):
            done(200, FILE_SIZE)
        return time.perf_counter_ns() - start, n
    return run


def part_access_line(b: Bench):
    exchange = b.short(b.connect(), HEAD, b.tick())
    logs = AppendOnlyLogs()
    clog = ConnectionLog(logs, "New connection from")

    def run(n):
        logs.lines.clear()
        log = clog.exchange
        start = time.perf_counter_ns()
        for _ in range(n):
            log("127.0.0.1:40000", PEER, exchange)
        return time.perf_counter_ns() - start, n
    return run


def part_access_sink(b: Bench):
    exchange = b.short(b.connect(), HEAD, b.tick())
    # --access-log FILE --quiet: the lines go to a file only, as the bench's reactor-log runs.
    sink = LogSink(access=False, access_file=str(b.root / "access.log"))
    clog = ConnectionLog(sink, "New connection from")

    def run(n):
        log = clog.exchange
        start = time.perf_counter_ns()
        for _ in range(n):
            log("127.0.0.1:40000", PEER, exchange)
        if not sink.flush(10.0):  # the writer's work (join, write) is part of the cost
            raise RuntimeError("the log writer did not flush within 10 s")
        return time.perf_counter_ns() - start, n
    return run


def part_arm(b: Bench):
    queue = DeadlineQueue("idle", b.config.keepalive_timeout)
    keys = [object() for _ in range(TURN)]

    def run(n):
        turns = max(1, n // TURN)
        arm, now = queue.arm, b.now
        start = time.perf_counter_ns()
        for _ in range(turns):
            now += TICK
            for key in keys:
                arm(key, now)
        return time.perf_counter_ns() - start, turns * TURN
    return run


class ReadySockets:
    """TURN socket pairs, each with a byte waiting to be read: always readable."""

    def __init__(self):
        self.pairs = [socket.socketpair() for _ in range(TURN)]
        for ours, theirs in self.pairs:
            ours.setblocking(False)
            theirs.sendall(b"x")

    def close(self):
        for pair in self.pairs:
            for sock in pair:
                sock.close()


def part_poller(b: Bench, ready: ReadySockets):
    poller = Poller()
    for ours, _ in ready.pairs:
        poller.register(ours, READ, ours)
    data_for = poller.data

    def run(n):
        polls = max(1, n // TURN)
        count = 0
        start = time.perf_counter_ns()
        for _ in range(polls):
            for fd, mask in poller.poll(0):
                if data_for.get(fd) is not None:
                    count += 1
        elapsed = time.perf_counter_ns() - start
        if count != polls * TURN:
            raise RuntimeError(f"Poller.poll reported {count} events, {polls * TURN} expected")
        return elapsed, count
    return run


def part_selectors(b: Bench, ready: ReadySockets):
    selector = selectors.DefaultSelector()
    for ours, _ in ready.pairs:
        selector.register(ours, selectors.EVENT_READ, ours)

    def run(n):
        polls = max(1, n // TURN)
        count = 0
        start = time.perf_counter_ns()
        for _ in range(polls):
            for key, events in selector.select(0):
                if key.data is not None:
                    count += 1
        elapsed = time.perf_counter_ns() - start
        if count != polls * TURN:
            raise RuntimeError(f"select reported {count} events, {polls * TURN} expected")
        return elapsed, count
    return run


#: (key, part, what, maker). Makers taking `ready` need the socket pairs.
PARTS = [
    ("loop", "the timing loop and one adapter call", "no work: what every row below includes",
     part_loop),
    ("memo", "head parse, memo hit", "HeadParser.parse_head on a head seen before: the end of "
     "the head found, one dict lookup", part_memo),
    ("parse", "head parse, no memo", "parser.parse_head: what the memo saves", part_parse),
    ("short_same_turn", "short route, a later request of the same turn",
     "take_request + response_done: memo lookup, turn check, the plan reused, two table moves, "
     "the --status counters", part_short_same_turn),
    ("short_first", "short route, the first request of a turn",
     "as above plus the answer cache checked against the file's identity (the turn's stat "
     "already made) and the Date field", part_short_first_of_turn),
    ("short_fresh_stat", "short route, every request its own turn",
     "as above with a fresh os.stat per request (the 1-connection case)", part_short_fresh_stat),
    ("turn_of_64", "a loop turn of 64 connections, per request",
     "readiness lookup, short route and idle timer re-armed for 64 connections sharing one "
     "`now`: 1 first request + 63 later ones (no syscalls)", part_turn_of_64),
    ("general", "general route", "receive + next_exchange + response_done: buffer, memo, "
     "responder.respond, head render reused", part_general),
    ("respond", "responder.respond, answer-cache hit", "key computed, identity checked (stat "
     "shared in the turn)", part_respond),
    ("stat", "os.stat of the file", "one syscall", part_stat),
    ("date", "Date field", "DateCache.field: time.time() and a compare", part_date),
    ("counters", "--status counters", "Stats.response_done", part_counters),
    ("access_line", "access line, the loop's part", "ConnectionLog.exchange with a logs object "
     "that only appends (prefix and tail cached, a timestamp)", part_access_line),
    ("access_sink", "access line, all of it", "the same into the real LogSink, until its "
     "writer thread has joined and written the lines to a file (--access-log)",
     part_access_sink),
    ("arm", "idle timer re-armed", "DeadlineQueue.arm, 64 keys in turn", part_arm),
    ("poller", "readiness per event, Poller.poll", "64 ready sockets per poll, plus the "
     "dict lookup of each fd (poller.py: epoll itself on Linux)", part_poller),
    ("selectors", "readiness per event, selectors", "the same with selectors.DefaultSelector "
     "and its key objects, for comparison", part_selectors),
]


def measure(run, iterations: int, repeats: int) -> list[float]:
    """Microseconds per request of each repeat (after one untimed warm-up), gc off."""
    run(max(1, iterations // 10))
    figures = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            elapsed, count = run(iterations)
            figures.append(elapsed / 1000 / count)
    finally:
        if enabled:
            gc.enable()
    return figures


def host() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def run_parts(iterations: int, repeats: int, only=None) -> list[dict]:
    """Every part (or those keyed in `only`), measured in turn."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="reactor-http-micro-") as folder:
        b = Bench(Path(folder))
        ready = ReadySockets()
        try:
            for key, part, what, maker in PARTS:
                if only and key not in only:
                    continue
                needs_ready = maker in (part_poller, part_selectors)
                run = maker(b, ready) if needs_ready else maker(b)
                figures = measure(run, iterations, repeats)
                rows.append({"key": key, "part": part, "what": what,
                             "us": statistics.median(figures), "min_us": min(figures),
                             "repeats_us": figures})
        finally:
            ready.close()
    return rows


def render(meta: dict, rows: list[dict]) -> str:
    lines = [f"reactor_http per-request parts, in-process: {meta['cpu']}, {meta['cpus']} CPUs, "
             f"Python {meta['python']}, {meta['system']}; median of {meta['repeats']} repeats "
             f"of {meta['iterations']:,} requests", "",
             "| part | us per request | what |", "|---|---:|---|"]
    lines += [f"| {r['part']} | {r['us']:.3f} | {r['what']} |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=50_000,
                        help="requests per repeat (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="repeats per part; the median is reported (default: %(default)s)")
    parser.add_argument("--only", default="", help="comma-separated part keys (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeats < 1:
        parser.error("--iterations and --repeats must be at least 1")
    only = {key for key in args.only.split(",") if key}
    unknown = only - {key for key, *_ in PARTS}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    meta = {**host(), "iterations": args.iterations, "repeats": args.repeats}
    rows = run_parts(args.iterations, args.repeats, only)
    print(json.dumps({"meta": meta, "parts": rows}) if args.json else render(meta, rows))
    empty = [r["key"] for r in rows if not r["us"] > 0]
    if empty:
        print(f"bench.micro: error: no time measured for {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
