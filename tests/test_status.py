"""--status PATH: live counters as JSON or Prometheus text, for allowed clients only.

Pure checks first (content negotiation, the allow-list, the counters through the protocol core
with bytes), then real servers on 127.0.0.1 in both engines, and one with --workers.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import MODES, run_cli
from reactor_http.config import Config
from reactor_http.protocol import ConnState, HttpConnection
from reactor_http.responder import error_page
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
