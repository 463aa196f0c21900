"""--workers: pre-forked reactors on one SO_REUSEPORT port, supervised by a parent.

Serving, a killed worker, SIGHUP and SIGTERM first; then the supervisor under faults: its own
death, boot failures, stuck workers, a stop during a SIGHUP replacement. Real
`python -m reactor_http --workers 2` processes on 127.0.0.1 with ephemeral ports; worker pids
come from /proc. A server's stdout and stderr pipes are held by the supervisor and every worker,
so `communicate()` returning means no worker is left. A signal to the whole process group
(Ctrl+C) is in test_shutdown.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import REPO, ServerProcess, run_cli
from reactor_http.config import Config
from reactor_http.scoreboard import Board
from reactor_http.workers import Supervisor, Worker

# Every test here runs a supervisor, which forks its workers.
pytestmark = needs_fork()


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


# ---- serving, a killed worker, SIGHUP, SIGTERM ----------------------------------------------

@pytest.mark.slow  # forks a supervisor and its workers and waits on them
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


@pytest.mark.slow  # forks a supervisor and its workers and waits on them
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


@pytest.mark.slow  # forks a supervisor and its workers and waits on them
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


@pytest.mark.slow  # forks a supervisor and its workers and waits on them
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


@pytest.mark.slow  # forks a supervisor and its workers and waits on them
def test_workers_need_the_reactor(site_copy):
    result = run_cli("--root", str(site_copy), "--port", "0", "--workers", "2",
                     "--mode", "threaded")
    assert result.returncode == 2
    assert "workers" in result.stderr and "Traceback" not in result.stderr


# ==== the supervisor under faults ================================================================

def gone(pid: int) -> bool:
    """True if `pid` has exited (a zombie counts: it serves nothing and holds no socket)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_leftovers(pids) -> None:
    """SIGKILL processes this test started that are still alive (cleanup after a failure)."""
    for pid in pids:
        if not gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def status_pid(server: ServerProcess) -> int:
    """The pid of the worker that answered one GET of the --status page."""
    response = get(server, "/status")
    assert response.status == 200
    return json.loads(response.body)["worker"]["pid"]


def holds_open(pid: int, path) -> bool:
    """True if process `pid` has `path` open."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


# ---- the supervisor dies -------------------------------------------------------------------------

def test_workers_exit_when_the_supervisor_is_killed(site_copy):
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    workers = worker_pids(server.pid)
    try:
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        assert wait_until(lambda: all(gone(pid) for pid in workers), timeout=10), \
            [pid for pid in workers if not gone(pid)]
        # Nobody holds the pipes any more: every worker has really exited.
        server.proc.communicate(timeout=10)
    finally:
        kill_leftovers(workers)
        server.stop()


# ---- workers that fail to start, and workers that crash after starting ---------------------------

@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_a_worker_that_keeps_failing_to_start_stops_the_supervisor(site_copy, tmp_path):
    # The access log's folder is deleted while the server runs: a restarted worker cannot open
    # its access log, dies before it is ready, and would be restarted forever.
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                           "--access-log", str(log_dir / "access.log"))
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    workers = worker_pids(server.pid)
    # Both workers have started: each holds its access log open.
    assert wait_until(lambda: all(holds_open(pid, log_dir / "access.log") for pid in workers))
    shutil.rmtree(log_dir)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    try:
        out, err = server.proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        kill_leftovers(worker_pids(server.pid) | workers)
        server.stop()
        pytest.fail("the supervisor kept restarting a worker that cannot start")
    assert server.proc.returncode == 1, err
    err = err.decode()
    assert "Traceback" not in err, err
    assert f"worker {victim} (slot " in err and "killed by signal 9 (SIGKILL)" in err, err
    assert "No such file or directory" in err, err  # each failed start says why
    halt = [line for line in err.splitlines() if "failed to start" in line and "in a row" in line]
    assert len(halt) == 1, err
    assert halt[0].startswith("reactor-http: error: "), halt
    # The worker that was serving was stopped with the supervisor.
    assert all(gone(pid) for pid in workers)


@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_a_worker_that_crashes_after_starting_is_always_restarted(site_copy):
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                           "--status", "/status")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    killed = []
    try:
        for _ in range(6):  # more than the boot-failure limit, each after it served a request
            victim = status_pid(server)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            assert wait_until(lambda: victim not in worker_pids(server.pid)
                            and len(worker_pids(server.pid)) == 2)
        assert server.proc.poll() is None
        assert get(server, "/abc.txt").status == 200
    finally:
        status, out, err = server.stop()
    assert status == 0, err
    for pid in killed:
        assert f"worker {pid} (slot " in err
    assert err.count("killed by signal 9 (SIGKILL); restarting in") == len(killed), err
    assert "status -9" not in err and "in a row" not in err, err


@pytest.mark.slow  # forks a supervisor and its workers and waits on them
def test_a_worker_restarted_while_a_rule_file_is_malformed_keeps_the_last_good_rules(tmp_path):
    # A malformed edit of _redirects keeps the rules in force; a worker restarted meanwhile
    # (killed, hung, out of memory) must serve them too, not fail to start until the
    # supervisor gives up and the whole server stops.
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a\n")
    (root / "b.txt").write_bytes(b"b\n")
    (root / "secret.txt").write_bytes(b"secret\n")
    (root / "_redirects").write_bytes(b"/secret.txt /a.txt 301!\n")
    server = ServerProcess(root, "reactor", "--workers", "2", "--quiet")
    try:
        assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
        (root / "_redirects").write_bytes(b"/secret.txt /b.txt 301!\n")  # a good edit...
        assert wait_until(lambda: all(
            get(server, "/secret.txt").headers.get("location") == "/b.txt" for _ in range(4)))
        (root / "_redirects").write_bytes(b"/secret.txt /b.txt 999!\n")  # ...then a typo
        for victim in sorted(worker_pids(server.pid)):  # every worker is replaced
            os.kill(victim, signal.SIGKILL)
            assert wait_until(lambda: victim not in worker_pids(server.pid)
                              and len(worker_pids(server.pid)) == 2), server.proc.poll()
        assert server.proc.poll() is None
        for _ in range(6):
            response = get(server, "/secret.txt")
            assert (response.status, response.headers.get("location")) == (301, "/b.txt")
    finally:
        status, out, err = server.stop()
    assert status == 0 and "in a row" not in err, err
    assert "status 999! is not supported" in err and "the rules in force are kept" in err, err


# ---- a stop during a SIGHUP replacement ----------------------------------------------------------

def test_sigterm_during_a_sighup_replacement_stops_promptly(site_copy, tmp_path):
    # The access log is a FIFO (a log shipper reads it). The shipper restarts and makes a new
    # FIFO, not yet opened: a new worker blocks in open() and never says it is ready.
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                               "--access-log", str(fifo))
    except BaseException:
        os.close(reader)
        raise
    workers: set = set()
    try:
        assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
        os.close(reader)
        reader = None
        os.unlink(fifo)
        os.mkfifo(fifo)
        workers = worker_pids(server.pid)
        os.kill(server.pid, signal.SIGHUP)
        assert wait_until(lambda: len(worker_pids(server.pid)) == 3)  # the replacement is starting
        os.kill(server.pid, signal.SIGTERM)
        out, err = server.proc.communicate(timeout=8)
    except BaseException as exc:
        # Whatever failed, no supervisor or worker of this test outlives it.
        if reader is not None:
            os.close(reader)
        kill_leftovers(worker_pids(server.pid) | workers | {server.pid})
        server.stop()
        if isinstance(exc, subprocess.TimeoutExpired):
            pytest.fail("SIGTERM was not handled while a SIGHUP replacement waited for a worker")
        raise
    assert server.proc.returncode == 0, err
    assert b"Traceback" not in err, err


def test_sighup_then_sigterm_at_once_leaves_no_worker(site_copy):
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    os.kill(server.pid, signal.SIGHUP)
    os.kill(server.pid, signal.SIGTERM)
    out, err = server.proc.communicate(timeout=15)  # returns once no worker holds the pipes
    assert server.proc.returncode == 0, err
    assert b"Traceback" not in err, err


# ---- heartbeats ----------------------------------------------------------------------------------

@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_a_worker_whose_loop_stopped_is_killed_and_replaced(site_copy):
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                           "--status", "/status", "--worker-timeout", "2")
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    victim, healthy = sorted(worker_pids(server.pid))
    answered = set()
    # Both workers serve (their loops turn) before one is stopped.
    assert wait_until(lambda: answered.add(status_pid(server)) or answered == {victim, healthy},
                    timeout=20, interval=0)
    try:
        os.kill(victim, signal.SIGSTOP)  # its loop stops turning; the process stays
        assert wait_until(lambda: victim not in worker_pids(server.pid)
                        and len(worker_pids(server.pid)) == 2, timeout=20)
        new = (worker_pids(server.pid) - {healthy}).pop()
        assert healthy in worker_pids(server.pid)  # a worker that beats is left alone
        # The replacement serves: the kernel hands it some of a run of fresh connections.
        assert wait_until(lambda: status_pid(server) == new, timeout=20, interval=0)
    finally:
        kill_leftovers([victim])
        status, out, err = server.stop()
    assert status == 0, err
    assert f"worker {victim} (slot " in err, err
    assert "no heartbeat for 2 s; killing it" in err, err
    assert f"worker {victim} (slot 0) killed by signal 9 (SIGKILL)" in err or \
        f"worker {victim} (slot 1) killed by signal 9 (SIGKILL)" in err, err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_worker_timeout_must_be_finite_and_positive(site_copy, value):
    result = subprocess.run(
        [sys.executable, "-m", "reactor_http", "--root", str(site_copy), "--port", "0",
         "--workers", "2", "--worker-timeout", value],
        capture_output=True, text=True, timeout=20, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "--worker-timeout" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ---- many more workers than CPUs -----------------------------------------------------------------

def test_many_more_workers_than_cpus_is_warned_about_in_one_line(tmp_path, monkeypatch, capsys):
    from reactor_http import cli
    from reactor_http.config import Config

    assert cli.workers_warning(Config(workers=4), cpus=2) is None  # a few more may be deliberate
    warning = cli.workers_warning(Config(workers=1000), cpus=2)
    assert warning is not None and "\n" not in warning
    assert warning.startswith("--workers 1000 on 2 CPUs") and "--workers auto" in warning
    monkeypatch.setattr(cli, "cpus_for_auto", lambda: 2)
    monkeypatch.setattr(cli, "serve", lambda config, banner=None: 0)  # start-up checks only
    assert cli.main(["--root", str(tmp_path), "--workers", "1000"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["reactor-http: warning: " + warning]


# ---- the supervisor says what it does ------------------------------------------------------------

def connection_log(log_dir) -> str:
    """Everything in the dated connection logs of `log_dir`."""
    return "".join(path.read_text() for path in sorted(log_dir.glob("*connectionLog.txt")))


@pytest.mark.slow  # forks a supervisor and its workers, replaces and stops them
def test_the_supervisor_says_each_signal_and_each_worker_started_or_stopped(site_copy, tmp_path):
    log_dir = tmp_path / "logs"
    server = ServerProcess(site_copy, "reactor", "--workers", "2", "--quiet",
                           "--log-dir", str(log_dir))
    try:
        assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
        first = worker_pids(server.pid)
        os.kill(server.pid, signal.SIGUSR1)
        assert wait_until(lambda: "received SIGUSR1" in connection_log(log_dir))
        os.kill(server.pid, signal.SIGHUP)
        assert wait_until(lambda: connection_log(log_dir).count("stopped: replaced by") == 2)
        # (the log line may come before the process list shows the new worker: wait for both)
        assert wait_until(lambda: len(worker_pids(server.pid) - first) == 2)
        second = worker_pids(server.pid)
        victim = min(second)
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: "started: restart after worker" in connection_log(log_dir))
        assert wait_until(lambda: len(worker_pids(server.pid) - {victim}) == 2)
        third = worker_pids(server.pid) - {victim}  # (not yet reaped, it may still be listed)
        # Both serve (a worker still starting up would die of the SIGTERM, not stop from it).
        assert wait_until(lambda: all(f"pid {pid})" in connection_log(log_dir) for pid in third))
    finally:
        status, out, err = server.stop(signal.SIGTERM)
    assert status == 0, err
    assert not first & second and len(second) == 2 and len(third) == 2
    lines = [
        "received SIGUSR1: 2 workers reopen their log files",
        "received SIGHUP: replacing 2 workers one at a time",
        *(f"worker {pid} (slot " for pid in first | second | third),
        "killed by signal 9 (SIGKILL); restarting in",
        "received SIGTERM: stopping 2 workers gracefully",
    ]
    written = connection_log(log_dir)
    for text in lines:
        assert text in err and text in written, (text, err)
    for pid in first:  # start-up, then replaced, each with its slot
        assert re.search(rf"worker {pid} \(slot [01]\) started: start-up", written), written
        assert re.search(rf"worker {pid} \(slot [01]\) stopped: replaced by worker \d+ \(SIGHUP\), "
                         rf"exited with status 0", written), written
    for pid in second - {victim}:
        assert re.search(rf"worker {pid} \(slot [01]\) started: replacing worker \d+ \(SIGHUP\)",
                         written), written
    assert re.search(rf"worker \d+ \(slot [01]\) started: restart after worker {victim} killed "
                     rf"by signal 9 \(SIGKILL\)", written), written
    for pid in third:
        assert re.search(rf"worker {pid} \(slot [01]\) stopped: graceful stop, exited with "
                         rf"status 0", written), written
    # On the terminal each of them is one line of its own, as the connection log has it.
    assert err.count("reactor-http: received SIG") == 3, err


# ---- the scoreboard's cells (--status) -----------------------------------------------------------

def test_a_slots_next_replacement_waits_for_a_free_scoreboard_cell(tmp_path):
    # Two cells per slot: a SIGHUP replacement runs beside its old worker. A second SIGHUP
    # while that old worker still drains must not make three workers write two cells.
    config = Config(root=str(tmp_path), workers=2, status_path="/status").validate()
    supervisor = Supervisor(config, worker_body=None)
    supervisor.board = Board(2)
    draining = Worker(0, 101, 0.0, -1, 0.0, ready=True, retiring=True, cell=0)
    current = Worker(0, 102, 0.0, -1, 0.0, ready=True, cell=1)
    other = Worker(1, 103, 0.0, -1, 0.0, ready=True, cell=2)
    supervisor.workers = {101: draining, 102: current, 103: other}
    assert supervisor._free_cell(0) is None and supervisor._free_cell(1) == 3
    spawned = []
    supervisor._spawn = lambda slot, why: spawned.append((slot, why))
    supervisor.replace_queue = [102, 103]
    supervisor._step_replacement(time.monotonic())
    assert spawned == [] and supervisor.replace_queue == [102, 103]
    del supervisor.workers[101]  # the draining worker has exited and been reaped
    supervisor._step_replacement(time.monotonic())
    assert spawned == [(0, "replacing worker 102 (SIGHUP)")]
    assert supervisor.replace_queue == [103]
