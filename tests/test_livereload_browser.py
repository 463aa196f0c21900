"""--live-reload in a real browser: headless Chromium reloads the page when it changes.

The page asks for a new /beacon/<random> URL each time it loads, and the server writes every
request to its access log, so the log says when the page (re)loaded, when its EventSource
connected, and when a changed stylesheet was fetched again without a reload. Skipped, saying
why, where Chromium is not installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.helpers.chromium import BROWSER, BROWSER_WAIT, NO_BROWSER, command
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES

PAGE = """<!DOCTYPE html>
<html><head><link rel="stylesheet" href="style.css"></head>
<body><p>version {version}</p>
<script>new Image().src = "/beacon/" + Math.random();</script>
</body></html>
"""


def access_lines(path) -> list[str]:
    """The request targets in the access log so far."""
    try:
        with open(path, encoding="utf-8") as file:
            return [line.split('"')[1].split()[1] for line in file if '"' in line]
    except FileNotFoundError:
        return []


def count(path, prefix: str) -> int:
    """How many logged requests have a target starting with `prefix`."""
    return sum(target.startswith(prefix) for target in access_lines(path))


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
@pytest.mark.parametrize("mode", MODES)
def test_chromium_reloads_the_page_and_swaps_a_stylesheet(mode, make_server, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").write_text(PAGE.format(version=1))
    (root / "style.css").write_text("p { color: black }\n")
    log = tmp_path / "access.log"
    server = make_server(root, mode, "--quiet", "--live-reload", "--access-log", str(log))
    browser = subprocess.Popen(
        command(tmp_path / "profile", f"http://127.0.0.1:{server.port}/"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: count(log, "/beacon/") == 1 and
                        count(log, "/__livereload") == 1, BROWSER_WAIT), access_lines(log)
        # A stylesheet is swapped in place: fetched again, no reload.
        (root / "style.css").write_text("p { color: red }\n")
        assert wait_until(lambda: count(log, "/style.css?livereload=") == 1, BROWSER_WAIT), \
            access_lines(log)
        # (A reload would have fetched /style.css plain; the swap's URL proves the swap.)
        # Any other change reloads the page, which connects its stream again.
        (root / "index.html").write_text(PAGE.format(version=2))
        assert wait_until(lambda: count(log, "/beacon/") == 2 and
                        count(log, "/__livereload") == 2, BROWSER_WAIT), access_lines(log)
        # One reload in all: the stylesheet's change caused none.
        assert count(log, "/beacon/") == 2 and count(log, "/style.css?") == 1, access_lines(log)
    finally:
        os.killpg(browser.pid, signal.SIGKILL)  # Chromium's own process group, started above
        browser.wait(timeout=30)
