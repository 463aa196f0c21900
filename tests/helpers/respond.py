"""responder.respond called directly, without sockets: requests built by the real parser from
bytes, answers inspected as values (status, fields, body segments, file regions read back)."""

from __future__ import annotations

import os
import time

from reactor_http import responder, website
from reactor_http.config import Config
from reactor_http.facilities import pread
from reactor_http.messages import FileRegion
from reactor_http.parser import parse_head

#: The instant every respond() call here answers at (the import time of this module).
NOW = time.time()


def request(target: str, method: str = "GET", version: str = "HTTP/1.1", **fields):
    """A Request built by the real parser; field names use '_' for '-'."""
    lines = [f"{method} {target} {version}", "Host: example.test"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in fields.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    parsed = parse_head(raw)
    assert parsed is not None
    req, consumed = parsed
    assert consumed == len(raw)
    return req


def make_site(root, **options):
    """A website.Site over `root` with the given Config options."""
    return website.Site(Config(root=str(root), **options).validate())


def respond(site, *args, **kwargs):
    """responder.respond to request(*args, **kwargs) at NOW."""
    return responder.respond(request(*args, **kwargs), site, NOW)


def field(response, name: str):
    """The value of a response field (case-insensitive), or None; fields must not repeat."""
    values = [v for n, v in response.headers if n.lower() == name.lower()]
    assert len(values) <= 1, (name, response.headers)
    return values[0] if values else None


def body_of(response) -> bytes:
    """The body bytes a responder answer would send, file regions read back with pread;
    checks they match its declared body length, and closes its fd."""
    parts = []
    try:
        for segment in response.segments:
            if isinstance(segment, FileRegion):
                parts.append(pread(segment.fd, segment.count, segment.offset))
            else:
                parts.append(segment)
    finally:
        if response.fd is not None:
            os.close(response.fd)
            response.fd = None
    data = b"".join(parts)
    assert len(data) == response.body_length
    return data
