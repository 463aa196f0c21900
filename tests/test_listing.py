"""Folder listings (listing.py): what they show, in which order, and how.

Pure checks of the order a query asks for, the entries shown, both renderings and the site's
cache of them; then the same over real sockets in both engines. The browser's side (filter,
sort links, dark mode) is in test_listing_browser.py.
"""

from __future__ import annotations

import html
import json
import os
import sys
import urllib.parse

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.listing import BASE_TIME, SORTED_NAMES, ListingPage, sort_folder
from tests.helpers.respond import body_of, field, make_site, respond
from tests.helpers.servers import MODES, ServerProcess
from tests.helpers.sites import POSIX_NAMES_ONLY

from reactor_http import filesystem, listing, livereload, pathrules, website
from reactor_http.config import Config

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="names NTFS cannot hold")


# ---- which names are shown ------------------------------------------------------------------

@POSIX_ONLY
def test_a_name_that_is_not_utf8_is_left_out_not_a_500(tmp_path):
    # No request can name it (a path must decode as UTF-8), and rendering it raised.
    (tmp_path / "x").mkdir()
    with open(os.path.join(os.fsencode(tmp_path), b"x", b"bad\xff.txt"), "wb") as file:
        file.write(b"x")
    (tmp_path / "x" / "good.txt").write_text("g")
    site = make_site(tmp_path)
    response = respond(site, "/x/")
    assert response.status == 200
    page = body_of(response)
    assert b"good.txt" in page and b"bad" not in page
    json_body = body_of(respond(site, "/x/", accept="application/json"))
    assert b"good.txt" in json_body and b"bad" not in json_body


HOSTILE_NAMES = ['say "hi".txt', "<script>alert(1).txt",
                 "<img src=x onerror=alert(1)>", "fish & chips.txt",
                 "café ☕ 日本.txt", "100% done.txt", "#hash.txt", "what?.txt", "a=1&b=2",
                 "' onmouseover='x.txt", "javascript:alert(1)", "semi;colon",
                 "plus+sign.txt", "space at end "]
#: Names a request cannot spell (a control character or a backslash: normalize_path refuses
#: them), so a listing leaves them out rather than link to a 404.
UNREACHABLE_NAMES = ["unreachable new\nline.txt", "unreachable tab\there.txt",
                     "unreachable back\\slash.txt", "unreachable bell\x07.txt"]


def posix_site(root, **options):
    """A Site under POSIX name rules whatever the platform simulated (the names above)."""
    config = Config(root=str(root), **options).validate()
    return website.Site(config, path_rules=pathrules.POSIX)


@pytest.fixture
def hostile_root(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for index, name in enumerate(HOSTILE_NAMES + UNREACHABLE_NAMES):
        (folder / name).write_text(f"file {index}")
    (folder / "dir <&> \"x\"").mkdir()
    return tmp_path


# ---- the order a query asks for ---------------------------------------------------------------

@pytest.mark.parametrize("query, key, descending", [
    ("", "name", False), ("sort=name&order=asc", "name", False),
    ("sort=size", "size", False), ("sort=size&order=desc", "size", True),
    ("order=desc", "name", True), ("sort=modified&order=desc", "modified", True),
    ("order=desc&sort=modified", "modified", True), ("sort=date", "modified", False),
    ("sort=SIZE&order=DESC", "size", True), ("sort=%73ize&order=de%73c", "size", True),
    ("%73ort=size&%6Frder=desc", "size", True), ("sort=size+&order=%20desc", "size", True),
    ("x=1&sort=size&y", "size", False), ("sort=+size+", "size", False),
    # unknown values: that parameter's default
    ("sort=bogus&order=desc", "name", True), ("sort=size&order=up", "size", False),
    ("sort=&order=", "name", False), ("sort&order", "name", False),
    # repeated: the default, whichever value came first
    ("sort=size&sort=name", "name", False), ("sort=size&sort=size", "name", False),
    ("sort=size&order=asc&order=desc", "size", False),
    # garbage
    ("%%%", "name", False), ("sort=%ff%fe", "name", False), ("=&=&&", "name", False),
    ("sort=size;order=desc", "name", False), ("sort=size%00", "name", False),
    ("sort=" + "s" * 5000, "name", False), ("&".join(["sort=size"] * 500), "name", False),
    ("sort=size&order=desc#frag", "size", False), ("sort=ſize", "name", False),
])
def test_parse_order(query, key, descending):
    assert listing.parse_order(query) == listing.Order(key, descending)


def test_each_order_has_one_query_spelling():
    orders = [listing.Order(key, descending) for key in ("name", "size", "modified")
              for descending in (False, True)]
    assert [listing.parse_order(order.query) for order in orders] == orders
    assert listing.DEFAULT_ORDER.query == "sort=name&order=asc"


# ---- sorting ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, direction", SORTED_NAMES)
def test_sort_entries_every_key_both_orders(tmp_path, key, direction):
    folder = sort_folder(tmp_path)
    entries = filesystem.listing_entries(str(tmp_path), str(folder), allow_dotfiles=False,
                                         follow_symlinks=False)
    shown = listing.sort_entries(entries, listing.Order(key, direction == "desc"))
    assert [name + "/" * is_dir for name, is_dir, _ in shown] == SORTED_NAMES[key, direction]


def test_sorting_does_not_depend_on_the_order_names_come_in(tmp_path):
    folder = sort_folder(tmp_path)
    entries = filesystem.listing_entries(str(tmp_path), str(folder), allow_dotfiles=False,
                                         follow_symlinks=False)
    for key in ("name", "size", "modified"):
        for descending in (False, True):
            order = listing.Order(key, descending)
            once = listing.sort_entries(entries, order)
            assert listing.sort_entries(reversed(entries), order) == once
            assert listing.sort_entries(once[::-1], order) == once


@pytest.mark.parametrize("key, direction", SORTED_NAMES)
def test_html_and_json_follow_the_query(tmp_path, key, direction):
    sort_folder(tmp_path)
    site = make_site(tmp_path)
    query = f"?sort={key}&order={direction}"
    page = ListingPage(body_of(respond(site, "/sort/" + query)))
    assert page.names() == SORTED_NAMES[key, direction]
    shown = json.loads(body_of(respond(site, "/sort/" + query, accept="application/json")))
    assert [item["name"] + "/" * (item["type"] == "dir") for item in shown] == \
        SORTED_NAMES[key, direction]


def test_json_keeps_its_fields(tmp_path):
    sort_folder(tmp_path)
    shown = json.loads(body_of(respond(make_site(tmp_path), "/sort/?sort=size&order=desc",
                                       accept="application/json")))
    assert shown[2] == {"name": "a.txt", "type": "file", "size": 10,
                        "modified": "2023-11-14T22:13:23Z"}
    assert shown[0] == {"name": "A-dir", "type": "dir", "size": 0,
                        "modified": "2023-11-14T22:13:25Z"}
    assert all(set(item) == {"name", "type", "size", "modified"} for item in shown)


def test_an_unusable_query_gets_the_default_listing_never_an_error(tmp_path):
    sort_folder(tmp_path)
    site = make_site(tmp_path)
    plain = body_of(respond(site, "/sort/"))
    for query in ("?sort=nope", "?order=sideways", "?%%%", "?sort=size&sort=name",
                  "?sort=name&order=asc", "?download=zip", "?sort=%ff"):
        response = respond(site, "/sort/" + query)
        assert response.status == 200, query
        assert body_of(response) == plain, query


# ---- the weak ETag and the cache, per order ----------------------------------------------------

def test_each_order_has_its_own_etag_html_and_json(tmp_path):
    sort_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    site = make_site(tmp_path)
    for path in ("/sort/", "/empty/"):
        tags = set()
        for key, direction in SORTED_NAMES:
            query = f"?sort={key}&order={direction}"
            for accept in ("text/html", "application/json"):
                response = respond(site, path + query, accept=accept)
                assert response.status == 200
                tags.add(field(response, "ETag"))
        assert len(tags) == 12, path  # 6 orders x 2 formats; an empty folder's JSON too
        assert all(tag.startswith('W/"') for tag in tags)


def test_one_order_however_spelled_is_one_entry_and_one_tag(tmp_path):
    sort_folder(tmp_path)
    site = make_site(tmp_path)
    tags = {field(respond(site, "/sort/" + query), "ETag")
            for query in ("", "?sort=name", "?order=asc", "?sort=NAME&order=asc", "?x=1",
                          "?sort=nonsense", "?sort=name&sort=size")}
    assert len(tags) == 1
    assert len(site._listings) == 1
    for number in range(50):  # a crawler's queries cannot grow the cache past six orders
        respond(site, f"/sort/?sort=size&order=desc&n={number}")
        respond(site, f"/sort/?sort=x{number}")
    assert len(site._listings) == 2


def test_if_none_match_is_per_order(tmp_path):
    sort_folder(tmp_path)
    site = make_site(tmp_path)
    by_size = field(respond(site, "/sort/?sort=size"), "ETag")
    assert respond(site, "/sort/?sort=size", if_none_match=by_size).status == 304
    assert respond(site, "/sort/", if_none_match=by_size).status == 200
    assert respond(site, "/sort/?sort=size&order=desc", if_none_match=by_size).status == 200


def test_a_listing_never_enters_the_answer_cache(tmp_path):
    sort_folder(tmp_path)
    site = make_site(tmp_path)
    for query in ("", "?sort=size", "?sort=modified&order=desc"):
        assert respond(site, "/sort/" + query).status == 200
    assert site._fast == {}


# ---- the page ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, direction", SORTED_NAMES)
def test_headers_link_each_order_and_mark_the_current_one(tmp_path, key, direction):
    sort_folder(tmp_path)
    query = f"?sort={key}&order={direction}"
    page = ListingPage(body_of(respond(make_site(tmp_path), "/sort/" + query)))
    expected = []
    for column, label in (("name", "Name"), ("size", "Size"), ("modified", "Modified (UTC)")):
        if column == key:
            toggled = "asc" if direction == "desc" else "desc"
            aria = "descending" if direction == "desc" else "ascending"
            expected.append((f"?sort={column}&order={toggled}", aria, label))
        else:
            expected.append((f"?sort={column}&order=asc", None, label))
    assert page.headers == expected


def test_page_markup(tmp_path):
    sort_folder(tmp_path)
    (tmp_path / "sort" / "big.bin").write_bytes(b"\0" * 1536)
    os.utime(tmp_path / "sort" / "big.bin", (BASE_TIME, BASE_TIME))
    page = body_of(respond(make_site(tmp_path), "/sort/")).decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "prefers-color-scheme:dark" in page and "@media (max-width:" in page
    assert page.count('<th scope="col"') == 3 and "<caption>2 folders, 5 files</caption>" in page
    assert '<td class="s" title="1536 bytes">1.5 KiB</td>' in page
    assert '<td class="s" title="10 bytes">10 B</td>' in page
    assert '<time datetime="2023-11-14T22:13:20Z">2023-11-14 22:13:20Z</time>' in page
    assert '<input type="search" id="filter"' in page and " hidden>" in page  # shown by script
    assert "<title>Index of /sort/</title>" in page
    # Nothing is fetched: no link but the empty data: icon (which keeps the browser from
    # asking for /favicon.ico), no src, no url(), no @import, no address.
    assert page.count("<link") == 1 and '<link rel="icon" href="data:,">' in page
    for external in ("src=", "url(", "@import", "http:", "https:", "//"):
        assert external not in page, external


@pytest.mark.parametrize("path, crumbs", [
    ("/", [("./", "/")]),
    ("/a/", [("../", "/"), ("./", "a")]),
    ("/a/b%20c/d/", [("../../../", "/"), ("../../", "a"), ("../", "b c"), ("./", "d")]),
])
def test_breadcrumbs_link_every_parent(tmp_path, path, crumbs):
    (tmp_path / "a" / "b c" / "d").mkdir(parents=True)
    page = ListingPage(body_of(respond(make_site(tmp_path), path)))
    assert page.heading_links == crumbs
    assert page.title == "Index of " + crumbs_path(crumbs)


def crumbs_path(crumbs) -> str:
    """The folder path the breadcrumbs spell: `/a/b c/`."""
    return "/" + "".join(text + "/" for _, text in crumbs[1:])


def test_the_page_overhead_stays_small(tmp_path):
    (tmp_path / "empty").mkdir()
    page = body_of(respond(make_site(tmp_path), "/empty/"))
    assert len(page) < 8 * 1024, len(page)
    (tmp_path / "full").mkdir()
    for number in range(100):
        (tmp_path / "full" / f"file-{number:03}.txt").write_text("x")
    full = body_of(respond(make_site(tmp_path), "/full/"))
    per_row = (len(full) - len(page)) / 100
    assert per_row < 200, per_row


def test_download_links_only_when_offered(tmp_path):
    (tmp_path / "d").mkdir()
    site = make_site(tmp_path)
    assert b"download" not in body_of(respond(site, "/d/"))
    entries = filesystem.listing_entries(str(tmp_path), str(tmp_path / "d"),
                                         allow_dotfiles=False, follow_symlinks=False)
    page = listing.render_html(entries, "/d/", downloads=("zip", "tar", "tar_gz"))
    assert b'<a href="?download=zip">.zip</a> <a href="?download=tar">.tar</a> ' \
        b'<a href="?download=tar_gz">.tar.gz</a>' in page


def test_human_size():
    assert [listing.human_size(size) for size in (0, 1023, 1024, 1536, 1024 ** 2 * 5,
                                                   1024 ** 3, 1024 ** 4 * 3, 1024 ** 5)] == \
        ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "1.0 GiB", "3.0 TiB", "1024.0 TiB"]


# ---- hostile names ----------------------------------------------------------------------------

@POSIX_ONLY
def test_hostile_names_are_escaped_and_encoded(hostile_root):
    site = posix_site(hostile_root)
    raw = body_of(respond(site, "/odd/"))
    page = ListingPage(raw)
    text = raw.decode("utf-8")
    folder = 'dir <&> "x"'
    expected = sorted(HOSTILE_NAMES) + [folder + "/"]
    assert sorted(page.names()) == sorted(expected)
    for name in HOSTILE_NAMES + [folder]:
        slash = "/" if name == folder else ""
        href = urllib.parse.quote(name, safe="") + slash
        assert (href, name + slash) in page.rows, name
        assert f'href="{href}"' in text, name
        assert f">{html.escape(name)}{slash}<" in text, name
    # Nothing a name holds reaches the page unescaped.
    for fragment in ("<script>alert", "<img", 'say "hi"', "fish & chips", 'dir <&>'):
        assert fragment not in text, fragment
    assert "' onmouseover" not in text and 'href="javascript:' not in text
    assert "unreachable" not in text


@POSIX_ONLY
def test_hostile_names_in_json(hostile_root):
    site = posix_site(hostile_root)
    body = body_of(respond(site, "/odd/", accept="application/json"))
    assert body.isascii()
    names = [item["name"] for item in json.loads(body)]
    assert sorted(names) == sorted(HOSTILE_NAMES + ['dir <&> "x"'])


@POSIX_ONLY
def test_every_link_of_a_hostile_listing_answers(hostile_root):
    site = posix_site(hostile_root)
    page = ListingPage(body_of(respond(site, "/odd/")))
    for href, text in page.rows:
        target = urllib.parse.urljoin("/odd/", href)
        response = respond(site, target)
        assert response.status == 200, (href, text)
        body = body_of(response)
        if not text.endswith("/"):
            index = (HOSTILE_NAMES + UNREACHABLE_NAMES).index(text)
            assert body == f"file {index}".encode(), text


def test_dotfiles_follow_the_request_rule_well_known_included(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".env").write_text("secret")
    (tmp_path / "d" / ".well-known").mkdir()
    (tmp_path / "d" / "plain").write_text("p")
    hidden = ListingPage(body_of(respond(make_site(tmp_path), "/d/"))).names()
    assert hidden == [".well-known/", "plain"]
    shown = ListingPage(body_of(respond(make_site(tmp_path, dotfiles="allow"), "/d/"))).names()
    assert shown == [".well-known/", ".env", "plain"]


def test_the_names_left_out_are_the_ones_no_request_reaches(hostile_root):
    site = posix_site(hostile_root)
    for name in UNREACHABLE_NAMES:
        assert respond(site, "/odd/" + urllib.parse.quote(name)).status == 404, name


# ---- over real sockets, both engines -----------------------------------------------------------

@pytest.fixture(scope="module")
def listing_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("listing")
    sort_folder(root)
    odd = root / "odd"
    odd.mkdir()
    for index, name in enumerate(HOSTILE_NAMES):
        try:
            (odd / name).write_text(f"file {index}")
        except OSError:  # a name this filesystem cannot hold
            pass
    return root


@pytest.fixture(scope="module", params=MODES)
def listing_server(request, listing_root):
    server = ServerProcess(listing_root, request.param, "--quiet")
    yield server
    server.stop()


@pytest.mark.parametrize("key, direction", SORTED_NAMES)
def test_sorted_listings_over_sockets(listing_server, key, direction):
    query = f"?sort={key}&order={direction}"
    page = get(listing_server, "/sort/" + query)
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert ListingPage(page.body).names() == SORTED_NAMES[key, direction]
    shown = get(listing_server, "/sort/" + query, {"Accept": "application/json"})
    assert shown.headers["content-type"] == "application/json"
    assert [item["name"] + "/" * (item["type"] == "dir") for item in json.loads(shown.body)] \
        == SORTED_NAMES[key, direction]
    for answer in (page, shown):
        assert answer.headers["vary"] == "Accept" and answer.headers["cache-control"] == "no-cache"
        etag = answer.headers["etag"]
        accept = answer.headers["content-type"].partition(";")[0]
        again = get(listing_server, "/sort/" + query, {"Accept": accept, "If-None-Match": etag})
        assert again.status == 304 and again.headers["etag"] == etag
        other = get(listing_server, "/sort/?sort=name&order=" +
                    ("asc" if (key, direction) != ("name", "asc") else "desc"),
                    {"Accept": accept, "If-None-Match": etag})
        assert other.status == 200 and other.headers["etag"] != etag
    head = get(listing_server, "/sort/" + query, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) == len(page.body)
    assert head.headers["etag"] == page.headers["etag"]


def test_orders_on_one_keep_alive_connection(listing_server):
    # Repeated heads are memoised by the protocol; a listing is never replayed from the answer
    # cache (whose key has no query), so each request gets its own order, pipelined or not.
    targets = ["/sort/?sort=size&order=desc", "/sort/", "/sort/?sort=size&order=desc",
               "/sort/?sort=modified", "/sort/", "/sort/?sort=size&order=desc"]
    expected = [SORTED_NAMES["size", "desc"], SORTED_NAMES["name", "asc"],
                SORTED_NAMES["size", "desc"], SORTED_NAMES["modified", "asc"],
                SORTED_NAMES["name", "asc"], SORTED_NAMES["size", "desc"]]
    host = f"Host: 127.0.0.1:{listing_server.port}\r\n"
    with listing_server.connect() as sock:
        buffer = bytearray()
        for target, names in zip(targets, expected, strict=True):  # one at a time
            sock.sendall(f"GET {target} HTTP/1.1\r\n{host}\r\n".encode())
            assert ListingPage(read_response(sock, buffer).body).names() == names, target
        sock.sendall(b"".join(f"GET {target} HTTP/1.1\r\n{host}\r\n".encode()
                              for target in targets))  # pipelined
        for target, names in zip(targets, expected, strict=True):
            assert ListingPage(read_response(sock, buffer).body).names() == names, target


def test_a_folder_redirect_keeps_the_sort_query(listing_server):
    response = get(listing_server, "/sort?sort=size&order=desc")
    assert response.status == 301 and response.headers["location"] == "/sort/?sort=size&order=desc"


@pytest.mark.parametrize("query", ["?sort=bogus", "?order=%ff", "?sort=size&sort=name", "?%%",
                                   "?sort=" + "x" * 3000])
def test_garbage_queries_get_the_default_listing_over_sockets(listing_server, query):
    response = get(listing_server, "/sort/" + query)
    assert response.status == 200
    assert ListingPage(response.body).names() == SORTED_NAMES["name", "asc"]


@POSIX_NAMES_ONLY
def test_every_link_of_a_hostile_listing_answers_over_sockets(listing_server, listing_root):
    page = ListingPage(get(listing_server, "/odd/").body)
    names = page.names()
    assert sorted(names) == sorted(HOSTILE_NAMES)
    for href, text in page.rows:
        target = urllib.parse.urljoin("/odd/", href)
        response = get(listing_server, target)
        assert response.status == 200, (href, text)
        if href != "../":
            assert response.body == (listing_root / "odd" / text).read_bytes(), text


def test_live_reload_goes_into_sorted_listings(make_server, listing_root, mode):
    server = make_server(listing_root, mode, "--quiet", "--live-reload")
    page = get(server, "/sort/?sort=size&order=desc")
    assert page.status == 200 and page.body.count(livereload.SCRIPT) == 1
    assert page.body.index(b'id="filter"') < page.body.index(livereload.SCRIPT)
    assert ListingPage(page.body).names() == SORTED_NAMES["size", "desc"]
    etag = page.headers["etag"]
    assert etag.endswith('-lr"') and etag != get(server, "/sort/").headers["etag"]
    assert get(server, "/sort/?sort=size&order=desc", {"If-None-Match": etag}).status == 304
    shown = get(server, "/sort/?sort=size&order=desc", {"Accept": "application/json"})
    assert livereload.SCRIPT not in shown.body and json.loads(shown.body)[2]["name"] == "a.txt"


def test_a_folder_a_rule_rewrites_to_is_sorted_as_asked(tmp_path):
    sort_folder(tmp_path)
    (tmp_path / "_redirects").write_text("/alias /sort/ 200\n")
    site = make_site(tmp_path)
    for key, direction in SORTED_NAMES:
        response = respond(site, f"/alias?sort={key}&order={direction}")
        assert response.status == 200
        assert ListingPage(body_of(response)).names() == SORTED_NAMES[key, direction]
    assert "_redirects" not in ListingPage(body_of(respond(site, "/"))).names()
