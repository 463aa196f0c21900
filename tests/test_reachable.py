"""Reachable URLs at start-up and --open (reachable.py): the addresses a wildcard-bound server
offers ("Local:", "Network:"), how they are found, and the browser opened once it listens.

Pure choices first (lists of addresses in, banner lines out), then the gatherer's parsers and
bounds, then --open with webbrowser.open and isatty replaced, then real servers bound to
0.0.0.0 (allowed: it is this machine's), always reached through 127.0.0.1.
"""

from __future__ import annotations

import io
import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import webbrowser

import pytest

from reactor_http import reachable, server as server_module, workers
from reactor_http.config import Config
from reactor_http.listeners import StartupError, bind_listener
from reactor_http.reachable import Bound, banner_lines, network_addresses, reachable_lines
from reactor_http.workers import READY_BYTE, Supervisor, Worker
from tests.helpers.http import get
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.servers import BANNER, MODES, REPO, read_banner, server_env

# Seconds a test waits for something that normally takes milliseconds (a bound, not a timing).
WAIT = 20.0

LOOPBACKS = ["127.0.0.1", "127.0.1.1", "::1"]
LINK_LOCAL = ["169.254.10.20", "fe80::1", "fe80::a00:27ff:fe2b:2a4c%eth0"]
LAN = ["192.168.1.20", "172.17.0.1", "10.8.0.5"]  # a Wi-Fi address, a Docker bridge, a VPN
LAN6 = ["2001:db8:1::20", "fd00::2"]  # a global address, a unique local one (RFC 4193)


def v4(port: int = 8000, scheme: str = "http") -> Bound:
    return Bound(scheme, "0.0.0.0", port, False)


def v6(port: int = 8000, dual_stack: bool = True, scheme: str = "http") -> Bound:
    return Bound(scheme, "::", port, dual_stack)


# ---- the choice of addresses -----------------------------------------------------------------

def test_loopback_link_local_and_what_is_no_address_are_left_out():
    addresses = LOOPBACKS + LINK_LOCAL + ["0.0.0.0", "::", "224.0.0.251", "ff02::fb",
                                          "not-an-address", ""] + LAN + LAN6
    assert network_addresses(addresses, ipv4=True, ipv6=True) == LAN + LAN6


def test_container_bridges_and_vpns_are_kept_as_vite_does():
    # Which interface a phone shares cannot be known: every usable address is offered.
    assert network_addresses(["172.17.0.1", "172.18.0.1", "10.8.0.5"], ipv4=True,
                             ipv6=False) == ["172.17.0.1", "172.18.0.1", "10.8.0.5"]


def test_ipv4_comes_first_in_the_order_found_and_duplicates_once():
    found = ["fd00::2", "10.0.0.2", "192.168.1.20", "::ffff:10.0.0.2", "fd00::2", "10.0.0.2"]
    assert network_addresses(found, ipv4=True, ipv6=True) == ["10.0.0.2", "192.168.1.20",
                                                              "fd00::2"]


@pytest.mark.parametrize("ipv4, ipv6, expected", [
    (True, False, LAN), (False, True, LAN6), (True, True, LAN + LAN6), (False, False, [])])
def test_only_the_families_the_socket_accepts(ipv4, ipv6, expected):
    assert network_addresses(LAN6 + LAN, ipv4=ipv4, ipv6=ipv6) == expected


def test_bound_to_0_0_0_0_local_is_ipv4_loopback_and_network_is_ipv4_only():
    assert reachable_lines([v4(8000)], LOOPBACKS + LAN + LAN6) == [
        "  Local:   http://127.0.0.1:8000/",
        "  Network: http://192.168.1.20:8000/",
        "  Network: http://172.17.0.1:8000/",
        "  Network: http://10.8.0.5:8000/"]


def test_dual_stack_lists_both_families_and_ipv6_in_brackets():
    assert reachable_lines([v6(8080)], ["192.168.1.20", "fe80::1%eth0", "2001:db8:1::20"]) == [
        "  Local:   http://localhost:8080/",
        "  Network: http://192.168.1.20:8080/",
        "  Network: http://[2001:db8:1::20]:8080/"]


def test_ipv6_only_lists_ipv6_and_its_own_loopback():
    assert reachable_lines([v6(8080, dual_stack=False)], LAN + LAN6) == [
        "  Local:   http://[::1]:8080/",
        "  Network: http://[2001:db8:1::20]:8080/",
        "  Network: http://[fd00::2]:8080/"]


def test_tls_listeners_say_https():
    lines = reachable_lines([v4(8000), v4(8443, "https")], ["192.168.1.20"])
    assert lines == ["  Local:   http://127.0.0.1:8000/", "  Network: http://192.168.1.20:8000/",
                     "  Local:   https://127.0.0.1:8443/",
                     "  Network: https://192.168.1.20:8443/"]


@pytest.mark.parametrize("found", [[], LOOPBACKS + LINK_LOCAL])
def test_a_machine_with_loopback_only_says_none_found_in_one_line(found):
    assert reachable_lines([v4(8000)], found) == [
        "  Local:   http://127.0.0.1:8000/", f"  Network: {reachable.NONE_FOUND}"]


def test_many_addresses_are_capped_with_a_count_of_the_rest():
    many = [f"172.{16 + n}.0.1" for n in range(12)]
    lines = reachable_lines([v4(8000)], many)
    cap = reachable.MAX_NETWORK_LINES
    assert len(lines) == 1 + cap
    assert lines[-1] == f"  Network: and {12 - (cap - 1)} more addresses"
    assert lines[1:-1] == [f"  Network: http://{host}:8000/" for host in many[:cap - 1]]
    exactly = reachable_lines([v4(8000)], many[:cap])
    assert exactly[1:] == [f"  Network: http://{host}:8000/" for host in many[:cap]]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "192.168.1.20", "fd00::2"])
def test_a_specific_address_adds_no_line_and_asks_the_machine_nothing(host):
    def gather():
        raise AssertionError("the machine's addresses were gathered for a specific binding")

    assert banner_lines([Bound("http", host, 8000, False)], gather) == []
    assert banner_lines([Bound("http", host, 8000, False), v4(8443, "https")],
                        lambda: ["10.0.0.2"]) == ["  Local:   https://127.0.0.1:8443/",
                                                  "  Network: https://10.0.0.2:8443/"]


def test_local_url_of_a_specific_binding_is_that_binding():
    assert reachable.local_url(Bound("https", "fd00::2", 443, False)) == "https://[fd00::2]:443/"
    assert reachable.local_url(Bound("http", "10.0.0.2", 80, False)) == "http://10.0.0.2:80/"


# ---- the gatherer -----------------------------------------------------------------------------

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        |-- 172.17.0.0
           /16 link UNICAST
        |-- 172.17.0.1
           /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.0
           /24 link UNICAST
        |-- 192.168.1.20
           /24 link UNICAST
           /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 192.168.1.20
           /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
20010db8000100000000000000000020 04 40 00 40     eth0
20010db8000100000000000000000021 04 40 00 08     eth0
20010db8000100000000000000000022 04 40 00 20     eth0
garbage
"""


def test_fib_trie_gives_each_local_ipv4_address_once():
    assert reachable.parse_fib_trie(FIB_TRIE) == ["127.0.0.1", "172.17.0.1", "192.168.1.20"]


def test_if_inet6_gives_usable_addresses_not_tentative_or_failed_ones():
    # ...20 is tentative (duplicate detection running), ...21 failed it; ...22 is deprecated
    # (a temporary address past its preferred life): still usable, so kept.
    assert reachable.parse_if_inet6(IF_INET6) == ["::1", "fe80::fc:ff:fe00:1", "fd00::2",
                                                  "2001:db8:1::22"]


def test_the_gatherer_never_raises(monkeypatch):
    def broken():
        raise RuntimeError("an unforeseen platform")

    monkeypatch.setattr(reachable, "default_route_addresses", broken)
    assert reachable.interface_addresses() == []


def test_the_gatherer_gives_addresses_of_this_machine():
    found = reachable.interface_addresses()
    for text in found:
        ipaddress.ip_address(text.split("%", 1)[0])  # each one an address
    if reachable.FACTS.interface_list == "procfs" and os.path.exists(reachable.FIB_TRIE):
        assert "127.0.0.1" in found  # Linux's table has loopback (left out later, by choice)


def test_a_slow_resolver_is_not_waited_for():
    release = threading.Event()
    asked = threading.Event()

    def slow_resolver(*args, **kwargs):
        asked.set()
        release.wait(WAIT)  # a resolver asking the network: seconds
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", 0))]

    try:
        assert reachable.hostname_addresses(wait=0.01, resolve=slow_resolver) == []
        assert asked.is_set()
    finally:
        release.set()


def test_a_prompt_resolver_gives_its_addresses():
    def resolver(*args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.168.1.20", 0)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", 0, 0, 0))]

    assert reachable.hostname_addresses(wait=WAIT, resolve=resolver) == ["192.168.1.20",
                                                                         "fd00::2"]


def test_what_a_socket_is_bound_to_is_asked_of_the_socket():
    with bind_listener("0.0.0.0", 0, 8) as sock:
        assert reachable.bound_of(sock, "https") == Bound("https", "0.0.0.0",
                                                          sock.getsockname()[1], False)
    if not socket.has_ipv6:
        return
    try:
        sock = bind_listener("::", 0, 8)
    except StartupError:
        pytest.skip("no IPv6 here")
    with sock:
        bound = reachable.bound_of(sock, "http")
        dual = not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        assert bound == Bound("http", "::", sock.getsockname()[1], dual)


# ---- --open -----------------------------------------------------------------------------------

class Terminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def opened(monkeypatch) -> list:
    """The URLs webbrowser.open is asked to show (nothing is started)."""
    urls: list = []

    def fake_open(url, *args, **kwargs):
        urls.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    return urls


def test_open_shows_the_url_from_a_thread_when_stdout_is_a_terminal(opened):
    thread = reachable.open_browser("http://127.0.0.1:8000/", Terminal())
    assert thread is not None and thread.daemon
    thread.join(WAIT)
    assert opened == ["http://127.0.0.1:8000/"]


def test_open_does_nothing_but_say_so_when_stdout_is_not_a_terminal(opened, caplog):
    caplog.set_level("INFO", logger="reactor_http")
    assert reachable.open_browser("http://127.0.0.1:8000/", io.StringIO()) is None
    closed = io.StringIO()
    closed.close()
    assert reachable.open_browser("http://127.0.0.1:8000/", closed) is None
    assert opened == []
    said = [record.getMessage() for record in caplog.records]
    assert said == ["--open: stdout is not a terminal, so no browser is opened; visit "
                    "http://127.0.0.1:8000/"] * 2


@pytest.mark.parametrize("outcome", [False, OSError("no display")])
def test_a_browser_that_cannot_start_is_a_warning_not_a_failure(monkeypatch, caplog, outcome):
    def fake_open(url, *args, **kwargs):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(webbrowser, "open", fake_open)
    caplog.set_level("INFO", logger="reactor_http")
    thread = reachable.open_browser("http://127.0.0.1:8000/", Terminal())
    assert thread is not None
    thread.join(WAIT)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "--open: no browser could be started; visit http://127.0.0.1:8000/")]


@pytest.mark.parametrize("mode", MODES)
def test_open_shows_loopback_once_the_server_listens_on_0_0_0_0(site_copy, opened, monkeypatch,
                                                                mode):
    monkeypatch.setattr(sys, "stdout", Terminal())
    config = Config(root=str(site_copy), host="0.0.0.0", port=0, mode=mode, quiet=True,
                    open_browser=True)
    banners: list = []
    engines: list = []
    thread = threading.Thread(target=server_module.serve, args=(config,), daemon=True,
                              kwargs={"banner": banners.append, "ready": engines.append})
    thread.start()
    try:
        assert wait_until(lambda: engines and opened, WAIT)
        port = int(BANNER.search(banners[0].encode()).group(2))
        assert opened == [f"http://127.0.0.1:{port}/"]
        first, local, *network = banners[0].split("\n")
        assert f"at http://0.0.0.0:{port}/ (mode: {mode})" in first
        assert local == f"  Local:   http://127.0.0.1:{port}/"
        assert network and all(line.startswith("  Network: ") for line in network)
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
    finally:
        if engines:
            engines[0].request_stop()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert len(opened) == 1


def test_the_supervisor_opens_once_when_the_first_worker_is_ready(site_copy, monkeypatch):
    shown: list = []
    monkeypatch.setattr(workers, "open_browser", shown.append)
    supervisor = Supervisor(Config(root=str(site_copy), host="0.0.0.0", port=0, workers=2,
                                   open_browser=True), None)
    supervisor.holder = bind_listener("0.0.0.0", 0, 8)
    pipes = [os.pipe() for _ in range(3)]
    try:
        port = supervisor.holder.getsockname()[1]
        for slot, (read_end, write_end) in enumerate(pipes):
            os.set_blocking(read_end, False)
            worker = Worker(slot=slot, pid=0, started=0.0, pipe=read_end, last_beat=0.0)
            supervisor._read_pipe(worker)  # nothing yet: not ready, nothing opened
            assert not worker.ready and len(shown) == min(slot, 1)
            os.write(write_end, READY_BYTE)
            supervisor._read_pipe(worker)
            assert worker.ready  # the second and third (a SIGHUP replacement) open nothing
            assert shown == [f"http://127.0.0.1:{port}/"]
    finally:
        supervisor.holder.close()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


def test_workers_never_open_a_browser_themselves(site_copy, opened, monkeypatch):
    # A worker runs the same engine body: its config says it is a worker, so it leaves --open
    # to the supervisor.
    monkeypatch.setattr(sys, "stdout", Terminal())
    calls: list = []
    monkeypatch.setattr(server_module, "open_browser", calls.append)
    config = Config(root=str(site_copy), port=0, quiet=True, open_browser=True, worker=(0, 2))
    listeners = server_module.open_listeners(config)
    engines: list = []
    thread = threading.Thread(target=server_module.run_engine, args=(config, listeners),
                              kwargs={"ready": engines.append}, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: engines, WAIT)
    finally:
        if engines:
            engines[0].request_stop()
        thread.join(WAIT)
    assert calls == [] and opened == []


# ---- real servers -----------------------------------------------------------------------------

def network_lines(stderr: str) -> list[str]:
    """The banner's "Network:" lines, prefix removed."""
    return [line.split("  Network: ", 1)[1] for line in stderr.splitlines()
            if "  Network: " in line]


@pytest.mark.parametrize("mode", MODES)
def test_bound_to_0_0_0_0_the_banner_lists_this_machines_addresses(site_copy, make_server,
                                                                   mode):
    server = make_server(site_copy, mode, "--host", "0.0.0.0", "--open")
    assert f"at http://0.0.0.0:{server.port}/" in server.banner
    assert get(server, "/abc.txt").status == 200  # through 127.0.0.1, the Local URL
    status, _, err = server.stop()
    assert status == 0, err
    lines = err.splitlines()
    start = lines.index(server.banner.rstrip("\n"))
    assert lines[start + 1] == f"reactor-http:   Local:   http://127.0.0.1:{server.port}/"
    # What this process finds (the resolver, where it is asked, may answer one call in time and
    # not the other: the default route's address is the one sure to be there).
    found = network_addresses(reachable.interface_addresses(), ipv4=True, ipv6=False)
    primary = network_addresses(reachable.default_route_addresses(), ipv4=True, ipv6=False)
    shown = network_lines(err)
    if not found:
        assert shown == [reachable.NONE_FOUND]
    else:
        urls = [f"http://{host}:{server.port}/" for host in found]
        assert shown and set(shown) <= set(urls) | {line for line in shown if " more " in line}
        assert all(f"http://{host}:{server.port}/" in shown for host in primary)
    # stdout is a pipe here: --open says so once, and no browser is started.
    assert [line for line in lines if "--open" in line] == [
        f"reactor-http: --open: stdout is not a terminal, so no browser is opened; visit "
        f"http://127.0.0.1:{server.port}/"]


@pytest.mark.parametrize("mode", MODES)
def test_tls_on_0_0_0_0_offers_https_urls(site_copy, make_server, tls_certificate, mode):
    cert, key = tls_certificate
    server = make_server(site_copy, mode, "--host", "0.0.0.0", "--certfile", str(cert),
                         "--keyfile", str(key))
    _, _, err = server.stop()
    assert f"reactor-http:   Local:   https://127.0.0.1:{server.port}/" in err.splitlines()
    assert all(url.startswith("https://") or url == reachable.NONE_FOUND
               for url in network_lines(err))


@pytest.mark.parametrize("mode", MODES)
def test_bound_to_loopback_the_banner_stays_one_line(site_copy, make_server, mode):
    server = make_server(site_copy, mode)
    _, _, err = server.stop()
    assert "Local:" not in err and "Network:" not in err


def start_on_a_terminal(site_copy, tmp_path, *args):
    """A server whose stdout is a terminal (a pty) and whose "browser" (BROWSER) is a script
    appending each URL it is given to a file: (process, port, that file, the pty's master)."""
    shown = tmp_path / "shown.txt"
    browser = tmp_path / "browser.py"
    browser.write_text("import sys\nwith open(sys.argv[2], 'a') as file:\n"
                       "    file.write(sys.argv[1] + '\\n')\n")
    command = " ".join(shlex.quote(part) for part in (sys.executable, str(browser)))
    env = server_env(BROWSER=f"{command} %s {shlex.quote(str(shown))}")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "reactor_http", "--root", str(site_copy),
                                 "--port", "0", "--quiet", "--open", *args], stdout=slave,
                                stderr=subprocess.PIPE, env=env, cwd=REPO)
    finally:
        os.close(slave)
    port = int(BANNER.search(read_banner(proc)).group(2))
    return proc, port, shown, master


def stop_process(proc: subprocess.Popen, master: int) -> str:
    """SIGTERM, the exit status checked; stderr after the banner."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=WAIT)
    finally:
        os.close(master)
    assert proc.returncode == 0, err
    return err.decode()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("engine", [("reactor",), ("threaded",),
                                    pytest.param(("reactor", "--workers", "2"),
                                                 marks=[pytest.mark.slow, needs_fork()])],
                         ids=["reactor", "threaded", "workers"])
def test_on_a_terminal_the_browser_is_started_once_with_the_url(site_copy, tmp_path, engine):
    mode, *args = engine
    proc, port, shown, master = start_on_a_terminal(site_copy, tmp_path, "--mode", mode, *args)
    assert wait_until(shown.exists, WAIT)
    err = stop_process(proc, master)
    assert shown.read_text() == f"http://127.0.0.1:{port}/\n", err
    assert "--open" not in err
