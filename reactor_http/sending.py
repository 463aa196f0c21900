"""The only code that sends: plan segments with `send`, file regions with `os.sendfile`.

Over TLS the kernel cannot encrypt, so file regions are read in bounded chunks with `os.pread`
from the saved offset and sent through the SSL object (what `SSLSocket.sendfile` falls back to);
a chunk refused with SSLWantWriteError is re-read and re-sent unchanged on the next turn.

Two ways to carry out an `Exchange` (its plan's segments, from its cursor): `send_available` for
the reactor's non-blocking sockets (send what the kernel takes now, keep the cursor, report
whether more remains) and `send_blocking` for the threaded engine's blocking sockets with a
timeout. The exchange is the cursor: segment index, offset into it, bytes sent.
A sendfile that returns 0 before its count means the file shrank: the Content-Length promise can
no longer be kept, so we raise `FileShrank` and the engine closes the connection.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket
import ssl

from .messages import Exchange, FileRegion

# Bytes one sendfile call may move; the kernel stops earlier when the socket buffer is full.
SENDFILE_CHUNK = 1 << 20
# Bytes one connection may send per loop turn before others get a turn (fairness on fast links).
TURN_BUDGET = 4 << 20
# Bytes of a file read per TLS send: four 16 KiB TLS records.
TLS_CHUNK = 64 * 1024
# What a non-blocking send raises when it must wait: EAGAIN, or TLS needing to read or write.
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
# Errors that mean the peer went away: a quiet close, not a logged failure.
PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
PEER_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                              errno.ECONNABORTED, errno.ETIMEDOUT})


class FileShrank(Exception):
    """The file got shorter while we were sending it."""


def send_available(sock: _socket.socket, exchange: Exchange, budget: int = TURN_BUDGET,
                   tls: bool = False) -> Exchange | None:
    """Send from the exchange's cursor until done, the socket would block, or the budget is spent.

    Returns None when the whole plan is out, else the exchange that keeps the place: this one,
    or the connection's own copy of a shared one (never written to: messages.Exchange). A plan
    of several segments is sent from an exchange of the connection's own, which the caller
    holds, so what went out before a failure is still known. Raises PEER_GONE errors and
    FileShrank.
    """
    plan = exchange.plan
    segments = plan.segments
    if plan.one_piece and not exchange.sent:
        # The common case (head + small body in one bytes object): one send, no loop.
        data = segments[0]
        try:
            sent = sock.send(data)
        except WOULD_BLOCK:
            return exchange  # nothing sent: nothing to remember
        if sent == len(data):
            return None
        exchange = exchange.own()
        exchange.sent = exchange.offset = sent
        return exchange
    if exchange.shared:  # the loop writes its cursor as it goes, and may raise midway
        raise ValueError("own() a shared exchange before sending it piece by piece")
    fileno = sock.fileno()
    count = len(segments)
    while exchange.index < count:
        if budget <= 0:
            return exchange
        try:
            budget -= _send_segment(sock, fileno, exchange, tls)
        except WOULD_BLOCK:
            return exchange
    return None


def _send_segment(sock: _socket.socket, fileno: int, exchange: Exchange, tls: bool) -> int:
    """One send from the cursor (WOULD_BLOCK: nothing sent); moves it and returns the bytes sent."""
    segments = exchange.plan.segments
    segment = segments[exchange.index]
    if type(segment) is bytes:
        following = exchange.index + 1
        if not tls and following < len(segments) and type(segments[following]) is bytes:
            sent = _send_buffers(sock, exchange, segments)
            exchange.sent += sent
            _skip(exchange, segments, sent)
            return sent
        remaining = len(segment) - exchange.offset
        sent = _send_bytes(sock, exchange, segment, tls)
    else:
        remaining = segment.count - exchange.offset
        sent = _send_region_part(sock, fileno, exchange, segment, tls)
    exchange.sent += sent
    if sent >= remaining:
        exchange.index += 1
        exchange.offset = 0
    else:
        exchange.offset += sent
    return sent


def _send_bytes(sock: _socket.socket, exchange: Exchange, segment: bytes, tls: bool) -> int:
    """send() the rest of one bytes segment, MSG_MORE when more of the plan follows."""
    view = segment if exchange.offset == 0 else memoryview(segment)[exchange.offset:]
    if tls:
        return sock.send(view)  # SSLSocket.send takes no flags
    more = exchange.index + 1 < len(exchange.plan.segments)
    return sock.send(view, _MSG_MORE if more else 0)


def _send_buffers(sock: _socket.socket, exchange: Exchange, segments: tuple) -> int:
    """One sendmsg of the consecutive bytes segments from the cursor: no concatenation copy."""
    # Head and a larger in-memory body; MSG_MORE when a file region follows them.
    offset = exchange.offset
    first = segments[exchange.index]
    buffers = [first if offset == 0 else memoryview(first)[offset:]]
    following = exchange.index + 1
    count = len(segments)
    while following < count and type(segments[following]) is bytes:
        buffers.append(segments[following])
        following += 1
    return sock.sendmsg(buffers, (), _MSG_MORE if following < count else 0)


def _send_region_part(sock: _socket.socket, fileno: int, exchange: Exchange, region: FileRegion,
                      tls: bool) -> int:
    """The next part of a file region: os.sendfile, or over TLS a pread chunk sent; FileShrank."""
    remaining = region.count - exchange.offset
    position = region.offset + exchange.offset
    if tls:
        chunk = os.pread(region.fd, min(remaining, TLS_CHUNK), position)
        if not chunk:
            raise FileShrank(f"file ended {remaining} bytes early")
        return sock.send(chunk)
    sent = os.sendfile(fileno, region.fd, position, min(remaining, SENDFILE_CHUNK))
    if sent == 0:
        raise FileShrank(f"file ended {remaining} bytes early")
    return sent


def _skip(exchange: Exchange, segments: tuple, sent: int) -> None:
    """Move the exchange past `sent` bytes of consecutive bytes segments."""
    while sent:
        left = len(segments[exchange.index]) - exchange.offset
        if sent < left:
            exchange.offset += sent
            return
        sent -= left
        exchange.index += 1
        exchange.offset = 0


def send_blocking(sock: _socket.socket, exchange: Exchange, on_head_sent=None,
                  tls: bool = False) -> None:
    """Send a whole exchange on a blocking socket with a timeout; `exchange.sent` counts what
    went out.

    Raises TimeoutError when the peer accepts nothing for the socket's timeout, PEER_GONE
    errors, and FileShrank. File regions go out with os.sendfile from an explicit offset in
    bounded chunks, waiting for writability with the socket's timeout (as socket.sendfile does,
    but counting as it goes, so a response cut short is logged with the bytes really sent);
    over TLS they are read with os.pread and sent through the SSL object.
    """
    pending: list[bytes] = []  # consecutive bytes segments go out in one sendall
    head_reported = False
    for segment in exchange.plan.segments:
        if type(segment) is bytes:
            pending.append(segment)
            continue
        if pending:
            _sendall(sock, pending, exchange)
        if not head_reported and on_head_sent is not None:
            on_head_sent()
            head_reported = True
        if tls:
            _send_region_tls(sock, segment, exchange)
        else:
            _send_region(sock, segment, exchange)
    if pending:
        _sendall(sock, pending, exchange)


def _sendall(sock: _socket.socket, pending: list, exchange: Exchange) -> None:
    """sendall the joined bytes segments, then count them."""
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    pending.clear()
    sock.sendall(data)
    exchange.sent += len(data)


def _send_region(sock: _socket.socket, region, exchange: Exchange) -> None:
    """os.sendfile a region on a socket with a timeout, waiting for writability as needed."""
    timeout = sock.gettimeout()
    fileno = sock.fileno()
    offset = region.offset
    remaining = region.count
    poller = None
    while remaining:
        try:
            sent = os.sendfile(fileno, region.fd, offset, min(remaining, SENDFILE_CHUNK))
        except BlockingIOError:
            if poller is None:
                poller = select.poll()
                poller.register(fileno, select.POLLOUT)
            if not poller.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError("send timed out") from None
            continue
        if sent == 0:
            raise FileShrank(f"file ended {remaining} bytes early")
        offset += sent
        remaining -= sent
        exchange.sent += sent


def _send_region_tls(sock: _socket.socket, region, exchange: Exchange) -> None:
    """Read a region in TLS_CHUNK pieces and sendall each through the SSL object."""
    offset = region.offset
    remaining = region.count
    while remaining:
        chunk = os.pread(region.fd, min(remaining, TLS_CHUNK), offset)
        if not chunk:
            raise FileShrank(f"file ended {remaining} bytes early")
        sock.sendall(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
        exchange.sent += len(chunk)
