"""Real server processes: `python -m reactor_http ... --port 0` (the command a user runs) on
127.0.0.1, the port read from the start-up line (stderr, with every process message) within
BANNER_TIMEOUT."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "site"
MODES = ("reactor", "threaded")
BANNER = re.compile(rb"at https?://(\[[^\]]+\]|[^:/]+):(\d+)/")
#: Seconds a server may take to print its start-up line: generous for a loaded 2-core machine
#: (start-up normally takes well under a second), bounded so a hung server fails its own test
#: instead of hanging the suite.
BANNER_TIMEOUT = 30.0


def server_env(**extra: str) -> dict:
    """The environment for a `python -m reactor_http` child: this checkout first on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def read_banner(proc: subprocess.Popen, timeout: float = BANNER_TIMEOUT) -> bytes:
    """What `proc` writes to stderr up to and including its start-up line (the first line
    BANNER finds), read with a deadline; everything it wrote if it exits first (b"" if nothing).

    Every process message goes to stderr, so start-up warnings come before the start-up line:
    they are in the result, whose last line is the start-up line. Reads one byte at a time, so
    nothing after that line is taken from the pipe (a later communicate() gets the rest). If no
    start-up line comes in `timeout` seconds, the process is killed and the calling test fails
    with what it wrote.
    """
    fd = proc.stderr.fileno()
    text = bytearray()
    line = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                proc.kill()
                out, err = proc.communicate(timeout=10)
                pytest.fail(f"no start-up line within {timeout} s: got {bytes(text)!r} on "
                            f"stderr; then {err[-2000:]!r}; stdout {out[-2000:]!r}")
            byte = os.read(fd, 1)
            if not byte:
                break
            text += byte
            line += byte
            if byte == b"\n":
                if BANNER.search(line):
                    break
                line.clear()
    return bytes(text)


def banner_line(startup: bytes) -> str:
    """The start-up line of read_banner's result (its last line), decoded."""
    return startup.decode().splitlines(keepends=True)[-1] if startup else ""


def run_cli(*args: str, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m reactor_http ARGS` to completion (for commands that exit by themselves)."""
    return subprocess.run([sys.executable, "-m", "reactor_http", *args], capture_output=True,
                          text=True, timeout=timeout, env=server_env(), cwd=REPO, **kwargs)


class ServerProcess:
    """A running server subprocess: its port, its process, and helpers to talk to it."""

    def __init__(self, root: Path, mode: str, *args: str, env=None, cwd=None, popen_kwargs=None):
        """Start the server; `popen_kwargs` go to Popen (e.g. user= or preexec_fn=)."""
        self.root = Path(root)
        self.mode = mode
        command = [sys.executable, "-m", "reactor_http", "--root", str(root), "--port", "0",
                   "--mode", mode, *args]
        self.start(command, env=server_env(**(env or {})), cwd=cwd or REPO,
                   **(popen_kwargs or {}))

    def start(self, command: list, *, must_start: bool = True, **popen_kwargs) -> None:
        """Run `command` and read its start-up line: `banner` (that line), `port` (0 if it
        printed none and `must_start` is false) and `startup` (all of stderr up to the line)."""
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     **popen_kwargs)
        self.startup = read_banner(self.proc)
        match = BANNER.search(self.startup)
        if not match and must_start:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
            raise RuntimeError(f"server did not start: {self.startup!r} {out!r} {err!r}")
        self.banner = banner_line(self.startup)
        self.host = "127.0.0.1"
        self.port = int(match.group(2)) if match else 0
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0):
        """Stop the server; return (exit status, stdout, stderr): all of stderr, the start-up
        output read_banner took included."""
        if self._stopped:
            return self._result
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        self._result = (self.proc.returncode, out.decode(errors="replace"),
                        (self.startup + err).decode(errors="replace"))
        return self._result

    def open_fds(self) -> int:
        if not os.path.isdir("/proc/self/fd"):
            pytest.skip("counts descriptors in /proc, which only Linux has")
        return len(os.listdir(f"/proc/{self.pid}/fd"))
