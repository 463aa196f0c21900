"""Plain values that cross module boundaries: the parsed request, the response head, body plans.

A response plan is data: a tuple of segments, each either bytes (the head, an error page, a cached
small file, a multipart separator), a `FileRegion` of an open descriptor, or (--archives) a
`ProducedBody`, a body made while it is sent. Engines execute plans (`send` for bytes,
`os.sendfile` or read-and-send for regions, a producer for a produced body); they never decide
semantics.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ._version import __version__

SERVER_NAME = f"reactor_http/{__version__}"

REASONS = {
    200: "OK", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 410: "Gone",
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


def target_path(request: Request) -> str:
    """The request-target's path as sent, without its query (no decoding or normalisation):
    what a page served by its exact path, such as --status, is matched on."""
    return request.target.partition("?")[0]


@dataclasses.dataclass(frozen=True, slots=True)
class FileRegion:
    """`count` bytes of an open file descriptor from `offset`, to be sent with os.sendfile or
    read and sent (sending.py)."""

    fd: int
    offset: int
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProducedBody:
    """A body made while it goes out (--archives): the archive of `entries` (archive.Entry, what
    the walk found) as `kind` ("zip", "tar", "tar_gz"), framed as chunks when `chunked` (RFC 9112
    section 7.1), else ended by the close. Its length is unknown until it ends: the last segment
    of its plan. The engine starts its producer when the cursor reaches it (archive.py); the
    producer stops when the exchange closes."""

    kind: str
    entries: tuple
    chunked: bool
    # The request line, for the log lines naming files left out.
    request_line: str = ""


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



class Response:
    """A response before connection management: status, fields, body segments, the fd it reads.

    Immutable: answers of small unchanged files are cached and shared by every connection (and
    every thread of the threaded engine), so nothing is written to a Response after it is built
    (the attributes are Final for the type checker). `fields` is the header fields serialised
    once, as CRLF-terminated lines. `stream`: the answer opens an event stream (--live-reload:
    only a StreamResponse).
    `saved`: for a cached answer with a body compressed on the fly, the bytes each hit saves
    (counted per hit); None for every other answer. `cached`: True only for a CachedResponse.
    `site_fields`: the --header lines this answer carries instead of all of them, rendered (a
    path whose `_headers` rules replace or detach some); None: every --header field.
    """

    __slots__ = ("status", "headers", "segments", "body_length", "fd", "close", "saved",
                 "fields", "site_fields")
    cached = False
    stream = False

    def __init__(self, status: int, headers: Sequence, segments: Sequence | None = None,
                 body_length: int = 0, fd: int | None = None, close: bool = False,
                 saved: int | None = None, site_fields: bytes | None = None):
        self.status: Final = status
        self.headers: Final = tuple(headers)
        self.segments: Final[tuple] = tuple(segments) if segments else ()  # bytes | FileRegion
        self.body_length: Final = body_length
        self.fd: Final = fd
        self.close: Final = close
        self.saved: Final = saved
        self.fields: Final = encode_fields(self.headers)
        self.site_fields: Final = site_fields


class StreamResponse(Response):
    """The answer that opens an event stream (--live-reload): its head, then events as they come."""

    __slots__ = ()
    stream = True


class CachedResponse(Response):
    """The answer cache's own answer (website.Site.remember_response): the only kind of answer
    a request head may have replayed (protocol.Replay)."""

    __slots__ = ()
    cached = True


class ResponsePlan:
    """What an engine sends for one request: the rendered head and body segments, in order.

    Immutable and shareable: a plan without a descriptor may be replayed for the same request
    head on any connection (protocol.Replay). `body_length` counts the body bytes the segments
    carry (zero for HEAD and 304); `first_region` is the index of the first FileRegion (-1 if
    none): once the cursor reaches it, the head is out. `fd` is the descriptor the regions read
    (its ownership is the Exchange's); `request_line` is what the access log says of it, and
    `user` the authenticated user it names ("" for none: the plan answers one request head,
    whose credentials decide it).
    """

    __slots__ = ("status", "segments", "body_length", "keep_alive", "fd", "first_region",
                 "request_line", "one_piece", "user")

    def __init__(self, status: int, segments: tuple, body_length: int, keep_alive: bool,
                 fd: int | None = None, request_line: str = "-", user: str = ""):
        self.status: Final = status
        self.segments: Final[tuple] = segments  # bytes | FileRegion
        self.body_length: Final = body_length
        self.keep_alive: Final = keep_alive
        self.fd: Final = fd
        self.request_line: Final = request_line
        self.user: Final = user
        first_region = -1
        if fd is not None:
            for index, segment in enumerate(segments):
                if type(segment) is FileRegion:
                    first_region = index
                    break
        if segments and type(segments[-1]) is ProducedBody:
            first_region = len(segments) - 1  # the head is out once the cursor reaches it
        self.first_region: Final = first_region
        # Head and body in one bytes object: one send (the dominant case, tested once here).
        self.one_piece: Final = len(segments) == 1 and type(segments[0]) is bytes

    def body_sent(self, sent: int) -> int:
        """Body bytes among the first `sent` bytes of the plan (for a response cut short, and
        for a produced body, whose length is known only once sent)."""
        total = 0
        for segment in self.segments:
            if type(segment) is ProducedBody:
                return max(0, sent - total)  # all of it body; `total` is the head's
            total += len(segment) if type(segment) is bytes else segment.count
        return max(0, min(sent - (total - self.body_length), self.body_length))


class FileBuffer:
    """File bytes read and not yet sent, for the read-and-send path (sending.py).

    `pending` is what was read from the cursor's position on and has not gone out: a view of
    `buffer` (`size` bytes, made at the first read into it and reused for every read of the
    exchange, where the platform reads into a buffer) or of the bytes a read returned. Kept
    between loop turns, so no byte is read twice and a TLS send refused with SSLWantWriteError
    is retried with the very bytes it was refused with.
    """

    __slots__ = ("size", "buffer", "pending")

    def __init__(self, size: int):
        # At most one chunk (sending.READ_CHUNK): the memory one connection's body may hold.
        self.size = size
        self.buffer: memoryview | None = None  # made by the first read into it
        self.pending = memoryview(b"")


class Exchange:
    """One request/response cycle as an engine carries it out.

    Holds what belongs to this exchange alone, apart from the immutable plan: the client the
    access log names ("" = the engine's peer address), the open descriptor it owns (closed
    once, by `close`), and the cursor (segment index, offset into it, bytes sent). One per
    request, never reset field by field (uvicorn's RequestResponseCycle). `file_buffer` is None
    while file regions go out with sendfile; once the exchange reads and sends them
    (sending.py), it holds the bytes read ahead of the cursor.

    Copy on write, the one optimisation here: a replayed answer without a descriptor, for the
    connection's own peer, starts from one `shared` exchange kept with its plan
    (protocol.Replay), since creating a record per request cost 3.5 % of the 1 KiB keep-alive
    throughput (bench/RESULTS.md). A shared exchange is never written to: the first progress
    it must remember (a partial send, sending.send_available; any blocking send) is kept in a
    copy of the connection's own (`own`). tests/test_exchange.py pins this.
    """

    __slots__ = ("plan", "client", "fd", "index", "offset", "sent", "shared", "file_buffer",
                 "feed")

    def __init__(self, plan: ResponsePlan, client: str = "", shared: bool = False):
        if shared and (plan.fd is not None or client):
            raise ValueError("only a plan without a descriptor, for the peer, is shared")
        self.plan = plan
        self.client = client
        self.fd = plan.fd
        self.index = 0
        self.offset = 0
        self.sent = 0
        self.shared: Final = shared
        self.file_buffer: FileBuffer | None = None
        # A produced body's bounded buffer (archive.Feed, the reactor's), once its producer runs.
        self.feed: Any = None

    def own(self) -> Exchange:
        """This exchange if it is one connection's own, else a fresh copy to write to."""
        return Exchange(self.plan, self.client) if self.shared else self

    def body_sent(self) -> int:
        """Body bytes that went out so far."""
        return self.plan.body_sent(self.sent)

    def close(self) -> None:
        """Release the file descriptor this exchange owns, once; stop its producer, if any."""
        feed = self.feed
        if feed is not None:
            self.feed = None
            feed.cancel()
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
