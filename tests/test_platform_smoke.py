"""The server started, used and stopped the way each platform does it, without the POSIX-only
harness of tests/helpers/servers.py: so it runs on Windows runners too (.github/workflows).
Ctrl+C is SIGINT on POSIX; on Windows the server is stopped with Ctrl+Break (CTRL_BREAK_EVENT to
its own process group), which it takes as a graceful stop."""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reactor_http.facilities import FACTS

REPO = Path(__file__).resolve().parent.parent
WINDOWS = FACTS.name == "windows" and not FACTS.simulated
# Seconds to wait for the start-up line or the exit: generous for a loaded CI runner.
WAIT = 60


def start(mode: str) -> tuple[subprocess.Popen, queue.Queue]:
    """The server on an ephemeral port, and a queue of its stderr lines (read by a thread, as
    Windows cannot select() on a pipe)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    flags = subprocess.CREATE_NEW_PROCESS_GROUP if WINDOWS else 0  # type: ignore[attr-defined]
    proc = subprocess.Popen([sys.executable, "-m", "reactor_http", "--root", str(REPO / "site"),
                             "--port", "0", "--mode", mode, "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            creationflags=flags)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line.decode(errors="replace"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def stop(proc: subprocess.Popen) -> int:
    """Ctrl+Break on Windows, Ctrl+C (SIGINT) elsewhere; the exit status."""
    proc.send_signal(signal.CTRL_BREAK_EVENT if WINDOWS else signal.SIGINT)  # type: ignore
    try:
        return proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.parametrize("mode", ["reactor", "threaded"])
def test_the_server_starts_serves_a_file_and_stops_gracefully(mode):
    proc, lines = start(mode)
    try:
        banner = lines.get(timeout=WAIT)
        assert banner and "Serving" in banner, banner
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", banner).group(1))
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        for path in ("/abc.txt", "/", "/test.png"):
            client.request("GET", path)
            response = client.getresponse()
            body = response.read()
            assert response.status == 200, path
            if path == "/abc.txt":
                assert body == (REPO / "site" / "abc.txt").read_bytes()  # not a CRLF copy
        client.close()
    finally:
        status = stop(proc)
    rest = []
    while (line := lines.get(timeout=WAIT)) is not None:
        rest.append(line)
    assert status == 0, rest
    assert not any("Traceback" in line for line in rest), rest
