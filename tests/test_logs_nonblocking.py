"""Logging never blocks the engines: a stuck stdout costs log lines, never service.

A full pipe (a paused terminal, `| less`, journald backpressure) must not stop any connection: a
background writer owned by LogSink does the I/O; the engines only append to a bounded buffer, and
lines that do not fit while the writer is stuck are dropped and counted in a note written once
output resumes.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.helpers.http import read_response
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, SITE, ServerProcess
from reactor_http.logs import FLUSH_INTERVAL, MAX_BUFFERED_LINES, LogSink

# Generous bound for "answered at all" (seconds): not a performance assertion.
ANSWER_TIMEOUT = 20.0
# Bound for a helper thread that must not block (seconds); it normally takes milliseconds.
THREAD_TIMEOUT = 30.0
DROPPED = re.compile(r"reactor_http: (\d+) access log lines dropped")
CLF_REQUEST = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET ')


class BlockingStream:
    """A stream whose write() blocks until `release` is set, like a pipe nobody reads."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.chunks: list[str] = []

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(THREAD_TIMEOUT)  # bounded so a failing test cannot hang the suite
        self.chunks.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(THREAD_TIMEOUT)
    return thread


@pytest.mark.slow
def test_append_never_waits_for_a_blocked_stream_and_drops_are_counted():
    stream = BlockingStream()
    sink = LogSink(stream=stream)
    sink.start()
    sink.access("10.0.0.1", "GET /first HTTP/1.1", 200, 5)
    assert stream.entered.wait(THREAD_TIMEOUT)  # within FLUSH_INTERVAL the writer is stuck
    extra = 500

    def flood():
        for index in range(MAX_BUFFERED_LINES + extra):
            sink.access("10.0.0.1", f"GET /{index} HTTP/1.1", 200, 5)

    assert not _in_thread(flood).is_alive(), "access() blocked on a stuck stream"
    assert sink.dropped_access == extra
    stream.release.set()
    assert sink.flush(timeout=THREAD_TIMEOUT)
    lines = stream.text.splitlines()
    assert lines[0].endswith('"GET /first HTTP/1.1" 200 5')
    assert [line for line in lines if DROPPED.search(line)] == [
        f"reactor_http: {extra} access log lines dropped (log output was blocked)"]
    requests = [line for line in lines if "GET /" in line]
    assert len(requests) == 1 + MAX_BUFFERED_LINES
    # The note marks where the gap is: after the last line kept, before later ones.
    sink.access("10.0.0.1", "GET /after HTTP/1.1", 200, 5)
    assert sink.flush(timeout=THREAD_TIMEOUT)
    after = stream.text.splitlines()
    assert DROPPED.search(after[-2]) and "GET /after" in after[-1]
    assert sink.dropped_access == 0


def test_flush_at_exit_gives_up_on_a_stuck_stream():
    stream = BlockingStream()
    sink = LogSink(stream=stream)
    sink.access("10.0.0.1", "GET / HTTP/1.1", 200, 5)  # starts the writer lazily
    results = []
    assert not _in_thread(lambda: results.append(sink.flush(timeout=0.2))).is_alive()
    assert results == [False]
    # A second flush (the engine's, then the server's) does not wait again for the same stall.
    assert not _in_thread(lambda: results.append(sink.flush())).is_alive()
    assert results == [False, False]
    stream.release.set()
    # Once the stuck write returns, flushing works again (the first try may still see the stall).
    wait_until(lambda: sink.flush(timeout=1.0), THREAD_TIMEOUT, interval=0.05)
    assert sink.flush(timeout=THREAD_TIMEOUT)
    assert "GET / HTTP/1.1" in stream.text


@pytest.mark.slow
def test_event_lines_do_not_wait_for_a_stuck_stream(tmp_path):
    stream = BlockingStream()
    sink = LogSink(stream=stream, log_dir=str(tmp_path))
    sink.access("10.0.0.1", "GET / HTTP/1.1", 200, 5)
    assert stream.entered.wait(THREAD_TIMEOUT)

    def events():
        for index in range(MAX_BUFFERED_LINES + 3):
            sink.event(f"event {index}")

    assert not _in_thread(events).is_alive()
    stream.release.set()
    assert sink.flush(timeout=THREAD_TIMEOUT)
    text = "".join(p.read_text() for p in tmp_path.iterdir())
    assert "event 0\n" in text
    assert "3 connection log lines dropped (log output was blocked)" in text


def _exchange(sock, paths: list[str]) -> None:
    """Send requests for `paths` pipelined on a keep-alive connection; read every answer."""
    sock.sendall(b"".join(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for path in paths))
    buffer = bytearray()
    for _ in paths:
        assert read_response(sock, buffer).status in (200, 404)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_server_keeps_serving_while_stdout_is_a_full_pipe(mode):
    # Nothing reads the server's stdout (the access log) until it is stopped.
    server = ServerProcess(SITE, mode, "--max-requests", "1000000")
    sent = 0
    try:
        # Fill the pipe (64 KiB) and the reader's buffer with long access lines (~3 KB each).
        with server.connect(timeout=ANSWER_TIMEOUT) as sock:
            long_paths = [f"/{index}-" + "x" * 3000 for index in range(60)]
            _exchange(sock, long_paths)
            sent += len(long_paths)
        time.sleep(2 * FLUSH_INTERVAL + 0.5)  # the logs have been due for writing meanwhile
        with server.connect(timeout=ANSWER_TIMEOUT) as sock:  # the old code never answered
            _exchange(sock, ["/abc.txt"])
            sent += 1
        # More lines than the buffer holds while the writer is stuck: the rest are dropped.
        with server.connect(timeout=ANSWER_TIMEOUT) as sock:
            for start in range(0, MAX_BUFFERED_LINES + 2000, 500):
                _exchange(sock, [f"/abc.txt?{start + i}" for i in range(500)])
                sent += 500
        with server.connect(timeout=ANSWER_TIMEOUT) as sock:
            _exchange(sock, ["/abc.txt?last"])
            sent += 1
    finally:
        status, out, err = server.stop(timeout=60)  # reads the pipe: the writer resumes
    assert status == 0, err
    lines = out.splitlines()
    requests = [line for line in lines if CLF_REQUEST.match(line)]
    dropped = sum(int(match[1]) for match in map(DROPPED.search, lines) if match)
    assert len(requests) + dropped == sent, (len(requests), dropped, sent)
    assert dropped > 0
    assert all(CLF_REQUEST.match(line) or DROPPED.search(line) for line in lines), \
        [line[:100] for line in lines if not CLF_REQUEST.match(line)][:5]
