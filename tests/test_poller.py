"""The reactor's readiness source (poller.py): epoll itself, and the `selectors` fallback, alike."""

from __future__ import annotations

import select
import socket

import pytest

from reactor_http.poller import READ, WRITE, EpollPoller, SelectorsPoller, ready_mask

KINDS = [SelectorsPoller] + ([EpollPoller] if hasattr(select, "epoll") else [])


@pytest.fixture(params=KINDS, ids=lambda kind: kind.__name__)
def poller(request):
    made = request.param()
    yield made
    made.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def ready(poller, timeout=0.5) -> dict:
    return {poller.data[fd]: mask for fd, mask in poller.poll(timeout)}


def test_readable_and_writable_are_reported_with_the_data_registered(poller, pair):
    a, b = pair
    poller.register(a, READ, "a")
    assert ready(poller, 0) == {}
    b.send(b"x")
    assert ready(poller) == {"a": READ}
    poller.modify(a, READ | WRITE, "a2")
    assert ready(poller) == {"a2": READ | WRITE}
    poller.modify(a, WRITE, "a3")
    assert ready(poller) == {"a3": WRITE}


def test_an_unregistered_socket_is_forgotten_and_twice_is_a_key_error(poller, pair):
    a, b = pair
    poller.register(a, READ, "a")
    poller.unregister(a)
    b.send(b"x")
    assert ready(poller, 0) == {} and poller.data == {}
    with pytest.raises(KeyError):
        poller.unregister(a)


def test_registering_twice_is_refused(poller, pair):
    a, _ = pair
    poller.register(a, READ, "a")
    with pytest.raises((KeyError, OSError)):
        poller.register(a, READ, "again")


def test_a_hang_up_wakes_a_reader_as_readable(poller, pair):
    a, b = pair
    poller.register(a, READ, "a")
    b.close()
    events = poller.poll(0.5)
    assert len(events) == 1
    fd, mask = events[0]
    assert fd == a.fileno() and ready_mask(mask, READ) == READ


@pytest.mark.parametrize("events, interest, expected", [
    (READ, READ, READ),
    (WRITE, WRITE, WRITE),
    (READ | WRITE, READ, READ),           # only what was asked for
    (READ | WRITE, READ | WRITE, READ | WRITE),
    (0x010, READ, READ),                  # EPOLLHUP alone: the reader finds the EOF
    (0x010, WRITE, WRITE),                # ... and a writer its error
    (0x008 | 0x010, READ | WRITE, READ | WRITE),  # EPOLLERR | EPOLLHUP
])
def test_ready_mask_reads_an_epoll_report_as_selectors_does(events, interest, expected):
    assert ready_mask(events, interest) == expected


def test_a_socket_closed_before_it_is_unregistered_is_still_forgotten(poller, pair):
    # As with selectors: its descriptor may be reused at once, and registering the new socket
    # must not find the old one still there.
    a, b = pair
    fd = a.fileno()
    poller.register(a, READ, "old")
    a.close()
    poller.unregister(a)
    assert poller.data == {}
    c, d = socket.socketpair()  # the lowest free descriptors: c most likely gets `fd` again
    try:
        poller.register(c, READ, "new")
        assert c.fileno() in poller.data and (c.fileno() == fd) == (fd in poller.data)
        d.send(b"x")
        assert ready(poller) == {"new": READ}
    finally:
        c.close()
        d.close()
