"""--status PATH: live counters as JSON or Prometheus text, for allowed clients only.

Pure checks first (content negotiation, the allow-list, the counters through the protocol core
with bytes), then real servers on 127.0.0.1 in both engines, and one with --workers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.helpers import prometheus
from tests.helpers.http import get, read_response
from tests.helpers.platforms import needs_fork, require_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import MODES, run_cli
from reactor_http import scoreboard
from reactor_http.config import Config
from reactor_http.protocol import ConnState, HttpConnection
from reactor_http.responder import error_page
from reactor_http.scoreboard import Board
from reactor_http.website import Site
from reactor_http.stats import Stats, render_prometheus, wants_prometheus


# ---- pure -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("accept, prometheus", [
    (None, False),
    ("*/*", False),
    ("application/json", False),
    ("text/plain", True),
    ("text/plain;version=0.0.4", True),
    # What Prometheus 2.x sends: OpenMetrics preferred, text/plain next, anything last.
    ("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
     True),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
    ("text/*", True),
    ("application/json, text/plain;q=0.5", False),
])
def test_content_negotiation(accept, prometheus):
    assert wants_prometheus(accept) is prometheus


def status_request(peer: str, config: Config, stats_states=(), extra: bytes = b""):
    """Ask a pure HttpConnection for /status from `peer`; return (status, body, connection)."""
    site = Site(config)
    stats = Stats(config, "reactor", lambda: stats_states)
    conn = HttpConnection(site, stats=stats, peer=peer)
    conn.receive(b"GET /status HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
    exchange = conn.next_exchange(time.monotonic())
    data = b"".join(segment for segment in exchange.plan.segments if isinstance(segment, bytes))
    head, _, body = data.partition(b"\r\n\r\n")
    conn.response_done(exchange.plan)
    return exchange.plan.status, body, conn, stats


@pytest.mark.parametrize("peer, allow, allowed", [
    ("127.0.0.1", (), True),
    ("127.8.9.10", (), True),
    ("::1", (), True),
    ("::ffff:127.0.0.1", (), True),          # IPv4 client on a dual-stack socket
    ("192.0.2.10", (), False),
    ("2001:db8::5", (), False),
    ("192.0.2.10", ("192.0.2.0/24",), True),
    ("127.0.0.1", ("192.0.2.0/24",), False),  # an explicit list replaces the loopback default
    ("::ffff:192.0.2.10", ("192.0.2.10",), True),
])
def test_allow_list(tmp_path, peer, allow, allowed):
    config = Config(root=str(tmp_path), status_path="/status", status_allow=allow)
    status, body, _, _ = status_request(peer, config)
    assert status == (200 if allowed else 404)
    if allowed:
        assert json.loads(body)["mode"] == "reactor"


def test_behind_a_trusted_local_proxy_the_forwarded_client_is_judged(tmp_path):
    config = Config(root=str(tmp_path), status_path="/status", trust_proxy=("127.0.0.1",))
    assert status_request("127.0.0.1", config, extra=b"X-Forwarded-For: 192.0.2.7\r\n")[0] == 404
    assert status_request("127.0.0.1", config, extra=b"X-Forwarded-For: ::1\r\n")[0] == 200
    assert status_request("127.0.0.1", config)[0] == 200


def test_counters_through_the_protocol_core(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"12345")
    config = Config(root=str(tmp_path), status_path="/status")
    site = Site(config)
    stats = Stats(config, "reactor", lambda: [ConnState.IDLE, ConnState.IDLE,
                                              ConnState.SENDING_BODY])
    conn = HttpConnection(site, stats=stats, peer="127.0.0.1")
    for target in (b"/a.txt", b"/a.txt", b"/nope"):
        conn.receive(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.response_done(conn.next_exchange(time.monotonic()).plan)
    idle = HttpConnection(site, stats=stats, peer="127.0.0.1")
    idle.timeout(time.monotonic())
    slow = HttpConnection(site, stats=stats, peer="127.0.0.1")
    slow.receive(b"GET / HT")
    slow.next_exchange(time.monotonic())
    slow.response_done(slow.timeout(time.monotonic()).plan)  # 408
    snapshot = stats.snapshot(time.monotonic())
    assert snapshot["requests_total"] == 4
    assert snapshot["responses"] == {"200": 2, "404": 1, "408": 1}
    assert snapshot["sent_body_bytes_total"] == 2 * 5 + len(error_page(404)) + \
        len(error_page(408))
    assert snapshot["timeouts"]["idle"] == 1 and snapshot["timeouts"]["header"] == 1
    assert snapshot["connections"]["idle"] == 2 and snapshot["connections"]["sending_body"] == 1
    text = render_prometheus(snapshot).decode()
    assert 'reactor_http_responses_total{code="404"} 1\n' in text
    assert 'reactor_http_connections{state="idle"} 2\n' in text
    assert 'reactor_http_timeouts_total{kind="header"} 1\n' in text


# ---- the workers' scoreboard, in one process ---------------------------------------------------

class FakeCompressor:
    """A content_coding.Compressor's snapshot() with figures a test sets."""

    def __init__(self, hits: int = 0, cached_bytes: int = 0):
        self.hits, self.cached_bytes = hits, cached_bytes

    def snapshot(self) -> dict:
        return {**dict.fromkeys(scoreboard.COMPRESSION_COUNTERS, 0), "hits_total": self.hits,
                "cached_bytes": self.cached_bytes}


def worker_stats(tmp_path, board: Board, slot: int, cell: int, states=(), compression=None):
    """The Stats of a worker in `slot`, counting in `cell` of `board` (as workers.py sets up)."""
    config = Config(root=str(tmp_path), status_path="/status", workers=board.workers,
                    worker=(slot, board.workers))
    stats = Stats(config, "reactor", lambda: states, compression=compression)
    stats.share(board, cell, slot)
    return stats


def test_any_worker_answers_for_every_worker(tmp_path):
    board = Board(2)
    first = worker_stats(tmp_path, board, 0, 0, [ConnState.IDLE, ConnState.IDLE])
    second = worker_stats(tmp_path, board, 1, 2, [ConnState.SENDING_BODY, ConnState.STREAMING])
    for _ in range(3):
        first.response_done(200, 10)
    second.response_done(404, 5)
    second.timed_out("idle")
    second.evicted_one()
    second.publish()  # its heartbeat
    for stats in (first, second):
        snapshot = stats.snapshot(time.monotonic())
        assert snapshot["requests_total"] == 4 and snapshot["sent_body_bytes_total"] == 35
        assert snapshot["responses"] == {"200": 3, "404": 1}
        assert snapshot["timeouts"]["idle"] == 1 and snapshot["evicted_idle_total"] == 1
        assert snapshot["connections"]["idle"] == 2
        assert snapshot["connections"]["sending_body"] == 1
        assert snapshot["connections"]["streaming"] == 1
        assert snapshot["worker"]["scope"] == "whole server"
        slots = snapshot["workers"]
        assert [slot["requests_total"] for slot in slots] == [3, 1]
        assert [slot["responses"] for slot in slots] == [{"200": 3}, {"404": 1}]
        assert all(slot["pids"] == [stats.pid] for slot in slots)


def test_a_worker_that_takes_over_a_cell_goes_on_from_its_predecessor(tmp_path):
    board = Board(1)
    old = worker_stats(tmp_path, board, 0, 0, [ConnState.IDLE],
                       compression=FakeCompressor(hits=5, cached_bytes=100))
    old.response_done(200, 10)
    old.timed_out("header")
    old.publish()
    replacement = worker_stats(tmp_path, board, 0, 1, compression=FakeCompressor(hits=1))
    replacement.response_done(304, 0)
    both = replacement.snapshot(time.monotonic())
    assert both["requests_total"] == 2 and both["compression"]["hits_total"] == 6
    assert both["connections"]["idle"] == 1 and both["compression"]["cached_bytes"] == 100
    board.retire(0)  # the old worker has exited (the supervisor reaped it)
    after = replacement.snapshot(time.monotonic())
    assert after["requests_total"] == 2 and after["compression"]["hits_total"] == 6
    assert after["connections"]["idle"] == 0 and after["compression"]["cached_bytes"] == 0
    assert after["timeouts"]["header"] == 1
    # A restart in the freed cell: its compressor starts at zero, the totals do not go down.
    restarted = worker_stats(tmp_path, board, 0, 0, compression=FakeCompressor(hits=0))
    later = restarted.snapshot(time.monotonic())
    assert later["requests_total"] == 2 and later["compression"]["hits_total"] == 6
    restarted.response_done(200, 1)
    assert replacement.snapshot(time.monotonic())["responses"] == {"200": 2, "304": 1}


def test_a_cell_left_mid_write_is_still_read_and_the_supervisor_closes_it(tmp_path):
    board = Board(1)
    stats = worker_stats(tmp_path, board, 0, 0)
    stats.response_done(200, 7)
    cell = board.cell(0)
    cell[scoreboard.SEQ] += 1  # killed between its two sequence steps
    assert scoreboard.read_cell(cell)[scoreboard.BYTES] == 7
    board.retire(0)
    assert cell[scoreboard.SEQ] % 2 == 0 and cell[scoreboard.PID] == 0
    assert scoreboard.read_cell(cell)[scoreboard.BYTES] == 7
    cell[scoreboard.SEQ] += 1  # killed mid-write again, and a new worker takes the cell at once
    worker_stats(tmp_path, board, 0, 0)
    assert cell[scoreboard.SEQ] % 2 == 0  # readers do not wait on it


def test_prometheus_text_of_the_whole_server_has_per_worker_series(tmp_path):
    board = Board(2)
    first = worker_stats(tmp_path, board, 0, 0)
    second = worker_stats(tmp_path, board, 1, 3)
    first.response_done(200, 3)
    second.response_done(200, 4)
    second.response_done(404, 5)
    samples = prometheus.parse(render_prometheus(first.snapshot(time.monotonic())).decode())
    assert samples[("reactor_http_requests_total", frozenset())] == 3
    assert samples[("reactor_http_workers", frozenset())] == 2
    per_worker = prometheus.series(samples, "reactor_http_worker_requests_total")
    assert per_worker == {frozenset({("worker", "0")}): 1, frozenset({("worker", "1")}): 2}
    assert prometheus.series(samples, "reactor_http_worker_responses_total", worker=1,
                             code=404) == {frozenset({("worker", "1"), ("code", "404")}): 1}
    assert len(prometheus.series(samples, "reactor_http_worker_info")) == 2


def test_status_codes_outside_the_table_are_counted_apart(tmp_path):
    stats = Stats(Config(root=str(tmp_path), status_path="/status"), "reactor")
    stats.response_done(99, 1)
    stats.response_done(600, 1)
    assert stats.responses == {0: 2} and stats.snapshot(time.monotonic())["requests_total"] == 2


# ---- real servers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=MODES)
def status_server(request, site_copy):
    from tests.helpers.servers import ServerProcess
    server = ServerProcess(site_copy, request.param, "--quiet", "--status", "/status",
                           "--keepalive-timeout", "0.5", "--header-timeout", "0.5")
    yield server
    server.stop()


def status_json(server) -> dict:
    response = get(server, "/status")
    assert response.status == 200, response
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    return json.loads(response.body)


def test_json_status(status_server):
    before = status_json(status_server)
    assert before["pid"] == status_server.pid and before["mode"] == status_server.mode
    assert before["uptime_seconds"] >= 0 and "worker" not in before
    assert set(before["connections"]) >= {state.value for state in ConnState} - {"closed"}
    assert set(before["timeouts"]) >= {"idle", "header", "send"}
    size = len((status_server.root / "abc.txt").read_bytes())
    assert get(status_server, "/abc.txt").status == 200
    assert get(status_server, "/no/such/file").status == 404
    # A response counts once sent completely: the threaded engine counts it after its last
    # byte, so the client may ask again first. Read until every earlier response is counted:
    # abc, the 404 and each status response before the one read (its own is still going out).
    reads = []

    def all_counted() -> bool:
        reads.append(status_json(status_server))
        return reads[-1]["requests_total"] == before["requests_total"] + 2 + len(reads)

    assert wait_until(all_counted), [read["requests_total"] for read in reads]
    after = reads[-1]
    assert after["responses"]["404"] == before["responses"].get("404", 0) + 1
    assert after["sent_body_bytes_total"] - before["sent_body_bytes_total"] >= size


def test_prometheus_status(status_server):
    response = get(status_server, "/status", {"Accept": "text/plain"})
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.split(" ", 3)[1] in ("HELP", "TYPE")
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert samples[f'reactor_http_info{{version="0.1.0",mode="{status_server.mode}",'
                   f'pid="{status_server.pid}"}}'] == 1
    assert samples["reactor_http_requests_total"] >= 1
    assert 'reactor_http_connections{state="reading_head"}' in samples


def test_head_status_has_no_body(status_server):
    response = get(status_server, "/status", method="HEAD")
    assert response.status == 200 and int(response.headers["content-length"]) > 0


def test_live_connections_by_state(status_server):
    with status_server.connect() as sock:
        sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: stays open
        assert read_response(sock, bytearray()).status == 200
        assert wait_until(lambda: status_json(status_server)["connections"]["idle"] >= 1)


@pytest.mark.slow
def test_timeouts_by_kind(status_server):
    before = status_json(status_server)["timeouts"]
    with status_server.connect() as sock:  # idle: connect and say nothing
        assert sock.recv(100) == b""
    with status_server.connect() as sock:  # header: half a request head
        sock.sendall(b"GET / HTTP/1.1\r\n")
        assert read_response(sock, bytearray()).status == 408
    after = status_json(status_server)["timeouts"]
    assert after["idle"] >= before["idle"] + 1
    assert after["header"] == before["header"] + 1


@pytest.mark.parametrize("mode", MODES)
def test_status_is_off_by_default(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--quiet")
    assert get(server, "/status").status == 404


@pytest.mark.parametrize("mode", MODES)
def test_clients_outside_the_allow_list_get_404(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--quiet", "--status", "/status",
                         "--status-allow", "192.0.2.0/24")
    response = get(server, "/status")
    assert response.status == 404
    assert response.body == get(server, "/no-such-file").body  # as if it did not exist


def test_bad_status_path_is_a_one_line_error(site_copy):
    result = run_cli("--root", str(site_copy), "--port", "0", "--status", "status")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "status path" in result.stderr


def test_status_allow_without_status_is_refused(site_copy):
    """--status-allow alone would do nothing: a one-line error naming both options."""
    result = run_cli("--root", str(site_copy), "--port", "0", "--status-allow", "10.0.0.0/8")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--status-allow" in lines[0] and "--status " in lines[0]


@pytest.mark.parametrize("path", ["/", "//", "/./"])
def test_status_at_the_root_is_refused(site_copy, path):
    """The counters would replace the site's home page, whatever the site holds."""
    result = run_cli("--root", str(site_copy), "--port", "0", "--status", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--status" in lines[0] and "home page" in lines[0]


@pytest.mark.parametrize("path", ["/abc.txt", "/sub", "/sub/"])
def test_a_status_path_that_shadows_content_is_warned_about(site_copy, make_server, path):
    """One warning line at start-up (not a refusal: content changes under a configuration,
    and a deploy must not stop a restart); the counters answer at that path."""
    server = make_server(site_copy, "reactor", "--quiet", "--status", path)
    warnings = [line for line in server.startup.decode().splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"--status {path}" in warnings[0]
    assert "shadows" in warnings[0]
    assert get(server, path).headers["content-type"].startswith("application/json")


def test_a_status_path_that_shadows_nothing_starts_silently(site_copy, make_server):
    server = make_server(site_copy, "reactor", "--quiet", "--status", "/status")
    assert b"warning" not in server.startup


@needs_fork()
def test_workers_say_which_worker_answered(site_copy, make_server):
    server = make_server(site_copy, "reactor", "--workers", "2", "--quiet", "--status", "/status")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    workers = worker_pids(server.pid)
    seen = set()
    for _ in range(6):
        answer = status_json(server)
        worker = answer["worker"]
        assert answer["pid"] == worker["pid"] and worker["pid"] in workers
        assert worker["supervisor_pid"] == server.pid
        assert worker["slot"] in (0, 1) and worker["workers"] == 2
        seen.add(worker["pid"])
    assert seen <= workers


@pytest.mark.parametrize("mode", MODES)
def test_send_timeouts_are_counted(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--quiet", "--status", "/status",
                         "--send-timeout", "0.3")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
        sock.connect((server.host, server.port))
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: status_json(server)["timeouts"]["send"] == 1)


# ---- --workers: one answer for the whole server, over sockets ----------------------------------

def keep_alive_requests(server, connections: int, per_connection: int) -> int:
    """`per_connection` GETs of a missing file on each of `connections` keep-alive connections,
    8 clients at a time; the number of 404 answers (the status reads are all 200s)."""
    answered = []

    def client(count: int) -> None:
        for _ in range(count):
            with server.connect() as sock:
                buffer = bytearray()
                for _ in range(per_connection):
                    sock.sendall(b"GET /no-such-file HTTP/1.1\r\nHost: x\r\n\r\n")
                    answered.append(read_response(sock, buffer).status == 404)

    threads = [threading.Thread(target=client, args=(connections // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sum(answered)


class StatusReader:
    """Reads a --workers server's status and checks that no counter ever goes down.

    A response is counted just after its last byte went to the kernel, so an answer may not yet
    count the response the client received a moment before (most often the previous status
    read). The requests a test makes are 404s and every status read a 200, so the 404s made can
    be counted exactly and the status reads within one.
    """

    def __init__(self, server):
        self.server = server
        self.reads = 0  # status answers so far, every one a 200 (counted once it has gone out)
        self.last: dict | None = None

    def read(self) -> dict:
        snapshot = status_json(self.server)
        self.reads += 1
        if self.last is not None:
            assert_not_lower(self.last, snapshot)
        self.last = snapshot
        return snapshot

    def settle(self, not_found: int, lost: int = 0) -> dict:
        """Read until the server counts `not_found` 404s in all; check the other figures then.

        `lost`: status answers a killed worker sent but never counted (at most one each).
        """
        snapshots = []

        def settled() -> bool:
            snapshots.append(self.read())
            return snapshots[-1]["responses"].get("404", 0) == not_found

        assert wait_until(settled, timeout=5), (not_found, snapshots[-1]["responses"])
        last = snapshots[-1]
        # This read is not counted in its own answer; the one before it may not be yet.
        assert self.reads - 2 - lost <= last["responses"].get("200", 0) <= self.reads - 1, \
            (self.reads, last["responses"])
        assert last["requests_total"] == sum(last["responses"].values())
        assert sum(slot["requests_total"] for slot in last["workers"]) == last["requests_total"]
        return last


def assert_not_lower(before: dict, after: dict) -> None:
    """Every counter of `after` is at least the same counter of `before`."""
    assert after["requests_total"] >= before["requests_total"]
    assert after["sent_body_bytes_total"] >= before["sent_body_bytes_total"]
    assert after["evicted_idle_total"] >= before["evicted_idle_total"]
    for code, count in before["responses"].items():
        assert after["responses"].get(code, 0) >= count, (code, before, after)
    for kind, count in before["timeouts"].items():
        assert after["timeouts"][kind] >= count
    for old, new in zip(before["workers"], after["workers"], strict=True):
        assert new["requests_total"] >= old["requests_total"], (old, new)


@pytest.fixture
def workers_status(site_copy, make_server):
    """A server with --workers 2 and --status, and the reader of its status."""
    require_fork()
    server = make_server(site_copy, "reactor", "--workers", "2", "--quiet", "--status", "/status")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    reader = StatusReader(server)
    # A worker is on the scoreboard from the moment it serves.
    assert wait_until(lambda: live_pids(reader.read()) == worker_pids(server.pid))
    return server, reader


def live_pids(snapshot: dict) -> set[int]:
    """The worker pids a status answer lists."""
    return {pid for slot in snapshot["workers"] for pid in slot["pids"]}


@pytest.mark.slow  # forks a supervisor and its workers
def test_with_workers_any_answer_counts_the_whole_server(workers_status):
    server, reader = workers_status
    first = reader.settle(0)
    assert first["worker"]["workers"] == 2 and len(first["workers"]) == 2
    assert first["start_time_seconds"] <= first["workers"][0]["start_time_seconds"]
    assert keep_alive_requests(server, connections=48, per_connection=5) == 240
    answers = [reader.settle(240)]
    answers += [reader.read() for _ in range(6)]  # whichever worker answers: never lower
    assert live_pids(answers[-1]) == worker_pids(server.pid)
    assert {answer["pid"] for answer in answers} <= worker_pids(server.pid)
    assert reader.settle(240)["responses"]["404"] == 240


@pytest.mark.slow  # forks a supervisor and its workers, kills one
def test_with_workers_a_killed_workers_counts_stay_in_the_totals(workers_status):
    server, reader = workers_status
    assert keep_alive_requests(server, connections=16, per_connection=5) == 80
    before = reader.settle(80)
    # The worker that served the most dies without a word; the supervisor starts another.
    busiest = max(before["workers"], key=lambda slot: slot["requests_total"])
    victim = busiest["pids"][0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: victim not in worker_pids(server.pid)
                      and len(worker_pids(server.pid)) == 2)
    assert wait_until(lambda: live_pids(reader.read()) == worker_pids(server.pid))
    after = reader.settle(80, lost=1)  # every read since `before` was checked: none lower
    slot = after["workers"][busiest["slot"]]
    assert slot["requests_total"] >= busiest["requests_total"] and victim not in slot["pids"]
    assert slot["responses"]["404"] >= busiest["responses"]["404"]
    assert keep_alive_requests(server, connections=8, per_connection=5) == 40
    reader.settle(120, lost=1)


@pytest.mark.slow  # forks a supervisor and its workers, replaces both
def test_with_workers_a_sighup_replacement_loses_no_count(workers_status):
    server, reader = workers_status
    assert keep_alive_requests(server, connections=16, per_connection=5) == 80
    before = reader.settle(80)
    old = worker_pids(server.pid)
    os.kill(server.pid, signal.SIGHUP)
    # Read all along: each answer, from an old worker or a new one, is checked not lower.
    assert wait_until(lambda: live_pids(reader.read()) == worker_pids(server.pid)
                      and not worker_pids(server.pid) & old and len(live_pids(reader.last)) == 2)
    assert keep_alive_requests(server, connections=8, per_connection=5) == 40
    after = reader.settle(120)  # a graceful stop counts everything it sent
    for slot, earlier in zip(after["workers"], before["workers"], strict=True):
        assert slot["responses"]["404"] >= earlier["responses"]["404"]


@pytest.mark.slow  # forks a supervisor and its workers
def test_with_workers_prometheus_text_has_totals_and_per_worker_series(workers_status):
    server, reader = workers_status
    assert keep_alive_requests(server, connections=16, per_connection=2) == 32
    reader.settle(32)
    response = get(server, "/status", {"Accept": "text/plain"})
    samples = prometheus.parse(response.body.decode())
    total = samples[("reactor_http_requests_total", frozenset())]
    per_worker = prometheus.series(samples, "reactor_http_worker_requests_total")
    assert {dict(labels)["worker"] for labels in per_worker} == {"0", "1"}
    assert sum(per_worker.values()) == total >= 32
    assert sum(prometheus.series(samples, "reactor_http_worker_responses_total",
                                 code=404).values()) == 32
    pids = {int(dict(labels)["pid"]) for labels in
            prometheus.series(samples, "reactor_http_worker_info")}
    assert pids == worker_pids(server.pid)
    assert samples[("reactor_http_workers", frozenset())] == 2
