"""IPv6: a server on ::1, and one on :: that serves IPv4 and IPv6 (dual stack), both engines."""

from __future__ import annotations

import socket

import pytest

from tests.helpers.http import get
from tests.helpers.servers import MODES


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
