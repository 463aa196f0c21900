"""Regression tests for engine bugs found in review (each failed before its fix)."""

from __future__ import annotations

import errno
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import MODES, ServerProcess, read_response, wait_for


@pytest.fixture
def bare_reactor(site_copy):
    """A Reactor over a real listening socket, never run: for calling its handlers directly."""
    from reactor_http.config import Config
    from reactor_http.logs import LogSink
    from reactor_http.reactor import Reactor
    from reactor_http.responder import Site
    config = Config(root=str(site_copy), port=0, quiet=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reactor = Reactor(config, Site(config), LogSink(access=False), listener)
    yield reactor
    reactor.selector.close()
    listener.close()


def reset_close(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a client that vanishes does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("mode", MODES)
def test_reset_while_answering_head_of_a_large_file_leaks_no_descriptor(site_copy, mode):
    # HEAD of a file too large for the memory cache opens the file and sends only a head; a
    # reset during that one send used to lose the plan (and its fd) in the reactor.
    server = ServerProcess(site_copy, mode, "--quiet", "--max-requests", "100000")
    try:
        get_big = b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        with server.connect() as warm:
            warm.sendall(get_big)
            read_response(warm, bytearray(), head_only=True)
        baseline = server.open_fds()
        for _ in range(40):
            sock = server.connect()
            sock.sendall(get_big * 400)
            reset_close(sock)
        assert wait_for(lambda: server.open_fds() <= baseline, timeout=15), \
            (server.open_fds(), baseline)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_slowly_dripped_body_is_cut_off_by_the_header_timeout(site_copy, mode):
    server = ServerProcess(site_copy, mode, "--quiet", "--header-timeout", "1")
    try:
        with server.connect(timeout=30) as sock:
            sock.sendall(b"POST /abc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n")
            sock.settimeout(0.25)
            answer = b""
            closed = False
            for _ in range(200):  # 200 bytes, one per 0.25 s: 50 s if nobody stops us
                try:
                    sock.send(b"x")
                    data = sock.recv(65536)
                    if not data:
                        closed = True
                        break
                    answer += data
                    if b"\r\n\r\n" in answer:
                        break
                except socket.timeout:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
            assert closed or answer.startswith(b"HTTP/1.1 408"), answer[:100]
    finally:
        server.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_fresh_connection_is_answered_during_a_graceful_stop(site_copy, mode):
    # A connection accepted before SIGTERM that has not sent its request yet is not "idle":
    # its request is coming. It is answered (with Connection: close), not dropped.
    server = ServerProcess(site_copy, mode, "--quiet", "--drain-timeout", "10")
    try:
        with server.connect(timeout=10) as sock:
            with server.connect() as probe:  # make sure the server has accepted connections
                probe.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                read_response(probe, bytearray())
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # let the stop begin before the request arrives
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            response = read_response(sock, bytearray())
            assert response.status == 200
            assert response.headers["connection"] == "close"
        status, _, err = server.stop()
        assert status == 0, err
    finally:
        server.stop()


def test_request_stop_works_off_the_main_thread(site_copy):
    # The wakeup socket was made non-blocking only when signal handlers were installed (main
    # thread only), so request_stop() from another thread hung the loop in recv().
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


def test_an_unexpected_accept_error_does_not_stop_the_reactor(bare_reactor):
    # accept(2) passes pending network errors through (ENETDOWN, EHOSTUNREACH...); its man page
    # says to treat them like EAGAIN. They used to be re-raised and end the loop.
    from reactor_http.reactor import Listener

    class FailingSocket:
        def __init__(self):
            self.calls = 0

        def accept(self):
            self.calls += 1
            if self.calls == 1:
                raise OSError(errno.ENETDOWN, "Network is down")
            raise BlockingIOError

    failing = FailingSocket()
    bare_reactor._accept(Listener(failing), 0.0)
    assert failing.calls == 2  # the error was skipped and accepting went on


def test_a_500_to_head_has_no_body(monkeypatch, site_copy):
    from reactor_http import protocol
    from reactor_http.config import Config
    from reactor_http.responder import Site

    def broken(request, site, now):
        raise RuntimeError("bug")

    monkeypatch.setattr(protocol, "respond", broken)
    conn = protocol.HttpConnection(Site(Config(root=str(site_copy))))
    conn.receive(b"HEAD /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    plan = conn.next_plan(0.0)
    assert plan.status == 500
    wire = b"".join(s for s in plan.segments if isinstance(s, bytes))
    head, _, body = wire.partition(b"\r\n\r\n")
    assert body == b""
    assert b"Content-Length: " in head


def test_a_persistent_accept_error_pauses_accepting_instead_of_spinning(bare_reactor):
    # An error that repeats on every accept() (EINVAL on a listener shut down elsewhere, EBADF)
    # was skipped and retried ACCEPT_BATCH times per loop turn, forever: a spinning loop.
    from reactor_http.reactor import Listener

    class BrokenListener:
        def __init__(self):
            self.calls = 0

        def accept(self):
            self.calls += 1
            raise OSError(errno.EINVAL, "Invalid argument")

    broken = BrokenListener()
    bare_reactor._accept(Listener(broken), 100.0)
    assert broken.calls == 1
    assert bare_reactor.accept_paused_until > 100.0


def test_send_blocking_sends_a_head_and_body_in_one_call():
    # The threaded engine sent a 16-64 KiB in-memory body as two sends (head, then body).
    from reactor_http import sending
    from reactor_http.messages import ResponsePlan

    class RecordingSocket:
        def __init__(self):
            self.calls = []

        def sendall(self, data):
            self.calls.append(bytes(data))

    sock = RecordingSocket()
    plan = ResponsePlan(200, [b"HEAD\r\n\r\n", b"x" * 40000], 40000, True)
    cursor = sending.Cursor()
    sending.send_blocking(sock, plan, cursor)
    assert cursor.sent == 40008
    assert sock.calls == [b"HEAD\r\n\r\n" + b"x" * 40000]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used."""
    import os
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("mode", MODES)
def test_out_of_descriptors_on_accept_logs_once_pauses_and_recovers(site_copy, mode):
    # Issue 4: EMFILE on accept -> log once, pause accepting briefly, no busy loop, recover
    # when descriptors free. The server runs with a hard limit of 48 descriptors.
    import resource as rlimit

    def low_limit():
        rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (48, 48))

    import subprocess
    import sys
    from conftest import REPO, _BANNER
    import os
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reactor_http", "--root", str(site_copy), "--port", "0",
         "--mode", mode, "--quiet", "--keepalive-timeout", "60", "--max-threads", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=low_limit)
    held = []
    try:
        port = int(_BANNER.search(proc.stdout.readline()).group(2))
        for _ in range(60):  # more connections than the server has descriptors for
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(sock)
        time.sleep(1.0)  # the server hits EMFILE and pauses
        before = cpu_seconds(proc.pid)
        time.sleep(1.5)
        used = cpu_seconds(proc.pid) - before
        assert used < 0.5, f"{used:.2f} CPU seconds in 1.5 s: a busy loop"
        for sock in held:
            sock.close()
        held.clear()

        def answered() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return read_response(sock, bytearray()).status == 200
            except OSError:
                return False

        assert wait_for(answered, timeout=15)
    finally:
        for sock in held:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    warnings = [line for line in err.decode().splitlines() if "accept failed" in line]
    assert len(warnings) == 1, warnings
