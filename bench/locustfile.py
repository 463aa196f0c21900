"""A realistic visitor for locust (FastHttpUser), runnable against any server.

    python -m reactor_http --root site &
    locust -f bench/locustfile.py --headless -u 100 -r 50 -t 15s --host http://127.0.0.1:8000

The visitor loads `/` and then every asset the page loads with it (`src` of
any element, `href` of `<link>`: what a browser fetches, not the `<a>` links
a reader may follow), revisits with If-None-Match / If-Modified-Since (expects
304 and no body), seeks with Range (expects 206 with exactly the requested
bytes), and now and then asks for a missing page (expects 404). Every
response's status and body length is checked, so a wrong answer counts as a
failure, not a success.

It seeks in BENCH_LARGE_PATH when that is set (the bench's generated site has
a large file for it), else in the largest asset the page loaded (test.png in
site/), so any site works without preparing a file for it.

Environment (all optional; `python -m bench` sets them):
  BENCH_MANIFEST    JSON file {url path: size}; 200 bodies must match it
  BENCH_LARGE_PATH  the URL path to seek in (default: the largest asset seen)
  BENCH_WAIT_MAX_S  think time per task, uniform in [0, this] (default 0.05)
"""

import html.parser
import json
import os
import random
import urllib.parse

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

LARGE_PATH = os.environ.get("BENCH_LARGE_PATH") or None

#: Bytes asked for by one Range seek: a media player's typical read.
RANGE_LENGTH = 64 * 1024

#: Upper bound of the think time between tasks (seconds). Short, so a few
#: hundred users load the server, yet not zero: visitors are not a loop.
WAIT_MAX_S = float(os.environ.get("BENCH_WAIT_MAX_S", "0.05"))

#: Chunk size used to drain (and discard) an unexpectedly whole large body.
DRAIN_CHUNK = 1024 * 1024

#: Assets smaller than this (bytes) are not worth a Range seek.
MIN_SEEK_SIZE = 2


def _load_manifest():
    path = os.environ.get("BENCH_MANIFEST")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


MANIFEST = _load_manifest()


class _AssetFinder(html.parser.HTMLParser):
    """Collects the URLs a browser loads with a page: `src` of any element, `href` of <link>."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name == "src" or (name == "href" and tag == "link")):
                self.urls.append(value)


def page_assets(page: bytes, page_path: str = "/") -> list:
    """Same-site asset paths a page loads, in order, resolved against `page_path`, without
    the large file; links to other sites, queries and fragments are left out."""
    finder = _AssetFinder()
    finder.feed(page.decode("utf-8", "replace"))
    seen = []
    for url in finder.urls:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(page_path, url))
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue
        path = parts.path
        if path != LARGE_PATH and path not in seen:
            seen.append(path)
    return seen


def seek_target(sizes: dict):
    """(URL path, size) to seek in: BENCH_LARGE_PATH if set, else the largest asset in
    `sizes` ({path: bytes}, the assets seen); None when there is nothing to seek in yet."""
    if LARGE_PATH:
        return LARGE_PATH, MANIFEST.get(LARGE_PATH, RANGE_LENGTH)
    candidates = [(size, path) for path, size in sizes.items() if size >= MIN_SEEK_SIZE]
    if not candidates:
        return None
    size, path = max(candidates)
    return path, size


def seek_range(size: int, rng=random) -> tuple:
    """(first, last) byte positions of one seek in a file of `size` bytes: RANGE_LENGTH bytes,
    or half the file when it is smaller than twice that, so the answer is a true part."""
    length = min(RANGE_LENGTH, max(1, size // 2))
    start = rng.randrange(0, max(1, size - length + 1))
    return start, min(size, start + length) - 1


def check_full_body(resp, path):
    """None when resp is a 200 carrying the whole file, else a failure message."""
    if resp.status_code != 200:
        return f"{path}: status {resp.status_code}, expected 200"
    body = resp.content or b""
    declared = resp.headers.get("Content-Length")
    if declared is not None and int(declared) != len(body):
        return f"{path}: Content-Length {declared} but {len(body)} bytes"
    expected = MANIFEST.get(path)
    if expected is not None and expected != len(body):
        return f"{path}: {len(body)} bytes, expected {expected}"
    return None


class Visitor(FastHttpUser):
    wait_time = between(0, WAIT_MAX_S)

    def on_start(self):
        self.validators = {}   # path -> (ETag or None, Last-Modified or None)
        self.sizes = {}        # asset path -> its length in bytes, as served
        self.revisits = 0

    def _get_full(self, path, name=None):
        with self.client.get(path, name=name, catch_response=True) as resp:
            problem = check_full_body(resp, path)
            if problem:
                resp.failure(problem)
                return None
            self.validators[path] = (resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            if name is not None:  # an asset, not the page
                self.sizes[path] = len(resp.content or b"")
            resp.success()
            return resp.content

    @task(5)
    def first_visit(self):
        """Load the page, then each asset it references."""
        html = self._get_full("/")
        if html is None:
            return
        for path in page_assets(html):
            self._get_full(path, name="/assets/[asset]")

    @task(3)
    def revisit(self):
        """Conditional GETs for everything seen before: each must be a 304 without body."""
        if not self.validators:
            return self.first_visit()
        self.revisits += 1
        use_etag = self.revisits % 2 == 0
        for path, (etag, last_modified) in list(self.validators.items()):
            if use_etag and etag:
                headers, kind = {"If-None-Match": etag}, "If-None-Match"
            elif last_modified:
                headers, kind = {"If-Modified-Since": last_modified}, "If-Modified-Since"
            elif etag:
                headers, kind = {"If-None-Match": etag}, "If-None-Match"
            else:
                continue  # the server gave no validator; the 200 was already checked
            with self.client.get(path, headers=headers, name=f"revisit ({kind})",
                                 catch_response=True) as resp:
                if resp.status_code != 304:
                    resp.failure(f"{path} with {kind}: status {resp.status_code}, expected 304")
                elif resp.content:
                    resp.failure(f"{path}: 304 with a {len(resp.content)}-byte body")
                else:
                    resp.success()

    @task(1)
    def seek_large_file(self):
        """Range request somewhere in the large file (or the largest asset): a 206 with
        exactly those bytes."""
        target = seek_target(self.sizes)
        if target is None:
            return self.first_visit()  # nothing seen yet to seek in
        path, size = target
        start, end = seek_range(size)
        headers = {"Range": f"bytes={start}-{end}"}
        name = f"{LARGE_PATH} (Range)" if LARGE_PATH else "largest asset (Range)"
        # stream=True: a server that ignores Range sends the whole file; drain
        # it in chunks instead of holding it in memory.
        with self.client.get(path, headers=headers, name=name,
                             stream=True, catch_response=True) as resp:
            if resp.status_code != 206:
                for _ in resp.iter_content(DRAIN_CHUNK, decode_content=False):
                    pass
                resp.failure(f"Range: status {resp.status_code}, expected 206")
                return
            body = resp.content or b""
            want = end - start + 1
            content_range = resp.headers.get("Content-Range", "")
            if len(body) != want:
                resp.failure(f"Range: {len(body)} bytes, expected {want}")
            elif not content_range.startswith(f"bytes {start}-{end}/"):
                resp.failure(f"Range: wrong Content-Range {content_range!r}")
            else:
                resp.success()

    @task(1)
    def missing_page(self):
        """A page that does not exist: a 404, which is the right answer here."""
        path = f"/missing-{random.randrange(1_000_000)}.html"
        with self.client.get(path, name="/missing-[n].html", catch_response=True) as resp:
            if resp.status_code == 404:
                resp.success()
            else:
                resp.failure(f"missing page: status {resp.status_code}, expected 404")
