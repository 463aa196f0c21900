"""Many clients at once from one thread, and a client that speaks EventSource like a browser.

`sequential_keepalive` drives hundreds of keep-alive clients with one selector (no thread per
client: the machine has two cores and the server under test needs them), each sending its
requests one after another. `EventSourceClient` reconnects whenever its stream ends, as the
HTML standard's EventSource does (section 9.2 "Server-sent events": reconnect after `retry`).
"""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)


class _Client:
    """One keep-alive client of the crowd: its socket, what it has read, answers so far."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        code = self.sock.connect_ex(("127.0.0.1", port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, "connect failed")
        self.buffer = b""
        self.answers = 0

    def take_answers(self) -> int:
        """Whole 200 answers at the front of the buffer, removed from it."""
        count = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return count
            head = self.buffer[:end + 2]
            match = _LENGTH.search(head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return count
            assert head.startswith(b"HTTP/1.1 200 "), head[:80]
            self.buffer = self.buffer[total:]
            count += 1


def sequential_keepalive(port: int, clients: int, requests: int, raw: bytes,
                         timeout: float = 120.0) -> tuple[int, list[str]]:
    """`clients` connect at once; each sends `raw` `requests` times on its one connection, the
    next once the last answer is in, then closes. Returns (answers received, one line per
    client whose connection ended early or that had not finished by `timeout`)."""
    selector = selectors.DefaultSelector()
    crowd = [_Client(port) for _ in range(clients)]
    for client in crowd:
        selector.register(client.sock, selectors.EVENT_WRITE, client)
    lost: list[str] = []
    answered = 0
    open_count = clients
    deadline = time.monotonic() + timeout
    try:
        while open_count and time.monotonic() < deadline:
            for key, mask in selector.select(1.0):
                client = key.data
                ended = _step(selector, client, mask, raw, requests, lost)
                answered += client.answers - getattr(client, "counted", 0)
                client.counted = client.answers
                if ended:
                    open_count -= 1
        lost.extend(f"unfinished after {client.answers} answers" for client in crowd
                    if client.sock.fileno() >= 0)
    finally:
        for client in crowd:
            client.sock.close()
        selector.close()
    return answered, lost


def _step(selector, client: _Client, mask: int, raw: bytes, requests: int,
          lost: list[str]) -> bool:
    """Handle one readiness event of one client; True once it has ended (done or lost)."""
    sock = client.sock
    if mask & selectors.EVENT_WRITE:  # connected (or failed): send the first request
        try:
            sock.sendall(raw)
        except OSError as exc:
            lost.append(f"connect/send failed: {exc!r}")
            selector.unregister(sock)
            sock.close()
            return True
        selector.modify(sock, selectors.EVENT_READ, client)
        return False
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError as exc:
        lost.append(f"after {client.answers} answers: {exc!r}")
        selector.unregister(sock)
        sock.close()
        return True
    if not data:
        lost.append(f"closed by the server after {client.answers} answers")
        selector.unregister(sock)
        sock.close()
        return True
    client.buffer += data
    got = client.take_answers()
    client.answers += got
    if client.answers >= requests:
        selector.unregister(sock)
        sock.close()
        return True
    if got:
        sock.sendall(raw)  # the answer is in: the next request
    return False


class EventSourceClient:
    """A stream client as a browser's EventSource is: it reads `event:`/`data:` lines and, when
    the connection ends, reconnects after the stream's retry delay (at most `retry_cap` s)."""

    def __init__(self, port: int, path: str, retry_cap: float = 1.0):
        self.port = port
        self.path = path
        self.retry_cap = retry_cap
        self.reconnections = 0
        self.sock: socket.socket | None = None
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        self.sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
                          .encode())
        self.data = b""

    def next_change(self, timeout: float) -> str | None:
        """The data of the next `change` event, reconnecting as often as the stream ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(rb"event: change\ndata: ([^\n]*)\n\n", self.data)
            if match:
                self.data = self.data[match.end():]
                return match.group(1).decode()
            try:
                chunk = self.sock.recv(65536) if self.sock is not None else b""
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                self.data += chunk
                continue
            self.close()  # the stream ended (eviction, restart): reconnect, as a browser does
            time.sleep(self.retry_cap)
            self.reconnections += 1
            try:
                self._connect()
            except OSError:
                self.sock = None
        return None

    def reconnected(self, timeout: float) -> bool:
        """Read until the stream ends, reconnect as a browser would, wait for the new one."""
        deadline = time.monotonic() + timeout
        while self.sock is not None and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
        if self.sock is not None:
            return False
        time.sleep(self.retry_cap)
        self.reconnections += 1
        self._connect()
        return self.connected(max(deadline - time.monotonic(), 1.0))

    def connected(self, timeout: float) -> bool:
        """True once the stream's head and retry line have arrived (within `timeout` s)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.data or b"retry:" not in self.data:
            if self.sock is None or time.monotonic() >= deadline:
                return False
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return False
            self.data += chunk
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
