"""The test harness itself: the start-up line reader (tests.helpers.servers.read_banner) must
not hang the suite.

A server that never prints its start-up line fails its own test within the deadline (and is
killed); the reader takes the line and nothing after it, so the access lines that follow still
reach the test through communicate().
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.servers import read_banner


def child(code: str) -> subprocess.Popen:
    """A Python child running `code`, its stdout and stderr piped to us."""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_process_that_never_prints_a_full_line_fails_within_the_deadline_and_is_killed():
    proc = child("import sys, time; sys.stdout.write('half a line'); sys.stdout.flush(); "
                 "sys.stderr.write('still starting'); sys.stderr.flush(); time.sleep(120)")
    try:
        with pytest.raises(pytest.fail.Exception, match="no start-up line within 0.5 s") as info:
            read_banner(proc, timeout=0.5)
        assert "half a line" in str(info.value) and "still starting" in str(info.value)
        assert proc.poll() is not None, "the hung process was left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_line_is_read_and_nothing_after_it():
    proc = child("print('serving at http://127.0.0.1:1/'); print('next line'); print('last')")
    assert read_banner(proc) == b"serving at http://127.0.0.1:1/\n"
    out, _ = proc.communicate(timeout=30)
    assert out == b"next line\nlast\n"


def test_a_process_that_exits_first_gives_an_empty_line():
    proc = child("import sys; sys.exit(2)")
    assert read_banner(proc) == b""
    assert proc.wait(timeout=30) == 2
