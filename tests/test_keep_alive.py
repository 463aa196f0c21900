"""Keep-alive and pipelining over real sockets, in both engines (RFC 9112 section 9.3).

Which answers keep a connection open and which close it (HTTP/1.0 and 1.1, Connection: close,
errors), the Keep-Alive field, --max-requests, the idle timeout, pipelined requests answered in
order however they arrive, and the bad request the seed design's test client sends.
"""

from __future__ import annotations

import pytest

from tests.helpers.http import assert_closed, exchange_and_closed, read_response
from tests.helpers.servers import SITE

ABC = (SITE / "abc.txt").read_bytes()


def request(path: str = "/abc.txt", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


# ---- which answers keep the connection ------------------------------------------------------

def test_http11_persists_with_keep_alive_header(server):
    with server.connect() as sock:
        buffer = bytearray()
        for _ in range(3):
            sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            response = read_response(sock, buffer)
            assert response.status == 200
            assert response.headers["connection"] == "keep-alive"
            assert response.headers["keep-alive"] == "timeout=5, max=100"


def test_http11_close(server):
    response, closed = exchange_and_closed(server, b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n"
                                                   b"Connection: close\r\n\r\n")
    assert response.headers["connection"] == "close" and closed
    assert "keep-alive" not in response.headers


def test_http10_closes_unless_keep_alive(server):
    response, closed = exchange_and_closed(server, b"GET /abc.txt HTTP/1.0\r\n\r\n")
    assert closed and response.headers["connection"] == "close"
    with server.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /abc.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        first = read_response(sock, buffer)
        assert first.headers["connection"] == "keep-alive"
        assert first.headers["keep-alive"] == "timeout=5, max=100"
        sock.sendall(b"HEAD /abc.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(sock, buffer, head_only=True).status == 200
        sock.sendall(b"GET /abc.txt HTTP/1.0\r\n\r\n")
        assert read_response(sock, buffer).status == 200
        assert_closed(sock)


def test_error_responses_keep_the_connection(server):
    """404 and 405 are ordinary answers: the connection persists."""
    with server.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer).status == 404
        sock.sendall(b"DELETE /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer).status == 405
        sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, buffer).status == 200


def test_bad_request_after_good_one_closes(server):
    with server.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
        assert read_response(sock, buffer).status == 200
        assert read_response(sock, buffer).status == 400
        assert_closed(sock)


# ---- the Keep-Alive field, max requests, the idle timeout, pipelining ---------------------

def test_post_without_host_or_body_is_a_4xx_and_close(server):
    """The seed design's test client sends a raw `POST /test/ HTTP/1.1` with no Host and no body."""
    with server.connect() as sock:
        sock.sendall(b"POST /test/ HTTP/1.1\r\n\r\n")
        response = read_response(sock, bytearray())
        assert 400 <= response.status < 500
        assert response.headers["connection"] == "close"
        assert_closed(sock)


def test_keep_alive_header_reflects_options(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--keepalive-timeout", "7", "--max-requests", "3")
    with srv.connect() as sock:
        buffer = bytearray()
        sock.sendall(request())
        response = read_response(sock, buffer)
        assert response.headers["connection"] == "keep-alive"
        assert response.headers["keep-alive"] == "timeout=7, max=3"


def test_closes_after_max_requests(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--max-requests", "3")
    with srv.connect() as sock:
        buffer = bytearray()
        seen = []
        for _ in range(3):
            sock.sendall(request())
            response = read_response(sock, buffer)
            assert response.body == ABC
            seen.append(response.headers["connection"])
        assert seen == ["keep-alive", "keep-alive", "close"]
        assert_closed(sock)


@pytest.mark.slow
def test_idle_connection_closed_after_keepalive_timeout(make_server, mode):
    srv = make_server(SITE, mode, "--quiet", "--keepalive-timeout", "0.5")
    with srv.connect() as sock:
        sock.sendall(request())
        assert read_response(sock, bytearray()).status == 200
        assert_closed(sock)
    with srv.connect() as sock:  # never sent a byte: closed too
        assert_closed(sock)


def test_pipelined_requests_answered_in_order(server):
    paths = ["/abc.txt", "/style.css", "/nope", "/test.png", "/sub/", "/index.html"]
    raw = b"".join(request(p) for p in paths) + request("/abc.txt", close=True)
    with server.connect() as sock:
        sock.sendall(raw)
        buffer = bytearray()
        responses = [read_response(sock, buffer) for _ in range(len(paths) + 1)]
        assert_closed(sock)
    expected = [(SITE / "abc.txt").read_bytes(), (SITE / "style.css").read_bytes(), None,
                (SITE / "test.png").read_bytes(), (SITE / "sub" / "index.html").read_bytes(),
                (SITE / "index.html").read_bytes(), ABC]
    for response, body in zip(responses, expected):
        if body is None:
            assert response.status == 404
        else:
            assert response.status == 200 and response.body == body


def test_pipelined_byte_by_byte(server):
    raw = request("/abc.txt") + request("/style.css", close=True)
    with server.connect() as sock:
        for i in range(len(raw)):
            sock.send(raw[i:i + 1])
        buffer = bytearray()
        assert read_response(sock, buffer).body == ABC
        assert read_response(sock, buffer).body == (SITE / "style.css").read_bytes()
