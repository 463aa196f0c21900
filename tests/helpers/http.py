"""Raw-socket HTTP clients: requests sent as bytes, responses read and framed by hand."""

from __future__ import annotations

import socket

import pytest


def recv_until_closed(sock: socket.socket, limit: int = 1 << 26) -> bytes:
    """Everything the peer sends until it closes (or the socket times out)."""
    chunks = []
    total = 0
    while total < limit:
        try:
            data = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


class RawResponse:
    """A response read off a raw socket: status, lower-cased headers, body."""

    def __init__(self, status: int, reason: str, headers: list, body: bytes, raw_head: bytes):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {}
        for name, value in headers:
            self.headers[name.lower()] = value
        self.body = body
        self.raw_head = raw_head

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {len(self.body)} bytes>"


def read_response(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> RawResponse:
    """Read one response from `sock` (framed by Content-Length); leftovers stay in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head: {bytes(buffer)!r}")
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    raw_head = bytes(buffer[:end])
    del buffer[:end + 4]
    lines = raw_head.decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "HTTP/1.1", lines[0]
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    status = int(status)
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
    if head_only or status in (204, 304) or 100 <= status < 200:
        length = 0
    while len(buffer) < length:
        data = sock.recv(max(65536, length - len(buffer)))
        if not data:
            raise ConnectionError("closed before the full body")
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return RawResponse(status, reason, headers, body, raw_head)


def exchange(server, raw: bytes, head_only: bool = False) -> RawResponse:
    """Send raw request bytes to a ServerProcess on a new connection and read one response."""
    with server.connect() as sock:
        sock.sendall(raw)
        return read_response(sock, bytearray(), head_only)


def exchange_and_closed(server, raw: bytes, head_only: bool = False):
    """Send raw bytes on a new connection, read one response, and report whether the server
    then closed: (response, closed)."""
    with server.connect() as sock:
        sock.sendall(raw)
        response = read_response(sock, bytearray(), head_only)
        sock.settimeout(5)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    return response, closed


def get(server, path: str, headers: dict | None = None, method: str = "GET",
        version: str = "HTTP/1.1") -> RawResponse:
    """One request on a fresh connection, with Host and Connection: close."""
    fields = {"Host": f"127.0.0.1:{server.port}", "Connection": "close"}
    if headers:
        fields.update(headers)
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None) + "\r\n"
    return exchange(server, head.encode("latin-1"), head_only=(method == "HEAD"))


def assert_closed(sock: socket.socket, timeout: float = 5.0, expect_nothing: bool = True) -> bytes:
    """The server closes the connection (EOF or reset) before `timeout`; return what came first.

    With `expect_nothing`, no byte at all may arrive first; otherwise no further response may.
    """
    sock.settimeout(timeout)
    rest = b""
    try:
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        else:
            pytest.fail("server kept sending")
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"connection not closed within {timeout} s (got {rest[:100]!r})")
    if expect_nothing:
        assert rest == b"", rest[:200]
    assert b"HTTP/1.1" not in rest, rest[:200]
    return rest


def parse_multipart(content_type: str, body: bytes):
    """(content-type, content-range, bytes) for each part of a multipart/byteranges body."""
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    chunks = body.split(b"--" + boundary)
    assert chunks[0] in (b"", b"\r\n")
    assert chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, _, data = chunk[2:-2].partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        parts.append((fields[b"Content-Type"].decode(), fields[b"Content-Range"].decode(), data))
    return parts
