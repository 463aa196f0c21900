"""The only code that sends: plan segments with `send`; file regions with `os.sendfile`, or read
and sent.

Two ways to carry out an `Exchange` (its plan's segments, from its cursor): `send_available` for
the reactor's non-blocking sockets (send what the kernel takes now, keep the cursor, report
whether more remains) and `send_blocking` for the threaded engine's blocking sockets with a
timeout. The exchange is the cursor: segment index, offset into it, bytes sent.

A file region goes out by one of two paths:
- sendfile: `os.sendfile` from the cursor's offset in bounded chunks; the kernel copies the pages.
- read-and-send: the file is read from the cursor's offset in chunks of at most READ_CHUNK
  (TLS_CHUNK over TLS) and the chunk is sent. What the socket did not take stays in the exchange
  (messages.FileBuffer) for the next turn: kept rather than re-read, so no byte is read twice
  when a slow socket takes a chunk in many pieces, and a TLS send refused with
  SSLWantWriteError is retried with the very bytes it was refused with (OpenSSL's rule). The
  cost is one chunk of memory per connection in the middle of a file body, none for the others
  (the buffer is the exchange's, gone with it). The read is `os.preadv` into that buffer where
  it exists, else `os.pread`, else (Windows, which has neither) lseek and read on the exchange's
  own descriptor: facilities.FACTS.file_read.

Read-and-send is used under TLS (the kernel cannot encrypt), and wherever `sendfile_usable` is
False: the platform has no os.sendfile (FACTS.sendfile: Windows), the operator turned it off
(--no-sendfile: `use_sendfile`, for filesystems where sendfile misbehaves), or it refused a
descriptor with ENOSYS (no such system call: every descriptor would be refused). A descriptor
refused otherwise (SENDFILE_REFUSALS) switches only its exchange. A refused call sent nothing,
so the exchange goes on from its cursor without losing or repeating a byte.

A produced body (--archives, messages.ProducedBody) goes out as its producer makes it: from the
exchange's archive.Feed in the reactor (`Starved`, a BlockingIOError, when nothing is made yet:
the reactor then waits for the producer, not for the socket), and as `produce` writes it on the
threaded engine's connection thread (`send_blocking`).

A sendfile that returns 0, or a read that returns nothing, before the region's count means the
file shrank: the Content-Length promise can no longer be kept, so we raise `FileShrank` and the
engine closes the connection.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import ssl

from .facilities import FACTS, pread
from .messages import Exchange, FileBuffer, FileRegion, ProducedBody

# Bytes one sendfile call may move, and bytes one connection may send per loop turn: one call
# per ready connection per wake-up, as lighttpd writes, then back to epoll. Level-triggered
# EPOLLOUT reports a TCP socket writable only while its free space is at least half of what it
# holds queued, so the queue settles near two thirds of the buffer plus one slice and the
# server never fills it to EAGAIN (then to idle while the client's ACKs drain a third of it).
# lighttpd's slice is 256 KiB; ours is 1 MiB because each slice costs a loop turn of Python
# (~10 us) that C does not pay: at 256 KiB the reactor spent 0.34 server CPU-s per GB against
# 0.28 at 1 MiB and lost 14 % of its MB/s on a quiet host (bench/RESULTS.md, "Large files").
# A slice of up to a third of the buffer (autotuned to 4 MiB) still never meets EAGAIN.
SENDFILE_CHUNK = 1 << 20
TURN_BUDGET = SENDFILE_CHUNK
# Bytes of a file read per TLS send: four 16 KiB TLS records.
TLS_CHUNK = 64 * 1024
# What a non-blocking send raises when it must wait: EAGAIN, or TLS needing to read or write.
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError)
_MSG_MORE = FACTS.msg_more
# Bytes of a file read per read-and-send step over plain TCP, and so the most one connection
# holds: lighttpd's 256 KiB per connection per turn (nginx's output_buffers: 2 x 32 KiB).
READ_CHUNK = 256 * 1024
# errnos with which os.sendfile refuses a descriptor (the call sent nothing): no such system call
# (ENOSYS), a file it cannot map or a socket type it does not take (EINVAL, ENOTSOCK, and
# EOPNOTSUPP or ENOTSUP, which differ on macOS and BSD).
SENDFILE_REFUSALS = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSOCK, errno.EOPNOTSUPP,
                               errno.ENOTSUP})
# Refusals that hold for every descriptor: the process stops trying sendfile.
PLATFORM_REFUSALS = frozenset({errno.ENOSYS})
# Whether this process sends file regions with os.sendfile (see the module's docstring).
sendfile_usable = FACTS.sendfile
# Errors that mean the peer went away: a quiet close, not a logged failure.
PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
PEER_GONE_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                              errno.ECONNABORTED, errno.ETIMEDOUT})


class FileShrank(Exception):
    """The file got shorter while we were sending it."""


class Starved(BlockingIOError):
    """A produced body has nothing made to send yet (or its producer has not started): the
    engine waits for the producer (archive.Feed.wait), not for the socket."""


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


def send_slice(sock: _socket.socket, exchange: Exchange) -> bool:
    """One loop turn's slice of a file body, plain TCP, the reactor's large-file short route.

    True when it sent a slice (or the socket would block) and the file region at the cursor
    has more after it; False, having sent nothing, when the cursor is not inside a region, only
    its last slice is left (send_available sends it with whatever follows it), or the region is
    read and sent rather than sendfile'd.
    Raises as send_available. Fewer calls than send_available, for the one event a large file
    repeats.
    """
    region = exchange.plan.segments[exchange.index]
    offset = exchange.offset
    if type(region) is not FileRegion or region.count - offset <= TURN_BUDGET or \
            not sendfile_usable or exchange.file_buffer is not None:
        return False  # read-and-send goes on by send_available: a budget of READ_CHUNK pieces
    try:
        sent = _send_region_part(sock, sock.fileno(), exchange, region, False)
    except WOULD_BLOCK:
        return True
    exchange.offset = offset + sent
    exchange.sent += sent
    return True


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
    elif type(segment) is FileRegion:
        remaining = segment.count - exchange.offset
        sent = _send_region_part(sock, fileno, exchange, segment, tls)
    else:
        return _send_produced(sock, exchange, tls)
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
    """The next part of a file region: os.sendfile, else read and sent; FileShrank."""
    if not tls and sendfile_usable and exchange.file_buffer is None:
        remaining = region.count - exchange.offset
        try:
            sent = os.sendfile(fileno, region.fd, region.offset + exchange.offset,
                               min(remaining, SENDFILE_CHUNK))
        except OSError as exc:
            if exc.errno not in SENDFILE_REFUSALS:
                raise  # WOULD_BLOCK and the peer's errors among them
            _refuse_sendfile(exc.errno, exchange, tls)
        else:
            if sent == 0:
                raise FileShrank(f"file ended {remaining} bytes early")
            return sent
    return _read_and_send(sock, exchange, region, tls)


def _send_produced(sock: _socket.socket, exchange: Exchange, tls: bool) -> int:
    """One send of what the producer made (the exchange's archive.Feed); past its end, the
    cursor moves on. Raises Starved when nothing is made yet, FileShrank if it failed."""
    feed = exchange.feed
    if feed is None:
        raise Starved  # not started: the engine starts it
    pending = feed.pending
    if not pending:
        data = feed.take()
        if data is None:
            raise Starved
        if not data:  # the producer ended and everything it made went out
            if feed.error is not None:
                raise FileShrank(f"archive not finished: {feed.error}") from feed.error
            exchange.index += 1
            exchange.offset = 0
            return 0
        pending = feed.pending = memoryview(data)
    sent = sock.send(pending) if tls else sock.send(pending, 0)
    feed.pending = pending[sent:]
    exchange.sent += sent
    return sent


# Set when sendfile refused with ENOSYS: no descriptor will do, whatever a server asks for.
_platform_refused = False


def use_sendfile(wanted: bool) -> None:
    """A server's choice (--no-sendfile: False), made as its engine starts: file regions go out
    by sendfile where the platform has it and has not refused it, else are read and sent. Each
    server sets it, so one's --no-sendfile does not carry over to the next in the process."""
    global sendfile_usable
    sendfile_usable = wanted and FACTS.sendfile and not _platform_refused


def _refuse_sendfile(number: int, exchange: Exchange, tls: bool) -> FileBuffer:
    """sendfile refused this exchange's descriptor: it reads and sends from now on, and so does
    the process if the refusal holds for every descriptor. Returns the exchange's buffer."""
    if number in PLATFORM_REFUSALS:
        global _platform_refused, sendfile_usable
        _platform_refused = True
        sendfile_usable = False
    return _file_buffer(exchange, tls)


def _file_buffer(exchange: Exchange, tls: bool) -> FileBuffer:
    """The exchange's read-and-send buffer, made the first time: one chunk, less for a smaller
    body."""
    file_buffer = exchange.file_buffer
    if file_buffer is None:
        chunk = TLS_CHUNK if tls else READ_CHUNK
        file_buffer = exchange.file_buffer = FileBuffer(min(chunk, exchange.plan.body_length))
    return file_buffer


def _read_and_send(sock: _socket.socket, exchange: Exchange, region: FileRegion,
                   tls: bool) -> int:
    """One send of the region's bytes from the cursor, read into the exchange's buffer first if
    it holds none; what the socket does not take stays there (WOULD_BLOCK: all of it)."""
    file_buffer = _file_buffer(exchange, tls)
    pending = file_buffer.pending
    offset = exchange.offset
    if not pending:
        remaining = region.count - offset
        pending = _read_at(file_buffer, region.fd, region.offset + offset,
                           min(remaining, file_buffer.size))
        if not pending:
            raise FileShrank(f"file ended {remaining} bytes early")
        file_buffer.pending = pending
    if tls:
        sent = sock.send(pending)  # SSLSocket.send takes no flags
    else:
        more = offset + len(pending) < region.count or \
            exchange.index + 1 < len(exchange.plan.segments)
        sent = sock.send(pending, _MSG_MORE if more else 0)
    file_buffer.pending = pending[sent:]
    return sent


def _read_into(file_buffer: FileBuffer, fd: int, position: int, size: int) -> memoryview:
    """Read up to `size` bytes at `position` into the exchange's buffer (no allocation)."""
    buffer = file_buffer.buffer
    if buffer is None:
        buffer = file_buffer.buffer = memoryview(bytearray(file_buffer.size))
    view = buffer[:size]
    return view[:os.preadv(fd, [view], position)]


def _read_new(file_buffer: FileBuffer, fd: int, position: int, size: int) -> memoryview:
    """Read up to `size` bytes at `position` as a new bytes object, by facilities.pread (os.pread,
    or a seek then a read where there is none: Windows)."""
    return memoryview(pread(fd, size, position))


# How this platform reads a file at an offset (facilities.FACTS.file_read), chosen once.
READERS = {"preadv": _read_into, "pread": _read_new, "seek": _read_new}
_read_at = READERS[FACTS.file_read]


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
                  tls: bool = False, produce=None) -> None:
    """Send a whole exchange on a blocking socket with a timeout; `exchange.sent` counts what
    went out.

    Raises TimeoutError when the peer accepts nothing for the socket's timeout, PEER_GONE
    errors, and FileShrank. File regions go out with os.sendfile from an explicit offset in
    bounded chunks, waiting for writability with the socket's timeout (as socket.sendfile does,
    but counting as it goes, so a response cut short is logged with the bytes really sent);
    over TLS, without sendfile, or once sendfile refuses, they are read and sent. A produced
    body (--archives) is sent as `produce(body, emit)` makes it, on this thread.
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
        if type(segment) is ProducedBody:
            produce(segment, lambda data: _sendall(sock, [data], exchange))
        elif tls or not sendfile_usable or exchange.file_buffer is not None:
            _read_and_send_region(sock, segment, exchange, tls)
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
    """os.sendfile a region on a socket with a timeout, waiting for writability as needed;
    read and sent from where sendfile refuses the descriptor."""
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
        except OSError as exc:
            if exc.errno not in SENDFILE_REFUSALS:
                raise
            _refuse_sendfile(exc.errno, exchange, False)
            rest = FileRegion(region.fd, offset, remaining)
            _read_and_send_region(sock, rest, exchange, False)
            return
        if sent == 0:
            raise FileShrank(f"file ended {remaining} bytes early")
        offset += sent
        remaining -= sent
        exchange.sent += sent


def _read_and_send_region(sock: _socket.socket, region: FileRegion, exchange: Exchange,
                          tls: bool) -> None:
    """Read a region a chunk at a time and send each on a blocking socket (plain or TLS),
    counting every byte as it goes out."""
    file_buffer = _file_buffer(exchange, tls)
    position = region.offset
    end = position + region.count
    while position < end:
        pending = _read_at(file_buffer, region.fd, position, min(end - position, file_buffer.size))
        if not pending:
            raise FileShrank(f"file ended {end - position} bytes early")
        while pending:
            sent = sock.send(pending)
            pending = pending[sent:]
            position += sent
            exchange.sent += sent
