"""Large files: how the reactor slices a file body (sending.TURN_BUDGET per connection per loop
turn, one sendfile each, as lighttpd writes), and that the slices add up to the file.

No timing here: the figures are in bench/RESULTS.md (python -m bench.large_file_study). These
tests pin the shape (how many bytes one turn may move, in how many calls) and the bytes.
"""

from __future__ import annotations

import os
import socket

import pytest

from reactor_http import sending
from reactor_http.messages import Exchange, FileRegion, ResponsePlan
from tests.helpers.http import read_response

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
SLICE = sending.TURN_BUDGET


@pytest.fixture
def big_file(tmp_path):
    """Three and a half slices, every byte position-dependent."""
    data = bytes(range(256)) * ((3 * SLICE + SLICE // 2) // 256)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


@pytest.fixture
def calls(monkeypatch):
    """The counts every os.sendfile made by sending.py asked for."""
    asked: list[int] = []
    real = os.sendfile

    def counting(out_fd, in_fd, offset, count):
        asked.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(sending.os, "sendfile", counting)
    return asked


def pair():
    """A connected socket pair: a non-blocking sender with room for a slice, and its reader."""
    sender, reader = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * SLICE)
    sender.setblocking(False)
    reader.settimeout(5)
    return sender, reader


def drain(reader: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        data += reader.recv(count - len(data))
    return bytes(data)


def file_plan(fd: int, size: int) -> ResponsePlan:
    return ResponsePlan(200, (HEAD % size, FileRegion(fd, 0, size)), size, True, fd=fd)


def test_one_turn_sends_the_head_and_at_most_one_slice_in_one_sendfile(big_file, calls):
    fd, data = big_file
    sender, reader = pair()
    with sender, reader:
        exchange = Exchange(file_plan(fd, len(data)))
        assert sending.send_available(sender, exchange) is exchange
        head = HEAD % len(data)
        assert calls[0] <= SLICE and exchange.sent > len(head)
        if calls[0] == exchange.sent - len(head):  # the buffer took the whole slice
            assert len(calls) == 1 and exchange.sent == len(head) + SLICE
        assert drain(reader, exchange.sent) == head + data[:exchange.sent - len(head)]


def test_slices_add_up_to_the_file_and_the_last_is_left_to_send_available(big_file, calls):
    fd, data = big_file
    sender, reader = pair()
    with sender, reader:
        exchange = Exchange(file_plan(fd, len(data)))
        exchange.index = 1  # the head is out
        received = bytearray()
        while sending.send_slice(sender, exchange):
            assert calls[-1] <= SLICE  # one call per slice, never more than a turn's budget
            received += drain(reader, exchange.offset - len(received))
        assert len(data) - exchange.offset <= SLICE  # stopped before the last slice
        assert exchange.sent == len(received)
        while sending.send_available(sender, exchange) is not None:
            received += drain(reader, exchange.sent - len(received))
        received += drain(reader, exchange.sent - len(received))
        assert bytes(received) == data


def test_a_medium_file_goes_out_in_one_sendfile_after_its_head(tmp_path, calls):
    data = os.urandom(SLICE)
    (tmp_path / "medium.bin").write_bytes(data)
    fd = os.open(tmp_path / "medium.bin", os.O_RDONLY)
    sender, reader = pair()
    with sender, reader:
        exchange = Exchange(file_plan(fd, len(data)))
        left = sending.send_available(sender, exchange)
        assert calls[0] == len(data)
        received = drain(reader, exchange.sent)
        while left is not None:  # the buffer took less: the rest in the next turns
            left = sending.send_available(sender, exchange)
            received += drain(reader, exchange.sent - len(received))
    os.close(fd)
    assert received == HEAD % len(data) + data


def test_send_slice_leaves_what_is_not_a_file_region_to_send_available(big_file):
    fd, data = big_file
    exchange = Exchange(file_plan(fd, len(data)))  # the cursor is on the head
    sender, reader = pair()
    with sender, reader:
        assert not sending.send_slice(sender, exchange)
        assert (exchange.index, exchange.offset, exchange.sent) == (0, 0, 0)


def test_a_slice_that_would_block_keeps_the_place(big_file, monkeypatch):
    fd, data = big_file

    def full(*args):
        raise BlockingIOError

    monkeypatch.setattr(sending.os, "sendfile", full)
    exchange = Exchange(file_plan(fd, len(data)))
    exchange.index = 1
    sender, reader = pair()
    with sender, reader:
        assert sending.send_slice(sender, exchange)
        assert (exchange.offset, exchange.sent) == (0, 0)


def test_a_turn_is_one_sendfile_call():
    assert sending.TURN_BUDGET == sending.SENDFILE_CHUNK


@pytest.mark.parametrize("mode", ["reactor", "threaded"])
def test_a_large_file_then_a_pipelined_request_on_one_connection(tmp_path, make_server, mode):
    data = os.urandom(8 * SLICE + 123)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.txt").write_bytes(b"small")
    srv = make_server(tmp_path, mode, "--quiet")
    with srv.connect(timeout=30) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        buffer = bytearray()
        first = read_response(sock, buffer)
        second = read_response(sock, buffer)
    assert (first.status, first.body == data) == (200, True)
    assert (second.status, second.body) == (200, b"small")


def test_a_region_read_and_sent_is_left_to_send_available(big_file, monkeypatch):
    fd, data = big_file
    monkeypatch.setattr(sending, "sendfile_usable", False)  # --no-sendfile
    exchange = Exchange(file_plan(fd, len(data)))
    exchange.index = 1
    sender, reader = pair()
    with sender, reader:
        assert not sending.send_slice(sender, exchange)  # its budget is READ_CHUNK pieces
        assert (exchange.offset, exchange.sent) == (0, 0)
