"""Static-file features over real sockets, in both engines: validators, ranges, listings, types,
precompressed files, the content options (--max-age, --cors, --spa...) and protocol details.

Two servers per engine share one temporary site: `plain` with the defaults and `opts` with every
content option switched on (its root is a sibling copy that also has a custom 404.html).
"""

from __future__ import annotations

import os
import shutil
import types

import pytest

from tests.helpers.http import (assert_closed, exchange, get, parse_multipart, read_response,
                                recv_until_closed)
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, SITE, ServerProcess
from tests.helpers.sites import OUTSIDE_SECRET, POSIX_NAMES_ONLY

FOUR_GIB = 1 << 32
# Bytes written into the sparse file just past 4 GiB (and where), to be read back by range.
FAR_MARK = b"beyond-4GiB!"
FAR_OFFSET = FOUR_GIB + 1000
SPARSE_SIZE = (5 << 30) + 3
OLD_DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
HUGE = "9" * 5000  # digits: longer than Python's int max str digits (4,300)
BIG = 100_000  # bytes: more than responder.SMALL_FILE_MAX, so the file is served from an fd
TYPES = {
    "a.js": "text/javascript; charset=utf-8", "a.mjs": "text/javascript; charset=utf-8",
    "a.wasm": "application/wasm", "a.webp": "image/webp", "a.avif": "image/avif",
    "a.svg": "image/svg+xml; charset=utf-8", "a.json": "application/json; charset=utf-8",
    "a.woff2": "font/woff2", "a.map": "application/json; charset=utf-8",
    "a.zzunknown": "application/octet-stream", "noext": "application/octet-stream",
    "abc.txt": "text/plain; charset=utf-8", "style.css": "text/css; charset=utf-8",
    "test.png": "image/png", "index.html": "text/html; charset=utf-8",
}


def _build_site(root):
    """The test site: site/ plus files for every feature below."""
    shutil.copytree(SITE, root, dirs_exist_ok=True)
    (root / "rand.bin").write_bytes(os.urandom(1024 * 1024 + 7))  # sent with sendfile
    (root / "empty.txt").write_bytes(b"")
    for name in TYPES:
        if not (root / name).exists():
            (root / name).write_bytes(b"x")
    (root / "app.js").write_text("console.log('identity');\n" * 20)
    (root / "app.js.br").write_bytes(b"BR-ENCODED-BYTES")
    (root / "app.js.gz").write_bytes(b"\x1f\x8bGZ-ENCODED")
    (root / "old.css").write_text("body{}\n")
    (root / "old.css.gz").write_bytes(b"STALE")
    st = os.stat(root / "old.css")
    os.utime(root / "old.css.gz", ns=(st.st_atime_ns, st.st_mtime_ns - 5 * 10**9))
    listing = root / "listing"
    listing.mkdir()
    (listing / "a <b>&c\".txt").write_text("odd")
    (listing / "zeta").mkdir()
    (listing / "Alpha").mkdir()
    (listing / "b.txt").write_text("bb")
    (listing / ".secret").write_text("hidden")
    (root / ".env").write_text("SECRET=1\n")
    (root / "space name.txt").write_text("spaces\n")
    with open(root / "sparse.bin", "wb") as file:
        file.truncate(SPARSE_SIZE)
        file.seek(FAR_OFFSET)
        file.write(FAR_MARK)
    outside = root.parent / "outside.txt"
    outside.write_text("outside the root\n")
    (root / "link-in.txt").symlink_to(root / "abc.txt")
    (root / "link-out.txt").symlink_to(outside)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    base = tmp_path_factory.mktemp("features")
    plain = base / "plain"
    _build_site(plain)
    opts = base / "opts"
    _build_site(opts)
    (opts / "404.html").write_text("<h1>custom not found page</h1>")
    return types.SimpleNamespace(plain=plain, opts=opts)


@pytest.fixture(scope="module", params=MODES)
def servers(request, sites):
    """Per engine: a default server and one with --max-age --immutable --cors --spa etc."""
    plain = ServerProcess(sites.plain, request.param, "--quiet")
    try:
        opts = ServerProcess(sites.opts, request.param, "--quiet", "--max-age", "600",
                             "--immutable", "--cors", "--spa", "--dotfiles", "allow",
                             "--follow-symlinks", "--no-listing")
    except Exception:
        plain.stop()
        raise
    yield types.SimpleNamespace(plain=plain, opts=opts, mode=request.param, sites=sites)
    plain.stop()
    opts.stop()


@pytest.fixture
def srv(servers):
    return servers.plain


def raw_request(method, target, version="HTTP/1.1", **fields) -> bytes:
    lines = [f"{method} {target} {version}"] + [
        f"{name.replace('_', '-')}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")



# ---- basics: 200, HEAD, sendfile body ------------------------------------------------------

def test_full_file_bytes_exact(srv, servers):
    data = (servers.sites.plain / "rand.bin").read_bytes()
    response = get(srv, "/rand.bin")
    assert response.status == 200
    assert response.headers["content-length"] == str(len(data))
    assert response.body == data
    assert response.headers["accept-ranges"] == "bytes"
    for name in ("etag", "last-modified", "date", "server"):
        assert response.headers[name]


@pytest.mark.parametrize("path", ["/abc.txt", "/rand.bin", "/app.js", "/listing/", "/nope"])
def test_head_matches_get_without_body(srv, path):
    full = get(srv, path)
    with srv.connect() as sock:
        sock.sendall(raw_request("HEAD", path, Host="x", Connection="close"))
        sock.settimeout(5)
        data = recv_until_closed(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"", "HEAD must not send a body"
    assert head.split(b"\r\n")[0].startswith(b"HTTP/1.1 %d" % full.status)
    fields = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
    lowered = {k.lower(): v for k, v in fields.items()}
    assert lowered["content-length"] == full.headers["content-length"]
    assert lowered.get("etag") == full.headers.get("etag")


def test_empty_file(srv):
    response = get(srv, "/empty.txt")
    assert response.status == 200 and response.body == b""
    assert response.headers["content-length"] == "0"


# ---- validators and conditionals ------------------------------------------------------------

def test_etag_is_strong_and_stable_across_restart(servers):
    first = get(servers.plain, "/abc.txt").headers["etag"]
    assert first.startswith('"') and first.endswith('"')
    again = ServerProcess(servers.sites.plain, servers.mode, "--quiet")
    try:
        assert get(again, "/abc.txt").headers["etag"] == first
    finally:
        again.stop()


def test_if_none_match_304(servers):
    for server in (servers.plain, servers.opts):
        etag = get(server, "/abc.txt").headers["etag"]
        response = get(server, "/abc.txt", {"If-None-Match": f'"other", W/{etag}'})
        assert response.status == 304
        assert response.body == b""
        assert response.headers["etag"] == etag
        assert response.headers["last-modified"] and response.headers["date"]
    assert response.headers["cache-control"] == "max-age=600, immutable"


def test_304_has_no_body_on_keep_alive(srv, servers):
    etag = get(srv, "/abc.txt").headers["etag"]
    with srv.connect() as sock:
        sock.sendall(raw_request("GET", "/abc.txt", Host="x", If_None_Match=etag) +
                     raw_request("GET", "/abc.txt", Host="x", Connection="close"))
        buffer = bytearray()
        first = read_response(sock, buffer)
        second = read_response(sock, buffer)
    assert (first.status, second.status) == (304, 200)
    assert second.body == (servers.sites.plain / "abc.txt").read_bytes()
    assert bytes(buffer) == b""


def test_if_modified_since(srv):
    last_mod = get(srv, "/abc.txt").headers["last-modified"]
    assert get(srv, "/abc.txt", {"If-Modified-Since": last_mod}).status == 304
    assert get(srv, "/abc.txt", {"If-Modified-Since": OLD_DATE}).status == 200
    assert get(srv, "/abc.txt", {"If-Modified-Since": "not a date"}).status == 200
    # If-None-Match takes precedence: a mismatching tag means 200 whatever the date says.
    assert get(srv, "/abc.txt", {"If-Modified-Since": last_mod,
                                 "If-None-Match": '"other"'}).status == 200


def test_if_match_and_if_unmodified_since(srv):
    etag = get(srv, "/abc.txt").headers["etag"]
    assert get(srv, "/abc.txt", {"If-Match": etag}).status == 200
    assert get(srv, "/abc.txt", {"If-Match": '"nope"'}).status == 412
    assert get(srv, "/abc.txt", {"If-Unmodified-Since": OLD_DATE}).status == 412
    # RFC 9110 section 13.2.2: If-Match is evaluated first and beats If-None-Match.
    assert get(srv, "/abc.txt", {"If-Match": '"nope"', "If-None-Match": etag}).status == 412


# ---- ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-99", 0, 99), ("bytes=1000-", 1000, None), ("bytes=-500", -500, None),
    ("bytes=1048000-99999999", 1048000, None)])
def test_single_range(srv, servers, spec, first, last):
    data = (servers.sites.plain / "rand.bin").read_bytes()
    expected = data[first:] if last is None else data[first:last + 1]
    start = first if first >= 0 else len(data) + first
    response = get(srv, "/rand.bin", {"Range": spec})
    assert response.status == 206
    assert response.body == expected
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["content-range"] == \
        f"bytes {start}-{start + len(expected) - 1}/{len(data)}"


@pytest.mark.parametrize("path", ["/abc.txt", "/rand.bin"])
def test_multipart_byteranges_byte_exact(srv, servers, path):
    data = (servers.sites.plain / path[1:]).read_bytes()
    size = len(data)
    response = get(srv, path, {"Range": "bytes=0-4, 10-14, 20-22, -3"})
    assert response.status == 206
    assert response.headers["content-length"] == str(len(response.body))
    parts = parse_multipart(response.headers["content-type"], response.body)
    assert [(r, d) for _, r, d in parts] == [
        (f"bytes 0-4/{size}", data[0:5]), (f"bytes 10-14/{size}", data[10:15]),
        (f"bytes 20-22/{size}", data[20:23]),
        (f"bytes {size - 3}-{size - 1}/{size}", data[-3:])]


def test_overlapping_ranges_are_coalesced(srv, servers):
    data = (servers.sites.plain / "rand.bin").read_bytes()
    response = get(srv, "/rand.bin", {"Range": "bytes=0-99, 50-149, 0-0, 100-120"})
    assert response.status == 206
    assert response.headers["content-range"] == f"bytes 0-149/{len(data)}"
    assert response.body == data[:150]


def test_too_many_ranges_serve_the_whole_file(srv):
    spec = "bytes=" + ",".join(f"{i * 4}-{i * 4 + 1}" for i in range(40))
    response = get(srv, "/rand.bin", {"Range": spec})
    assert response.status == 200
    assert response.headers["content-length"] == str(len(response.body))


@pytest.mark.parametrize("spec", ["bytes=99999999-", "bytes=-0", "bytes=1048583-"])
def test_unsatisfiable_range_416(srv, servers, spec):
    size = (servers.sites.plain / "rand.bin").stat().st_size
    response = get(srv, "/rand.bin", {"Range": spec})
    assert response.status == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_resume_of_a_complete_download_is_416(srv):
    """`curl -C -` on a finished file asks for bytes=SIZE-: it must not get the file again."""
    response = get(srv, "/abc.txt", {"Range": "bytes=34-"})
    assert response.status == 416
    assert response.headers["content-range"] == "bytes */34"


@pytest.mark.parametrize("spec", ["bytes=5-1", "bytes=abc", "lines=0-1", "bytes=--2"])
def test_invalid_range_is_ignored(srv, spec):
    response = get(srv, "/abc.txt", {"Range": spec})
    assert response.status == 200 and len(response.body) == 34


def test_if_range(srv):
    full = get(srv, "/rand.bin", {"Range": "bytes=0-0"})
    etag, last_mod = full.headers["etag"], full.headers["last-modified"]
    assert get(srv, "/rand.bin", {"Range": "bytes=0-9", "If-Range": etag}).status == 206
    assert get(srv, "/rand.bin", {"Range": "bytes=0-9", "If-Range": last_mod}).status == 206
    stale = get(srv, "/rand.bin", {"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status == 200 and len(stale.body) == 1024 * 1024 + 7
    assert get(srv, "/rand.bin", {"Range": "bytes=0-9",
                                  "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 200


def test_head_with_range_gets_200_headers(srv):
    response = get(srv, "/rand.bin", {"Range": "bytes=0-9"}, method="HEAD")
    assert response.status == 200
    assert response.headers["content-length"] == str(1024 * 1024 + 7)
    assert "content-range" not in response.headers


def test_offsets_past_4_gib(srv):
    head = get(srv, "/sparse.bin", method="HEAD")
    assert head.headers["content-length"] == str(SPARSE_SIZE)
    end = FAR_OFFSET + len(FAR_MARK) - 1
    response = get(srv, "/sparse.bin", {"Range": f"bytes={FAR_OFFSET - 2}-{end + 2}"})
    assert response.status == 206
    assert response.body == b"\0\0" + FAR_MARK + b"\0\0"
    assert response.headers["content-range"] == f"bytes {FAR_OFFSET - 2}-{end + 2}/{SPARSE_SIZE}"
    tail = get(srv, "/sparse.bin", {"Range": "bytes=-4"})
    assert tail.body == b"\0\0\0\0"
    assert tail.headers["content-range"] == \
        f"bytes {SPARSE_SIZE - 4}-{SPARSE_SIZE - 1}/{SPARSE_SIZE}"
    multi = get(srv, "/sparse.bin", {"Range": f"bytes=0-1,{FAR_OFFSET}-{end}"})
    parts = parse_multipart(multi.headers["content-type"], multi.body)
    assert [d for _, _, d in parts] == [b"\0\0", FAR_MARK]


def test_overlong_range_and_year_zero_dates_over_sockets(make_server, mode, tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * BIG)
    (tmp_path / "s.txt").write_text("hi")
    srv = make_server(tmp_path, mode, "--quiet")
    assert get(srv, "/big.bin").status == 200  # warm up (log files, caches)
    base = srv.open_fds()
    for _ in range(10):
        response = get(srv, "/big.bin", {"Range": f"bytes={HUGE}-"})
        assert response.status == 416
        assert response.headers["content-range"] == f"bytes */{BIG}"
        response = get(srv, "/big.bin", {"Range": f"bytes=0-{HUGE}"})
        assert response.status == 206 and len(response.body) == BIG
        for name in ("If-Modified-Since", "If-Unmodified-Since"):
            response = get(srv, "/big.bin", {name: "Sun, 01 Jan 0000 00:00:00 GMT"})
            assert response.status == 200 and len(response.body) == BIG
        response = get(srv, "/s.txt", {"If-Modified-Since": "Sun Jan  1 00:00:00 0000"},
                       method="HEAD")
        assert response.status == 200 and response.headers["content-length"] == "2"
    assert wait_until(lambda: srv.open_fds() <= base, timeout=5), (base, srv.open_fds())


# ---- directories ---------------------------------------------------------------------------

@POSIX_NAMES_ONLY
def test_listing(srv):
    response = get(srv, "/listing/")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.body.decode()
    assert '<a href="../">' in page
    assert "a &lt;b&gt;&amp;c&quot;.txt" in page and "<b>" not in page
    assert 'href="a%20%3Cb%3E%26c%22.txt"' in page
    # Folders first (case-insensitive order), then files.
    assert page.index('href="Alpha/"') < page.index('href="zeta/"') < page.index('href="a%20') \
        < page.index('href="b.txt"')
    assert ".secret" not in page
    assert "Index of /listing/" in page


@POSIX_NAMES_ONLY
def test_listing_link_resolves(srv):
    assert get(srv, "/listing/a%20%3Cb%3E%26c%22.txt").body == b"odd"


def test_directory_redirect_and_index(srv):
    redirect = get(srv, "/sub?x=1")
    assert redirect.status == 301 and redirect.headers["location"] == "/sub/?x=1"
    assert b"sub" in get(srv, "/sub/").body.lower()


def test_no_listing_is_404(servers, make_server):
    server = make_server(servers.sites.plain, servers.mode, "--quiet", "--no-listing")
    assert get(server, "/listing/").status == 404
    assert get(server, "/sub/").status == 200  # an index.html still serves
    # With --spa too, a folder without index.html gets the app instead of a listing.
    spa = get(servers.opts, "/listing/")
    assert spa.status == 200 and spa.body == (servers.sites.opts / "index.html").read_bytes()


def test_symlinked_derived_paths_over_sockets(make_server, mode, escape_root):
    srv = make_server(escape_root, mode, "--quiet", "--spa")
    cases = [("/sub/", None), ("/", None), ("/some/route", None), ("/missing.txt", None),
             ("/app.js", "gzip"), ("/app.js", "br")]
    for target, coding in cases:
        response = get(srv, target, {"Accept-Encoding": coding})
        assert OUTSIDE_SECRET not in response.body, target
        assert "content-encoding" not in response.headers, target
    response = get(srv, "/inside/")
    assert response.status == 200 and response.body == b"<p>real</p>"


# ---- content types -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TYPES))
def test_content_types(srv, name):
    response = get(srv, "/" + name, method="HEAD")
    assert response.status == 200
    assert response.headers["content-type"] == TYPES[name]


# ---- precompressed siblings ----------------------------------------------------------------

@pytest.mark.parametrize("accept, coding, body", [
    ("gzip, deflate, br", "br", b"BR-ENCODED-BYTES"),
    ("gzip", "gzip", b"\x1f\x8bGZ-ENCODED"),
    ("br;q=0, gzip;q=0.8", "gzip", b"\x1f\x8bGZ-ENCODED"),
    ("br;q=0, gzip;q=0", None, None),
    (None, None, None),
])
def test_precompressed(srv, servers, accept, coding, body):
    identity = (servers.sites.plain / "app.js").read_bytes()
    response = get(srv, "/app.js", {"Accept-Encoding": accept})
    assert response.status == 200
    assert response.headers.get("content-encoding") == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.body == (body if body is not None else identity)
    assert response.headers["content-length"] == str(len(response.body))


def test_precompressed_representations_have_their_own_etag(srv):
    tags = {get(srv, "/app.js", {"Accept-Encoding": a}).headers["etag"]
            for a in ("br", "gzip", "identity")}
    assert len(tags) == 3


def test_head_of_precompressed_content_length(srv):
    head = get(srv, "/app.js", {"Accept-Encoding": "br"}, method="HEAD")
    assert head.headers["content-encoding"] == "br"
    assert head.headers["content-length"] == str(len(b"BR-ENCODED-BYTES"))


def test_vary_on_every_response_of_a_file_with_a_sibling(srv):
    etag = get(srv, "/app.js", {"Accept-Encoding": "br"}).headers["etag"]
    not_modified = get(srv, "/app.js", {"Accept-Encoding": "br", "If-None-Match": etag})
    assert not_modified.status == 304 and not_modified.headers["vary"] == "Accept-Encoding"
    partial = get(srv, "/app.js", {"Accept-Encoding": "br", "Range": "bytes=0-1"})
    assert partial.status == 206 and partial.body == b"BR"
    assert partial.headers["content-range"] == "bytes 0-1/16"
    assert partial.headers["vary"] == "Accept-Encoding"
    assert "vary" not in get(srv, "/abc.txt", {"Accept-Encoding": "br"}).headers


def test_416_of_precompressed_is_not_labelled_encoded(srv):
    response = get(srv, "/app.js", {"Accept-Encoding": "br", "Range": "bytes=500-"})
    assert response.status == 416
    assert "content-encoding" not in response.headers
    assert response.body.startswith(b"<!DOCTYPE html>")


def test_stale_sibling_ignored(srv):
    response = get(srv, "/old.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.body == b"body{}\n"


# ---- options -------------------------------------------------------------------------------

def test_max_age_immutable(servers):
    assert get(servers.opts, "/abc.txt").headers["cache-control"] == \
        "max-age=600, immutable"
    assert "cache-control" not in get(servers.plain, "/abc.txt").headers


def test_cors(servers):
    assert get(servers.opts, "/abc.txt").headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in get(servers.plain, "/abc.txt").headers
    preflight = get(servers.opts, "/abc.txt", {
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range, x-requested-with"}, method="OPTIONS")
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "range, x-requested-with"
    assert "access-control-max-age" in preflight.headers


def test_spa(servers):
    response = get(servers.opts, "/app/route/42")
    assert response.status == 200
    assert response.body == (servers.sites.opts / "index.html").read_bytes()
    assert get(servers.opts, "/missing.png").status == 404
    assert get(servers.plain, "/app/route/42").status == 404


def test_custom_404_page(servers):
    response = get(servers.opts, "/missing.png")
    assert response.status == 404
    assert response.body == b"<h1>custom not found page</h1>"
    default = get(servers.plain, "/missing.png")
    assert default.status == 404 and b"404" in default.body


def test_dotfiles(servers):
    assert get(servers.plain, "/.env").status == 404
    assert get(servers.plain, "/%2Eenv").status == 404
    assert get(servers.opts, "/.env").body == b"SECRET=1\n"


def test_symlinks(servers):
    assert get(servers.plain, "/link-in.txt").status == 200
    assert get(servers.plain, "/link-out.txt").status == 404
    assert get(servers.opts, "/link-out.txt").body == b"outside the root\n"


@pytest.mark.parametrize("path, status", [
    ("/../outside.txt", 400), ("/%2e%2e/outside.txt", 400), ("/sub/%2e%2e/%2e%2e/outside.txt", 400),
    ("/abc.txt/", 404), ("/space%20name.txt/", 404)])
def test_nothing_outside_root(srv, path, status):
    # A `..` that climbs above the root is a 400 (as in nginx), not a 404.
    assert get(srv, path).status == status


def test_percent_decoded_path(srv):
    assert get(srv, "/space%20name.txt?q=1").body == b"spaces\n"


# ---- protocol details ----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["*", "/abc.txt"])
def test_options(srv, target):
    response = get(srv, target, method="OPTIONS")
    assert response.status == 204
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "HEAD"}
    assert response.body == b""


def test_absolute_form_target(srv):
    response = get(srv, f"http://127.0.0.1:{srv.port}/abc.txt")
    assert response.status == 200 and len(response.body) == 34


def test_http10_closes_by_default(srv):
    with srv.connect() as sock:
        sock.sendall(b"GET /abc.txt HTTP/1.0\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.status == 200  # answered as HTTP/1.1 (read_response checks)
        assert response.headers.get("connection", "").lower() == "close"
        assert "keep-alive" not in response.headers
        assert_closed(sock)


def test_http10_keep_alive_when_asked(srv):
    with srv.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /abc.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = read_response(sock, buffer)
        assert first.headers["connection"].lower() == "keep-alive"
        assert first.headers["keep-alive"] == "timeout=5, max=100"
        sock.sendall(b"GET /abc.txt HTTP/1.0\r\n\r\n")
        second = read_response(sock, buffer)
        assert second.status == 200 and second.body == first.body
        assert_closed(sock)


def test_http11_connection_close(srv):
    with srv.connect() as sock:
        sock.sendall(b"GET /abc.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = read_response(sock, bytearray())
        assert response.headers["connection"] == "close"
        assert_closed(sock)


def test_http12_answered_as_11(srv):
    response = exchange(srv, b"GET /abc.txt HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.status == 200


def test_content_length_matches_bytes_sent(srv):
    """Every response on one connection is framed exactly: nothing left over, nothing short."""
    requests = [("GET", "/app.js", {"Accept-Encoding": "br"}),
                ("HEAD", "/app.js", {"Accept-Encoding": "gzip"}),
                ("GET", "/rand.bin", {"Range": "bytes=0-0,5-9"}),
                ("GET", "/nope", {}), ("GET", "/listing/", {}),
                ("GET", "/abc.txt", {"Range": "bytes=999-"}),
                ("HEAD", "/rand.bin", {}), ("OPTIONS", "*", {})]
    raw = b"".join(raw_request(m, p, Host="x", **{k.replace("-", "_"): v for k, v in h.items()})
                   for m, p, h in requests)
    raw += raw_request("GET", "/abc.txt", Host="x", Connection="close")
    with srv.connect() as sock:
        sock.sendall(raw)
        buffer = bytearray()
        statuses = []
        for method, _, _ in requests:
            statuses.append(read_response(sock, buffer, head_only=method == "HEAD").status)
        last = read_response(sock, buffer)
        assert last.body == get(srv, "/abc.txt").body
        assert_closed(sock)
        assert bytes(buffer) == b""
    assert statuses == [200, 200, 206, 404, 200, 416, 200, 204]
