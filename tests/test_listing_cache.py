"""Caching details: listings carry a weak ETag and answer 304 to it; --max-age without `public`.

RFC 9110 section 13.1.2: If-None-Match uses weak comparison, so a listing's W/"..." tag matches
in either form; section 13.1.1: If-Match uses strong comparison, which a weak tag never passes.
RFC 9111 section 5.2.2.9: `public` would let shared caches store answers to requests that carried
credentials, and max-age alone already makes a response cacheable.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.respond import NOW, body_of, field, make_site, request, respond
from tests.helpers.servers import MODES, ServerProcess

from reactor_http import responder
from reactor_http import website as site_module

PAST = "Sun, 06 Nov 1994 08:49:37 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


@pytest.fixture
def root(tmp_path):
    (tmp_path / "abc.txt").write_text("abc")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "b.txt").write_text("b")
    (tmp_path / "list" / "sub").mkdir()
    return tmp_path


@pytest.fixture
def site(root):
    return make_site(root)


def _listing_etag(site) -> str:
    return field(respond(site, "/list/"), "ETag")


# ---- the validator ----------------------------------------------------------------------------

def test_listing_has_a_weak_etag_and_no_cache(site):
    response = respond(site, "/list/")
    assert response.status == 200
    etag = field(response, "ETag")
    assert etag.startswith('W/"') and etag.endswith('"') and len(etag) > 6
    assert field(response, "Cache-Control") == "no-cache"
    assert field(response, "Last-Modified") is None
    head = respond(site, "/list/", method="HEAD")
    assert field(head, "ETag") == etag and head.segments == ()


def test_etag_is_stable_across_restarts_for_an_unchanged_folder(root):
    assert _listing_etag(make_site(root)) == _listing_etag(make_site(root))


@pytest.mark.parametrize("value", ["{etag}", "{strong}", '"other", {etag}', "*", " {etag} "])
def test_if_none_match_gets_304(site, value):
    etag = _listing_etag(site)
    strong = etag[2:]  # weak comparison: the opaque tags match, whatever their W/ prefix
    response = respond(site, "/list/", If_None_Match=value.format(etag=etag, strong=strong))
    assert response.status == 304
    assert response.segments == () and response.fd is None
    assert field(response, "ETag") == etag
    assert field(response, "Cache-Control") == "no-cache"
    assert field(response, "Content-Length") is None


def test_if_none_match_head_gets_304(site):
    etag = _listing_etag(site)
    assert respond(site, "/list/", method="HEAD", If_None_Match=etag).status == 304


def test_if_none_match_with_another_tag_gets_the_listing(site):
    response = respond(site, "/list/", If_None_Match='W/"nope"')
    assert response.status == 200
    assert b"b.txt" in body_of(response)


def test_if_match_uses_strong_comparison_so_a_weak_tag_fails(site):
    etag = _listing_etag(site)
    assert respond(site, "/list/", If_Match=etag).status == 412
    assert respond(site, "/list/", If_Match="*").status == 200


@pytest.mark.parametrize("name, value", [("If_Modified_Since", FUTURE),
                                         ("If_Unmodified_Since", PAST)])
def test_dates_are_ignored_without_a_last_modified(site, name, value):
    assert respond(site, "/list/", **{name: value}).status == 200


def test_304_carries_cors(root):
    site = make_site(root, cors=True)
    etag = _listing_etag(site)
    response = respond(site, "/list/", If_None_Match=etag)
    assert response.status == 304
    assert field(response, "Access-Control-Allow-Origin") == "*"


def test_etag_changes_when_an_entry_is_added(site, root):
    before = _listing_etag(site)
    (root / "list" / "new.txt").write_text("n")
    os.utime(root / "list", ns=(0, os.stat(root / "list").st_mtime_ns + 10**9))
    after = _listing_etag(site)
    assert after != before
    assert respond(site, "/list/", If_None_Match=before).status == 200


def test_file_changed_inside_is_shown_after_the_listing_ttl(site, root):
    # Growing a file changes the size the listing shows but not the folder's own stat.
    folder_st = os.stat(root / "list")
    first = responder.respond(request("/list/"), site, NOW)
    etag = field(first, "ETag")
    (root / "list" / "b.txt").write_bytes(b"b" * 5000)
    os.utime(root / "list", ns=(folder_st.st_atime_ns, folder_st.st_mtime_ns))
    later = responder.respond(request("/list/"), site, NOW + site_module.LISTING_TTL + 1)
    assert field(later, "ETag") != etag
    assert b"4.9 KiB" in body_of(later)


def test_spellings_of_a_folder_share_one_title_and_etag(site):
    etag = field(respond(site, "//list/./"), "ETag")
    assert field(respond(site, "/list/"), "ETag") == etag
    assert b"Index of /list/<" in body_of(respond(site, "/list/"))


def test_listing_cache_stays_bounded(site, root):
    for number in range(site_module.LISTING_CACHE_ENTRIES + 5):
        (root / f"d{number}").mkdir()
        assert respond(site, f"/d{number}/").status == 200
    assert len(site._listings) == site_module.LISTING_CACHE_ENTRIES


# ---- Cache-Control for files ------------------------------------------------------------------

@pytest.mark.parametrize("options, expected", [
    ({"max_age": 60}, "max-age=60"),
    ({"max_age": 0}, "max-age=0"),
    ({"max_age": 60, "immutable": True}, "max-age=60, immutable"),
    ({}, None)])
def test_max_age_has_no_public(root, options, expected):
    site = make_site(root, **options)
    assert field(respond(site, "/abc.txt"), "Cache-Control") == expected
    # A listing keeps no-cache whatever --max-age says: it must be revalidated.
    assert field(respond(site, "/list/"), "Cache-Control") == "no-cache"


# ---- over real sockets, both engines ----------------------------------------------------------

@pytest.fixture(scope="module")
def cache_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("listing-cache")
    (root / "abc.txt").write_text("abc")
    (root / "list").mkdir()
    (root / "list" / "b.txt").write_text("b")
    return root


@pytest.fixture(scope="module", params=MODES)
def cache_server(request, cache_site):
    server = ServerProcess(cache_site, request.param, "--quiet", "--max-age", "60")
    yield server
    server.stop()


def test_socket_listing_revalidates_with_304_on_keep_alive(cache_server):
    first = get(cache_server, "/list/")
    etag = first.headers["etag"]
    assert first.status == 200 and etag.startswith('W/"')
    assert first.headers["cache-control"] == "no-cache"
    host = f"Host: 127.0.0.1:{cache_server.port}\r\n"
    with cache_server.connect() as sock:
        sock.sendall(f"GET /list/ HTTP/1.1\r\n{host}If-None-Match: {etag}\r\n\r\n"
                     f"GET /abc.txt HTTP/1.1\r\n{host}\r\n".encode("latin-1"))
        buffer = bytearray()
        not_modified = read_response(sock, buffer)
        assert not_modified.status == 304
        assert not_modified.headers["etag"] == etag
        assert not_modified.body == b""
        after = read_response(sock, buffer)  # the 304 sent no body: the next answer is intact
        assert after.status == 200 and after.body == b"abc"
        assert after.headers["cache-control"] == "max-age=60"
