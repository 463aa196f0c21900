"""The locust visitor (bench/locustfile.py): which assets it loads and where it seeks, so the
documented run against site/ asks only for what exists. Skipped without locust installed.

Importing locust monkey-patches the whole interpreter (gevent), so every check runs in a child
process that imports the locustfile, never in the test process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.helpers.servers import REPO, SITE, server_env

pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="locust is not installed")


def visitor(expression: str, **env: str):
    """The JSON value of `expression`, evaluated in a child that imported the locustfile as
    `lf` with the environment `env` (BENCH_LARGE_PATH, BENCH_MANIFEST...)."""
    code = ("import json, random, sys\nfrom bench import locustfile as lf\n"
            f"print(json.dumps({expression}))")
    base = server_env(**env)
    if "BENCH_LARGE_PATH" not in env:
        base.pop("BENCH_LARGE_PATH", None)  # unset: the visitor picks its own seek target
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO, env=base)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_site_page_assets_are_what_a_browser_loads():
    # The <a> links (abc.txt, sub/, the deliberate 404 /123) are not loaded with the page.
    page = str(SITE / "index.html")
    assert visitor(f"lf.page_assets(open({page!r}, 'rb').read())") == ["/style.css",
                                                                       "/test.png"]


def test_page_assets_resolve_relative_links_and_skip_other_sites():
    page = (b'<link rel="stylesheet" href="/s.css"><script src="app.js?v=2#x"></script>'
            b'<img src="//cdn.example/a.png"><img src="https://cdn.example/b.png">'
            b'<img src="../img/c.png"><img src="/s.css"><a href="/large.bin">big</a>'
            b'<video src="/large.bin"></video>')
    assert visitor(f"lf.page_assets({page!r}, '/docs/page.html')",
                   BENCH_LARGE_PATH="/large.bin") == ["/s.css", "/docs/app.js", "/img/c.png"]


def test_seek_target_is_the_large_file_when_named(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"/large.bin": 10_000_000}))
    assert visitor("lf.seek_target({'/a.png': 500})", BENCH_LARGE_PATH="/large.bin",
                   BENCH_MANIFEST=str(manifest)) == ["/large.bin", 10_000_000]


def test_seek_target_is_the_largest_asset_seen_otherwise():
    assert visitor("[lf.seek_target({}), lf.seek_target({'/empty.css': 0}), "
                   "lf.seek_target({'/s.css': 389, '/test.png': 12777})]") == [
        None, None, ["/test.png", 12777]]


def test_seek_range_is_a_true_part_inside_the_file():
    sizes = [2, 3, 389, 12_777, 131_072, 10_000_000]
    found = visitor(f"[[lf.RANGE_LENGTH, s, lf.seek_range(s, random.Random(n))] "
                    f"for s in {sizes} for n in range(100)]")
    for length, size, (first, last) in found:
        assert 0 <= first <= last < size
        assert last - first + 1 == min(length, size // 2)
