"""The HTTP semantics of the core over real sockets, in both engines.

Uses the shared `server` fixture (a server per engine over a copy of site/); tests that need a
modified site build their own under tmp_path. Keep-alive and pipelining are in test_keep_alive.py.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.helpers.http import assert_closed, exchange, exchange_and_closed, get, read_response
from tests.helpers.servers import SITE

from reactor_http.headers import parse_http_date

IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT")



@pytest.mark.parametrize("name, ctype", [
    ("index.html", "text/html; charset=utf-8"), ("abc.txt", "text/plain; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"), ("test.png", "image/png")])
def test_get_200_fields(server, name, ctype):
    data = (SITE / name).read_bytes()
    response = get(server, "/" + name)
    assert response.status == 200 and response.reason == "OK"
    assert response.body == data
    assert response.headers["content-type"] == ctype
    assert response.headers["content-length"] == str(len(data))
    assert IMF_FIXDATE.fullmatch(response.headers["date"])
    assert IMF_FIXDATE.fullmatch(response.headers["last-modified"])
    assert response.headers["server"].startswith("reactor_http/")


def test_head_same_headers_no_body(server):
    get_response = get(server, "/test.png")
    with server.connect() as sock:
        sock.sendall(b"HEAD /test.png HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        head = read_response(sock, buffer, head_only=True)
        after = read_response(sock, buffer)
    # The next response starts right after the HEAD response's head: no body bytes in between.
    assert after.status == 200 and after.body == (SITE / "abc.txt").read_bytes()
    assert head.status == 200
    skip = {"date", "connection", "keep-alive"}
    assert {k: v for k, v in head.headers.items() if k not in skip} == \
        {k: v for k, v in get_response.headers.items() if k not in skip}


def test_if_modified_since_304(server):
    last_mod = get(server, "/abc.txt").headers["last-modified"]
    response = get(server, "/abc.txt", {"If-Modified-Since": last_mod})
    assert response.status == 304 and response.body == b""
    assert "content-length" not in response.headers or response.headers["content-length"] == "0"
    newer = get(server, "/abc.txt", {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:01 GMT"})
    assert newer.status == 200


def test_if_modified_since_older_than_the_file(make_server, mode, tmp_path):
    (tmp_path / "f.txt").write_text("new")
    when = time.time() - 3600
    srv = make_server(tmp_path, mode, "--quiet")
    before = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    assert get(srv, "/f.txt", {"If-Modified-Since": before}).status == 200
    os.utime(tmp_path / "f.txt", (when - 10, when - 10))
    assert get(srv, "/f.txt", {"If-Modified-Since": before}).status == 304


@pytest.mark.parametrize("name, size", [("small.txt", 5000), ("large.txt", 400_000)])
def test_a_future_mtime_is_sent_as_the_date(make_server, mode, tmp_path, name, size):
    # RFC 9110 section 8.8.2.1: a Last-Modified later than Date MUST be replaced by the message's
    # date (a file copied from a machine whose clock ran ahead; REDbot flagged it). Small and
    # large files, identity and gzip, GET (twice: the answer cache), HEAD and a range.
    (tmp_path / name).write_bytes(b"future " * (size // 7))
    future = time.time() + 10 * 365 * 86400
    os.utime(tmp_path / name, (future, future))
    srv = make_server(tmp_path, mode, "--quiet")
    asks = [({}, "GET"), ({}, "GET"), ({}, "HEAD"), ({"Range": "bytes=0-9"}, "GET"),
            ({"Accept-Encoding": "gzip"}, "GET"), ({"Accept-Encoding": "gzip"}, "GET")]
    for fields, method in asks:
        response = get(srv, "/" + name, fields, method=method)
        assert response.status in (200, 206), response
        last_modified = parse_http_date(response.headers["last-modified"])
        date = parse_http_date(response.headers["date"])
        assert last_modified is not None and date is not None
        assert last_modified <= date, (fields, method, response.headers)


def test_404_small_html(server):
    response = get(server, "/no/such/file.html")
    assert response.status == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert b"404" in response.body and len(response.body) < 1024
    assert b"no/such" not in response.body


def test_directory_index_and_redirect(server):
    index = get(server, "/sub/")
    assert index.status == 200
    assert index.body == (SITE / "sub" / "index.html").read_bytes()
    redirect = get(server, "/sub")
    assert redirect.status == 301
    assert redirect.headers["location"] == "/sub/"
    root = get(server, "/")
    assert root.body == (SITE / "index.html").read_bytes()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_known_method_405(server, method):
    response = get(server, "/abc.txt", {"Content-Length": "0"}, method=method)
    assert response.status == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed and not allowed & {"POST", "PUT", "DELETE"}


def test_405_with_body_keeps_the_connection_in_sync(server):
    """The body of a refused POST is read and discarded, not taken for the next request."""
    with server.connect() as sock:
        sock.sendall(b"POST /abc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n"
                     b"GET /evil HTTP/1.1\r\nX: y\r\n"
                     b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        assert read_response(sock, buffer).status == 405
        assert read_response(sock, buffer).body == (SITE / "abc.txt").read_bytes()


@pytest.mark.parametrize("method, status", [("POST", 405), ("FROB", 501)])
def test_expect_100_continue_is_answered_before_the_body(make_server, mode, site_copy, method,
                                                         status):
    """RFC 9110 section 10.1.1: a client that sends `Expect: 100-continue` waits for a 100 or a
    final status before it sends its body; a refusal known from the head goes out at once, and
    the connection closes (lingering: a body that follows is dropped, never parsed)."""
    # A header timeout far beyond the read's: waiting for the body could never pass for this.
    srv = make_server(site_copy, mode, "--quiet", "--header-timeout", "60")
    with srv.connect(timeout=10) as sock:
        sock.sendall(f"{method} /abc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n"
                     f"Expect: 100-continue\r\n\r\n".encode())
        response = read_response(sock, bytearray())
        assert response.status == status
        assert response.headers["connection"] == "close"
        sock.sendall(b"GET /evil HTTP/1.1\r\nX: y\r\n")  # the body, late: not a request
        assert_closed(sock, timeout=10)


def test_expect_100_continue_with_the_body_already_sent_keeps_the_connection(server):
    """The body came with the head (RFC 9110 section 10.1.1: no 100 is needed then): it is
    discarded as any body, and the connection serves on."""
    with server.connect() as sock:
        sock.sendall(b"POST /abc.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\nhello"
                     b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buffer = bytearray()
        assert read_response(sock, buffer).status == 405
        assert read_response(sock, buffer).body == (SITE / "abc.txt").read_bytes()


def test_expect_100_continue_in_http_1_0_is_ignored(server):
    """RFC 9110 section 10.1.1: a server MUST ignore a 100-continue expectation in HTTP/1.0,
    so the body is read (and discarded) before the answer."""
    with server.connect() as sock:
        sock.sendall(b"POST /abc.txt HTTP/1.0\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        sock.sendall(b"hello")
        assert read_response(sock, bytearray()).status == 405


def test_unknown_method_501(server):
    assert get(server, "/abc.txt", method="FROB").status == 501


@pytest.mark.parametrize("raw", [
    b"GET /abc.txt\r\n\r\n",
    b"GET  /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /abc.txt HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    b"GET /abc.txt HTTP/1.1\r\n\r\n",                    # HTTP/1.1 without Host
    b"GET /abc.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
])
def test_malformed_400_and_close(server, raw):
    response, closed = exchange_and_closed(server, raw)
    assert response.status == 400
    assert response.headers["connection"] == "close"
    assert closed


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1"])
def test_other_major_version_505(server, version):
    response, closed = exchange_and_closed(server,
                                           f"GET /abc.txt {version}\r\nHost: x\r\n\r\n".encode())
    assert response.status == 505 and closed


def test_higher_minor_version_answered_as_11(server):
    response = exchange(server, b"GET /abc.txt HTTP/1.2\r\nHost: x\r\n\r\n")
    assert response.status == 200  # read_response checks the status line says HTTP/1.1
    assert response.headers["connection"] == "keep-alive"


def test_http10_without_host_is_fine(server):
    response, closed = exchange_and_closed(server, b"GET /abc.txt HTTP/1.0\r\n\r\n")
    assert response.status == 200 and closed


def test_file_with_trailing_slash_404(server):
    assert get(server, "/abc.txt/").status == 404


def test_percent_decoding_and_query(server):
    assert get(server, "/space%20name.txt").body == b"spaces\n"
    assert get(server, "/%61bc.txt?x=%2e%2e/../&y").body == (SITE / "abc.txt").read_bytes()


@pytest.mark.parametrize("path", [
    "/../etc/passwd", "/..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "/sub/../../etc/passwd",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/sub/%2e%2e/%2e%2e/etc/passwd", "/..%5c..%5cetc/passwd",
    "/.env", "/abc.txt%00.png"])
def test_nothing_outside_root(server, path):
    response = get(server, path)
    assert response.status in (400, 404)
    assert b"root:" not in response.body and b"SECRET" not in response.body


def test_symlink_outside_root_404(make_server, mode, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "ok.txt").write_text("ok")
    (root / "inside").symlink_to(root / "ok.txt")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape-dir").symlink_to(tmp_path, target_is_directory=True)
    srv = make_server(root, mode, "--quiet")
    assert get(srv, "/inside").body == b"ok"
    assert get(srv, "/escape").status == 404
    assert get(srv, "/escape-dir/secret.txt").status == 404


def test_binary_body_exact(server):
    response = exchange(server, b"GET /test.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.body == (SITE / "test.png").read_bytes()
