"""Stopping the server: SIGINT and SIGTERM (to the process or its whole group, as Ctrl+C sends),
the drain of in-flight responses, request_stop().

Real server processes on 127.0.0.1 with ephemeral ports, in both engines. A stop refuses new
connections, closes idle keep-alive connections, answers connections whose request is on its way
(with Connection: close), lets responses in flight finish within --drain-timeout, flushes the
logs and exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.http import assert_closed, get, read_response, recv_until_closed
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import BANNER, REPO, SITE, ServerProcess, read_banner, server_env

BIG_SIZE = 4 * 1024 * 1024 + 5  # bytes: far more than the socket buffers hold


@pytest.fixture(scope="module")
def stop_root(tmp_path_factory):
    """A root with a small file and one too big to go out before the client reads it."""
    root = tmp_path_factory.mktemp("stop")
    (root / "a.txt").write_bytes(b"hello a\n")
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    return root


def req(server, path="/a.txt", close=True) -> bytes:
    """A GET for `path`, with Connection: close unless `close` is false."""
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{extra}\r\n".encode()


def log_text(log_dir) -> str:
    """The connection log files' text, oldest file first."""
    return "".join(p.read_text() for p in sorted(log_dir.glob("*connectionLog.txt")))


def refuses_connections(server) -> bool:
    """True once the server's port refuses a new connection (its listener is closed).

    A probe that connects just as the listener closes is reset instead of refused (it was in the
    kernel's backlog, which closing the listener resets): that too is a connection not taken.
    """
    try:
        probe = socket.create_connection(("127.0.0.1", server.port), timeout=1)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    probe.close()
    return False


# ---- signals -------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_exits_0_with_logs_flushed(make_server, mode, tmp_path, sig):
    log_dir = tmp_path / "logs"
    srv = make_server(SITE, mode, "--log-dir", str(log_dir))
    get(srv, "/abc.txt")
    idle = srv.connect()  # an idle keep-alive connection must not hold the stop up
    idle.sendall(req(srv, "/abc.txt", close=False))
    read_response(idle, bytearray())
    try:
        status, out, err = srv.stop(sig)
        assert status == 0, err
        assert "Traceback" not in err
        assert_closed(idle)
    finally:
        idle.close()
    assert '"GET /abc.txt HTTP/1.1" 200' in out
    assert out.count('"GET /abc.txt HTTP/1.1" 200') == 2
    # The idle connection's own close line may be written just after the stop line.
    assert "Server stopped" in log_text(log_dir)


@pytest.mark.slow
def test_in_flight_response_finishes_on_stop(make_server, mode, tmp_path):
    data = os.urandom(32 * 1024 * 1024)  # more than the socket buffers hold: still in flight
    (tmp_path / "big.bin").write_bytes(data)
    srv = make_server(tmp_path, mode, "--quiet")
    with srv.connect() as sock:
        sock.sendall(req(srv, "/big.bin"))
        first = sock.recv(4096)  # the response has started; most of it is still to send
        srv.proc.send_signal(signal.SIGTERM)
        rest = recv_until_closed(sock)
    srv.proc.wait(timeout=20)  # a second signal during interpreter exit would kill it (-15)
    status, _, err = srv.stop()
    assert status == 0, err
    head, _, body = (first + rest).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == data


@pytest.mark.slow
def test_sigterm_right_after_the_banner_is_a_graceful_stop(site_copy, mode):
    # The banner is printed only once the signal handlers are in, so a SIGTERM sent as soon as
    # the server says it is serving is a graceful stop (exit 0, logs flushed), not a kill (-15).
    for _ in range(5):
        server = ServerProcess(site_copy, mode, "--quiet")
        server.proc.send_signal(signal.SIGTERM)
        status, _, err = server.stop()
        assert status == 0, err


# ---- draining ------------------------------------------------------------------------------

def start_downloads(server, count: int) -> list:
    """`count` keep-alive downloads of big.bin whose heads arrived; bodies not yet read."""
    downloads = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(10)
        sock.sendall(req(server, "/big.bin", close=False))
        buffer = bytearray()
        response = read_response(sock, buffer, head_only=True)
        assert response.status == 200
        downloads.append((sock, buffer))
    return downloads


def finish_download(sock: socket.socket, buffer: bytearray) -> bytes:
    body = bytes(buffer)
    while len(body) < BIG_SIZE:
        data = sock.recv(1 << 20)
        if not data:
            break
        body += data
    return body


@pytest.mark.slow
def test_sigterm_lets_in_flight_downloads_finish_then_exits_0(make_server, stop_root, mode,
                                                              tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    server = make_server(stop_root, mode, "--drain-timeout", "10", "--log-dir", str(logs))
    downloads = start_downloads(server, 3)
    idle = server.connect()                  # an idle keep-alive connection is simply closed
    idle.sendall(req(server, close=False))
    assert read_response(idle, bytearray()).status == 200
    server.proc.send_signal(signal.SIGTERM)
    expected = (stop_root / "big.bin").read_bytes()
    try:
        assert_closed(idle)
        assert server.proc.poll() is None    # still draining: the downloads are not done
        for sock, buffer in downloads:
            assert finish_download(sock, buffer) == expected
    finally:
        for sock, _ in downloads:
            sock.close()
        idle.close()
    server.proc.wait(timeout=15)                # it exits by itself once the drain is done
    status, out, err = server.stop(timeout=15)
    assert status == 0, err
    assert "Traceback" not in err
    assert out.count('"GET /big.bin HTTP/1.1" 200') == 3   # access lines flushed
    log_text = "".join(path.read_text() for path in logs.iterdir())
    assert "Server stopped" in log_text


@pytest.mark.parametrize("mode", ["reactor", "threaded"])
def test_sigterm_refuses_new_connections_while_draining(make_server, stop_root, mode):
    server = make_server(stop_root, mode, "--quiet", "--drain-timeout", "10")
    downloads = start_downloads(server, 1)
    server.proc.send_signal(signal.SIGTERM)

    try:
        assert wait_until(lambda: refuses_connections(server), 3), \
            "new connections still accepted while draining"
        assert server.proc.poll() is None    # the download is still in flight
        sock, buffer = downloads[0]
        assert len(finish_download(sock, buffer)) == BIG_SIZE
    finally:
        for sock, _ in downloads:
            sock.close()
    server.proc.wait(timeout=15)
    assert server.stop()[0] == 0


def test_a_fresh_connection_is_answered_during_a_graceful_stop(stop_root, make_server, mode):
    # A connection accepted before SIGTERM that has not sent its request yet is not "idle":
    # its request is coming. It is answered (with Connection: close), not dropped.
    server = make_server(stop_root, mode, "--quiet", "--drain-timeout", "10")
    with server.connect(timeout=10) as sock:
        with server.connect() as probe:  # the server has accepted `sock` once it answers this
            probe.sendall(req(server))
            assert read_response(probe, bytearray()).status == 200
        server.proc.send_signal(signal.SIGTERM)
        # The stop has begun once the listener is closed; only then does the request go out.
        assert wait_until(lambda: refuses_connections(server), 10), "the stop never began"
        assert server.proc.poll() is None, "exited without answering the fresh connection"
        sock.sendall(req(server, close=False))
        response = read_response(sock, bytearray())
        assert response.status == 200 and response.body == b"hello a\n"
        assert response.headers["connection"] == "close"
    status, _, err = server.stop()
    assert status == 0, err


# ---- in-process stop -----------------------------------------------------------------------

def test_request_stop_works_off_the_main_thread(site_copy):
    # An embedding program runs serve() on a thread of its own, where no signal handler can be
    # installed; request_stop() from another thread must still wake and end the loop.
    from reactor_http.config import Config
    from reactor_http.server import serve
    engines = []
    ready = threading.Event()

    def on_ready(engine):
        engines.append(engine)
        ready.set()

    config = Config(root=str(site_copy), port=0, quiet=True)
    thread = threading.Thread(target=serve, args=(config,), kwargs={"ready": on_ready},
                              daemon=True)
    thread.start()
    assert ready.wait(10)
    engines[0].request_stop()
    thread.join(10)
    assert not thread.is_alive()


# ---- what has arrived at a stop is answered; what is idle is closed at once --------------

STOP_REQUEST = b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n"


def test_requests_already_received_are_answered_with_close(make_server, site_copy, mode):
    # The server is stopped (SIGSTOP) while the requests land in its socket buffers, so the
    # stop begins with every one of them unread: each must still get its answer.
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "20")
    socks = []
    try:
        for _ in range(8):
            sock = server.connect(timeout=10)
            sock.sendall(STOP_REQUEST)
            assert read_response(sock, bytearray()).status == 200
            socks.append(sock)
        server.proc.send_signal(signal.SIGSTOP)
        for sock in socks:
            sock.sendall(STOP_REQUEST)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.send_signal(signal.SIGCONT)
        for sock in socks:
            # Answered (with Connection: close if the stop had begun when it was read), then
            # closed: nothing that had arrived is dropped.
            assert read_response(sock, bytearray()).status == 200
            assert sock.recv(1) == b""
        assert server.proc.wait(timeout=20) == 0
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_back_to_back_clients_lose_no_request_at_stop(make_server, site_copy, mode):
    # Clients that send their next request the moment a response arrives: at SIGTERM, every
    # request sent is answered; a connection ends only after a Connection: close response.
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "20",
                         "--max-requests", "100000")
    lost = []
    answered = []
    flowing = []  # one entry per client once its first answer came
    started = threading.Barrier(17)

    def client() -> None:
        count = 0
        with server.connect(timeout=20) as sock:
            buffer = bytearray()
            started.wait(20)
            for _ in range(5000):  # bounded; the stop comes long before
                sock.sendall(STOP_REQUEST)
                try:
                    response = read_response(sock, buffer)
                except (ConnectionError, OSError) as exc:
                    lost.append(repr(exc))
                    break
                count += 1
                if count == 1:
                    flowing.append(True)
                if response.headers.get("connection") == "close":
                    break
        answered.append(count)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        started.wait(20)
        # Every client is in its request-answer loop when the stop comes.
        wait_until(lambda: len(flowing) == 16 or bool(lost), timeout=20)
        server.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        assert not lost, lost
        assert len(answered) == 16 and all(answered), answered
        assert server.proc.wait(timeout=20) == 0
    finally:
        server.stop()


def test_an_idle_connection_is_closed_at_once_at_stop(make_server, site_copy, mode):
    # Idle keep-alive connections do not hold the stop for the drain bound (60 s here).
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "60",
                         "--keepalive-timeout", "60")
    sock = server.connect(timeout=10)
    try:
        sock.sendall(STOP_REQUEST)
        assert read_response(sock, bytearray()).status == 200
        time.sleep(0.5)  # idle for longer than the stop's grace for a request on its way
        server.proc.send_signal(signal.SIGTERM)
        sock.settimeout(20)
        assert sock.recv(1) == b""
        assert server.proc.wait(timeout=20) == 0
    finally:
        sock.close()
        server.stop()


# ---- Ctrl+C: a signal to the whole process group -------------------------------------------------

def start_in_own_group(root, mode: str, *args: str) -> subprocess.Popen:
    """Start a server as the leader of a new process group (as a shell job is); wait for it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor_http", "--root", str(root), "--port", "0", "--mode", mode,
         "--quiet", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server_env(), cwd=REPO,
        start_new_session=True)
    line = read_banner(proc)
    if not BANNER.search(line):
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise RuntimeError(f"server did not start: {line!r} {out!r} {err!r}")
    return proc


@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("engine", [("reactor",), ("threaded",),
                                    pytest.param(("reactor", "--workers", "2"),
                                                 marks=needs_fork())],
                         ids=["reactor", "threaded", "workers"])
def test_a_signal_to_the_process_group_stops_cleanly(site_copy, engine, signum, times):
    mode, *args = engine
    proc = start_in_own_group(site_copy, mode, *args)
    if args:
        assert wait_until(lambda: len(worker_pids(proc.pid)) == 2)
    for _ in range(times):  # Ctrl+C, or systemctl stop, once or twice in quick succession
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=5)
        pytest.fail("the server did not stop")
    err = err.decode()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert proc.returncode == 0, err
