"""Live counters of one engine and the `--status PATH` answer built from them.

Pure: no sockets, no threads of its own. An engine owns one `Stats` and hands it to every
`HttpConnection`, which records each response when it has gone out and each timeout when its
timer fires. Connections by state are not counted as they move: the engine gives a function
listing its live connections' states, called only when someone asks for the status, so serving
a request costs a few additions and nothing ever scans the connection table per request.

The answer is JSON by default and the Prometheus text exposition format (version 0.0.4) when the
client prefers `text/plain` (RFC 9110 section 12.5.1, Accept with q-values). It is given only to
clients in the allow-list (loopback unless --status-allow says otherwise); everyone else gets what
the path would be without --status, usually a 404, so the page's existence is not revealed.
"""

from __future__ import annotations

import json
import collections
import os
import threading
import time

from ._version import __version__
from .addresses import LOOPBACK, address_in, forwarded_client
from .headers import quality_values
from .protocol import TIMEOUT_KINDS, ConnState
from .messages import Response, target_path

# content_coding.Compressor.snapshot()'s keys, in the order the status page shows them.
COMPRESSION_COUNTERS = ("hits_total", "misses_total", "saved_bytes_total", "background_total",
                        "failures_total",
                        "cached_entries", "cached_bytes", "pending")
JSON_TYPE = "application/json"
# Prometheus text exposition format 0.0.4 (what every Prometheus server scrapes).
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Stats:
    """Counters of one engine (one process); `snapshot()` adds the on-demand ones."""

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
        self.bytes_sent = 0
        self.responses: collections.defaultdict[int, int] = collections.defaultdict(int)
        self.timeouts = dict.fromkeys(TIMEOUT_KINDS, 0)
        # Idle keep-alive connections closed to admit new ones at the connection cap.
        self.evicted = 0
        # The site's content_coding.Compressor (it keeps its own counters), None when off.
        self.compression = compression

    def response_done(self, status: int, body_bytes: int) -> None:
        """One response has gone out completely."""
        self.bytes_sent += body_bytes
        self.responses[status] += 1

    def timed_out(self, kind: str) -> None:
        """A connection's timer of this kind fired (protocol.STATES: the state's timeout_kind)."""
        self.timeouts[kind] = self.timeouts.get(kind, 0) + 1

    def evicted_one(self) -> None:
        """An idle keep-alive connection was closed to admit a new one."""
        self.evicted += 1

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
        """Every counter as plain values (connections by state are tallied now)."""
        states = dict.fromkeys((state.value for state in ConnState if state is not
                                ConnState.CLOSED), 0)
        for state in self.connection_states():
            states[state.value] = states.get(state.value, 0) + 1
        snapshot = {
            "server": "reactor_http", "version": __version__, "pid": self.pid,
            "mode": self.mode, "uptime_seconds": round(max(now - self.started, 0.0), 3),
            "start_time_seconds": round(self.started_wall, 3),
            "connections": states, "requests_total": sum(self.responses.values()),
            "sent_body_bytes_total": self.bytes_sent,
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
            "timeouts": dict(self.timeouts),
            "evicted_idle_total": self.evicted,
            "compression": self._compression_snapshot(),
        }
        if self.worker is not None:
            slot, of = self.worker
            # Counters are this worker's own: each process keeps its own Stats.
            snapshot["worker"] = {"slot": slot, "workers": of, "pid": self.pid,
                                  "supervisor_pid": os.getppid(), "scope": "this worker only"}
        return snapshot


    def _compression_snapshot(self) -> dict:
        """On-the-fly compression counters (all zero when it is off)."""
        if self.compression is None:
            return {"enabled": False, **dict.fromkeys(COMPRESSION_COUNTERS, 0)}
        return {"enabled": True, **self.compression.snapshot()}


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
    for name, kind, help_text, samples in _process_metrics(snapshot) + \
            _compression_metrics(snapshot["compression"]):
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
        ("uptime_seconds", "gauge", "Seconds since this process started serving.",
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
