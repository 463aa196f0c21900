"""Plain values that cross module boundaries: the parsed request, the response head, body plans.

A response plan is data: a list of segments, each either bytes (the head, an error page, a cached
small file, a multipart separator) or a `FileRegion` of an open descriptor. Engines execute plans
(`send` for bytes, `os.sendfile` for regions); they never decide semantics.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from ._version import __version__

SERVER_NAME = f"reactor_http/{__version__}"

REASONS = {
    200: "OK", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

# Body framing of a request (RFC 9112 section 6.3).
NO_BODY = 0
CHUNKED = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One parsed request head. Field names are lower-case; repeated fields are comma-joined.

    Immutable in fact: the dataclass is frozen and `fields` is a read-only mapping, since parsed
    requests are memoised and shared between connections.
    """

    method: str
    target: str
    version: tuple[int, int]
    fields: Mapping[str, str]
    keep_alive: bool
    # NO_BODY, CHUNKED, or a Content-Length in bytes.
    body_length: int = NO_BODY
    # The request line as the access log shows it (built once: parsed requests are memoised).
    request_line: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class FileRegion:
    """`count` bytes of an open file descriptor from `offset`, to be sent with os.sendfile."""

    fd: int
    offset: int
    count: int


_STATUS_LINES: dict[int, bytes] = {}
SERVER_FIELD = f"Server: {SERVER_NAME}\r\n".encode("ascii")


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>` CRLF; we always answer as HTTP/1.1 (RFC 9110 section 6.2)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode("ascii")
        _STATUS_LINES[status] = line
    return line


def encode_fields(headers) -> bytes:
    """Serialise (name, value) pairs as field lines, each ending in CRLF."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")



class ResponsePlan:
    """What an engine sends for one request: segments in order, plus what to close afterwards.

    `body_length` counts the body bytes the segments carry (zero for HEAD and 304);
    `first_region` is the index of the first FileRegion (-1 if none): once the cursor reaches it,
    the head is out. `request_line` and `client` are what the access log says of it.
    """

    __slots__ = ("status", "segments", "body_length", "keep_alive", "fd", "first_region",
                 "request_line", "client", "log_tail")

    def __init__(self, status: int, segments: list, body_length: int, keep_alive: bool,
                 fd: int | None = None, request_line: str = "-"):
        self.request_line = request_line
        # The access line's end once rendered (logs.clf_tail), kept: plans are reused.
        self.log_tail: str | None = None
        # The client address for the access log ("" = the engine's peer address).
        self.client = ""
        self.status = status
        self.segments = segments  # list[bytes | FileRegion]
        self.body_length = body_length
        self.keep_alive = keep_alive
        self.fd = fd
        self.first_region = -1
        if fd is not None:
            for index, segment in enumerate(segments):
                if type(segment) is FileRegion:
                    self.first_region = index
                    break

    def body_sent(self, sent: int) -> int:
        """Body bytes among the first `sent` bytes of the plan (for a response cut short)."""
        total = 0
        for segment in self.segments:
            total += len(segment) if type(segment) is bytes else segment.count
        return max(0, min(sent - (total - self.body_length), self.body_length))

    def close(self) -> None:
        """Release the file descriptor the plan owns, once."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
