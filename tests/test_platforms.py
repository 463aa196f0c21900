"""Platforms: the facts (facilities.py), what the server refuses where a facility is missing, the
select() connection cap, and the package run on a standard library trimmed to Windows' and
macOS's (tests/helpers/platforms.py). `.ci/run` runs the socket tests again under
REACTOR_HTTP_SIMULATE=windows and =macos; the tests at the end check that those runs really take
the fallbacks."""

from __future__ import annotations

import inspect
import os
import selectors
import subprocess
import sys

import pytest

from reactor_http import facilities, poller, sending
from reactor_http.config import Config
from reactor_http.facilities import FACTS, SIMULATE_ENV, connection_cap, detect, simulate
from reactor_http.watcher import Watcher
from tests.helpers.http import get, read_response
from tests.helpers.platforms import collect_command, shim_command
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, REPO, ServerProcess, server_env

# All of it runs again in .ci/run's simulated passes (there, the last tests check the fallbacks).
pytestmark = pytest.mark.sockets

POSIX_HOST = pytest.mark.skipif(not FACTS.fork or FACTS.simulated,
                                reason="simulates platforms on a POSIX host (Linux CI)")


# ---- the facts ---------------------------------------------------------------------------------

def test_windows_facts_offer_none_of_the_unix_facilities():
    facts = simulate(detect(), "windows")
    assert (facts.sendfile, facts.msg_more, facts.fork, facts.rlimit, facts.file_read) == \
        (False, 0, False, False, "seek")
    assert (facts.o_nonblock, facts.o_cloexec, facts.poller, facts.watcher) == \
        (0, 0, "select", "scan")
    assert not facts.signals & {"SIGUSR1", "SIGHUP", "SIGCHLD"}
    assert facts.windows_names and facts.case_insensitive_names and not facts.reuse_address


def test_macos_facts_keep_fork_and_signals_but_not_epoll_or_inotify():
    real = detect()
    facts = simulate(real, "macos")
    assert facts.poller in ("selectors", "select") and facts.watcher == "scan"
    assert facts.msg_more == 0 and not facts.reuseport_balances
    assert (facts.fork, facts.signals, facts.sendfile) == (real.fork, real.signals, real.sendfile)
    assert facts.case_insensitive_names and not facts.windows_names


def test_a_simulation_never_adds_a_facility_the_host_lacks():
    poor = detect()
    poor = facilities.dataclasses.replace(poor, sendfile=False, fork=False, poller="select",
                                          select_limit=1024)
    assert not simulate(poor, "macos").sendfile and not simulate(poor, "macos").fork
    assert simulate(poor, "macos").poller == "select"


@pytest.mark.parametrize("limit, windows, cap", [
    (512, True, 480),     # sockets counted per set: the limit less the reserve
    (1024, False, 496),   # descriptor numbers: a socket and a file per connection
    (None, False, None),  # epoll, kqueue, poll: no fixed limit
])
def test_the_select_connection_cap_leaves_room_for_listeners_wakeups_and_logs(limit, windows,
                                                                               cap):
    assert connection_cap(limit, windows) == cap
    if cap is not None:
        assert cap + facilities.SELECT_RESERVE <= limit


def test_pread_reads_at_an_offset_with_or_without_os_pread(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert facilities.pread(fd, 4, 3) == b"3456"
        assert facilities._seek_read(fd, 4, 6) == b"6789"
        assert facilities._seek_read(fd, 4, 10) == b""
    finally:
        os.close(fd)


def test_the_pid_file_never_probes_with_kill_0_where_that_sends_ctrl_c(monkeypatch):
    from reactor_http import service

    def kill(pid, signum):
        raise AssertionError("os.kill(pid, 0) sends CTRL_C_EVENT on Windows")

    monkeypatch.setattr(service, "FACTS",
                        facilities.dataclasses.replace(FACTS, kill_zero_probes=False))
    monkeypatch.setattr(os, "kill", kill)
    # Windows' API says this process runs; elsewhere there is no API to ask, and no os.kill.
    assert service.process_running(os.getpid()) is (sys.platform == "win32")


def test_the_compressor_renices_its_thread_only_where_a_thread_id_names_it(tmp_path,
                                                                           monkeypatch):
    from reactor_http import content_coding

    def setpriority(*args):  # macOS: a thread id is no pid, and may not even fit one
        raise OverflowError("signed integer is greater than maximum")

    monkeypatch.setattr(content_coding, "FACTS",
                        facilities.dataclasses.replace(FACTS, thread_nice=False))
    monkeypatch.setattr(os, "setpriority", setpriority, raising=False)
    path = tmp_path / "big.js"
    path.write_bytes(b"var x = 1;\n" * (content_coding.INLINE_MAX // 8))
    compressor = content_coding.Compressor(1 << 22, 1 << 24,
                                           lambda st: (st.st_ino, st.st_mtime_ns, st.st_size))
    st = os.stat(path)
    assert compressor.lookup(str(path), st, "gzip") == (None, False)  # queued for the thread
    assert wait_until(lambda: compressor.lookup(str(path), st, "gzip")[0] is not None)


def test_an_unknown_simulation_is_one_line_and_exit_status_2_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "reactor_http", "--root", "site"],
                            capture_output=True, text=True, timeout=20, cwd=REPO,
                            env=server_env(**{SIMULATE_ENV: "beos"}))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "reactor-http: error: REACTOR_HTTP_SIMULATE must be one of windows, macos, not 'beos'"]
    imported = subprocess.run([sys.executable, "-c", "import reactor_http.server"],
                              capture_output=True, text=True, timeout=20, cwd=REPO,
                              env=server_env(**{SIMULATE_ENV: "beos"}))
    assert imported.returncode == 0 and not imported.stderr


# ---- what the server refuses where a facility is missing ----------------------------------------

def run_simulated(platform: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m reactor_http ARGS` with the facts of `platform`, to completion."""
    return subprocess.run([sys.executable, "-m", "reactor_http", *args], capture_output=True,
                          text=True, timeout=20, cwd=REPO,
                          env=server_env(**{SIMULATE_ENV: platform}))


@POSIX_HOST
@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "--workers 2: worker processes need fork(), which windows lacks; serve "
                         "with one process (--workers 1)"),
    (["--max-connections", "481"], "--max-connections 481: select(), the only poller on "
                                   "windows, holds at most 480 connections here; give at most 480"),
])
def test_what_windows_cannot_do_is_refused_in_one_line_with_status_2(args, message):
    result = run_simulated("windows", "--root", "site", "--port", "0", *args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"reactor-http: error: {message}"]


def test_the_platform_rules_in_config_follow_the_facts(tmp_path):
    if FACTS.fork:
        assert Config(root=str(tmp_path), workers=2).validate().workers == 2
    else:
        with pytest.raises(ValueError, match="need fork"):
            Config(root=str(tmp_path), workers=2).validate()
    cap = FACTS.connection_cap
    assert Config().max_connections == (cap if cap is not None else 10_000)
    if cap is not None:
        with pytest.raises(ValueError, match="holds at most"):
            Config(root=str(tmp_path), max_connections=cap + 1).validate()
        # The threaded engine never puts connections in a select() set.
        Config(root=str(tmp_path), mode="threaded", max_connections=cap + 1).validate()


@POSIX_HOST
def test_workers_auto_means_one_process_where_there_is_no_fork(site_copy):
    server = ServerProcess(site_copy, "reactor", "--workers", "auto",
                           env={SIMULATE_ENV: "windows"})
    try:
        assert "workers" not in server.banner
        assert "at most 480 connections (select() limit)" in server.banner
        assert get(server, "/abc.txt").status == 200
    finally:
        assert server.stop()[0] == 0


@POSIX_HOST
@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_reaching_the_select_cap_never_raises_and_keeps_serving(site_copy):
    server = ServerProcess(site_copy, "reactor", "--max-connections", "3",
                           env={SIMULATE_ENV: "windows"})
    socks = []
    try:
        assert "at most 3 connections (select() limit)" in server.banner
        for _ in range(8):  # past the cap: the longest-idle keep-alive connection makes room
            sock = server.connect()
            socks.append(sock)
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock, bytearray()).status == 200
        assert server.proc.poll() is None
    finally:
        for sock in socks:
            sock.close()
        status, _, err = server.stop()
    assert status == 0 and "Traceback" not in err


# ---- the package on a standard library trimmed to another platform's ---------------------------

@POSIX_HOST
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("platform", ["windows", "macos"])
def test_the_package_imports_and_serves_on_a_stdlib_like_the_platforms(platform, mode, site_copy):
    command = shim_command(platform, ["--root", str(site_copy), "--port", "0", "--mode", mode,
                                      "--live-reload"])
    server = ServerProcess.__new__(ServerProcess)
    server.start(command, env=server_env(**{SIMULATE_ENV: platform}), cwd=REPO)
    try:
        assert "live reload on (polling)" in server.banner
        assert get(server, "/abc.txt").status == 200
        assert get(server, "/").status == 200
        assert get(server, "/abc.txt", {"Range": "bytes=0-1"}).status == 206
    finally:
        status, _, err = server.stop()
    assert status == 0 and "Traceback" not in err


@POSIX_HOST
@pytest.mark.parametrize("platform", ["windows", "macos"])
@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_the_suite_collects_on_a_stdlib_like_the_platforms(platform):
    # What .github/workflows runs there: a module that imports pty, resource or pwd at the top
    # would be an error on Windows, not a skip.
    result = subprocess.run(collect_command(platform), capture_output=True, text=True,
                            timeout=120, cwd=REPO, env=server_env(**{SIMULATE_ENV: platform}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "error" not in result.stdout.splitlines()[-1]


# ---- the simulated runs take the fallbacks (.ci/run) -------------------------------------------

@pytest.mark.skipif(not FACTS.simulated, reason="checks a REACTOR_HTTP_SIMULATE run")
def test_a_simulated_run_uses_the_fallback_poller_and_watcher(tmp_path):
    made = poller.Poller()
    try:
        if FACTS.name == "windows":
            assert isinstance(made, poller.SelectPoller)
            assert isinstance(made._selector, selectors.SelectSelector)
        else:
            assert type(made) is poller.SelectorsPoller
    finally:
        made.close()
    watcher = Watcher(str(tmp_path), lambda paths: None)
    assert watcher.method == "polling" and watcher.inotify is None


# The read-and-send path (sending.py) keys on FACTS.sendfile; until it does, this test cannot pass.
SENDING_READS_FACTS = "FACTS" in inspect.getsource(sending)


@pytest.mark.skipif(FACTS.sendfile or not FACTS.simulated,
                    reason="checks a run that simulates a platform without sendfile")
@pytest.mark.xfail(not SENDING_READS_FACTS, reason="sending.py does not read FACTS.sendfile yet",
                   strict=True)
@pytest.mark.parametrize("mode", MODES)
def test_without_sendfile_no_file_body_goes_through_os_sendfile(mode, site_copy):
    prelude = ("import os, sys\n"
               "def refuse(*args):\n"
               "    raise SystemExit('os.sendfile was called')\n"
               "os.sendfile = refuse\n"
               "import runpy\n"
               f"sys.argv = ['reactor_http', '--root', {str(site_copy)!r}, '--port', '0', "
               f"'--mode', {mode!r}, '--quiet']\n"
               "runpy.run_module('reactor_http', run_name='__main__', alter_sys=True)\n")
    server = ServerProcess.__new__(ServerProcess)
    server.start([sys.executable, "-c", prelude], env=server_env(), cwd=REPO)
    try:
        big = max((path for path in site_copy.rglob("*") if path.is_file()),
                  key=lambda path: path.stat().st_size)
        response = get(server, "/" + big.relative_to(site_copy).as_posix())
        assert response.status == 200 and response.body == big.read_bytes()
    finally:
        status, _, err = server.stop()
    assert status == 0 and "sendfile" not in err


@POSIX_HOST
@pytest.mark.parametrize("platform", ["windows", "macos"])
def test_the_command_line_loads_on_a_stdlib_like_the_platforms(platform):
    result = subprocess.run(shim_command(platform, ["--help"]), capture_output=True, text=True,
                            timeout=20, cwd=REPO, env=server_env(**{SIMULATE_ENV: platform}))
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and "SIGTERM/SIGINT stop gracefully" in text
    assert ("SIGUSR1 reopens the log files" in text) is (platform == "macos")
