"""The test harness itself: the start-up line reader (tests.helpers.servers.read_banner) must
not hang the suite.

A server that never prints its start-up line fails its own test within the deadline (and is
killed); the reader takes stderr up to that line and nothing after it, so the messages that
follow still reach the test through communicate(), and the warnings before it are returned.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.servers import banner_line, read_banner


def child(code: str) -> subprocess.Popen:
    """A Python child running `code`, its stdout and stderr piped to us."""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_process_that_never_prints_a_full_line_fails_within_the_deadline_and_is_killed():
    proc = child("import sys, time; sys.stderr.write('half a line'); sys.stderr.flush(); "
                 "sys.stdout.write('still starting'); sys.stdout.flush(); time.sleep(120)")
    try:
        with pytest.raises(pytest.fail.Exception, match="no start-up line within 0.5 s") as info:
            read_banner(proc, timeout=0.5)
        assert "half a line" in str(info.value) and "still starting" in str(info.value)
        assert proc.poll() is not None, "the hung process was left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_line_is_read_with_the_warnings_before_it_and_nothing_after_it():
    proc = child("import sys; print('a warning', file=sys.stderr); "
                 "print('serving at http://127.0.0.1:1/', file=sys.stderr); "
                 "print('next line', file=sys.stderr); print('last', file=sys.stderr); "
                 "print('access')")
    startup = read_banner(proc)
    assert startup == b"a warning\nserving at http://127.0.0.1:1/\n"
    assert banner_line(startup) == "serving at http://127.0.0.1:1/\n"
    out, err = proc.communicate(timeout=30)
    assert err == b"next line\nlast\n" and out == b"access\n"


def test_a_process_that_exits_first_gives_what_it_wrote():
    proc = child("import sys; sys.exit(2)")
    assert read_banner(proc) == b""
    assert proc.wait(timeout=30) == 2
    proc = child("import sys; sys.exit('error: no such folder')")
    assert read_banner(proc) == b"error: no such folder\n"
    assert proc.wait(timeout=30) == 1
