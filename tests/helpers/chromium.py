"""Headless Chromium for browser tests: where it is, how it is started, and a small client of the
Chrome DevTools Protocol over a WebSocket, written with the standard library (RFC 6455 framing:
client frames masked, text messages, fragments joined, pings answered).

`BROWSER` is None where Chromium is not installed (Debian: `apt-get install chromium`); tests
skip then, saying why. `Chromium` starts one browser in its own process group and user-data
folder, reads the port it chose from the `DevToolsActivePort` file it writes, and attaches a
`CdpSession` to its first page.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from tests.helpers.polling import wait_until

BROWSER = next((path for path in map(shutil.which, ("chromium", "chromium-browser",
                                                    "google-chrome")) if path), None)
NO_BROWSER = "Chromium is not installed (apt-get install chromium)"
# Longest wait for the browser to do one thing (seconds): a cold Chromium start on a loaded
# 2-core machine takes a few seconds; this only bounds a failing test.
BROWSER_WAIT = 60.0
# Switches for a quiet, self-contained headless browser: no sandbox (tests may run as root),
# no background traffic of its own, no QUIC.
SWITCHES = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--mute-audio")


def command(profile: Path, url: str, *extra: str) -> list[str]:
    """The command line of a headless Chromium with its own profile, opening `url`."""
    assert BROWSER is not None
    return [BROWSER, *SWITCHES, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            *extra, url]


class CdpError(Exception):
    """A DevTools command answered with an error, or the connection ended."""


class CdpSession:
    """One WebSocket connection to a DevTools target: `call` sends a command and returns its
    result; events that arrive meanwhile are kept in `events` (method, params)."""

    def __init__(self, ws_url: str, timeout: float = BROWSER_WAIT):
        parts = urllib.parse.urlsplit(ws_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.events: list[tuple[str, dict]] = []
        self._buffer = bytearray()
        self._next_id = 0
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise CdpError(f"no WebSocket: {head[:200]!r}")
        self._buffer = bytearray(rest)

    def close(self) -> None:
        self.sock.close()

    def call(self, method: str, **params) -> dict:
        """Send one command; return its result (raise CdpError for an error answer)."""
        self._next_id += 1
        ident = self._next_id
        self._send(json.dumps({"id": ident, "method": method, "params": params}).encode())
        while True:
            message = json.loads(self._receive())
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append((message["method"], message.get("params", {})))

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise CdpError("the browser closed the connection")
        self._buffer += data

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _send(self, payload: bytes, opcode: int = 0x1) -> None:
        """One final frame, masked as a client's must be (RFC 6455 section 5.3)."""
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _receive(self) -> bytes:
        """One whole message (fragments joined); pings answered, a close raises."""
        parts = []
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._take(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if second & 0x80 else b""
            payload = self._take(length)
            if mask:
                payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise CdpError("the browser closed the WebSocket")
            if opcode == 0x9:
                self._send(payload, 0xA)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if first & 0x80:
                return b"".join(parts)


class Chromium:
    """A headless Chromium with a DevTools session on its first page (`page`); `stop()` kills
    its process group, which it alone is in."""

    def __init__(self, profile: Path, *extra: str):
        self.profile = profile
        self.process = subprocess.Popen(command(profile, "about:blank", *extra),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        try:
            port_file = profile / "DevToolsActivePort"
            if not wait_until(lambda: port_file.exists() and
                              len(port_file.read_text().split()) >= 2, BROWSER_WAIT):
                raise CdpError("Chromium wrote no DevToolsActivePort")
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                        timeout=BROWSER_WAIT) as answer:
                targets = json.load(answer)
            page = next(target for target in targets if target.get("type") == "page")
            self.page = CdpSession(page["webSocketDebuggerUrl"])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the browser (its own process group, started here) and wait for it."""
        page = getattr(self, "page", None)
        if page is not None:
            page.close()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
