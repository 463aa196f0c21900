"""Access lines (Common Log Format) and the original's dated connection log, buffered.

Nothing here waits on the disk per request: lines go into a list, and `flush()` writes them out;
the reactor calls it on a timer and at exit, the threaded engine from a flusher thread. Bytes that
came from a client are escaped (control characters, quotes, backslashes, non-ASCII) so a request
cannot forge log lines or terminal escapes.
"""

from __future__ import annotations

import os
import sys
import threading
import time

# How often buffered lines are written out (seconds).
FLUSH_INTERVAL = 1.0
# Buffered lines beyond which `write` flushes at once (bounds memory under a flood).
MAX_BUFFERED_LINES = 10_000
_ESCAPES = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0x100))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape(text: str) -> str:
    """Escape client-supplied text for a log line (as nginx does: \\xHH)."""
    return text.translate(_ESCAPE_TABLE)


def connection_log_name(epoch_seconds: float) -> str:
    """The original's daily file name, DDMMYYconnectionLog.txt, in local time."""
    return time.strftime("%d%m%yconnectionLog.txt", time.localtime(epoch_seconds))


class LogSink:
    """Buffers access lines (stdout) and connection-log lines (daily files) until `flush`."""

    def __init__(self, *, access: bool = True, log_dir: str | None = None,
                 stream=None, name: str = "reactor_http"):
        self.access_enabled = access
        self.log_dir = log_dir
        self.connection_enabled = log_dir is not None
        self.stream = stream if stream is not None else sys.stdout
        self.name = name
        self._access: list[str] = []
        self._connection: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._clf_second = -1
        self._clf_time = ""
        self.last_flush = time.monotonic()
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)


    def _clf_timestamp(self, now: float) -> str:
        """[day/Mon/year:HH:MM:SS +0000], formatted once per second."""
        second = int(now)
        if second != self._clf_second:
            t = time.gmtime(second)
            self._clf_time = (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                              f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]")
            self._clf_second = second
        return self._clf_time

    def access(self, peer: str, request_line: str, status: int, body_bytes: int) -> None:
        """Record one request in Common Log Format."""
        if not self.access_enabled:
            return
        line = (f'{peer} - - {self._clf_timestamp(time.time())} "{escape(request_line)}" '
                f'{status} {body_bytes if body_bytes else "-"}\n')
        with self._lock:
            self._access.append(line)
            if len(self._access) > MAX_BUFFERED_LINES:
                self._flush_locked()

    def event(self, message: str) -> None:
        """Record one line in the dated connection log (if --log-dir was given)."""
        if self.log_dir is None:
            return
        with self._lock:
            self._connection.append((time.time(), message))
            if len(self._connection) > MAX_BUFFERED_LINES:
                self._flush_locked()

    def flush(self) -> None:
        """Write everything buffered."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self.last_flush = time.monotonic()
        if self._access:
            text = "".join(self._access)
            self._access.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the server down
        if self._connection:
            by_file: dict[str, list[str]] = {}
            for stamp, message in self._connection:
                t = time.localtime(stamp)
                millis = int((stamp % 1) * 1000)
                line = (f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d},{millis:03d} "
                        f"{self.name} INFO {message}\n")
                by_file.setdefault(connection_log_name(stamp), []).append(line)
            self._connection.clear()
            for name, lines in by_file.items():
                try:
                    with open(os.path.join(self.log_dir, name), "a", encoding="utf-8") as file:
                        file.writelines(lines)
                except OSError as exc:
                    print(f"reactor_http: cannot write connection log: {exc}", file=sys.stderr)

    def due(self, now_monotonic: float) -> bool:
        """True when the flush interval has passed."""
        return now_monotonic - self.last_flush >= FLUSH_INTERVAL
