"""systemd socket activation: a listening socket passed as fd 3 with LISTEN_FDS / LISTEN_PID.

A small launcher stands in for systemd: it moves the pre-bound sockets onto fds 3.., sets
LISTEN_FDS and LISTEN_PID to its own pid, and execs the server, which keeps that pid (as
`sh -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec python3 -m reactor_http ...'` would).
"""

from __future__ import annotations

import socket
import sys

import pytest

from tests.helpers.http import get
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import worker_pids
from tests.helpers.servers import REPO, ServerProcess, server_env
from reactor_http.service import take_listen_fds

LAUNCHER = """
import fcntl, os, sys
sources = [int(fd) for fd in sys.argv[1].split(",") if fd]
moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
for fd in sources:
    os.close(fd)
for index, fd in enumerate(moved):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_FDS"] = sys.argv[2]
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[3] == "self" else sys.argv[3]
os.execv(sys.executable, [sys.executable, "-m", "reactor_http", *sys.argv[4:]])
"""


class ActivatedServer(ServerProcess):
    """A server started the way systemd starts a socket-activated service."""

    def __init__(self, root, mode, sockets, *args, listen_fds=None, listen_pid="self"):
        self.root = root
        self.mode = mode
        fds = [sock.fileno() for sock in sockets]
        count = str(len(fds) if listen_fds is None else listen_fds)
        command = [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), count, listen_pid,
                   "--root", str(root), "--mode", mode, "--port", "0", *args]
        self.start(command, must_start=False, env=server_env(), cwd=REPO, pass_fds=fds)


def listening_socket() -> socket.socket:
    """What systemd's .socket unit would hold: bound to an ephemeral port and listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.fixture
def started():
    servers = []
    yield servers
    for server in servers:
        server.stop()


# ---- the environment contract (pure) ------------------------------------------------------------

def test_take_listen_fds_for_us_and_unsets_the_variables():
    environ = {"LISTEN_PID": "1234", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:extra", "X": "1"}
    assert take_listen_fds(environ, pid=1234) == [3, 4]
    assert environ == {"X": "1"}  # children cannot inherit them


@pytest.mark.parametrize("environ", [
    {"LISTEN_PID": "999", "LISTEN_FDS": "1"},   # meant for another process (our parent?)
    {"LISTEN_PID": "1234", "LISTEN_FDS": "0"},
    {"LISTEN_PID": "1234"},
    {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
    {},
])
def test_take_listen_fds_ignores_what_is_not_for_us(environ):
    assert take_listen_fds(environ, pid=1234) == []
    assert "LISTEN_PID" not in environ and "LISTEN_FDS" not in environ


# ---- real processes ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["reactor", "threaded"])
def test_serves_the_inherited_socket(site_copy, mode, started):
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        server = ActivatedServer(site_copy, mode, [sock])
        started.append(server)
    # The banner names systemd's address, not the --port 0 the command line asked for.
    assert f"http://127.0.0.1:{port}/" in server.banner, server.banner
    assert server.port == port
    response = get(server, "/abc.txt")
    assert response.status == 200 and response.body == (site_copy / "abc.txt").read_bytes()
    status, out, err = server.stop()
    assert status == 0 and "Traceback" not in err


def test_a_second_inherited_socket_is_closed_with_a_warning(site_copy, started):
    with listening_socket() as first, listening_socket() as second:
        port = first.getsockname()[1]
        server = ActivatedServer(site_copy, "reactor", [first, second])
        started.append(server)
    assert server.port == port
    assert get(server, "/").status == 200
    _, _, err = server.stop()
    assert "ignoring inherited socket fd 4" in err


def test_variables_for_another_pid_are_ignored(site_copy, started):
    with listening_socket() as sock:
        inherited_port = sock.getsockname()[1]
        server = ActivatedServer(site_copy, "reactor", [sock], listen_pid="1")
        started.append(server)
    assert server.port and server.port != inherited_port  # it bound its own --port 0
    assert get(server, "/").status == 200


def test_an_inherited_socket_that_is_not_listening_is_a_one_line_error(site_copy, started):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listen()ed
        server = ActivatedServer(site_copy, "reactor", [sock])
        started.append(server)
        server.proc.wait(timeout=20)
    status, _, err = server.stop()
    assert status == 2, err
    assert "Traceback" not in err and "not a listening TCP socket" in err
    assert len(err.strip().splitlines()) == 1


@needs_fork()
def test_workers_share_the_inherited_socket(site_copy, started):
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        server = ActivatedServer(site_copy, "reactor", [sock], "--workers", "2", "--quiet")
        started.append(server)
    assert server.port == port and "2 workers" in server.banner
    assert wait_until(lambda: len(worker_pids(server.pid)) == 2)
    for _ in range(10):
        assert get(server, "/abc.txt").status == 200
    status, _, err = server.stop()
    assert status == 0, err
