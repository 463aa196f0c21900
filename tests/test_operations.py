"""Operations: --access-log, SIGUSR1 log reopening (logrotate), --pid-file, IPv6, --trust-proxy.

Real server processes on 127.0.0.1 / ::1 with ephemeral ports, both engines where it applies.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest

from tests.helpers.http import get
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import MODES, run_cli


def lines_of(path) -> list[str]:
    """The lines of a file, or [] if it does not exist (yet)."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().splitlines()
    except FileNotFoundError:
        return []


def ipv6_loopback_available() -> bool:
    """True if this machine can listen on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")


# ---- --access-log and SIGUSR1 -----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_access_log_file_and_stdout(site_copy, tmp_path, make_server, mode):
    log = tmp_path / "access.log"
    server = make_server(site_copy, mode, "--access-log", str(log))
    get(server, "/abc.txt")
    get(server, "/missing")
    assert wait_until(lambda: len(lines_of(log)) == 2)
    # Each line is written when its response is done: two requests may be logged in either order.
    lines = lines_of(log)
    [found] = [line for line in lines if '"GET /abc.txt HTTP/1.1" 200' in line]
    [missing] = [line for line in lines if '"GET /missing HTTP/1.1" 404' in line]
    assert found.startswith("127.0.0.1 - - [") and missing.startswith("127.0.0.1 - - [")
    _, out, _ = server.stop()
    assert sorted(out.splitlines()) == sorted(lines)  # stdout has the same lines


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_quiet_access_log_goes_to_the_file_only(site_copy, tmp_path, make_server, mode):
    log = tmp_path / "access.log"
    server = make_server(site_copy, mode, "--quiet", "--access-log", str(log))
    get(server, "/abc.txt")
    assert wait_until(lambda: len(lines_of(log)) == 1)
    _, out, _ = server.stop()
    assert out.splitlines() == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_sigusr1_reopens_the_access_log(site_copy, tmp_path, make_server, mode):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    server = make_server(site_copy, mode, "--quiet", "--access-log", str(log))
    get(server, "/abc.txt")
    assert wait_until(lambda: len(lines_of(log)) == 1)
    os.rename(log, rotated)                      # what logrotate does first
    os.kill(server.pid, signal.SIGUSR1)          # then its postrotate script
    assert wait_until(lambda: log.exists())        # reopened under the old name
    get(server, "/abc.txt?after")
    assert wait_until(lambda: len(lines_of(log)) == 1)
    assert "after" in lines_of(log)[0]
    assert len(lines_of(rotated)) == 1 and "after" not in lines_of(rotated)[0]
    status, _, err = server.stop()
    assert status == 0 and "Traceback" not in err


@pytest.mark.slow
def test_sigusr1_reaches_every_worker(site_copy, tmp_path, make_server):
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    log_dir = tmp_path / "connections"
    server = make_server(site_copy, "reactor", "--workers", "2", "--quiet",
                         "--access-log", str(log), "--log-dir", str(log_dir))
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    workers = worker_pids(server.pid)
    get(server, "/abc.txt")
    assert wait_until(lambda: len(lines_of(log)) == 1)
    os.rename(log, rotated)
    os.kill(server.pid, signal.SIGUSR1)  # the supervisor forwards it

    def reopened_pids() -> set[int]:
        pids = set()
        for name in os.listdir(log_dir):
            for line in lines_of(log_dir / name):
                if "Reopened log files (SIGUSR1, pid " in line:
                    pids.add(int(line.rsplit("pid ", 1)[1].rstrip(")")))
        return pids

    assert wait_until(lambda: reopened_pids() == workers), reopened_pids()
    for index in range(10):
        get(server, f"/abc.txt?after{index}")
    assert wait_until(lambda: len(lines_of(log)) == 10)
    assert len(lines_of(rotated)) == 1
    assert server.stop()[0] == 0


def test_unwritable_access_log_is_a_one_line_error(site_copy, tmp_path):
    result = run_cli("--root", str(site_copy), "--port", "0",
                     "--access-log", str(tmp_path / "no" / "such" / "dir" / "access.log"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "access log" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---- --pid-file ---------------------------------------------------------------------------------

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


# ---- IPv6 ---------------------------------------------------------------------------------------

@needs_ipv6
@pytest.mark.parametrize("mode", MODES)
def test_ipv6_loopback(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--host", "::1")
    assert "http://[::1]:" in server.banner
    server.host = "::1"
    response = get(server, "/abc.txt")
    assert response.status == 200
    _, out, _ = server.stop()
    assert out.splitlines()[0].startswith("::1 - - [")


@needs_ipv6
@pytest.mark.parametrize("mode", MODES)
def test_dual_stack_serves_ipv4_and_ipv6(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--host", "::")
    assert "http://[::]:" in server.banner
    server.host = "::1"
    assert get(server, "/abc.txt").status == 200
    server.host = "127.0.0.1"
    try:
        response = get(server, "/abc.txt")
    except ConnectionRefusedError:
        pytest.skip("this system does not allow dual-stack sockets (IPV6_V6ONLY forced)")
    assert response.status == 200


# ---- --trust-proxy ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_trusted_proxy_forwarded_client_is_logged(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--trust-proxy", "127.0.0.1")
    get(server, "/abc.txt?one", {"X-Forwarded-For": "203.0.113.7, 198.51.100.9"})
    get(server, "/abc.txt?two")                                        # no header: the peer
    get(server, "/abc.txt?three", {"X-Forwarded-For": "not-an-address\x1b[31m"})
    get(server, "/abc.txt?four", {"X-Forwarded-For": "2001:db8::1"})
    _, out, _ = server.stop()
    # Lines are written when each response is done, so they may come in any order: match each
    # request by its query, and check the client address it was logged with.
    client_of = {}
    for line in out.splitlines():
        query = line.split('"GET /abc.txt?', 1)[1].split(" ", 1)[0]
        client_of[query] = line.split(" ", 1)[0]
    assert client_of == {"one": "198.51.100.9",     # the last entry of the list
                         "two": "127.0.0.1",        # no header: the peer
                         "three": "127.0.0.1",      # malformed: the peer
                         "four": "2001:db8::1"}


@pytest.mark.parametrize("mode", MODES)
def test_forwarded_for_from_an_untrusted_peer_is_ignored(site_copy, make_server, mode):
    server = make_server(site_copy, mode, "--trust-proxy", "10.0.0.0/8")
    get(server, "/abc.txt", {"X-Forwarded-For": "203.0.113.7"})
    get(server, "/abc.txt")
    _, out, _ = server.stop()
    assert [line.split(" ", 1)[0] for line in out.splitlines()] == ["127.0.0.1"] * 2


def test_bad_trust_proxy_is_a_one_line_error(site_copy):
    result = run_cli("--root", str(site_copy), "--port", "0", "--trust-proxy", "proxy.example")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trust-proxy" in result.stderr
