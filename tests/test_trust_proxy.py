"""--trust-proxy: the client a trusted proxy names in X-Forwarded-For, as the access log and the
--status allow-list see it; an untrusted peer's X-Forwarded-For, or a trusted proxy's unusable
one, grants nothing. Real servers on 127.0.0.1, both engines.
"""

from __future__ import annotations

import pytest

from tests.helpers.http import get
from tests.helpers.servers import MODES, run_cli


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


@pytest.mark.parametrize("mode", MODES)
def test_unparseable_forwarded_for_from_a_trusted_proxy_is_not_loopback(site_copy, make_server,
                                                                       mode):
    """The proxy is loopback, which may read /status; a client behind it that sends garbage
    (or nothing usable) in X-Forwarded-For must not be taken for the proxy."""
    server = make_server(site_copy, mode, "--trust-proxy", "127.0.0.1", "--status", "/status")
    assert get(server, "/status").status == 200                                # the proxy itself
    assert get(server, "/status", {"X-Forwarded-For": "::1"}).status == 200    # a local client
    assert get(server, "/status", {"X-Forwarded-For": "garbage"}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": ""}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": "203.0.113.9, "}).status == 404
    assert get(server, "/status", {"X-Forwarded-For": "203.0.113.9"}).status == 404
    _, out, _ = server.stop()
    clients = sorted(line.split(" ", 1)[0] for line in out.splitlines())
    # Logged as what they are: "-" (no client address known), never the proxy's address.
    assert clients == sorted(["127.0.0.1", "::1", "-", "-", "-", "203.0.113.9"]), out
