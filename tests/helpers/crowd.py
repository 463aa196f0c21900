"""Many clients at once from one thread, and a client that speaks EventSource like a browser.

`sequential_keepalive` (bench/at_the_cap.py's) drives hundreds of keep-alive clients with one
selector (no thread per client: the machine has two cores and the server under test needs
them), each sending its requests one after another. `EventSourceClient` reconnects whenever its
stream ends, as the HTML standard's EventSource does (section 9.2 "Server-sent events":
reconnect after `retry`).
"""

from __future__ import annotations

import re
import socket
import time

from bench.at_the_cap import sequential_keepalive

__all__ = ["EventSourceClient", "sequential_keepalive"]


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
