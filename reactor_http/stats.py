"""Live counters of one engine and the `--status PATH` answer built from them.

Pure: no sockets, no threads of its own. An engine owns one `Stats` and hands it to every
`HttpConnection`, which records each response when it has gone out and each timeout when its
timer fires. Connections by state are not counted as they move: the engine gives a function
listing its live connections' states, called only when someone asks for the status (and, in a
--workers child with --status, at each heartbeat: about once a second), so serving a request
costs a few additions and nothing ever scans the connection table per request.

The counters live in a scoreboard cell (scoreboard.py): a private one in a single process; with
--workers and --status each worker's cell in memory the supervisor shares with every worker, so
any worker's answer adds up the whole server (counters exact at any read, gauges at most about a
second old for the other workers; per slot under "workers", and per worker with a `worker`
label in the Prometheus text). A response counts just after its last byte went to the kernel.

The answer is JSON by default and the Prometheus text exposition format (version 0.0.4) when the
client prefers `text/plain` (RFC 9110 section 12.5.1, Accept with q-values). It is given only to
clients in the allow-list (loopback unless --status-allow says otherwise); everyone else gets what
the path would be without --status, usually a 404, so the page's existence is not revealed.
"""

from __future__ import annotations

import json
import os
import threading
import time

from ._version import __version__
from .addresses import LOOPBACK, address_in, forwarded_client
from .headers import quality_values
from .messages import Response, target_path
from .protocol import TIMEOUT_KINDS
from .scoreboard import (BYTES, COMPRESSION, COMPRESSION_COUNTERS, COMPRESSION_MONOTONIC, EVICTED,
                         FIRST_STATUS, OPEN_STATES, OTHER_STATUS, PID, RESPONSES, SEQ, SLOT,
                         STARTED_US, STATES, STATUS_WORD, TIMEOUTS, Board, private_cell)

JSON_TYPE = "application/json"
# Prometheus text exposition format 0.0.4 (what every Prometheus server scrapes).
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Stats:
    """Counters of one engine (one process), kept in a scoreboard cell; `snapshot()` adds the
    on-demand ones and, with --workers, every other worker's cell."""

    def __init__(self, config, mode: str, connection_states=None, started: float | None = None,
                 compression=None):
        self.mode = mode
        self.status_path = config.status_path
        self.allow = tuple(config.status_allow) or LOOPBACK
        self.trusted_proxies = tuple(config.trust_proxy)
        self.worker = config.worker  # (slot, of) in a --workers child, else None
        self.connection_states = connection_states or (lambda: ())
        self.pid = os.getpid()
        self.started = time.monotonic() if started is None else started
        self.started_wall = time.time()
        # This process's counters: a private cell (a list), or its cell of the workers'
        # scoreboard once `share` is called. Written in place (scoreboard.py: the layout).
        self.cell: list[int] | memoryview = private_cell()
        self.board: Board | None = None
        # The compression counters the cell held when this process took it over (a restart
        # goes on from its predecessor's figures).
        self._compression_base = [0] * len(COMPRESSION_COUNTERS)
        # The site's content_coding.Compressor (it keeps its own counters), None when off.
        self.compression = compression

    def response_done(self, status: int, body_bytes: int) -> None:
        """One response has gone out completely."""
        # Per response: two one-word additions, no sequence steps (scoreboard.py: a counter
        # is one 8-byte store); each step would add about 0.1 us here.
        words = self.cell
        words[BYTES] += body_bytes
        words[status + STATUS_WORD if 99 < status < 600 else OTHER_STATUS] += 1

    def timed_out(self, kind: str) -> None:
        """A connection's timer of this kind fired (protocol.STATES: the state's timeout_kind)."""
        self.cell[TIMEOUTS + TIMEOUT_KINDS.index(kind)] += 1

    def evicted_one(self) -> None:
        """An idle keep-alive connection was closed to admit a new one."""
        self.cell[EVICTED] += 1

    @property
    def responses(self) -> dict[int, int]:
        """This process's responses by status (the ones sent at least once)."""
        return _responses(list(self.cell))

    @property
    def bytes_sent(self) -> int:
        """This process's body bytes of responses sent completely."""
        return self.cell[BYTES]

    def share(self, board: Board, index: int, slot: int) -> None:
        """A --workers child, before it serves: count in cell `index` of the shared board,
        on top of what the cell's earlier workers counted."""
        words = board.cell(index)
        words[SEQ] += 1 + (words[SEQ] & 1)  # odd: a killed writer's, never closed
        words[PID] = os.getpid()
        words[SLOT] = slot
        words[STARTED_US] = int(self.started_wall * 1e6)
        words[SEQ] += 1
        self._compression_base = [words[COMPRESSION + i] if i < COMPRESSION_MONOTONIC else 0
                                  for i in range(len(COMPRESSION_COUNTERS))]
        self.cell, self.board = words, board

    def publish(self) -> None:
        """Write the gauges (connections by state) and compression figures into our cell: the
        worker's heartbeat (about once a second), and before each status answer."""
        tally = dict.fromkeys(OPEN_STATES, 0)
        for state in self.connection_states():
            if state in tally:
                tally[state] += 1
        compressed = self.compression.snapshot() if self.compression is not None else {}
        words = self.cell
        words[SEQ] += 1
        for offset, state in enumerate(OPEN_STATES):
            words[STATES + offset] = tally[state]
        for offset, key in enumerate(COMPRESSION_COUNTERS):
            words[COMPRESSION + offset] = self._compression_base[offset] + compressed.get(key, 0)
        words[SEQ] += 1

    # ---- the status page -----------------------------------------------------------------------

    def answer(self, request, peer: str, now: float) -> Response | None:
        """The status response if `request` asks for it and may see it; else None."""
        if target_path(request) != self.status_path or \
                request.method not in ("GET", "HEAD"):
            return None
        client = peer
        if self.trusted_proxies and address_in(peer, self.trusted_proxies):
            # Behind a local proxy every request comes from loopback: judge the real client.
            client = forwarded_client(request.fields.get("x-forwarded-for"), peer)
        if not address_in(client, self.allow):
            return None
        snapshot = self.snapshot(now)
        if wants_prometheus(request.fields.get("accept")):
            body, content_type = render_prometheus(snapshot), PROMETHEUS_TYPE
        else:
            body, content_type = render_json(snapshot), JSON_TYPE
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), ("Vary", "Accept")]
        if request.method == "HEAD":
            return Response(200, headers)
        return Response(200, headers, [body], len(body))

    def snapshot(self, now: float) -> dict:
        """Every counter as plain values: this process's, or with --workers the whole server's
        (every cell of the scoreboard added up; per slot under "workers")."""
        self.publish()
        if self.board is None:
            cells = [list(self.cell)]
            started_wall, started = self.started_wall, self.started
        else:
            cells = self.board.read_all()
            started_wall, started = self.board.started()
        total = _add_up(cells)
        snapshot = {
            "server": "reactor_http", "version": __version__, "pid": self.pid,
            "mode": self.mode, "uptime_seconds": round(max(now - started, 0.0), 3),
            "start_time_seconds": round(started_wall, 3),
            **_figures(total),
            "compression": self._compression_snapshot(total),
        }
        if self.worker is not None:
            slot, of = self.worker
            snapshot["worker"] = {"slot": slot, "workers": of, "pid": self.pid,
                                  "supervisor_pid": os.getppid(),
                                  "scope": "whole server" if self.board is not None else
                                  "this worker only"}
        if self.board is not None:
            snapshot["workers"] = _slots(self.board, cells)
        return snapshot

    def _compression_snapshot(self, words: list[int]) -> dict:
        """On-the-fly compression counters (all zero when it is off)."""
        return {"enabled": self.compression is not None,
                **{key: words[COMPRESSION + offset]
                   for offset, key in enumerate(COMPRESSION_COUNTERS)}}


def _add_up(cells: list[list[int]]) -> list[int]:
    """Cells added word by word (the sequence and pid words mean nothing then)."""
    return [sum(column) for column in zip(*cells, strict=True)]


def _responses(words: list[int]) -> dict[int, int]:
    """Responses by status (the ones sent at least once) from a cell's words."""
    counts = {FIRST_STATUS + offset: count for offset, count in
              enumerate(words[RESPONSES:OTHER_STATUS]) if count}
    if words[OTHER_STATUS]:
        counts[0] = words[OTHER_STATUS]  # a status outside 100..599 (none is ever made)
    return counts


def _figures(words: list[int]) -> dict:
    """Connections, requests, bytes, responses, timeouts and evictions of a cell (or a sum)."""
    responses = _responses(words)
    return {
        "connections": {state.value: words[STATES + offset]
                        for offset, state in enumerate(OPEN_STATES)},
        "requests_total": sum(responses.values()),
        "sent_body_bytes_total": words[BYTES],
        "responses": {str(status): count for status, count in sorted(responses.items())},
        "timeouts": {kind: words[TIMEOUTS + offset] for offset, kind in enumerate(TIMEOUT_KINDS)},
        "evicted_idle_total": words[EVICTED],
    }


def _slots(board: Board, cells: list[list[int]]) -> list[dict]:
    """Each worker slot's figures (its cells added up) and its live processes."""
    slots = []
    for slot in range(board.workers):
        group = [cells[index] for index in board.cells_of(slot)]
        live = sorted((words[STARTED_US], words[PID]) for words in group if words[PID])
        slots.append({
            "slot": slot, "pids": [pid for _, pid in live],
            "start_time_seconds": round(live[-1][0] / 1e6, 3) if live else None,
            **_figures(_add_up(group))})
    return slots


class LockedStats(Stats):
    """Stats updated from many threads (the threaded engine): each update under one lock."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def response_done(self, status: int, body_bytes: int) -> None:
        with self._lock:
            super().response_done(status, body_bytes)

    def timed_out(self, kind: str) -> None:
        with self._lock:
            super().timed_out(kind)

    def evicted_one(self) -> None:
        with self._lock:
            super().evicted_one()

    def snapshot(self, now: float) -> dict:
        with self._lock:
            return super().snapshot(now)


def wants_prometheus(accept: str | None) -> bool:
    """True if the client prefers text/plain to application/json (no Accept: JSON)."""
    if not accept:
        return False
    prefs = quality_values(accept)

    def quality(media_type: str) -> float:
        kind = media_type.split("/", 1)[0]
        for key in (media_type, f"{kind}/*", "*/*"):
            if key in prefs:
                return prefs[key]
        return 0.0

    return quality("text/plain") > quality("application/json")


def render_json(snapshot: dict) -> bytes:
    """The snapshot as a JSON document."""
    return (json.dumps(snapshot, indent=1, sort_keys=False) + "\n").encode("utf-8")


def _label(value) -> str:
    """A Prometheus label value, escaped (backslash, quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(snapshot: dict) -> bytes:
    """The snapshot in the Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    metrics = _process_metrics(snapshot) + _compression_metrics(snapshot["compression"])
    if "workers" in snapshot:
        metrics += _worker_metrics(snapshot["workers"])
    for name, kind, help_text, samples in metrics:
        lines.extend(_metric_lines(name, kind, help_text, samples))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _metric_lines(name: str, kind: str, help_text: str, samples) -> list[str]:
    """One metric's HELP and TYPE lines and its samples ((labels, value) pairs)."""
    lines = [f"# HELP reactor_http_{name} {help_text}", f"# TYPE reactor_http_{name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
        lines.append(f"reactor_http_{name}{{{text}}} {value}" if text else
                     f"reactor_http_{name} {value}")
    return lines


def _process_metrics(snapshot: dict) -> list[tuple]:
    """(name, kind, help, samples) of the process, connection and response metrics."""
    info = {"version": snapshot["version"], "mode": snapshot["mode"], "pid": snapshot["pid"]}
    if "worker" in snapshot:
        info["worker"] = snapshot["worker"]["slot"]
    return [
        ("info", "gauge", "Which process answered (value is always 1).", [(info, 1)]),
        ("uptime_seconds", "gauge", "Seconds since the server started serving.",
         [({}, snapshot["uptime_seconds"])]),
        ("start_time_seconds", "gauge", "Start time, seconds since the Unix epoch.",
         [({}, snapshot["start_time_seconds"])]),
        ("connections", "gauge", "Open connections by protocol state.",
         [({"state": state}, count) for state, count in snapshot["connections"].items()]),
        ("requests_total", "counter", "Responses sent completely.",
         [({}, snapshot["requests_total"])]),
        ("sent_body_bytes_total", "counter", "Body bytes of responses sent completely.",
         [({}, snapshot["sent_body_bytes_total"])]),
        ("responses_total", "counter", "Responses sent completely, by status code.",
         [({"code": code}, count) for code, count in snapshot["responses"].items()]),
        ("timeouts_total", "counter", "Connection timers that fired, by kind.",
         [({"kind": kind}, count) for kind, count in snapshot["timeouts"].items()]),
        ("evicted_idle_total", "counter",
         "Idle keep-alive connections closed to admit new ones at the connection cap.",
         [({}, snapshot["evicted_idle_total"])]),
    ]


def _worker_metrics(slots: list[dict]) -> list[tuple]:
    """(name, kind, help, samples) per worker slot (label worker="slot"); with --workers the
    unlabelled metrics above are the sums of these."""

    def each(key: str) -> list[tuple]:
        return [({"worker": slot["slot"]}, slot[key]) for slot in slots]

    def by(key: str, label: str) -> list[tuple]:
        return [({"worker": slot["slot"], label: name}, count) for slot in slots
                for name, count in slot[key].items()]

    return [
        ("workers", "gauge", "Worker processes the supervisor keeps (--workers).",
         [({}, len(slots))]),
        ("worker_info", "gauge", "Live worker processes by slot (value is always 1).",
         [({"worker": slot["slot"], "pid": pid}, 1) for slot in slots for pid in slot["pids"]]),
        ("worker_start_time_seconds", "gauge", "When the slot's newest worker started, seconds "
         "since the Unix epoch.", [sample for sample in each("start_time_seconds")
                                   if sample[1] is not None]),
        ("worker_connections", "gauge", "Open connections by worker and protocol state.",
         by("connections", "state")),
        ("worker_requests_total", "counter", "Responses sent completely, by worker.",
         each("requests_total")),
        ("worker_sent_body_bytes_total", "counter",
         "Body bytes of responses sent completely, by worker.", each("sent_body_bytes_total")),
        ("worker_responses_total", "counter", "Responses sent completely, by worker and status.",
         by("responses", "code")),
        ("worker_timeouts_total", "counter", "Connection timers that fired, by worker and kind.",
         by("timeouts", "kind")),
        ("worker_evicted_idle_total", "counter",
         "Idle keep-alive connections closed at the connection cap, by worker.",
         each("evicted_idle_total")),
    ]


def _compression_metrics(compressed: dict) -> list[tuple]:
    """(name, kind, help, samples) of the on-the-fly compression counters."""
    return [
        ("compression_cache_hits_total", "counter",
         "Responses compressed on the fly answered from the compressed-body cache.",
         [({}, compressed["hits_total"])]),
        ("compression_cache_misses_total", "counter",
         "Requests for a compressed body not yet cached (made inline, or queued while "
         "the identity body was served).", [({}, compressed["misses_total"])]),
        ("compression_saved_bytes_total", "counter",
         "Body bytes not sent thanks to on-the-fly compression (200 responses to GET).",
         [({}, compressed["saved_bytes_total"])]),
        ("compression_background_total", "counter",
         "Files compressed by the background thread.", [({}, compressed["background_total"])]),
        ("compression_failures_total", "counter",
         "Background compressions that failed (the file is served uncompressed).",
         [({}, compressed["failures_total"])]),
        ("compression_cache_bytes", "gauge", "Bytes held by the compressed-body cache.",
         [({}, compressed["cached_bytes"])]),
    ]
