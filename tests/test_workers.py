"""--workers: pre-forked reactors on one SO_REUSEPORT port, supervised by a parent."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import ServerProcess, run_cli

# Every test here forks a supervisor and its workers and waits on them.
pytestmark = pytest.mark.slow


class RequestLoop:
    """GET / over fresh connections in a background thread, recording every failure."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = get(self.server, "/abc.txt")
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"status {response.status}")
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def workers_server(site_copy):
    """A supervisor with two reactor workers; /status says which worker answered."""
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                           "--status", "/status")
    assert "2 workers" in server.banner
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    yield server
    server.stop()


def answering_pids(server, count: int) -> list[int]:
    """Open `count` connections at once and ask /status on each: the pids that answered."""
    socks = [server.connect() for _ in range(count)]
    try:
        for sock in socks:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        pids = []
        for sock in socks:
            response = read_response(sock, bytearray())
            assert response.status == 200, response
            pids.append(json.loads(response.body)["pid"])
        return pids
    finally:
        for sock in socks:
            sock.close()


def test_two_workers_serve_the_same_port(workers_server):
    workers = worker_pids(workers_server.pid)
    assert len(workers) == 2 and workers_server.pid not in workers
    # Which worker accepts a connection is the kernel's choice: ask in rounds of concurrent
    # connections until both have answered (bounded in rounds and seconds).
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    for _ in range(50):
        seen.update(answering_pids(workers_server, 8))
        if seen == workers or time.monotonic() > deadline:
            break
    assert seen == workers, (seen, workers)


def test_a_killed_worker_comes_back_and_requests_keep_working(workers_server):
    before = worker_pids(workers_server.pid)
    victim = min(before)
    with RequestLoop(workers_server) as loop:
        wait_until(lambda: loop.ok >= 5)
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(worker_pids(workers_server.pid) - {victim}) == 2)
        count = loop.ok
        assert wait_until(lambda: loop.ok >= count + 20)
    after = worker_pids(workers_server.pid)
    assert victim not in after and len(after) == 2
    # Connections the dead worker held may fail; nothing else does.
    assert len(loop.failures) <= 2, loop.failures


def test_sighup_replaces_every_worker_without_failed_requests(workers_server):
    before = worker_pids(workers_server.pid)
    with RequestLoop(workers_server) as loop:
        wait_until(lambda: loop.ok >= 5)
        os.kill(workers_server.pid, signal.SIGHUP)
        assert wait_until(lambda: not (worker_pids(workers_server.pid) & before)
                        and len(worker_pids(workers_server.pid)) == 2)
        count = loop.ok
        assert wait_until(lambda: loop.ok >= count + 20)
    assert loop.failures == []


def test_sigterm_stops_parent_and_workers(workers_server):
    children = worker_pids(workers_server.pid)
    status, out, err = workers_server.stop(signal.SIGTERM)
    assert status == 0, err
    # A SIGTERM forwarded while a worker is just forked must not run the parent's handler in
    # the child (which would then never stop and have to be killed).
    assert "killing" not in err
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_workers_need_the_reactor(site_copy):
    result = run_cli("--root", str(site_copy), "--port", "0", "--workers", "2",
                     "--mode", "threaded")
    assert result.returncode == 2
    assert "workers" in result.stderr and "Traceback" not in result.stderr
