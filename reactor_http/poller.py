"""The reactor's readiness source: epoll directly where Linux has it, `selectors` elsewhere.

Which one is FACTS.poller's choice (facilities.py): "epoll" -> EpollPoller, "selectors" ->
SelectorsPoller over the platform's best selector (kqueue on macOS, poll), "select" ->
SelectPoller, over `selectors.SelectSelector` (Windows; also what the Windows simulation runs
on Linux). select() holds a bounded number of sockets: the configuration keeps
`--max-connections` within FACTS.connection_cap, so the reactor never asks it for more.

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

from .facilities import FACTS

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

    selector_class: type[selectors.BaseSelector] = selectors.DefaultSelector

    def __init__(self) -> None:
        self._selector = self.selector_class()
        self.data: dict[int, object] = {}
        # Sockets registered with no interest (`selectors` refuses an empty mask): kept out of
        # the selector until a modify gives them one (fd -> socket).
        self._parked: dict[int, object] = {}

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & READ else 0) | \
            (selectors.EVENT_WRITE if mask & WRITE else 0)

    def register(self, sock, mask: int, data) -> None:
        key = self._selector.register(sock, self._events(mask))
        self.data[key.fd] = data

    def modify(self, sock, mask: int, data) -> None:
        events = self._events(mask)
        fd = sock if isinstance(sock, int) else sock.fileno()
        if not events:  # no interest: out of the selector, until a modify gives it one
            key = self._selector.unregister(sock)
            self._parked[key.fd] = sock
        elif self._parked.pop(fd, None) is not None:
            key = self._selector.register(sock, events)
        else:
            key = self._selector.modify(sock, events)
        self.data[key.fd] = data

    def unregister(self, sock) -> None:
        fd = sock if isinstance(sock, int) else sock.fileno()
        if self._parked.pop(fd, None) is not None:
            del self.data[fd]
            return
        key = self._selector.unregister(sock)
        del self.data[key.fd]

    def poll(self, timeout: float) -> list:
        return [(key.fd, (READ if events & selectors.EVENT_READ else 0) |
                 (WRITE if events & selectors.EVENT_WRITE else 0))
                for key, events in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()
        self.data.clear()
        self._parked.clear()


class SelectPoller(SelectorsPoller):
    """The same interface over select() itself, where nothing better exists (Windows)."""

    selector_class = selectors.SelectSelector


class ReadWait:
    """A wait for readability on a few descriptors (the threaded engine's idle waits): poll(2)
    where it exists, select() where it is all there is (Windows, where only sockets qualify).
    End of file, a reset and an error count as readable, as they do for select()."""

    __slots__ = ("_fds", "_poll")

    def __init__(self) -> None:
        self._fds: dict[int, None] = {}  # in registration order
        self._poll = None if FACTS.poller == "select" else select.poll()

    def register(self, sock) -> None:
        fd = sock if isinstance(sock, int) else sock.fileno()
        self._fds[fd] = None
        if self._poll is not None:
            self._poll.register(fd, _POLL_READABLE)

    def unregister(self, fd: int) -> None:
        del self._fds[fd]
        if self._poll is not None:
            self._poll.unregister(fd)

    def wait(self, timeout: float) -> set[int]:
        """The registered descriptors readable within `timeout` seconds (empty: none was)."""
        timeout = max(timeout, 0.0)
        if self._poll is not None:
            return {fd for fd, _ in self._poll.poll(timeout * 1000)}
        fds = list(self._fds)
        readable, _, failed = select.select(fds, [], fds, timeout)
        return set(readable) | set(failed)


# What ReadWait asks poll(2) for (where it exists: never read on Windows).
_POLL_READABLE = 0 if FACTS.poller == "select" else \
    select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR

# The poller the reactor makes, by FACTS.poller.
POLLERS: dict[str, type[EpollPoller] | type[SelectorsPoller]] = {
    "epoll": EpollPoller, "selectors": SelectorsPoller, "select": SelectPoller}
Poller = POLLERS[FACTS.poller]
