"""Access lines (Common Log Format) and the seed design's dated connection log, buffered.

The engines never wait on log output: `access()` only appends a line's parts to a deque (atomic,
no lock; the writer joins them) and `event()` appends to a list under a lock that is never held
during I/O. A background writer thread owned by the sink (`start()`, or lazily
on the first line) swaps the lists out every FLUSH_INTERVAL (at once for each access line when
stdout is a terminal) and writes them, so a stdout that does not drain (a paused terminal,
`| less`, journald backpressure) stalls that thread only. While it is stuck, at most
MAX_BUFFERED_LINES wait per log; further lines are dropped and counted, and a note saying how many
goes out where they are missing once writing resumes. `flush()` (at exit) waits for everything to
be written, but only for EXIT_FLUSH_TIMEOUT. Bytes that came from a client are escaped (control
characters, quotes, backslashes, non-ASCII) so a request cannot forge log lines or terminal
escapes.

With `--access-log FILE` access lines also go to FILE, opened with O_APPEND so several worker
processes can share it (each flush is one write(2), which O_APPEND positions atomically).
`request_reopen()` (the SIGUSR1 handler, logrotate's convention) only sets a flag: the writer's next
round closes FILE and opens the name again, so a handler never waits for a lock.
"""

from __future__ import annotations

import collections
import io
import itertools
import logging
import os
import select
import sys
import threading
import time
from typing import TextIO

from .facilities import FACTS

# The log writer's own troubles are process messages (stderr), not lines of the logs it writes.
log = logging.getLogger("reactor_http")

# How often the writer thread writes buffered lines out (seconds).
FLUSH_INTERVAL = 1.0
# Lines each log may hold while waiting for the writer (bounds memory when output is stuck: about
# 2 MB of access lines); beyond it lines are dropped and counted.
MAX_BUFFERED_LINES = 10_000
# Buffered lines at which the writer is woken before its interval (a flood: keep batches moderate
# and the buffer far from the drop limit).
WAKE_LINES = MAX_BUFFERED_LINES // 4
# How long `flush()` waits for the writer by default (seconds): at exit, a stdout that never drains
# must not hang the shutdown; what is still unwritten then is lost.
EXIT_FLUSH_TIMEOUT = 3.0
_ESCAPES = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0x100))}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape(text: str) -> str:
    """Escape client-supplied text for a log line (as nginx does: \\xHH)."""
    return text.translate(_ESCAPE_TABLE)


def clf_prefix(peer: str, user: str = "") -> str:
    """The start of an access line: the client, the unknown ident, the authenticated user."""
    return f"{peer} - {escape(user).replace(' ', '_') if user else '-'} "


def clf_tail(request_line: str, status: int, body_bytes: int) -> str:
    """The end of an access line after its timestamp: request line, status, body bytes."""
    return f' "{escape(request_line)}" {status} {body_bytes if body_bytes else "-"}\n'


def connection_log_name(epoch_seconds: float) -> str:
    """The seed design's daily file name, DDMMYYconnectionLog.txt, in local time."""
    return time.strftime("%d%m%yconnectionLog.txt", time.localtime(epoch_seconds))


class LogSink:
    """Buffers access lines (stdout, --access-log) and connection-log lines (daily files); a
    background writer thread writes them out (see the module docstring)."""

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
        # The real stdout is written with os.write on its descriptor: a writer stuck in a write
        # then holds no lock of sys.stdout's, which interpreter exit would wait for (and abort).
        self._stream_fd = _stdout_fd(self.stream) if stream is None else -1
        # Someone is watching a terminal: each access line is written at once (the writer is
        # woken per line) instead of within FLUSH_INTERVAL, which suits files and pipes.
        self.wake_per_line = access and _is_terminal(self.stream)
        self.name = name
        # (prefix, timestamp, tail) per access line: appended by engines, joined by the writer.
        self._access: collections.deque = collections.deque()
        self._connection: list[tuple[float, str]] = []
        # Lines dropped because the buffer was full; reported by the next write.
        self.dropped_access = 0
        self.dropped_connection = 0
        # Guards the buffers and counters only: held for an append or a swap, never during I/O.
        self._lock = threading.Lock()
        # Serializes writers (the writer thread; a flush without one): files, fds, reopening.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid = 0
        # Flush requests handed to the writer, and the last one it has completed.
        self._done = threading.Condition(threading.Lock())
        self._requested = 0
        self._completed = 0
        self._rounds = 0
        self._stalled_round = -1  # writer round a timed-out flush saw: do not wait on it twice
        self._clf_second = -1
        self._clf_time = ""
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)
        if access_file is not None:
            self._access_fd = open_access_file(access_file)

    def start(self) -> None:
        """Start the writer thread (daemon) if it is not running in this process; idempotent."""
        with self._done:
            if self._writer is not None and self._writer_pid == os.getpid():
                return
            if self._stream_fd >= 0:
                try:
                    self.stream.flush()  # whatever was printed, before the descriptor is used
                except (OSError, ValueError):
                    pass
            self._writer_pid = os.getpid()
            self._writer = threading.Thread(target=self._writer_loop, name="log-writer",
                                            daemon=True)
            self._writer.start()

    def request_reopen(self) -> None:
        """Ask the writer's next round to reopen the log files (async-signal-safe: sets a flag
        only; waking the writer would take a lock the interrupted code may hold)."""
        self.reopen_requested = True

    def _reopen(self) -> None:
        """Close and reopen --access-log by name (logrotate has renamed the old file)."""
        self.reopen_requested = False
        if self.access_file is not None:
            try:
                fd = open_access_file(self.access_file)
            except OSError as exc:
                log.warning("cannot reopen access log %r: %s; still writing to the old file",
                            self.access_file, exc.strerror)
            else:
                os.close(self._access_fd)
                self._access_fd = fd
        # The connection log is opened by name at every write, so it follows a rename by itself.
        if self.log_dir is not None:
            with self._lock:
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

    def access(self, peer: str, request_line: str, status: int, body_bytes: int,
               user: str = "") -> None:
        """Record one request in Common Log Format (never waits for output)."""
        if self.access_enabled:
            self.access_parts(clf_prefix(peer, user), clf_tail(request_line, status, body_bytes))

    def access_parts(self, prefix: str, tail: str) -> None:
        """Record one access line from its parts (clf_prefix, clf_tail); the time is added here.

        The engines keep both parts rendered (per client, per response plan), so a line costs
        a timestamp lookup and one append: deque.append is atomic, so no lock is taken.
        """
        if self._writer is None:
            self.start()
        queue = self._access
        pending = len(queue)
        if pending >= MAX_BUFFERED_LINES:
            self.dropped_access += 1
            return
        queue.append((prefix, self._clf_timestamp(time.time()), tail))
        if pending == WAKE_LINES or self.wake_per_line:
            self._wake.set()

    def event(self, message: str) -> None:
        """Record one line in the dated connection log, if --log-dir was given (never waits)."""
        if self.log_dir is None:
            return
        if self._writer is None:
            self.start()
        with self._lock:
            pending = len(self._connection)
            if pending >= MAX_BUFFERED_LINES:
                self.dropped_connection += 1
                return
            self._connection.append((time.time(), message))
        if pending == WAKE_LINES:
            self._wake.set()

    def flush(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> bool:
        """Have the writer write everything recorded so far; wait at most `timeout` seconds.

        True once written. False if the writer is stuck (the lines stay buffered for it); a
        later flush then returns at once while the writer is still stuck in the same write, so
        the engine's and the server's flushes at exit do not each wait out the timeout.
        """
        self.start()
        with self._done:
            if self._stalled_round == self._rounds and self._completed < self._requested:
                return False
            self._requested += 1
            target = self._requested
            self._wake.set()
            if self._done.wait_for(lambda: self._completed >= target, timeout):
                return True
            self._stalled_round = self._rounds
            return False

    def _writer_loop(self) -> None:
        """The writer thread: every FLUSH_INTERVAL, or when woken, write what is buffered."""
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()  # before reading the target: a later request wakes us again
            with self._done:
                target = self._requested
            try:
                self.write_pending()
            except Exception as exc:  # the writer must outlive any one bad write
                log.error("log writer error: %r", exc)
            with self._done:
                self._rounds += 1
                self._completed = max(self._completed, target)
                self._done.notify_all()

    def write_pending(self) -> None:
        """Write out everything buffered, on the calling thread (the writer thread's work)."""
        with self._write_lock:
            if self.reopen_requested:
                self._reopen()
            queue = self._access  # taken line by line: engines append without a lock
            access = [queue.popleft() for _ in range(len(queue))]
            with self._lock:  # swap the buffers; write outside the lock
                connection, self._connection = self._connection, []
                dropped_access, self.dropped_access = self.dropped_access, 0
                dropped_connection, self.dropped_connection = self.dropped_connection, 0
            if dropped_access:  # where the lines are missing: after the ones kept
                access.append(("", "", f"{self.name}: {dropped_access} access log lines "
                                       f"dropped (log output was blocked)\n"))
            if dropped_connection:
                connection.append((time.time(), f"{dropped_connection} connection log lines "
                                                 f"dropped (log output was blocked)"))
            if access:
                self._write_access("".join(itertools.chain.from_iterable(access)))
            if connection:
                self._write_connection(connection)

    def _write_access(self, text: str) -> None:
        if self.access_stdout:
            try:
                if self._stream_fd >= 0:
                    encoding = getattr(self.stream, "encoding", None) or "utf-8"
                    _write_all(self._stream_fd, text.encode(encoding, "replace"))
                else:
                    self.stream.write(text)
                    self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the server down
        if self._access_fd >= 0:
            try:
                _write_all(self._access_fd, text.encode("utf-8", "replace"))
            except OSError as exc:
                log.error("cannot write access log: %s", exc.strerror)

    def _write_connection(self, entries: list[tuple[float, str]]) -> None:
        assert self.log_dir is not None  # connection entries exist only with --log-dir
        write_connection_lines(self.log_dir, entries, self.name)


def write_connection_lines(log_dir: str, entries: list[tuple[float, str]],
                           name: str = "reactor_http") -> None:
    """Append (time, message) entries to the dated connection logs in `log_dir`, now.

    The log writer's work; also how the --workers supervisor (no writer thread: it forks)
    writes its few lines, one write(2) each, beside its workers' O_APPEND writes.
    """
    by_file: dict[str, list[str]] = {}
    for stamp, message in entries:
        t = time.localtime(stamp)
        millis = int((stamp % 1) * 1000)
        line = (f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d},{millis:03d} "
                f"{name} INFO {message}\n")
        by_file.setdefault(connection_log_name(stamp), []).append(line)
    for file_name, lines in by_file.items():
        try:
            with open(os.path.join(log_dir, file_name), "a", encoding="utf-8") as file:
                file.writelines(lines)
        except OSError as exc:
            log.error("cannot write connection log: %s", exc)


def _stdout_fd(stream: TextIO | None) -> int:
    """The descriptor behind `stream` if it is the process's stdout, else -1 (use write())."""
    stdout = sys.__stdout__
    if stdout is None or stream is not stdout:
        return -1
    try:
        return stdout.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return -1


def _is_terminal(stream) -> bool:
    """True if `stream` is a terminal (a closed or odd stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def open_access_file(path: str) -> int:
    """Open (or create) an access log for appending; raises OSError."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | FACTS.o_cloexec | FACTS.o_binary
    return os.open(path, flags, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """write(2) until all of `data` is out (a regular file takes it in one call; a pipe someone
    made non-blocking is waited for, on the writer thread)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            try:
                select.select([], [fd], [], FLUSH_INTERVAL)
            except (OSError, ValueError):  # Windows' select() takes sockets only
                time.sleep(FLUSH_INTERVAL)
