"""TLS: HTTPS on --port (--certfile/--keyfile) or beside HTTP (--tls-port), in both engines."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import subprocess

import pytest

from tests.helpers.http import assert_closed, read_response, recv_until_closed
from tests.helpers.platforms import needs_fork
from tests.helpers.servers import MODES, ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="session")
def certificate(tls_certificate):
    """conftest's throwaway certificate, by this module's name for it."""
    return tls_certificate


@pytest.fixture(scope="module", params=MODES)
def https_server(request, site_copy, certificate):
    cert, key = certificate
    server = ServerProcess(site_copy, request.param, "--quiet", "--certfile", str(cert),
                           "--keyfile", str(key), "--header-timeout", "1")
    assert "https://127.0.0.1:" in server.banner
    yield server
    server.stop()


def client_context(cert) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


def tls_connect(port: int, cert, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return client_context(cert).wrap_socket(raw, server_hostname="localhost")


def request(sock, path: str, headers: str = "", method: str = "GET"):
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())


def test_get_over_tls_matches_the_file(https_server, certificate, site_copy):
    with tls_connect(https_server.port, certificate[0]) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert sock.selected_alpn_protocol() in (None, "http/1.1")
        buffer = bytearray()
        request(sock, "/")
        page = read_response(sock, buffer)
        assert page.status == 200
        assert page.body == (site_copy / "index.html").read_bytes()
        # Keep-alive over TLS: a large file (sent in chunks through the SSL object) next.
        request(sock, "/big.bin")
        big = read_response(sock, buffer)
        assert big.status == 200
        assert hashlib.sha256(big.body).digest() == \
            hashlib.sha256((site_copy / "big.bin").read_bytes()).digest()


def test_range_and_conditional_over_tls(https_server, certificate, site_copy):
    data = (site_copy / "big.bin").read_bytes()
    with tls_connect(https_server.port, certificate[0]) as sock:
        buffer = bytearray()
        request(sock, "/big.bin", "Range: bytes=1000000-1000099\r\n")
        part = read_response(sock, buffer)
        assert part.status == 206
        assert part.headers["content-range"] == f"bytes 1000000-1000099/{len(data)}"
        assert part.body == data[1000000:1000100]
        request(sock, "/abc.txt")
        first = read_response(sock, buffer)
        request(sock, "/abc.txt", f"If-None-Match: {first.headers['etag']}\r\n")
        again = read_response(sock, buffer)
        assert again.status == 304 and again.body == b""
        request(sock, "/abc.txt", method="HEAD")
        head = read_response(sock, buffer, head_only=True)
        assert head.status == 200 and head.headers["content-length"] == str(len(first.body))


@pytest.mark.slow
def test_a_stalled_handshake_does_not_block_others_and_is_dropped(https_server, certificate):
    stalled = socket.create_connection(("127.0.0.1", https_server.port), timeout=10)
    half_hello = socket.create_connection(("127.0.0.1", https_server.port), timeout=10)
    half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello, cut
    try:
        with tls_connect(https_server.port, certificate[0]) as sock:
            request(sock, "/abc.txt")
            assert read_response(sock, bytearray()).status == 200
        # The header timeout (1 s here) bounds the handshake: both are closed by the server
        # (a timeout would fail the test instead).
        assert_closed(stalled, timeout=10)
        assert_closed(half_hello, timeout=10)
    finally:
        stalled.close()
        half_hello.close()


def test_plain_http_on_the_https_port_is_closed_and_the_server_lives(https_server, certificate):
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = recv_until_closed(sock)
        assert b"HTTP/1.1 200" not in reply
    with tls_connect(https_server.port, certificate[0]) as sock:
        request(sock, "/abc.txt")
        assert read_response(sock, bytearray()).status == 200


@pytest.mark.parametrize("mode", MODES)
def test_http_and_https_side_by_side(site_copy, certificate, mode):
    cert, key = certificate
    server = ServerProcess(site_copy, mode, "--quiet", "--certfile", str(cert),
                           "--keyfile", str(key), "--tls-port", "0")
    try:
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/ and https://127\.0\.0\.1:(\d+)/",
                          server.banner)
        assert match, server.banner
        http_port, https_port = int(match.group(1)), int(match.group(2))
        with socket.create_connection(("127.0.0.1", http_port), timeout=5) as plain:
            request(plain, "/abc.txt")
            plain_answer = read_response(plain, bytearray())
        with tls_connect(https_port, cert) as secure:
            request(secure, "/abc.txt")
            secure_answer = read_response(secure, bytearray())
        assert plain_answer.status == secure_answer.status == 200
        assert plain_answer.body == secure_answer.body
        assert plain_answer.headers["etag"] == secure_answer.headers["etag"]
    finally:
        status, _, err = server.stop()
    assert status == 0, err


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_k_gets_the_same_bytes(https_server, site_copy):
    result = subprocess.run(
        ["curl", "-sk", "--max-time", "10", f"https://127.0.0.1:{https_server.port}/abc.txt"],
        capture_output=True, timeout=20)
    assert result.returncode == 0
    assert result.stdout == (site_copy / "abc.txt").read_bytes()


def test_missing_certificate_is_a_one_line_error(site_copy, tmp_path):
    import os
    import sys
    from tests.helpers.servers import REPO
    result = subprocess.run(
        [sys.executable, "-m", "reactor_http", "--root", str(site_copy), "--port", "0",
         "--certfile", str(tmp_path / "nope.pem")],
        capture_output=True, text=True, timeout=20, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_draining_a_tls_connection_keeps_it_encrypted(certificate):
    # SSLSocket.shutdown() drops the TLS state, so a response written after the threaded
    # engine's drain shut the read side went out in clear text. The drain must shut only the
    # raw socket's read side and leave TLS in place.
    from reactor_http.threaded import _shutdown_quietly
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result = {}

    def client():
        with tls_connect(port, cert) as sock:
            result["data"] = sock.recv(100)

    import threading
    thread = threading.Thread(target=client)
    thread.start()
    raw, _ = listener.accept()
    with server_context.wrap_socket(raw, server_side=True) as tls:
        _shutdown_quietly(tls, socket.SHUT_RD)
        tls.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    thread.join(10)
    listener.close()
    assert result["data"] == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_plain_http_request_to_the_https_port_gets_a_400(https_server):
    # As nginx's 497: say in plain text that the port speaks HTTPS, instead of a silent close.
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.status == 400
        assert b"HTTPS" in response.body
        assert response.headers["connection"] == "close"
        assert sock.recv(1) == b""


@pytest.mark.slow
@needs_fork()
def test_workers_with_a_certificate_say_https_and_serve_it(site_copy, certificate):
    # The start-up line of --workers said http:// while the port spoke HTTPS.
    cert, key = certificate
    server = ServerProcess(site_copy, "reactor", "--quiet", "--workers", "2", "--certfile",
                           str(cert), "--keyfile", str(key))
    try:
        assert f"https://127.0.0.1:{server.port}/" in server.banner, server.banner
        with tls_connect(server.port, cert) as sock:
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert read_response(sock, bytearray()).status == 200
    finally:
        status, _, err = server.stop()
    assert status == 0, err
