"""--pid-file over real processes: written once the server listens, removed only by its writer.

A second start that finds a live pid in the file refuses in one line and leaves the file alone;
a start that fails for another reason (the port in use) leaves the file as it found it; a stale
file (its process is gone) is replaced. logrotate's `kill -USR1 "$(cat pidfile)"` depends on it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers.http import get
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import MODES, SITE, run_cli
from reactor_http.facilities import FACTS
from reactor_http.service import PidFile, process_running


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=20)
    return proc.pid


@pytest.mark.parametrize("mode", MODES)
def test_second_start_leaves_the_running_servers_pid_file(make_server, tmp_path, mode):
    pid_file = tmp_path / "rh.pid"
    server = make_server(SITE, mode, "--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    # The same command again (here on the same port: it would be in use too).
    result = run_cli("--root", str(SITE), "--port", str(server.port), "--mode", mode,
                     "--pid-file", str(pid_file))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (f"reactor-http: error: --pid-file {pid_file}: a server is already "
                        f"running as pid {server.pid}")
    assert pid_file.read_text() == f"{server.pid}\n"
    # logrotate's postrotate line still reaches the server (where there is SIGUSR1).
    if FACTS.has_signal("SIGUSR1"):
        os.kill(int(pid_file.read_text()), signal.SIGUSR1)
    assert get(server, "/abc.txt").status == 200
    assert server.stop()[0] == 0
    assert not pid_file.exists()


def test_a_start_that_cannot_bind_leaves_a_stale_pid_file_as_it_was(tmp_path):
    """The pid file is written only once the sockets are held, so a failed start writes none
    (and so removes none)."""
    pid_file = tmp_path / "rh.pid"
    stale = f"{dead_pid()}\n"
    pid_file.write_text(stale)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = run_cli("--root", str(SITE), "--port", str(busy.getsockname()[1]),
                         "--pid-file", str(pid_file))
    assert result.returncode == 2 and "in use" in result.stderr
    assert pid_file.read_text() == stale


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_pid_file_is_replaced(make_server, tmp_path, mode):
    pid_file = tmp_path / "rh.pid"
    pid_file.write_text(f"{dead_pid()}\n")
    server = make_server(SITE, mode, "--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    assert server.stop()[0] == 0
    assert not pid_file.exists()


def test_a_stale_pid_file_is_replaced_with_one_line_of_notice(make_server, tmp_path):
    pid_file = tmp_path / "rh.pid"
    pid = dead_pid()
    pid_file.write_text(f"{pid}\n")
    server = make_server(SITE, "reactor", "--pid-file", str(pid_file))
    notices = [line for line in server.startup.decode().splitlines() if "--pid-file" in line]
    assert notices == [f"reactor-http: warning: --pid-file {pid_file}: no process {pid} "
                       f"runs (a server that stopped without removing it?); replacing the file"]
    assert pid_file.read_text() == f"{server.pid}\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/cmdline")
@pytest.mark.skipif(FACTS.name != "linux", reason="a pid's command line is read from /proc "
                                                   "(Linux); elsewhere a live pid is refused")
@pytest.mark.parametrize("mode", MODES)
def test_a_pid_file_naming_an_unrelated_process_is_replaced(make_server, tmp_path, mode):
    """A reused pid (after a reboot or a container restart) is not a server: the command line
    of the process says so, and the file is replaced with one line of notice."""
    pid_file = tmp_path / "rh.pid"
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        pid_file.write_text(f"{unrelated.pid}\n")
        server = make_server(SITE, mode, "--pid-file", str(pid_file))
        notices = [line for line in server.startup.decode().splitlines() if "--pid-file" in line]
        assert notices == [f"reactor-http: warning: --pid-file {pid_file}: pid {unrelated.pid} "
                           f"is not a reactor_http server (sleep); replacing the file"]
        assert pid_file.read_text() == f"{server.pid}\n"
        assert unrelated.poll() is None  # left alone
        assert server.stop()[0] == 0
        assert not pid_file.exists()
    finally:
        unrelated.kill()
        unrelated.wait()


def test_a_pid_file_naming_another_process_is_not_removed_at_exit(make_server, tmp_path):
    """Someone else wrote the file while we ran (a newer server): it is theirs to remove."""
    pid_file = tmp_path / "rh.pid"
    server = make_server(SITE, "reactor", "--pid-file", str(pid_file))
    pid_file.write_text(f"{os.getpid()}\n")
    assert server.stop()[0] == 0
    assert pid_file.read_text() == f"{os.getpid()}\n"


def test_a_file_that_holds_no_pid_is_not_overwritten(tmp_path):
    pid_file = tmp_path / "notes.txt"
    pid_file.write_text("not a pid\n")
    result = run_cli("--root", str(SITE), "--port", "0", "--pid-file", str(pid_file))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--pid-file" in result.stderr and "holds no pid" in result.stderr
    assert pid_file.read_text() == "not a pid\n"


def test_no_temporary_file_is_left_beside_the_pid_file(make_server, tmp_path):
    pid_file = tmp_path / "rh.pid"
    server = make_server(SITE, "reactor", "--pid-file", str(pid_file))
    assert sorted(os.listdir(tmp_path)) == ["rh.pid"]
    assert server.stop()[0] == 0
    assert os.listdir(tmp_path) == []


# ---- written at start and removed at exit, with --workers too; an unwritable path --------------

@pytest.mark.parametrize("mode", MODES)
def test_pid_file_written_at_start_and_removed_at_exit(site_copy, tmp_path, make_server, mode):
    pid_file = tmp_path / "server.pid"
    server = make_server(site_copy, mode, "--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    # Answering means the signal handlers are in (serve() prints the banner just before).
    assert get(server, "/abc.txt").status == 200
    status, _, err = server.stop(signal.SIGTERM)
    assert status == 0, err
    assert not pid_file.exists()


@needs_fork()
def test_pid_file_with_workers_names_the_supervisor(site_copy, tmp_path, make_server):
    pid_file = tmp_path / "server.pid"
    server = make_server(site_copy, "reactor", "--workers", "2", "--pid-file", str(pid_file))
    assert pid_file.read_text() == f"{server.pid}\n"
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    os.kill(min(worker_pids(server.pid)), signal.SIGKILL)  # a dying worker leaves it alone
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    assert pid_file.read_text() == f"{server.pid}\n"
    assert server.stop()[0] == 0
    assert not pid_file.exists()


def test_unwritable_pid_file_is_a_one_line_error(site_copy, tmp_path):
    result = run_cli("--root", str(site_copy), "--port", "0",
                     "--pid-file", str(tmp_path / "no" / "dir" / "x.pid"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pid file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---- the PidFile object (what the start-up code calls) -----------------------------------------

def test_pid_file_protocol(tmp_path):
    path = str(tmp_path / "x.pid")
    first = PidFile(path)
    first.check()
    assert not os.path.exists(path)            # check() writes nothing
    first.write()
    assert PidFile(path).read() == os.getpid()
    first.remove()
    assert not os.path.exists(path)
    PidFile(path).remove()                     # never written by this object: a no-op


def test_a_forked_child_does_not_remove_its_parents_pid_file(tmp_path):
    path = str(tmp_path / "x.pid")
    pid_file = PidFile(path)
    pid_file.write()
    child = os.fork()
    if child == 0:
        pid_file.remove()
        os._exit(0)
    os.waitpid(child, 0)
    assert os.path.exists(path)
    pid_file.remove()


def test_process_running():
    assert process_running(os.getpid())
    assert not process_running(dead_pid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert not process_running(zombie.pid)
    zombie.wait(timeout=20)
