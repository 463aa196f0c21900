"""Pure request parsing: bytes in, a `Request` (or "need more") out; every limit enforced here.

`parse_head(buf, limits)` looks at a buffer of received bytes and returns `(request, consumed)`
when a whole head is there, `None` when more bytes are needed, or raises an `errors.HttpError`.
The result depends only on the bytes, never on how they were split across reads: every decision
uses either the complete head or the first `max_head_bytes` bytes.

`BodyDiscarder` reads a request body (Content-Length or chunked) incrementally and throws it away,
so a body is never taken for the next pipelined request.

Line ends: RFC 9112 section 2.2 lets a recipient accept a bare LF as a line terminator. We do,
everywhere (request line, fields, chunk lines), as nginx and h11 do; a CR anywhere else is an error.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from . import errors
from .headers import wants_keep_alive
from .messages import CHUNKED, NO_BODY, Request
from .options import Settings

# tchar from RFC 9110 section 5.6.2.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# request-line = method SP request-target SP HTTP-version (RFC 9112 section 3); the target is
# visible ASCII only (RFC 3986 has no raw bytes above 0x7E).
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# field-line = field-name ":" OWS field-value OWS (RFC 9112 section 5); field-value characters are
# VCHAR, obs-text, SP and HTAB inside (RFC 9110 section 5.5). No space before the colon (5.1).
_FIELD_LINE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*"
    rb"[\x21-\x7e\x80-\xff])?)?)[ \t]*")
# The bytes empty lines before a request line can be made of (see skip_empty_lines).
_CR_LF_RUN = re.compile(rb"[\r\n]*")
_STRAY_CR = re.compile(rb"\r(?!\n)")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\x09\x20-\x7e\x80-\xff]*)?")
_DIGITS = re.compile(r"[0-9]{1,18}")
# OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3). List items are trimmed of OWS only: str.strip()
# would also drop NBSP (0xA0) and NEL (0x85), which arrive as latin-1 obs-text, and so accept a
# Content-Length or Transfer-Encoding that a proxy in front of us reads differently (smuggling).
_OWS = " \t"
# Host = uri-host [ ":" port ]: no whitespace, slash, or other delimiters (RFC 9110 section 7.2).
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


class Limits:
    """The parser's limits, in bytes and counts (defaults and reasons: options.Settings, whose
    class attributes are its fields' defaults)."""

    __slots__ = ("max_head_bytes", "max_target_bytes", "max_header_count", "max_body_bytes")

    def __init__(self, max_head_bytes: int = Settings.max_head_bytes,
                 max_target_bytes: int = Settings.max_target_bytes,
                 max_header_count: int = Settings.max_header_count,
                 max_body_bytes: int = Settings.max_body_bytes):
        self.max_head_bytes = max_head_bytes
        self.max_target_bytes = max_target_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes

    @classmethod
    def from_config(cls, config) -> Limits:
        """The limits a Config names."""
        return cls(config.max_head_bytes, config.max_target_bytes, config.max_header_count,
                   config.max_body_bytes)


DEFAULT_LIMITS = Limits()


def skip_empty_lines(buf) -> int:
    """Count the bytes of empty lines before a request line (RFC 9112 section 2.2: ignore them).

    An empty line is CRLF or a bare LF; a CR not followed by LF (yet) ends the count. This runs
    twice per read, so it works at C speed (hundreds of MiB/s, where a Python loop did 9): a
    single-class regex finds the run of CR/LF bytes, then the first CR in it not followed by LF
    cuts the run short. (A repeated group, `(?:\\r?\\n)*`, is no faster in `re` than the loop.)
    """
    run = _CR_LF_RUN.match(buf)
    assert run is not None  # `[\r\n]*` matches any text, if only emptily
    end = run.end()
    if not end:
        return 0
    # Searching only up to `end` makes a CR at the run's last byte count as stray too.
    stray = _STRAY_CR.search(buf, 0, end)
    return end if stray is None else stray.start()


def _find_head_end(buf, start: int, stop: int) -> int:
    """Index just past the blank line ending the head within buf[start:stop], or -1."""
    crlf = buf.find(b"\r\n\r\n", start, stop)
    # A bare-LF head ends at "\n\n" or "\n\r\n"; look only before any CRLF CRLF we found.
    limit = crlf + 4 if crlf >= 0 else stop
    lf = buf.find(b"\n\n", start, limit)
    lf_cr = buf.find(b"\n\r\n", start, limit)
    candidates = [end for end in (crlf + 4 if crlf >= 0 else -1,
                                  lf + 2 if lf >= 0 else -1,
                                  lf_cr + 3 if lf_cr >= 0 else -1) if end >= 0]
    return min(candidates) if candidates else -1


def parse_head(buf, limits: Limits = DEFAULT_LIMITS):
    """Parse one request head from the start of `buf`.

    Returns `(Request, consumed_bytes)`, or None if the head is not complete yet.
    Raises errors.HttpError (with its status) when the bytes can never become a valid request.
    """
    start = skip_empty_lines(buf)
    window_end = start + limits.max_head_bytes
    end = _find_head_end(buf, start, min(len(buf), window_end))
    if end < 0:
        if len(buf) < window_end:
            return None
        # No head fits in the limit. Tell a long target (414) from long fields (431).
        first_line_end = buf.find(b"\n", start, window_end)
        if first_line_end < 0:
            _check_partial_request_line(bytes(buf[start:window_end]), limits)
            raise errors.UriTooLong("request line longer than the head limit")
        _parse_request_line(bytes(buf[start:first_line_end]), limits)
        raise errors.HeadTooLarge(f"request head larger than {limits.max_head_bytes} bytes")
    head = bytes(buf[start:end])
    return _parse_complete_head(head, limits), end


def _check_partial_request_line(prefix: bytes, limits: Limits) -> None:
    """Refuse an over-long first line that is not even the start of a request line (400)."""
    method, sep, _ = prefix.partition(b" ")
    if not sep or not re.fullmatch(_TOKEN, method):
        raise errors.BadRequestLine("malformed request line")


def _split_lines(head: bytes) -> list[bytes]:
    """Split a complete head into lines, accepting CRLF or bare LF; refuse a stray CR."""
    lines = head.split(b"\n")
    lines.pop()  # the empty string after the final line end
    lines.pop()  # the blank line that ends the head
    result = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if b"\r" in line:
            raise errors.BadRequest("bare CR in request head")
        result.append(line)
    return result


def _parse_request_line(line: bytes, limits: Limits):
    """Parse `method SP target SP HTTP/x.y` into (method, target, version) or raise."""
    if line.endswith(b"\r"):
        line = line[:-1]
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        parts = line.split(b" ")
        if len(parts) == 3 and len(parts[1]) > limits.max_target_bytes:
            raise errors.UriTooLong(f"request-target longer than {limits.max_target_bytes} bytes")
        if len(parts) == 3 and re.fullmatch(rb"HTTP/[0-9]+\.[0-9]+", parts[2]) and \
                not parts[2].startswith(b"HTTP/1."):
            raise errors.VersionNotSupported("only HTTP/1.x is supported")
        raise errors.BadRequestLine("malformed request line")
    method, target, major, minor = match.groups()
    if len(target) > limits.max_target_bytes:
        raise errors.UriTooLong(f"request-target longer than {limits.max_target_bytes} bytes")
    if major != b"1":
        # RFC 9112 section 2.3: a different major version is not ours to interpret.
        raise errors.VersionNotSupported("only HTTP/1.x is supported")
    # A higher minor version is answered as the highest 1.x we implement (RFC 9110 section 2.5).
    return method.decode("ascii"), target.decode("ascii"), (1, int(minor))


def _parse_complete_head(head: bytes, limits: Limits) -> Request:
    """Turn the bytes of a complete head into a Request, enforcing syntax and framing rules."""
    lines = _split_lines(head)
    method, target, version = _parse_request_line(lines[0], limits)
    if len(lines) - 1 > limits.max_header_count:
        raise errors.HeadTooLarge(f"more than {limits.max_header_count} header fields")
    fields: dict[str, str] = {}
    host_count = 0
    content_lengths: list[str] = []
    for line in lines[1:]:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            if line[:1] in (b" ", b"\t"):
                # obs-fold: RFC 9112 section 5.2 lets a server reject it with 400.
                raise errors.BadHeaderField("obsolete line folding")
            raise errors.BadHeaderField("malformed header field")
        name = match.group(1).decode("ascii").lower()
        value = match.group(2).decode("latin-1")
        if name == "host":
            host_count += 1
        elif name == "content-length":
            content_lengths.append(value)
        previous = fields.get(name)
        # RFC 9110 section 5.3: repeated list fields combine with commas, in order.
        fields[name] = value if previous is None else f"{previous}, {value}"
    _check_host(version, host_count, fields.get("host"))
    body_length = _body_framing(version, fields.get("transfer-encoding"), content_lengths, limits)
    keep_alive = wants_keep_alive(version, fields.get("connection"))
    request_line = f"{method} {target} HTTP/{version[0]}.{version[1]}"
    # Read-only: memoised Requests are shared between connections (protocol.HeadParser).
    return Request(method, target, version, MappingProxyType(fields), keep_alive, body_length,
                   request_line)


def _check_host(version: tuple[int, int], host_count: int, host: str | None) -> None:
    """RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1; at most one in 1.0."""
    if host_count == 0 and version >= (1, 1):
        raise errors.BadRequest("missing Host header")
    if host_count > 1:
        raise errors.BadRequest("more than one Host header")
    if host is not None and not _HOST.fullmatch(host):
        raise errors.BadRequest("invalid Host header")


def _body_framing(version, transfer_encoding, content_lengths, limits: Limits) -> int:
    """Decide how the request body is framed (RFC 9112 section 6.3); refuse what is ambiguous."""
    if transfer_encoding is not None:
        if version < (1, 1):
            # RFC 9112 section 6.1: Transfer-Encoding in 1.0 means the framing is faulty.
            raise errors.BadFraming("Transfer-Encoding in an HTTP/1.0 request")
        if content_lengths:
            # Both is a smuggling attempt (RFC 9112 section 6.1 and 11.2): refuse, then close.
            raise errors.BadFraming("both Transfer-Encoding and Content-Length")
        codings = [c.strip(_OWS).lower() for c in transfer_encoding.split(",")]
        if not codings or codings[-1] != "chunked" or "" in codings:
            # The final coding of a request must be chunked, or the length is unknown (6.3).
            raise errors.BadFraming("request body framed by a coding other than chunked")
        if len(codings) > 1:
            raise errors.NotImplementedMethod("transfer coding not implemented", status=501)
        return CHUNKED
    if not content_lengths:
        return NO_BODY
    values = set()
    for field in content_lengths:
        for item in field.split(","):
            item = item.strip(_OWS)
            if not _DIGITS.fullmatch(item):
                raise errors.BadFraming("invalid Content-Length")
            values.add(int(item))
    if len(values) != 1:
        # RFC 9110 section 8.6: identical repeats may be accepted; differing ones may not.
        raise errors.BadFraming("conflicting Content-Length values")
    length = values.pop()
    if length > limits.max_body_bytes:
        raise errors.PayloadTooLarge(f"request body larger than {limits.max_body_bytes} bytes")
    return length


class BodyDiscarder:
    """Consume and discard one request body, fed incrementally. Pure: no I/O.

    `feed(buf)` returns how many bytes of `buf` belonged to the body; `done` turns True at its end.
    """

    __slots__ = ("done", "_remaining", "_chunked", "_phase", "_total", "_limits", "_trailer_bytes")

    # Phases of a chunked body (RFC 9112 section 7.1).
    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)
    # A chunk-size line (size plus extensions) longer than this is refused (bytes).
    MAX_CHUNK_LINE = 4096

    def __init__(self, body_length: int, limits: Limits = DEFAULT_LIMITS):
        self._limits = limits
        self._chunked = body_length == CHUNKED
        self._remaining = 0 if self._chunked else body_length
        self._phase = self._SIZE
        self._total = 0
        self._trailer_bytes = 0
        self.done = body_length == NO_BODY

    def feed(self, buf) -> int:
        """Discard what of `buf` is body; return the count consumed."""
        if self.done:
            return 0
        if not self._chunked:
            used = min(self._remaining, len(buf))
            self._remaining -= used
            self.done = self._remaining == 0
            return used
        return self._feed_chunked(buf)

    def _feed_chunked(self, buf) -> int:
        """Walk chunk-size lines, chunk data and the trailer section."""
        pos = 0
        size = len(buf)
        while not self.done and pos < size:
            if self._phase == self._DATA:
                used = min(self._remaining, size - pos)
                pos += used
                self._remaining -= used
                if self._remaining == 0:
                    self._phase = self._DATA_END
                continue
            line_end = buf.find(b"\n", pos)
            if line_end < 0:
                self._check_partial_line(size - pos)
                break
            raw_length = line_end + 1 - pos
            line = bytes(buf[pos:line_end])
            pos = line_end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._phase == self._SIZE:
                self._start_chunk(line)
            elif self._phase == self._DATA_END:
                if line:
                    raise errors.BadFraming("chunk data longer than its size")
                self._phase = self._SIZE
            else:  # trailer fields are skipped (RFC 9112 section 7.1.2), within the head limit
                self._trailer_bytes += raw_length
                if self._trailer_bytes > self._limits.max_head_bytes:
                    raise errors.HeadTooLarge("trailer section too large")
                if not line:
                    self.done = True
                elif _FIELD_LINE.fullmatch(line) is None:
                    raise errors.BadFraming("malformed trailer field")
        return pos

    def _check_partial_line(self, pending: int) -> None:
        """Refuse an unterminated line early, but only if its complete form must be refused too.

        The outcome may not depend on how the bytes were split: a line of `pending` bytes so far
        is at least `pending + 1` bytes with its LF, and at least `pending - 1` without its CRLF.
        """
        if self._phase == self._TRAILER:
            if self._trailer_bytes + pending + 1 > self._limits.max_head_bytes:
                raise errors.HeadTooLarge("trailer section too large")
        elif pending - 1 > self.MAX_CHUNK_LINE:
            raise errors.BadFraming("chunk line too long")

    def _start_chunk(self, line: bytes) -> None:
        """Parse a chunk-size line (extensions tolerated and ignored)."""
        if len(line) > self.MAX_CHUNK_LINE or b"\r" in line:
            raise errors.BadFraming("malformed chunk size line")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise errors.BadFraming("malformed chunk size")
        chunk = int(match.group(1), 16)
        self._total += chunk
        if self._total > self._limits.max_body_bytes:
            raise errors.PayloadTooLarge(
                f"request body larger than {self._limits.max_body_bytes} bytes")
        if chunk == 0:
            self._phase = self._TRAILER
        else:
            self._remaining = chunk
            self._phase = self._DATA
