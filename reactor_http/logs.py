"""Access lines (Common Log Format) and the original's dated connection log, buffered.

Nothing here waits on the disk per request: lines go into a list, and `flush()` writes them out;
the reactor calls it on a timer and at exit, the threaded engine from a flusher thread. Bytes that
came from a client are escaped (control characters, quotes, backslashes, non-ASCII) so a request
cannot forge log lines or terminal escapes.

With `--access-log FILE` access lines also go to FILE, opened with O_APPEND so several worker
processes can share it (each flush is one write(2), which O_APPEND positions atomically).
`request_reopen()` (the SIGUSR1 handler, logrotate's convention) only sets a flag: the next flush
closes FILE and opens the name again, so a handler never waits for the lock a flush holds.
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
                 stream=None, name: str = "reactor_http", access_file: str | None = None):
        self.access_stdout = access
        self.access_file = access_file
        self.access_enabled = access or access_file is not None
        self._access_fd = -1
        self.reopen_requested = False
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
        if access_file is not None:
            self._access_fd = open_access_file(access_file)

    def request_reopen(self) -> None:
        """Ask the next flush to reopen the log files (async-signal-safe: sets a flag only)."""
        self.reopen_requested = True

    def _reopen_locked(self) -> None:
        """Close and reopen --access-log by name (logrotate has renamed the old file)."""
        self.reopen_requested = False
        if self.access_file is not None:
            try:
                fd = open_access_file(self.access_file)
            except OSError as exc:
                print(f"reactor_http: cannot reopen access log {self.access_file!r}: "
                      f"{exc.strerror}; still writing to the old file", file=sys.stderr)
            else:
                os.close(self._access_fd)
                self._access_fd = fd
        # The connection log is opened by name at every flush, so it follows a rename by itself.
        if self.log_dir is not None:
            self._connection.append((time.time(), f"Reopened log files (SIGUSR1, pid "
                                                  f"{os.getpid()})"))

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
        if self.reopen_requested:
            self._reopen_locked()
        if self._access:
            text = "".join(self._access)
            self._access.clear()
            if self.access_stdout:
                try:
                    self.stream.write(text)
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # a closed stdout must not take the server down
            if self._access_fd >= 0:
                try:
                    _write_all(self._access_fd, text.encode("utf-8", "replace"))
                except OSError as exc:
                    print(f"reactor_http: cannot write access log: {exc.strerror}",
                          file=sys.stderr)
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


def open_access_file(path: str) -> int:
    """Open (or create) an access log for appending; raises OSError."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """write(2) until all of `data` is out (a regular file takes it in one call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
