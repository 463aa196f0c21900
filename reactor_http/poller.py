"""The reactor's readiness source: epoll directly where Linux has it, `selectors` elsewhere.

`selectors` wraps every ready descriptor in a (SelectorKey, events) pair and keeps a key object
per registration; on the reactor's dominant event (one request in, one answer out, about 6 us of
CPU in all) that wrapping was 0.15 us per event, measured. Here `poll()` returns epoll's own
(fd, events) list and the loop finds its object with one dict lookup (`data`).

Interest and readiness use epoll's bit values on every platform (READ = EPOLLIN, WRITE = EPOLLOUT);
the fallback translates. Readiness is given as epoll reports it: errors and hang-ups (EPOLLERR,
EPOLLHUP) come whatever the interest, so `ready_mask` turns a report into READ/WRITE bits limited
to the interest, exactly as `selectors` does, for the loop to call when a report is not plain READ.
"""

from __future__ import annotations

import select
import selectors

READ = 0x001   # select.EPOLLIN
WRITE = 0x004  # select.EPOLLOUT


def ready_mask(events: int, interest: int) -> int:
    """READ/WRITE bits of an epoll report, as `selectors` derives them, within `interest`."""
    mask = 0
    if events & ~READ:
        mask |= WRITE
    if events & ~WRITE:
        mask |= READ
    return mask & interest


class EpollPoller:
    """register/modify/unregister by socket (or fd), poll() -> [(fd, events)], data[fd]."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.data: dict[int, object] = {}  # fd -> what the loop dispatches the fd's events to
        self._sockets: dict[int, object] = {}  # fd -> the socket registered under it

    def _fd(self, sock) -> int:
        """The descriptor `sock` was registered under, even if it has been closed since."""
        fd = sock if isinstance(sock, int) else sock.fileno()
        if fd < 0:
            # Closed before it was unregistered: find it by identity, as `selectors` does.
            for known, registered in self._sockets.items():
                if registered is sock:
                    return known
            raise KeyError(f"{sock!r} is not registered")
        return fd

    def register(self, sock, mask: int, data) -> None:
        fd = sock if isinstance(sock, int) else sock.fileno()
        if fd in self.data:
            raise KeyError(f"{fd} is already registered")
        self._epoll.register(fd, mask)
        self.data[fd] = data
        self._sockets[fd] = sock

    def modify(self, sock, mask: int, data) -> None:
        fd = self._fd(sock)
        self._epoll.modify(fd, mask)
        self.data[fd] = data

    def unregister(self, sock) -> None:
        """Forget a socket; KeyError if it is not registered (as `selectors` raises)."""
        fd = self._fd(sock)
        del self.data[fd]
        del self._sockets[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # already closed: the kernel dropped it with its last descriptor

    def poll(self, timeout: float) -> list:
        return self._epoll.poll(timeout, max(len(self.data), 1))

    def close(self) -> None:
        self._epoll.close()
        self.data.clear()
        self._sockets.clear()


class SelectorsPoller:
    """The same interface over `selectors.DefaultSelector` (kqueue, poll, select)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.data: dict[int, object] = {}

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & READ else 0) | \
            (selectors.EVENT_WRITE if mask & WRITE else 0)

    def register(self, sock, mask: int, data) -> None:
        key = self._selector.register(sock, self._events(mask))
        self.data[key.fd] = data

    def modify(self, sock, mask: int, data) -> None:
        key = self._selector.modify(sock, self._events(mask))
        self.data[key.fd] = data

    def unregister(self, sock) -> None:
        key = self._selector.unregister(sock)
        del self.data[key.fd]

    def poll(self, timeout: float) -> list:
        return [(key.fd, (READ if events & selectors.EVENT_READ else 0) |
                 (WRITE if events & selectors.EVENT_WRITE else 0))
                for key, events in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()
        self.data.clear()


Poller = EpollPoller if hasattr(select, "epoll") else SelectorsPoller
