"""On-the-fly compression: negotiation, coded validators, conditionals, ranges, the cache.

Pure checks first (the negotiation table, which types qualify, the compressed-body cache with a
temporary folder), then real servers on 127.0.0.1 in both engines. Every compressed body is
decompressed and compared with the file.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import pytest

from tests.helpers.http import get, parse_multipart, read_response
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, ServerProcess, run_cli
from reactor_http import content_coding as compression
from reactor_http.content_coding import Compressor, coded_etag, compressible_type, negotiate
from reactor_http.config import Config
from reactor_http.headers import quality_values
from reactor_http.parser import Limits, parse_head
from reactor_http.responder import respond
from reactor_http.website import SMALL_FILE_MAX, Site, file_identity as _identity

KIB = 1024
# A JavaScript text that gzip shrinks to about a third, like real scripts.
JS_LINE = b"export function add%d(a, b) { return a + b * %d; } // helper number %d\n"


def script(size: int, seed: int = 0) -> bytes:
    """`size` bytes of plausible JavaScript (compressible, not trivially so)."""
    out = bytearray()
    i = seed
    while len(out) < size:
        out += JS_LINE % (i, i * 7 % 1000, i)
        i += 1
    return bytes(out[:size])


# ---- pure: negotiation ----------------------------------------------------------------------

OFFERS_GZIP = [("gzip",)]


@pytest.mark.parametrize("field, chosen", [
    (None, None),                          # no Accept-Encoding: identity (as nginx and Caddy)
    ("", None),                            # empty: no coding wanted (RFC 9110 12.5.3)
    ("gzip", "gzip"),
    ("GZip", "gzip"),                      # codings are case-insensitive
    ("x-gzip", "gzip"),                    # section 8.4.1.3
    ("gzip;q=0", None),
    ("gzip;q=0.001", "gzip"),
    ("br", None),                          # nothing we make
    ("*", "gzip"),
    ("*;q=0", None),
    ("*, gzip;q=0", None),                 # the explicit entry beats the wildcard
    ("br, *;q=0.2", "gzip"),
    ("identity;q=0", None),                # identity excluded, no coding accepted: identity
    ("identity;q=0, gzip;q=0", None),
    ("identity, gzip;q=0.5", None),        # the client prefers identity
    ("identity;q=0.5, gzip", "gzip"),
    ("identity, gzip", "gzip"),            # a tie goes to the coding
    ("deflate, gzip;q=1.0, *;q=0.5", "gzip"),
    ("gzip;q=2", None),                    # an invalid q is 0
])
def test_negotiation_table(field, chosen):
    offer = negotiate(quality_values(field), OFFERS_GZIP)
    assert (offer[0] if offer else None) == chosen


def test_highest_q_wins_and_ties_go_to_the_earlier_offer():
    offers = [("br", "prepared"), ("gzip", "prepared"), ("zstd", None)]
    assert negotiate(quality_values("br;q=0.5, gzip, zstd"), offers) == ("gzip", "prepared")
    assert negotiate(quality_values("zstd, gzip, br"), offers) == ("br", "prepared")
    assert negotiate(quality_values("zstd, gzip;q=0.9, br;q=0.9"), offers) == ("zstd", None)


@pytest.mark.parametrize("ctype, expected", [
    ("text/javascript; charset=utf-8", True), ("text/css; charset=utf-8", True),
    ("text/html; charset=utf-8", True), ("text/plain", True), ("TEXT/CSV", True),
    ("application/json; charset=utf-8", True), ("application/manifest+json", True),
    ("application/xml", True), ("application/vnd.api+json", True), ("image/svg+xml", True),
    ("application/wasm", True), ("font/ttf", True), ("font/otf", True),
    ("image/vnd.microsoft.icon", True),
    ("image/png", False), ("image/jpeg", False), ("image/webp", False), ("font/woff2", False),
    ("font/woff", False), ("application/gzip", False), ("application/zip", False),
    ("application/pdf", False), ("video/mp4", False), ("application/octet-stream", False),
])
def test_compressible_types(ctype, expected):
    assert compressible_type(ctype) is expected


def test_coded_etag_is_strong_and_distinct():
    etag = '"1a-2b-3c"'
    assert coded_etag(etag, "gzip") == '"1a-2b-3c-gzip"'
    assert coded_etag(etag, "gzip") != coded_etag(etag, "zstd") != etag


@pytest.mark.skipif("zstd" not in compression.CODINGS, reason="needs compression.zstd (3.14+)")
def test_zstd_round_trip():
    from compression import zstd
    data = script(20 * KIB)
    assert zstd.decompress(compression.compress(data, "zstd")) == data


# ---- pure: the compressed-body cache ---------------------------------------------------------

def compressor_for(cache_bytes: int, max_bytes: int = 1 << 20) -> Compressor:
    """A Compressor with a chosen budget (bytes)."""
    return Compressor(max_bytes, cache_bytes, _identity)


def test_cache_evicts_least_recently_used_first(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"f{i}.js"
        path.write_bytes(script(12 * KIB, seed=i * 1000))
        paths.append(str(path))
    bodies = [compression.compress(open(p, "rb").read(), "gzip") for p in paths]
    # Room for two bodies, not three.
    budget = bodies[0].__len__() + bodies[1].__len__() + 2 * compression.ENTRY_OVERHEAD + 64
    assert len(bodies[2]) + compression.ENTRY_OVERHEAD > 64
    comp = compressor_for(budget)

    def look(i):
        return comp.lookup(paths[i], os.stat(paths[i]), "gzip")

    assert look(0) == (bodies[0], True) and look(1) == (bodies[1], True)
    assert comp.misses == 2
    assert look(0)[0] == bodies[0] and comp.hits == 1   # f0 is now the most recent
    assert look(2)[0] == bodies[2] and comp.misses == 3  # f1, the least recent, goes
    assert look(0)[0] == bodies[0] and comp.hits == 2
    assert look(1)[0] == bodies[1] and comp.misses == 4
    assert comp.snapshot()["cached_bytes"] <= budget


def test_changed_file_is_never_answered_from_the_cache(tmp_path):
    path = tmp_path / "a.js"
    path.write_bytes(script(8 * KIB))
    comp = compressor_for(1 << 20)
    old_st = os.stat(path)
    assert gzip.decompress(comp.lookup(str(path), old_st, "gzip")[0]) == script(8 * KIB)
    # Same size, same mtime: only the ctime (and the bytes) differ.
    path.write_bytes(script(8 * KIB, seed=5))
    os.utime(path, ns=(old_st.st_atime_ns, old_st.st_mtime_ns))
    body, settled = comp.lookup(str(path), os.stat(path), "gzip")
    assert settled and gzip.decompress(body) == script(8 * KIB, seed=5)
    # A stat taken before a change names bytes that are gone: nothing is made or kept.
    other = tmp_path / "b.js"
    other.write_bytes(script(8 * KIB, seed=9))
    stale_st = os.stat(other)
    other.write_bytes(script(8 * KIB, seed=10))
    assert comp.lookup(str(other), stale_st, "gzip") == (None, False)
    assert comp.snapshot()["cached_entries"] == 2


def test_incompressible_text_is_served_as_it_is(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_bytes(os.urandom(4 * KIB))
    comp = compressor_for(1 << 20)
    assert comp.lookup(str(path), os.stat(path), "gzip") == (None, True)
    assert comp.lookup(str(path), os.stat(path), "gzip") == (None, True)
    assert comp.misses == 1  # the verdict is remembered: no second attempt


def test_large_file_is_compressed_in_the_background(tmp_path):
    path = tmp_path / "big.js"
    data = script(compression.INLINE_MAX * 4)
    path.write_bytes(data)
    comp = compressor_for(1 << 20)
    st = os.stat(path)
    assert comp.lookup(str(path), st, "gzip") == (None, False)
    assert comp.wait_idle(30)
    body, settled = comp.lookup(str(path), st, "gzip")
    assert settled and gzip.decompress(body) == data
    assert comp.snapshot()["background_total"] == 1


def test_a_transformed_body_is_made_by_the_worker_and_kept_apart_from_the_file_s(tmp_path):
    # --live-reload's injected page: the worker transforms the file's bytes, then compresses;
    # even a small file's transform is made off the loop, and its body never answers for the
    # file's own coding (nor the reverse).
    path = tmp_path / "page.html"
    data = script(2048)
    path.write_bytes(data)
    comp = compressor_for(1 << 20)
    st = os.stat(path)

    def tagged(raw: bytes) -> bytes:
        return raw + b"<!-- tagged -->" * 100

    assert comp.lookup(str(path), st, "gzip", tagged) == (None, False)
    assert comp.wait_idle(30)
    body, settled = comp.lookup(str(path), st, "gzip", tagged)
    assert settled and gzip.decompress(body) == tagged(data)
    body, settled = comp.lookup(str(path), st, "gzip")  # small: made during the request
    assert settled and gzip.decompress(body) == data


def test_a_failed_background_job_is_logged_once_per_file_version_and_counted(
        tmp_path, monkeypatch, caplog):
    # The worker never dies of a job's failure: that file version is served as it is from then
    # on (not compressed again per request), --status counts the failure, and the error log
    # gets one line per file version and coding.
    def failing(data, coding):
        raise MemoryError("no room to compress")

    monkeypatch.setattr(compression, "compress", failing)
    path = tmp_path / "big.js"
    path.write_bytes(script(compression.INLINE_MAX * 4))
    comp = compressor_for(1 << 20)
    for version in (1, 2):
        st = os.stat(path)
        assert comp.lookup(str(path), st, "gzip") == (None, False)
        assert comp.wait_idle(30)
        assert comp.lookup(str(path), st, "gzip") == (None, True)  # settled: served as it is
        path.write_bytes(script(compression.INLINE_MAX * 4 + version))  # a new version
    failures = [r for r in caplog.records if "no room to compress" in r.getMessage()]
    assert len(failures) == 2 and all(r.name == "reactor_http" for r in failures)
    assert comp.snapshot()["failures_total"] == 2


def make_request(config, target: str, **fields):
    """A parsed request for `target` with header fields given as Name_With_Underscores."""
    raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{name.replace('_', '-')}: {value}\r\n" for name, value in fields.items()) + "\r\n"
    return parse_head(bytearray(raw.encode("latin-1")), Limits.from_config(config))[0]


def test_answer_cache_does_not_keep_identity_while_compression_is_pending(tmp_path):
    """The next request after the worker finished gets the compressed body, not a cached 200."""
    data = script(compression.INLINE_MAX * 2)
    assert len(data) <= SMALL_FILE_MAX  # a file the answer cache would keep
    (tmp_path / "app.js").write_bytes(data)
    config = Config(root=str(tmp_path), quiet=True).validate()
    site = Site(config)
    request = make_request(config, "/app.js", Accept_Encoding="gzip")
    now = time.monotonic()
    first = respond(request, site, now)
    assert first.status == 200 and ("Content-Encoding", "gzip") not in first.headers
    assert ("Vary", "Accept-Encoding") in first.headers
    assert site.compression.wait_idle(30)
    second = respond(request, site, now)  # same instant: well within the answer cache's TTL
    assert ("Content-Encoding", "gzip") in second.headers
    assert gzip.decompress(second.segments[0]) == data


# ---- real servers ---------------------------------------------------------------------------

SMALL_JS = script(6 * KIB)                          # compressed inline
LARGE_JS = script(compression.INLINE_MAX * 8)       # compressed in the background


@pytest.fixture(scope="module")
def comp_root(tmp_path_factory):
    """A site with files on each side of every compression rule."""
    root = tmp_path_factory.mktemp("compression")
    (root / "app.js").write_bytes(SMALL_JS)
    (root / "large.js").write_bytes(LARGE_JS)
    (root / "data.json").write_bytes(json.dumps([{"n": i} for i in range(400)]).encode())
    (root / "tiny.js").write_bytes(script(1000))
    (root / "image.png").write_bytes(script(8 * KIB))       # compressible bytes, but an image
    (root / "font.woff2").write_bytes(script(8 * KIB))
    (root / "noise.txt").write_bytes(os.urandom(8 * KIB))
    (root / "prepared.js").write_bytes(SMALL_JS)
    (root / "prepared.js.gz").write_bytes(b"\x1f\x8bPREPARED")  # not what we would make
    (root / "brotli.js").write_bytes(SMALL_JS)
    (root / "brotli.js.br").write_bytes(b"BROTLI-PREPARED")
    return root


@pytest.fixture(scope="module", params=MODES)
def srv(request, comp_root):
    server = ServerProcess(comp_root, request.param, "--quiet", "--status", "/status")
    yield server
    server.stop()


def gzipped(server, path: str, headers: dict | None = None, method: str = "GET"):
    """The response to a request with Accept-Encoding: gzip, once the body is compressed.

    A large file is compressed in the background while the identity body is served: ask again
    (bounded) until the compressed one comes.
    """
    fields = {"Accept-Encoding": "gzip", **(headers or {})}
    responses = []

    def compressed():
        responses.append(get(server, path, fields, method=method))
        return responses[-1].headers.get("content-encoding") == "gzip"

    assert wait_until(compressed, timeout=30), responses[-1]
    return responses[-1]


@pytest.mark.parametrize("field, coded", [
    (None, False), ("gzip", True), ("gzip, deflate, br", True), ("gzip;q=0", False),
    ("*", True), ("*;q=0", False), ("identity;q=0", False), ("br", False),
    ("identity, gzip;q=0.5", False), ("x-gzip", True),
])
def test_negotiation_over_sockets(srv, field, coded):
    response = get(srv, "/app.js", {"Accept-Encoding": field})
    assert response.status == 200
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-length"] == str(len(response.body))
    if coded:
        assert response.headers["content-encoding"] == "gzip"
        assert len(response.body) < len(SMALL_JS) // 2
        assert gzip.decompress(response.body) == SMALL_JS
    else:
        assert "content-encoding" not in response.headers
        assert response.body == SMALL_JS


@pytest.mark.parametrize("path", ["/app.js", "/large.js", "/data.json"])
def test_compressed_body_decompresses_to_the_file(srv, comp_root, path):
    response = gzipped(srv, path)
    assert response.status == 200
    assert gzip.decompress(response.body) == (comp_root / path[1:]).read_bytes()


def test_each_representation_has_its_own_strong_etag(srv):
    identity = get(srv, "/app.js").headers["etag"]
    coded = gzipped(srv, "/app.js").headers["etag"]
    assert not coded.startswith("W/") and not identity.startswith("W/")
    assert coded != identity and coded == coded_etag(identity, "gzip")
    prepared = get(srv, "/prepared.js", {"Accept-Encoding": "gzip"}).headers["etag"]
    assert prepared not in (coded, identity)


@pytest.mark.parametrize("path", ["/app.js", "/large.js"])
def test_304_with_the_gzip_etag(srv, path):
    response = gzipped(srv, path)
    etag = response.headers["etag"]
    not_modified = get(srv, path, {"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert not_modified.status == 304 and not_modified.body == b""
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers["vary"] == "Accept-Encoding"
    # The identity representation does not match the coded validator, and vice versa.
    plain = get(srv, path, {"If-None-Match": etag})
    assert plain.status == 200 and "content-encoding" not in plain.headers
    identity_etag = plain.headers["etag"]
    coded = get(srv, path, {"Accept-Encoding": "gzip", "If-None-Match": identity_etag})
    assert coded.status == 200 and coded.headers["content-encoding"] == "gzip"
    # If-Match compares strongly with the coded tag too.
    assert get(srv, path, {"Accept-Encoding": "gzip", "If-Match": etag}).status == 200
    assert get(srv, path, {"Accept-Encoding": "gzip", "If-Match": identity_etag}).status == 412


@pytest.mark.parametrize("path", ["/app.js", "/large.js"])
def test_ranges_apply_to_the_compressed_bytes(srv, path):
    whole = gzipped(srv, path).body
    size = len(whole)
    partial = get(srv, path, {"Accept-Encoding": "gzip", "Range": "bytes=10-99"})
    assert partial.status == 206
    assert partial.headers["content-encoding"] == "gzip"
    assert partial.headers["content-range"] == f"bytes 10-99/{size}"
    assert partial.headers["vary"] == "Accept-Encoding"
    assert partial.body == whole[10:100]
    tail = get(srv, path, {"Accept-Encoding": "gzip", "Range": "bytes=-20"})
    assert tail.status == 206 and tail.body == whole[-20:]
    several = get(srv, path, {"Accept-Encoding": "gzip", "Range": "bytes=0-4,50-59"})
    assert several.status == 206 and several.headers["content-encoding"] == "gzip"
    assert parse_multipart(several.headers["content-type"], several.body) == [
        ("text/javascript; charset=utf-8", f"bytes 0-4/{size}", whole[:5]),
        ("text/javascript; charset=utf-8", f"bytes 50-59/{size}", whole[50:60])]
    unsatisfiable = get(srv, path, {"Accept-Encoding": "gzip", "Range": f"bytes={size}-"})
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    assert "content-encoding" not in unsatisfiable.headers  # the 416 body is our HTML page
    assert unsatisfiable.headers["vary"] == "Accept-Encoding"


def test_if_range_with_the_coded_etag(srv):
    response = gzipped(srv, "/app.js")
    etag, whole = response.headers["etag"], response.body
    identity_etag = get(srv, "/app.js").headers["etag"]
    ranged = get(srv, "/app.js", {"Accept-Encoding": "gzip", "Range": "bytes=0-9",
                                  "If-Range": etag})
    assert ranged.status == 206 and ranged.body == whole[:10]
    full = get(srv, "/app.js", {"Accept-Encoding": "gzip", "Range": "bytes=0-9",
                                "If-Range": identity_etag})
    assert full.status == 200 and full.body == whole
    assert full.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("path", ["/app.js", "/large.js"])
def test_head_content_length_equals_the_get_body(srv, path):
    body = gzipped(srv, path).body
    head = gzipped(srv, path, method="HEAD")
    assert head.body == b""
    assert head.headers["content-length"] == str(len(body))
    assert head.headers["etag"] == get(srv, path, {"Accept-Encoding": "gzip"}).headers["etag"]


def test_large_file_serves_identity_with_vary_until_compressed(make_server, mode, tmp_path):
    (tmp_path / "late.js").write_bytes(LARGE_JS)
    server = make_server(tmp_path, mode, "--quiet")
    first = get(server, "/late.js", {"Accept-Encoding": "gzip"})
    assert first.status == 200 and first.headers["vary"] == "Accept-Encoding"
    if "content-encoding" not in first.headers:  # the usual case: the worker has just begun
        assert first.body == LARGE_JS
    assert gzip.decompress(gzipped(server, "/late.js").body) == LARGE_JS


def test_one_keep_alive_connection_gets_each_representation(srv):
    """The answer cache and the protocol's shortcut key on Accept-Encoding."""
    gzipped(srv, "/app.js")
    with srv.connect() as sock:
        buffer = bytearray()
        for field in ("gzip", None, "gzip", "gzip;q=0", "gzip", None) * 2:
            head = "GET /app.js HTTP/1.1\r\nHost: x\r\n"
            if field is not None:
                head += f"Accept-Encoding: {field}\r\n"
            sock.sendall((head + "\r\n").encode())
            response = read_response(sock, buffer)
            assert response.status == 200
            if field == "gzip":
                assert response.headers["content-encoding"] == "gzip"
                assert gzip.decompress(response.body) == SMALL_JS
            else:
                assert "content-encoding" not in response.headers
                assert response.body == SMALL_JS


def test_changed_file_is_never_served_from_the_cache(make_server, mode, tmp_path):
    path = tmp_path / "app.js"
    path.write_bytes(SMALL_JS)
    server = make_server(tmp_path, mode, "--quiet")
    first = gzipped(server, "/app.js")
    assert gzip.decompress(first.body) == SMALL_JS
    st = os.stat(path)
    # Same size and mtime: only the bytes and the ctime change.
    changed = script(len(SMALL_JS), seed=77)
    path.write_bytes(changed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = gzipped(server, "/app.js")
    assert gzip.decompress(second.body) == changed
    # A new version of a large file: identity at first, then its own compressed body.
    large = tmp_path / "large.js"
    large.write_bytes(LARGE_JS)
    assert gzip.decompress(gzipped(server, "/large.js").body) == LARGE_JS
    new_large = script(len(LARGE_JS), seed=99)
    large.write_bytes(new_large)
    response = get(server, "/large.js", {"Accept-Encoding": "gzip"})
    assert (gzip.decompress(response.body) if "content-encoding" in response.headers
            else response.body) == new_large
    assert gzip.decompress(gzipped(server, "/large.js").body) == new_large


def test_prepared_siblings_win(srv, comp_root):
    prepared = get(srv, "/prepared.js", {"Accept-Encoding": "gzip"})
    assert prepared.headers["content-encoding"] == "gzip"
    assert prepared.body == (comp_root / "prepared.js.gz").read_bytes()
    # A brotli sibling for a client that takes brotli; gzip made on the fly for one that does not.
    assert get(srv, "/brotli.js", {"Accept-Encoding": "br, gzip"}).body == b"BROTLI-PREPARED"
    made = get(srv, "/brotli.js", {"Accept-Encoding": "gzip"})
    assert made.headers["content-encoding"] == "gzip"
    assert gzip.decompress(made.body) == SMALL_JS
    assert made.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize("path", ["/image.png", "/font.woff2", "/tiny.js"])
def test_untouched_without_vary(srv, comp_root, path):
    """Incompressible types and files below 1 KiB are sent as they are, without Vary."""
    response = get(srv, path, {"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert "content-encoding" not in response.headers and "vary" not in response.headers
    assert response.body == (comp_root / path[1:]).read_bytes()


def test_text_that_does_not_shrink_is_sent_as_it_is(srv, comp_root):
    for _ in range(2):
        response = get(srv, "/noise.txt", {"Accept-Encoding": "gzip"})
        assert "content-encoding" not in response.headers
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.body == (comp_root / "noise.txt").read_bytes()


def test_above_the_cap_untouched(make_server, mode, tmp_path):
    (tmp_path / "over.js").write_bytes(script(4 * KIB + 1))
    (tmp_path / "at.js").write_bytes(script(4 * KIB))
    server = make_server(tmp_path, mode, "--quiet", "--compress-max-bytes", str(4 * KIB))
    over = get(server, "/over.js", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in over.headers and "vary" not in over.headers
    assert over.body == script(4 * KIB + 1)
    assert gzip.decompress(gzipped(server, "/at.js").body) == script(4 * KIB)


def test_no_compress(make_server, mode, comp_root):
    server = make_server(comp_root, mode, "--quiet", "--no-compress")
    response = get(server, "/app.js", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers and "vary" not in response.headers
    assert response.body == SMALL_JS
    # Prepared siblings are still served.
    prepared = get(server, "/prepared.js", {"Accept-Encoding": "gzip"})
    assert prepared.headers["content-encoding"] == "gzip"
    assert prepared.headers["vary"] == "Accept-Encoding"


def test_status_counts_hits_misses_and_bytes_saved(make_server, mode, tmp_path):
    (tmp_path / "app.js").write_bytes(SMALL_JS)
    server = make_server(tmp_path, mode, "--quiet", "--status", "/status")

    def counters():
        return json.loads(get(server, "/status").body)["compression"]

    before = counters()
    assert before["enabled"] is True and before["hits_total"] == 0
    first = get(server, "/app.js", {"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    for _ in range(3):
        get(server, "/app.js", {"Accept-Encoding": "gzip"})
    get(server, "/app.js", {"Accept-Encoding": "gzip"}, method="HEAD")
    after = counters()
    assert after["misses_total"] == 1
    assert after["hits_total"] == 4
    assert after["saved_bytes_total"] == 4 * (len(SMALL_JS) - len(first.body))
    assert after["cached_entries"] == 1 and after["cached_bytes"] >= len(first.body)
    text = get(server, "/status", {"Accept": "text/plain"}).body.decode()
    assert "reactor_http_compression_cache_hits_total 4\n" in text
    assert "reactor_http_compression_cache_misses_total 1\n" in text
    assert f"reactor_http_compression_saved_bytes_total {after['saved_bytes_total']}\n" in text
    off = make_server(tmp_path, mode, "--quiet", "--status", "/status", "--no-compress")
    assert json.loads(get(off, "/status").body)["compression"]["enabled"] is False


# ---- the bench scenario ---------------------------------------------------------------------

def test_bench_gzip_scenario_asks_for_gzip_against_nginx_with_gzip_on(tmp_path):
    pytest.importorskip("resource", reason="the bench harness is POSIX-only")
    from bench import loadgen, scenarios, servers, sitegen
    for profile in (scenarios.QUICK, scenarios.FULL):
        found = [s for s in scenarios.build_scenarios(profile, with_locust=False)
                 if s.group == scenarios.GZIP_GROUP]
        assert [s.key for s in found] == ["script-gzip-c64"]
    scenario = found[0]
    assert scenario.path == sitegen.SCRIPT_PATH and scenario.connections == 64
    assert set(scenario.servers) == {"reactor", "threaded", "nginx-gzip"}
    plan = scenarios.build_plan([scenario], ["reactor", "nginx", "nginx-gzip"], scenarios.QUICK)
    assert {step.server for step in plan} == {"reactor", "nginx-gzip"}
    command = loadgen.wrk_command("http://h/x", 64, 1, headers=scenario.headers)
    assert command[command.index("-H") + 1] == "Accept-Encoding: gzip"
    ctx = servers.LaunchContext(root=tmp_path, port=1, workdir=tmp_path)
    assert "gzip on;" in servers.nginx_config(ctx, gzip=True)
    assert "gzip on;" not in servers.nginx_config(ctx)
    site = sitegen.build_site(tmp_path / "site", large_size=4096)
    script_bytes = (site.root / sitegen.SCRIPT_PATH.lstrip("/")).read_bytes()
    assert len(script_bytes) == site.files[sitegen.SCRIPT_PATH] == sitegen.SCRIPT_SIZE
    # Compressible like a real script: neither trivially repetitive nor incompressible.
    assert 0.2 < len(compression.compress(script_bytes, "gzip")) / len(script_bytes) < 0.4


@pytest.mark.parametrize("args, message", [
    (("--compress-max-bytes", "10"), "--compress-max-bytes must be a whole number of bytes"),
    (("--compress-max-bytes", "16MB"), "--compress-max-bytes must be a whole number of bytes"),
    (("--compress-cache-bytes", "1000"), "--compress-cache-bytes must be a whole number"),
])
def test_malformed_compression_options_refused_at_start_up(args, message):
    result = run_cli("--root", ".", *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("error:") == 1
