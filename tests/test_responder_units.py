"""Pure unit tests of the semantics: responder.respond, filesystem and headers, with a temp folder.

No sockets: requests are built with parser.parse_head from raw bytes, responses are inspected as
values (status, fields, body segments), and file regions are read back with os.pread.
"""

from __future__ import annotations

import calendar
import os
import threading
import time

import pytest

from tests.helpers.http import parse_multipart
from tests.helpers.respond import NOW, body_of, field, make_site, request, respond
from tests.helpers.sites import OUTSIDE_SECRET, POSIX_NAMES_ONLY

from reactor_http import website as site_module
from reactor_http import filesystem, headers, responder, validators
from reactor_http.content_coding import coded_etag
from reactor_http.messages import FileRegion

PAST = "Sun, 06 Nov 1994 08:49:37 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
ABC = b"abcdefghijklmnopqrstuvwxyz0123456789"
HUGE = "9" * 5000  # longer than Python's int max str digits (4,300)
SECRET = OUTSIDE_SECRET
BIG = 100_000  # bytes: more than responder.SMALL_FILE_MAX, so the file is served from an fd


@pytest.fixture
def root(tmp_path):
    """A small site: files, a folder with index, a folder without, a precompressed pair."""
    (tmp_path / "abc.txt").write_bytes(ABC)
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 400)  # 102400 bytes: not cached
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<p>sub</p>")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "b.txt").write_text("b")
    (tmp_path / "list" / "A dir").mkdir()
    (tmp_path / "app.js").write_text("console.log(1)\n" * 10)
    (tmp_path / "app.js.br").write_bytes(b"BROTLI")
    (tmp_path / "app.js.gz").write_bytes(b"GZIPPED!")
    return tmp_path


@pytest.fixture
def site(root):
    return make_site(root)


def own_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


# ---- plain GET / HEAD -----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/abc.txt", "/big.bin"])
def test_get_file_fields_and_body(site, root, target):
    response = respond(site, target)
    expected = (root / target[1:]).read_bytes()
    assert response.status == 200
    st = os.stat(root / target[1:])
    assert field(response, "Content-Length") == str(len(expected))
    assert field(response, "ETag") == validators.mtime_etag(st)
    assert field(response, "Last-Modified") == headers.format_http_date(st.st_mtime)
    assert field(response, "Accept-Ranges") == "bytes"
    assert body_of(response) == expected


def test_large_file_body_is_a_file_region_not_bytes(site):
    response = respond(site, "/big.bin")
    assert [type(s) for s in response.segments] == [FileRegion]
    assert response.fd is not None
    body_of(response)


@pytest.mark.parametrize("target", ["/abc.txt", "/big.bin", "/empty.txt", "/list/", "/nope"])
def test_head_has_get_fields_and_no_body(site, target):
    get = respond(site, target)
    head = respond(site, target, method="HEAD")
    body_of(get)
    assert head.status == get.status
    assert head.segments == () and head.body_length == 0
    assert head.headers == get.headers
    body_of(head)


def test_empty_file(site):
    response = respond(site, "/empty.txt")
    assert response.status == 200
    assert field(response, "Content-Length") == "0"
    assert body_of(response) == b""


def test_query_string_is_ignored(site):
    response = respond(site, "/abc.txt?x=1&y=../../etc/passwd")
    assert response.status == 200 and body_of(response) == ABC


def test_absolute_form_target(site):
    response = respond(site, "http://example.test/abc.txt")
    assert response.status == 200 and body_of(response) == ABC
    assert respond(site, "HTTP://example.test").status == 200  # no path names "/": a listing


@pytest.mark.parametrize("target", [
    "/abc.txt%00", "/a%5cb", "/abc.txt/", "/%ff", "/.hidden", "/nope.txt"])
def test_not_found(site, root, target):
    (root / ".hidden").write_text("secret")
    response = respond(site, target)
    assert response.status == 404
    assert b"secret" not in body_of(response)


def test_directory_without_slash_redirects_keeping_the_query(site):
    response = respond(site, "/sub?a=1")
    assert response.status == 301
    assert field(response, "Location") == "/sub/?a=1"


def test_directory_serves_index(site):
    response = respond(site, "/sub/")
    assert response.status == 200
    assert field(response, "Content-Type") == "text/html; charset=utf-8"
    assert body_of(response) == b"<p>sub</p>"


def test_listing_folders_first_with_parent_link(site):
    response = respond(site, "/list/")
    assert response.status == 200
    page = body_of(response).decode()
    assert '<a href="../">' in page
    assert page.index('href="A%20dir/"') < page.index('href="b.txt"')


def test_root_listing_has_no_parent_link(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    page = body_of(respond(make_site(tmp_path), "/")).decode()
    assert 'href="x.txt"' in page and 'href="../"' not in page


@POSIX_NAMES_ONLY
def test_listing_escapes_names(site, root):
    (root / "list" / 'a <b>&"c.txt').write_text("x")
    page = body_of(respond(site, "/list/")).decode()
    assert "<b>" not in page
    assert "a &lt;b&gt;&amp;&quot;c.txt" in page
    assert 'href="a%20%3Cb%3E%26%22c.txt"' in page


def test_listing_refreshes_when_the_folder_changes(site, root):
    before = body_of(respond(site, "/list/"))
    (root / "list" / "new.txt").write_text("n")
    os.utime(root / "list", ns=(0, os.stat(root / "list").st_mtime_ns + 10**9))
    after = body_of(respond(site, "/list/"))
    assert b"new.txt" not in before and b"new.txt" in after


def test_no_listing_gives_404(root):
    assert respond(make_site(root, listing=False), "/list/").status == 404


# ---- methods ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_known_methods_get_405_with_allow(site, method):
    response = respond(site, "/abc.txt", method=method)
    assert response.status == 405
    assert "GET" in field(response, "Allow") and "HEAD" in field(response, "Allow")


def test_unknown_method_gets_501(site):
    assert respond(site, "/abc.txt", method="BREW").status == 501


@pytest.mark.parametrize("target", ["*", "/abc.txt"])
def test_options(site, target):
    response = respond(site, target, method="OPTIONS")
    assert response.status == 204
    assert {m.strip() for m in field(response, "Allow").split(",")} >= {"GET", "HEAD", "OPTIONS"}
    assert response.segments == ()


def test_get_star_is_400(site):
    assert respond(site, "*").status == 400


# ---- conditional requests (RFC 9110 section 13) --------------------------------------------

def _etag(root, name="abc.txt"):
    return validators.mtime_etag(os.stat(root / name))


def test_if_none_match_304_carries_validators(root):
    site = make_site(root, max_age=60)
    etag = _etag(root)
    response = respond(site, "/abc.txt", If_None_Match=etag)
    assert response.status == 304
    assert response.segments == () and response.fd is None
    assert field(response, "ETag") == etag
    assert field(response, "Last-Modified")
    assert field(response, "Cache-Control") == "max-age=60"
    assert field(response, "Content-Length") is None


@pytest.mark.parametrize("value", ['"nope", {etag}', "*", "W/{etag}", ' {etag} '])
def test_if_none_match_lists_star_and_weak_comparison(site, root, value):
    etag = _etag(root)
    assert respond(site, "/abc.txt", If_None_Match=value.format(etag=etag)).status == 304


def test_if_none_match_other_tag_is_200(site):
    response = respond(site, "/abc.txt", If_None_Match='"other"')
    assert response.status == 200 and body_of(response) == ABC


def test_if_none_match_takes_precedence_over_if_modified_since(site):
    # The tag does not match, so the (otherwise satisfied) date must be ignored.
    response = respond(site, "/abc.txt", If_None_Match='"other"', If_Modified_Since=FUTURE)
    assert response.status == 200
    body_of(response)


def test_if_modified_since(site, root):
    last_mod = headers.format_http_date(os.stat(root / "abc.txt").st_mtime)
    assert respond(site, "/abc.txt", If_Modified_Since=last_mod).status == 304
    assert respond(site, "/abc.txt", If_Modified_Since=FUTURE).status == 304
    assert respond(site, "/abc.txt", method="HEAD", If_Modified_Since=FUTURE).status == 304
    assert respond(site, "/abc.txt", If_Modified_Since=PAST).status == 200


@pytest.mark.parametrize("value", ["yesterday", "Fri, 01 Jan 2100 00:00:00", "", "1234567890"])
def test_invalid_if_modified_since_is_ignored(site, value):
    assert respond(site, "/abc.txt", If_Modified_Since=value).status == 200


def test_if_match(site, root):
    etag = _etag(root)
    assert respond(site, "/abc.txt", If_Match=etag).status == 200
    assert respond(site, "/abc.txt", If_Match=f'"x", {etag}').status == 200
    assert respond(site, "/abc.txt", If_Match="*").status == 200
    assert respond(site, "/abc.txt", If_Match='"other"').status == 412
    # If-Match uses the strong comparison: a weak tag never matches (RFC 9110 section 13.1.1).
    assert respond(site, "/abc.txt", If_Match="W/" + etag).status == 412


def test_if_unmodified_since(site):
    assert respond(site, "/abc.txt", If_Unmodified_Since=FUTURE).status == 200
    assert respond(site, "/abc.txt", If_Unmodified_Since=PAST).status == 412
    assert respond(site, "/abc.txt", If_Unmodified_Since="garbage").status == 200


def test_precondition_order(site, root):
    """RFC 9110 section 13.2.2: If-Match, else If-Unmodified-Since; then If-None-Match, else IMS."""
    etag = _etag(root)
    # Step 1 before step 3: a failing If-Match wins over a matching If-None-Match.
    assert respond(site, "/abc.txt", If_Match='"x"', If_None_Match=etag).status == 412
    # If-Unmodified-Since is not evaluated when If-Match is present.
    assert respond(site, "/abc.txt", If_Match=etag, If_Unmodified_Since=PAST).status == 200
    # A passing If-Match then a matching If-None-Match gives 304 for GET.
    assert respond(site, "/abc.txt", If_Match=etag, If_None_Match=etag).status == 304
    # Step 2 before step 4.
    assert respond(site, "/abc.txt", If_Unmodified_Since=PAST,
                   If_Modified_Since=FUTURE).status == 412


def test_412_head_has_no_body(site):
    response = respond(site, "/abc.txt", method="HEAD", If_Match='"x"')
    assert response.status == 412 and response.segments == ()


def test_preconditions_ignored_for_404(site):
    assert respond(site, "/nope", If_Match='"x"').status == 404


@pytest.mark.parametrize("name", ["If-Modified-Since", "If-Unmodified-Since", "If-Range"])
@pytest.mark.parametrize("value", ["Sun, 01 Jan 0000 00:00:00 GMT", "Sun Jan  1 00:00:00 0000"])
def test_year_zero_validators_are_ignored(tmp_path, name, value):
    (tmp_path / "big.bin").write_bytes(b"x" * BIG)
    site = make_site(tmp_path)
    before = own_fds()
    fields = {name.replace("-", "_"): value, "Range": "bytes=0-9"}
    response = respond(site, "/big.bin", **fields)
    body = body_of(response)
    if name == "If-Range":  # a validator that does not match: the whole file (13.1.5)
        assert response.status == 200 and len(body) == BIG
    else:  # an invalid date is ignored; the Range applies
        assert response.status == 206 and body == b"x" * 10
    assert own_fds() == before


# ---- ranges (RFC 9110 section 14) ---------------------------------------------------------

@pytest.mark.parametrize("value, size, expected", [
    ("bytes=0-4", 10, [(0, 4)]),
    ("bytes=5-", 10, [(5, 9)]),
    ("bytes=-3", 10, [(7, 9)]),
    ("bytes=-30", 10, [(0, 9)]),
    ("bytes=0-100", 10, [(0, 9)]),
    ("bytes=9-9", 10, [(9, 9)]),
    ("BYTES = 1-2", 10, [(1, 2)]),
    ("bytes=0-1, 4-5", 10, [(0, 1), (4, 5)]),
    ("bytes=4-5,0-1", 10, [(0, 1), (4, 5)]),
    ("bytes=0-3,2-5", 10, [(0, 5)]),           # overlapping: merged
    ("bytes=0-1,2-3", 10, [(0, 3)]),           # adjacent: merged
    ("bytes=0-,0-,0-", 10, [(0, 9)]),          # no amplification
    ("bytes=0-1,,4-5", 10, [(0, 1), (4, 5)]),  # empty list elements
    ("bytes=0-1,20-30", 10, [(0, 1)]),          # unsatisfiable parts dropped
    ("bytes=10-", 10, []),
    ("bytes=10-20", 10, []),
    ("bytes=-0", 10, []),
    ("bytes=0-", 0, []),
    ("bytes=-5", 0, []),
    ("bytes=5-2", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=1", 10, None),
    ("bytes=-", 10, None),
    ("bytes=--1", 10, None),
    ("bytes=1-2-3", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=\u00b2-3", 10, None),
    ("items=0-1", 10, None),
    ("bytes 0-1", 10, None),
    ("", 10, None),
    ("bytes=4294967296-4294967299", 5 << 30, [(4294967296, 4294967299)]),
])
def test_parse_range(value, size, expected):
    assert filesystem.parse_range(value, size) == expected


def test_parse_range_refuses_too_many_parts():
    many = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(17))
    assert filesystem.parse_range(many, 100, 16) is None
    assert len(filesystem.parse_range(many, 100, 17)) == 17


def test_single_range_from_cache_and_from_file(site, root):
    small = respond(site, "/abc.txt", Range="bytes=2-5")
    assert small.status == 206
    assert field(small, "Content-Range") == f"bytes 2-5/{len(ABC)}"
    assert field(small, "Content-Length") == "4"
    assert body_of(small) == ABC[2:6]
    data = (root / "big.bin").read_bytes()
    large = respond(site, "/big.bin", Range="bytes=-1000")
    assert large.status == 206
    assert field(large, "Content-Range") == f"bytes {len(data) - 1000}-{len(data) - 1}/{len(data)}"
    assert isinstance(large.segments[0], FileRegion)
    assert large.segments[0].offset == len(data) - 1000
    assert body_of(large) == data[-1000:]


@pytest.mark.parametrize("name", ["abc.txt", "big.bin"])
def test_multipart_byteranges(site, root, name):
    data = (root / name).read_bytes()
    response = respond(site, "/" + name, Range="bytes=0-2, 10-12, -4")
    assert response.status == 206
    assert field(response, "Content-Range") is None
    body = body_of(response)
    assert field(response, "Content-Length") == str(len(body))
    parts = parse_multipart(field(response, "Content-Type"), body)
    size = len(data)
    assert [(r, d) for _, r, d in parts] == [
        (f"bytes 0-2/{size}", data[0:3]), (f"bytes 10-12/{size}", data[10:13]),
        (f"bytes {size - 4}-{size - 1}/{size}", data[-4:])]
    assert {t for t, _, _ in parts} == {filesystem.content_type(name)}


def test_unsatisfiable_range_is_416(site):
    response = respond(site, "/abc.txt", Range="bytes=100-")
    assert response.status == 416
    assert field(response, "Content-Range") == f"bytes */{len(ABC)}"
    body_of(response)


def test_invalid_range_is_ignored(site):
    response = respond(site, "/abc.txt", Range="bytes=5-2")
    assert response.status == 200 and body_of(response) == ABC


def test_head_with_range_gets_200_fields(site):
    response = respond(site, "/abc.txt", method="HEAD", Range="bytes=0-1")
    assert response.status == 200
    assert field(response, "Content-Length") == str(len(ABC))
    assert field(response, "Content-Range") is None


def test_if_range(site, root):
    etag = _etag(root)
    last_mod = headers.format_http_date(os.stat(root / "abc.txt").st_mtime)
    assert respond(site, "/abc.txt", Range="bytes=0-1", If_Range=etag).status == 206
    assert respond(site, "/abc.txt", Range="bytes=0-1", If_Range=last_mod).status == 206
    assert respond(site, "/abc.txt", Range="bytes=0-1", If_Range='"stale"').status == 200
    assert respond(site, "/abc.txt", Range="bytes=0-1", If_Range="W/" + etag).status == 200
    assert respond(site, "/abc.txt", Range="bytes=0-1", If_Range=PAST).status == 200
    # If-Range without Range changes nothing.
    assert respond(site, "/abc.txt", If_Range='"stale"').status == 200


@pytest.mark.parametrize("value, expected", [
    (f"bytes={HUGE}-", []),                       # first position past any end: unsatisfiable
    (f"bytes={HUGE}-{HUGE}", []),
    ("bytes=" + "9" * 19 + "-", []),              # just past the 18-digit fast path
    ("bytes=" + "9" * 18 + "-", []),
    (f"bytes=0-{HUGE}", [(0, 99)]),               # a last position that long clamps to the end
    (f"bytes=5-{HUGE}", [(5, 99)]),
    (f"bytes=-{HUGE}", [(0, 99)]),                # so does a suffix length
    ("bytes=" + "0" * 5000 + "5-" + "0" * 5000 + "9", [(5, 9)]),  # leading zeros are not size
    (f"bytes=0-1, {HUGE}-", [(0, 1)]),
    (f"bytes={HUGE}-1", None),                    # last < first: the header is invalid
    ("bytes=1" + "0" * 5000 + "-" + HUGE, None),
], ids=lambda case: case[:40] if isinstance(case, str) else None)
def test_parse_range_handles_overlong_numbers_without_int(value, expected):
    assert filesystem.parse_range(value, 100) == expected


@pytest.mark.parametrize("target", ["_preconditions", "_if_range_allows"])
def test_serve_file_closes_its_fd_when_evaluation_raises(tmp_path, monkeypatch, target):
    (tmp_path / "big.bin").write_bytes(b"x" * BIG)
    site = make_site(tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(responder, target, boom)
    before = own_fds()
    for _ in range(5):
        with pytest.raises(RuntimeError):
            respond(site, "/big.bin", Range="bytes=0-1", If_Range='"x"')
    assert own_fds() == before


def test_serve_file_closes_its_fd_when_parse_range_raises(tmp_path, monkeypatch):
    (tmp_path / "big.bin").write_bytes(b"x" * BIG)
    site = make_site(tmp_path)
    monkeypatch.setattr(filesystem, "parse_range", lambda *a, **k: 1 // 0)
    before = own_fds()
    for _ in range(5):
        with pytest.raises(ZeroDivisionError):
            respond(site, "/big.bin", Range="bytes=0-1")
    assert own_fds() == before


# ---- precompressed siblings --------------------------------------------------------------

@pytest.mark.parametrize("accept, coding, data", [
    ("br, gzip", "br", b"BROTLI"),
    ("gzip", "gzip", b"GZIPPED!"),
    ("br;q=0, gzip", "gzip", b"GZIPPED!"),
    ("gzip;q=0, br;q=0", None, None),
    ("*", "br", b"BROTLI"),
    ("*, br;q=0", "gzip", b"GZIPPED!"),
    ("identity", None, None),
    (None, None, None),
])
def test_precompressed_negotiation(site, root, accept, coding, data):
    fields = {"Accept_Encoding": accept} if accept is not None else {}
    response = respond(site, "/app.js", **fields)
    assert response.status == 200
    assert field(response, "Content-Encoding") == coding
    assert field(response, "Vary") == "Accept-Encoding"
    assert field(response, "Content-Type") == "text/javascript; charset=utf-8"
    expected = data if data is not None else (root / "app.js").read_bytes()
    name = {"br": "app.js.br", "gzip": "app.js.gz", None: "app.js"}[coding]
    # A sibling's own tag, marked with its coding (never the file's, even if mtime and size
    # coincide).
    etag = _etag(root, name)
    assert field(response, "ETag") == (etag if coding is None else coded_etag(etag, coding))
    assert field(response, "Content-Length") == str(len(expected))
    assert body_of(response) == expected


def test_precompressed_head_length(site):
    response = respond(site, "/app.js", method="HEAD", Accept_Encoding="br")
    assert field(response, "Content-Length") == str(len(b"BROTLI"))
    assert response.segments == ()


def test_stale_sibling_is_ignored(site, root):
    st = os.stat(root / "app.js")
    for name in ("app.js.br", "app.js.gz"):
        os.utime(root / name, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    response = respond(site, "/app.js", Accept_Encoding="br, gzip")
    assert field(response, "Content-Encoding") is None
    assert body_of(response) == (root / "app.js").read_bytes()


def test_no_vary_without_sibling(site):
    response = respond(site, "/abc.txt", Accept_Encoding="br")
    assert field(response, "Vary") is None and field(response, "Content-Encoding") is None


def test_range_applies_to_the_encoded_representation(site):
    response = respond(site, "/app.js", Accept_Encoding="br", Range="bytes=1-3")
    assert response.status == 206
    assert field(response, "Content-Range") == "bytes 1-3/6"
    assert body_of(response) == b"ROT"


def test_416_of_precompressed_does_not_claim_an_encoding(site):
    """The 416 body is our plain HTML page: labelled `br`, clients would fail to decode it."""
    response = respond(site, "/app.js", Accept_Encoding="br", Range="bytes=100-")
    assert response.status == 416
    assert field(response, "Content-Range") == "bytes */6"
    assert field(response, "Content-Encoding") is None
    assert field(response, "Vary") == "Accept-Encoding"
    assert body_of(response).startswith(b"<!DOCTYPE html>")


# ---- options -----------------------------------------------------------------------------

def test_max_age_and_immutable(root):
    assert field(respond(make_site(root, max_age=3600), "/abc.txt"), "Cache-Control") == \
        "max-age=3600"
    assert field(respond(make_site(root, max_age=60, immutable=True), "/abc.txt"),
                 "Cache-Control") == "max-age=60, immutable"
    assert field(respond(make_site(root), "/abc.txt"), "Cache-Control") is None


def test_cors(root):
    site = make_site(root, cors=True)
    assert field(respond(site, "/abc.txt"), "Access-Control-Allow-Origin") == "*"
    pre = respond(site, "/abc.txt", method="OPTIONS", Origin="https://a.example",
                  Access_Control_Request_Method="GET",
                  Access_Control_Request_Headers="X-Token, range")
    assert pre.status == 204
    assert field(pre, "Access-Control-Allow-Origin") == "*"
    assert "GET" in field(pre, "Access-Control-Allow-Methods")
    assert field(pre, "Access-Control-Allow-Headers") == "X-Token, range"
    assert field(respond(make_site(root), "/abc.txt"), "Access-Control-Allow-Origin") is None


def test_spa(root):
    (root / "index.html").write_text("<p>app</p>")
    site = make_site(root, spa=True)
    response = respond(site, "/some/route")
    assert response.status == 200 and body_of(response) == b"<p>app</p>"
    assert respond(site, "/missing.js").status == 404
    assert respond(make_site(root), "/some/route").status == 404


def test_custom_404_page(site, root):
    (root / "404.html").write_text("<p>custom missing</p>")
    response = respond(site, "/nope")
    assert response.status == 404
    assert body_of(response) == b"<p>custom missing</p>"
    head = respond(site, "/nope", method="HEAD")
    assert head.status == 404 and head.segments == ()
    assert field(head, "Content-Length") == str(len(b"<p>custom missing</p>"))


def test_dotfiles(root):
    (root / ".env").write_text("SECRET")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_text("contact")
    deny = make_site(root)
    assert respond(deny, "/.env").status == 404
    assert respond(deny, "/%2eenv").status == 404
    assert respond(deny, "/.well-known/security.txt").status == 200
    assert b".env" not in body_of(respond(deny, "/"))
    allow = make_site(root, dotfiles="allow")
    assert body_of(respond(allow, "/.env")) == b"SECRET"


def test_symlinks(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("outside")
    (root / "inside.txt").write_text("inside")
    (root / "in-link").symlink_to(root / "inside.txt")
    (root / "out-link").symlink_to(tmp_path / "outside.txt")
    (root / "out-dir").symlink_to(tmp_path, target_is_directory=True)
    site = make_site(root)
    assert body_of(respond(site, "/in-link")) == b"inside"
    assert respond(site, "/out-link").status == 404
    assert respond(site, "/out-dir/outside.txt").status == 404
    assert b"out-link" not in body_of(respond(site, "/"))
    follow = make_site(root, follow_symlinks=True)
    assert body_of(respond(follow, "/out-link")) == b"outside"


def test_sibling_root_prefix_is_not_inside(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www2").mkdir()
    (tmp_path / "www2" / "x.txt").write_text("x")
    (tmp_path / "www" / "link").symlink_to(tmp_path / "www2", target_is_directory=True)
    assert respond(make_site(tmp_path / "www"), "/link/x.txt").status == 404


@pytest.mark.parametrize("target, fields, spa, status", [
    ("/sub/", {}, False, 404),                          # dir/index.html
    ("/", {}, False, 404),
    ("/some/route", {}, True, 404),                     # --spa index.html
    ("/missing.txt", {}, False, 404),                   # 404.html
    ("/app.js", {"Accept_Encoding": "gzip"}, False, 200),  # precompressed siblings
    ("/app.js", {"Accept_Encoding": "br, gzip"}, False, 200),
])
def test_symlinked_derived_paths_do_not_escape_the_root(escape_root, target, fields, spa, status):
    site = make_site(escape_root, spa=spa, listing=False)
    for method in ("GET", "GET", "HEAD"):  # the second GET may come from the fast path
        response = respond(site, target, method=method, **fields)
        body = body_of(response)
        assert SECRET not in body
        assert response.status == status
        assert field(response, "Content-Encoding") is None
    if target == "/app.js":
        assert body_of(respond(site, target, **fields)) == b"console.log(1)\n"


def test_symlinks_inside_the_root_work_for_derived_paths(escape_root):
    site = make_site(escape_root)
    assert body_of(respond(site, "/inside/")) == b"<p>real</p>"
    response = respond(site, "/lib.js", Accept_Encoding="gzip")
    assert field(response, "Content-Encoding") == "gzip"
    assert body_of(response) == b"<p>real</p>"


def test_follow_symlinks_serves_derived_paths_outside(escape_root):
    site = make_site(escape_root, follow_symlinks=True)
    assert SECRET in body_of(respond(site, "/sub/"))
    assert SECRET in body_of(respond(site, "/missing.txt"))


def test_spa_index_that_cannot_be_opened_is_a_plain_404(tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<p>app</p>")
    site = make_site(tmp_path, spa=True)
    monkeypatch.setattr(filesystem, "open_regular", lambda path: None)
    for method in ("GET", "HEAD"):
        response = respond(site, "/some/route", method=method)
        assert response.status == 404
        assert body_of(response) == (b"" if method == "HEAD" else responder.error_page(404))


def test_file_vanishing_before_open_is_a_404_not_the_spa_page(tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<p>app</p>")
    (tmp_path / "big.bin").write_bytes(b"x" * BIG)
    (tmp_path / "small.txt").write_text("small")
    site = make_site(tmp_path, spa=True)
    real_open = filesystem.open_regular
    monkeypatch.setattr(filesystem, "open_regular",
                        lambda path: None if path.endswith((".bin", ".txt")) else real_open(path))
    for target in ("/big.bin", "/small.txt"):
        response = respond(site, target)
        assert response.status == 404
        assert b"app" not in body_of(response)


# ---- filesystem helpers ---------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/", ([], True)),
    ("/a/b", (["a", "b"], False)),
    ("/a//./b/", (["a", "b"], True)),
    ("/%61%20b", (["a b"], False)),
    ("/caf%C3%A9", (["caf\u00e9"], False)),
    ("/a%2Fb", (["a", "b"], False)),
    ("/.well-known/x", ([".well-known", "x"], False)),
])
def test_decode_segments(path, expected):
    assert filesystem.decode_segments(path, allow_dotfiles=False) == expected


@pytest.mark.parametrize("path", [
    "/a%00b", "/a%5Cb", "/a\\b",
    "/%C0%AE%C0%AE/x", "/%ff", "/a%0ab", "/a%7fb", "/.git/config", "/x/.env"])
def test_decode_segments_refuses(path):
    with pytest.raises(filesystem.NotFound):
        filesystem.decode_segments(path, allow_dotfiles=False)


def test_decode_segments_dotfiles_allowed():
    assert filesystem.decode_segments("/.env", allow_dotfiles=True) == ([".env"], False)
    with pytest.raises(filesystem.BadPath):
        filesystem.decode_segments("/..", allow_dotfiles=True)


@pytest.mark.parametrize("target, expected", [
    ("/a?b=c", ("/a", "b=c")),
    ("/a", ("/a", "")),
    ("http://h/a?q", ("/a", "q")),
    ("http://h:8080", ("/", "")),
    ("https://h?q", ("/", "?q"[1:])),
    ("*", None),
    ("h/a", None),
])
def test_split_target(target, expected):
    assert filesystem.split_target(target) == expected


@pytest.mark.parametrize("name, expected", [
    ("a.html", "text/html; charset=utf-8"),
    ("a.txt", "text/plain; charset=utf-8"),
    ("a.css", "text/css; charset=utf-8"),
    ("a.js", "text/javascript; charset=utf-8"),
    ("a.mjs", "text/javascript; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.map", "application/json; charset=utf-8"),
    ("a.svg", "image/svg+xml; charset=utf-8"),
    ("a.wasm", "application/wasm"),
    ("a.webp", "image/webp"),
    ("a.avif", "image/avif"),
    ("a.woff2", "font/woff2"),
    ("a.png", "image/png"),
    ("A.PNG", "image/png"),
    ("a.unknownext", "application/octet-stream"),
    ("Makefile", "application/octet-stream"),
    ("a.js.br", "application/x-brotli"),
])
def test_content_type(name, expected):
    assert filesystem.content_type(name) == expected


# Regression: these were application/octet-stream (Python's built-in table lacks them and differs
# from one version to the next), so a browser downloaded a feed or an .xhtml page instead of
# showing it. The types are nginx's mime.types' or, where it has none, IANA's.
@pytest.mark.parametrize("name, expected", [
    ("a.xhtml", "application/xhtml+xml; charset=utf-8"),
    ("a.rss", "application/rss+xml; charset=utf-8"),
    ("a.atom", "application/atom+xml; charset=utf-8"),
    ("a.jsonld", "application/ld+json; charset=utf-8"),
    ("a.geojson", "application/geo+json; charset=utf-8"),
    ("a.ics", "text/calendar; charset=utf-8"),
    ("a.yaml", "application/yaml; charset=utf-8"),
    ("a.yml", "application/yaml; charset=utf-8"),
    ("a.toml", "application/toml; charset=utf-8"),
    ("a.vtt", "text/vtt; charset=utf-8"),
    ("a.apng", "image/apng"),
    ("a.jxl", "image/jxl"),
    ("a.heic", "image/heic"),
    ("a.epub", "application/epub+zip"),
    ("a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("a.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("a.odt", "application/vnd.oasis.opendocument.text"),
    ("a.7z", "application/x-7z-compressed"),
    ("a.rar", "application/vnd.rar"),
    ("a.xz", "application/x-xz"),
    ("a.bz2", "application/x-bzip2"),
    ("a.zst", "application/zstd"),
    ("a.tar", "application/x-tar"),
    ("a.eot", "application/vnd.ms-fontobject"),
    ("a.rtf", "application/rtf"),
    ("a.jar", "application/java-archive"),
    ("a.m4a", "audio/mp4"),
    ("a.aac", "audio/aac"),
    ("a.oga", "audio/ogg"),
    ("a.mid", "audio/midi"),
    ("a.m4v", "video/mp4"),
    ("a.ogv", "video/ogg"),
    ("a.mkv", "video/x-matroska"),
    ("a.mov", "video/quicktime"),
    ("a.mpd", "application/dash+xml; charset=utf-8"),
    ("a.m3u8", "application/vnd.apple.mpegurl"),
    ("a.glb", "model/gltf-binary"),
    ("a.gltf", "model/gltf+json; charset=utf-8"),
    ("a.kml", "application/vnd.google-earth.kml+xml; charset=utf-8"),
])
def test_content_types_a_site_serves(name, expected):
    assert filesystem.content_type(name) == expected


def test_strong_etag_is_stable_and_changes_with_the_file(root):
    first = validators.mtime_etag(os.stat(root / "abc.txt"))
    assert first == validators.mtime_etag(os.stat(root / "abc.txt"))
    assert first.startswith('"') and first.endswith('"') and not first.startswith("W/")
    (root / "abc.txt").write_bytes(ABC + b"!")
    assert validators.mtime_etag(os.stat(root / "abc.txt")) != first


def test_stat_inside(escape_root):
    real_root = os.path.realpath(escape_root)
    inside = filesystem.stat_inside(real_root, os.path.join(real_root, "real.html"), False)
    assert inside is not None and inside.st_size == len("<p>real</p>")
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "inside/index.html"), False)
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "404.html"), False) is None
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "404.html"), True) is not None
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "sub"), False) is None
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "nope"), False) is None
    assert filesystem.stat_inside(real_root, os.path.join(real_root, "a\x00b"), False) is None


# ---- headers -------------------------------------------------------------------------------

EPOCH_1994 = 784111777


@pytest.mark.parametrize("value", [
    "Sun, 06 Nov 1994 08:49:37 GMT",      # IMF-fixdate
    "Sunday, 06-Nov-94 08:49:37 GMT",     # obsolete RFC 850
    "Sun Nov  6 08:49:37 1994",           # ANSI C asctime()
    "  Sun, 06 Nov 1994 08:49:37 GMT ",
])
def test_parse_http_date_formats(value):
    assert headers.parse_http_date(value) == EPOCH_1994


@pytest.mark.parametrize("value", [
    "", "garbage", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
    "Sun, 6 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT",
    "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 31 Nov 1994 08:49:37 GMT",
    "Sun, 00 Nov 1994 08:49:37 GMT",
])
def test_parse_http_date_invalid(value):
    assert headers.parse_http_date(value) is None


def test_rfc850_two_digit_year_window():
    this_year = time.gmtime().tm_year
    far = (this_year + 60) % 100
    parsed = headers.parse_http_date(f"Monday, 01-Jan-{far:02d} 00:00:00 GMT")
    assert time.gmtime(parsed).tm_year == this_year + 60 - 100
    near = (this_year + 1) % 100
    parsed = headers.parse_http_date(f"Monday, 01-Jan-{near:02d} 00:00:00 GMT")
    assert time.gmtime(parsed).tm_year == this_year + 1


def test_format_http_date_round_trips():
    text = headers.format_http_date(EPOCH_1994)
    assert text == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert headers.parse_http_date(text) == EPOCH_1994
    now = int(NOW)
    assert headers.parse_http_date(headers.format_http_date(now)) == now
    assert calendar.timegm(time.gmtime(now)) == now


@pytest.mark.parametrize("version, connection, expected", [
    ((1, 1), None, True), ((1, 1), "close", False), ((1, 1), "Keep-Alive", True),
    ((1, 1), "foo, Close", False), ((1, 0), None, False), ((1, 0), "keep-alive", True),
    ((1, 0), "Keep-Alive, Upgrade", True), ((1, 0), "keep-alive, close", False),
])
def test_wants_keep_alive(version, connection, expected):
    assert headers.wants_keep_alive(version, connection) is expected


@pytest.mark.parametrize("value, expected", [
    (None, {}), ("", {}), ("gzip", {"gzip": 1.0}), ("GZip;q=0.5, br", {"gzip": 0.5, "br": 1.0}),
    ("br;q=0", {"br": 0.0}), ("br; q=0.000", {"br": 0.0}), ("br;q=2", {"br": 0.0}),
    ("br;q=nan", {"br": 0.0}), ("br;q=x", {"br": 0.0}), ("*;q=0.1", {"*": 0.1}),
])
def test_quality_values(value, expected):
    assert headers.quality_values(value) == expected


def test_comma_list():
    assert headers.comma_list(' a , ,b,"c" ,') == ["a", "b", '"c"']
    assert headers.comma_list(None) == []


def test_error_page_never_echoes_request_data(site):
    response = respond(site, "/%3Cscript%3E")
    assert response.status == 404
    assert b"script" not in body_of(response)


@pytest.mark.parametrize("value", [
    "Sun, 01 Jan 0000 00:00:00 GMT",  # IMF-fixdate
    "Sun Jan  1 00:00:00 0000",       # asctime
    "Sat, 29 Feb 0000 00:00:00 GMT",
])
def test_parse_http_date_year_zero_is_invalid(value):
    assert headers.parse_http_date(value) is None


def test_parse_http_date_years_1_and_2000_parse():
    assert headers.parse_http_date("Mon, 01 Jan 0001 00:00:00 GMT") == -62135596800
    # RFC 850 two-digit years cannot name year 0: "00" is 2000 (RFC 9110 section 5.6.7).
    assert headers.parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT") == 946684800


def test_comma_list_trims_only_ows():
    # OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3): NBSP and NEL are obs-text, not whitespace.
    assert headers.comma_list(" a\xa0, \x85b ,\tc\t, \xa0 ,,") == ["a\xa0", "\x85b", "c", "\xa0"]
    assert headers.comma_list(" \t ") == []
    assert headers.tokens_lower("close\x85") == {"close\x85"}


# ---- the small-file response cache (fast path) --------------------------------------------

def test_cached_response_notices_a_changed_file(site, root):
    assert body_of(respond(site, "/abc.txt")) == ABC
    (root / "abc.txt").write_bytes(b"changed, same path")
    response = respond(site, "/abc.txt")
    assert body_of(response) == b"changed, same path"
    assert field(response, "ETag") == _etag(root)
    (root / "abc.txt").unlink()
    assert respond(site, "/abc.txt").status == 404


def test_cached_response_head_then_get(site):
    head = respond(site, "/abc.txt", method="HEAD")
    assert head.segments == () and field(head, "Content-Length") == str(len(ABC))
    assert body_of(respond(site, "/abc.txt")) == ABC
    assert respond(site, "/abc.txt", method="HEAD").segments == ()


def test_cached_response_notices_a_removed_sibling(site, root):
    assert body_of(respond(site, "/app.js", Accept_Encoding="br")) == b"BROTLI"
    (root / "app.js.br").unlink()
    response = respond(site, "/app.js", Accept_Encoding="br")
    assert field(response, "Content-Encoding") is None
    assert body_of(response) == (root / "app.js").read_bytes()


def test_cached_response_keys_on_accept_encoding(site):
    assert body_of(respond(site, "/app.js", Accept_Encoding="gzip")) == b"GZIPPED!"
    assert body_of(respond(site, "/app.js", Accept_Encoding="br")) == b"BROTLI"
    assert field(respond(site, "/app.js"), "Content-Encoding") is None


def test_a_future_mtime_follows_the_clock_and_is_not_cached(site, root, monkeypatch):
    # RFC 9110 section 8.8.2.1: Last-Modified is never later than the message's date; a kept
    # answer would repeat one second's date after it, so such a file stays out of the cache.
    future = NOW + 10 * 365 * 86400
    os.utime(root / "abc.txt", (future, future))
    clock = [NOW + 100.0]
    monkeypatch.setattr(filesystem.time, "time", lambda: clock[0])
    for _ in range(2):
        response = respond(site, "/abc.txt")  # the same instant: the cache would answer
        assert field(response, "Last-Modified") == headers.format_http_date(clock[0])
        assert body_of(response) == ABC
        clock[0] += 5.0


@pytest.mark.parametrize("name", ["abc.txt", "big.bin"])
def test_if_modified_since_compares_the_date_sent_for_a_future_mtime(site, root, monkeypatch,
                                                                      name):
    # The date a client got back as Last-Modified revalidates within its second (REDbot's
    # check: a 200 there reads as no If-Modified-Since support); a second later the file's
    # stated date has moved on past it.
    future = NOW + 10 * 365 * 86400
    os.utime(root / name, (future, future))
    clock = [NOW + 100.0]
    monkeypatch.setattr(filesystem.time, "time", lambda: clock[0])
    sent = field(respond(site, "/" + name, method="HEAD"), "Last-Modified")
    assert respond(site, "/" + name, If_Modified_Since=sent).status == 304
    clock[0] += 5.0
    later = respond(site, "/" + name, If_Modified_Since=sent)
    assert later.status == 200
    body_of(later)


def test_conditionals_bypass_the_cache(site, root):
    body_of(respond(site, "/abc.txt"))
    assert respond(site, "/abc.txt", If_None_Match=_etag(root)).status == 304
    assert respond(site, "/abc.txt", Range="bytes=0-0").status == 206


def test_fifo_is_not_served_and_does_not_block(site, root):
    os.mkfifo(root / "pipe")
    assert respond(site, "/pipe").status == 404
    assert b"pipe" not in body_of(respond(site, "/"))


def test_empty_file_ranges_are_416(site):
    response = respond(site, "/empty.txt", Range="bytes=0-0")
    assert response.status == 416
    assert field(response, "Content-Range") == "bytes */0"


def test_fast_path_cache_ignores_the_query(tmp_path):
    (tmp_path / "f.js").write_bytes(b"a" * 1000)
    site = make_site(tmp_path)
    first = respond(site, "/f.js?v=0")
    for i in range(200):
        again = respond(site, f"/f.js?v={i}")
        assert again.status == 200 and body_of(again) == b"a" * 1000
    assert len(site._fast) == 1
    assert respond(site, "/f.js?v=new") is respond(site, "/f.js")
    assert body_of(first) == b"a" * 1000
    # Accept-Encoding is still part of the key.
    respond(site, "/f.js?v=1", Accept_Encoding="gzip")
    assert len(site._fast) == 2


def test_fast_path_cache_is_bounded(tmp_path):
    count = site_module.FAST_PATH_ENTRIES + 10
    assert site_module.FAST_PATH_ENTRIES <= 1024
    for i in range(count):
        (tmp_path / f"{i}.txt").write_bytes(b"x")
    site = make_site(tmp_path)
    for i in range(count):
        assert respond(site, f"/{i}.txt").status == 200
    assert len(site._fast) == site_module.FAST_PATH_ENTRIES


def test_site_caches_survive_concurrent_use(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello\n")
    (tmp_path / "b.txt").write_text("b" * 5000)
    site = make_site(tmp_path)
    threads_per_round = 16
    errors = []
    for rnd in range(80):
        req = request("/a.txt")
        responder.respond(req, site, time.monotonic())  # populate the fast path
        os.utime(path, ns=(rnd * 10**9 + 5, rnd * 10**9 + 5))  # identity changes
        barrier = threading.Barrier(threads_per_round)

        def worker(req=req, barrier=barrier):
            barrier.wait()
            try:
                for target in ("/a.txt", "/b.txt"):
                    r = request(target) if target != "/a.txt" else req
                    response = responder.respond(r, site, time.monotonic())
                    assert response.status == 200
            except Exception as exc:  # noqa: BLE001 - any exception is the failure
                errors.append(repr(exc))

        threads = [threading.Thread(target=worker) for _ in range(threads_per_round)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
    # No lost update: the byte count matches what is cached.
    assert site._small_file_bytes == sum(len(data) for _, data in site._small_files.values())


def test_small_file_byte_count_stays_exact_under_threads(tmp_path, monkeypatch):
    # A tiny budget forces evictions on nearly every insert.
    monkeypatch.setattr(site_module, "SMALL_FILE_CACHE_BYTES", 3000)
    for i in range(8):
        (tmp_path / f"{i}.txt").write_bytes(b"z" * 1000)
    site = make_site(tmp_path)
    errors = []

    def worker(seed):
        try:
            for n in range(300):
                name = str(tmp_path / f"{(seed + n) % 8}.txt")
                st = os.stat(name)
                assert site.small_file(name, st) == b"z" * 1000
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert site._small_file_bytes == sum(len(data) for _, data in site._small_files.values())
    assert site._small_file_bytes <= 3000


def test_pop_oldest_tolerates_an_empty_or_shrunk_cache():
    assert site_module._pop_oldest({}) is None
    cache = {"a": 1, "b": 2}
    assert site_module._pop_oldest(cache) == ("a", 1)
    assert cache == {"b": 2}
