"""Path normalisation: percent-decoding, dot-segment removal (RFC 3986 section 5.2.4), merged
slashes, 400 above the root, and caches keyed by the normalised path.

Pure tests with a temporary folder first (filesystem.normalize_path, responder.respond), then
the same cases over real sockets in both engines.
"""

from __future__ import annotations

import pytest

from tests.helpers.http import assert_closed, get, read_response
from tests.helpers.respond import body_of, field, make_site, request, respond
from tests.helpers.servers import MODES, ServerProcess

from reactor_http import website as site_module
from reactor_http import filesystem, responder

ROOT_INDEX = b"<p>root index</p>"
ABC = b"abc file\n"


@pytest.fixture
def root(tmp_path):
    """A site with a root index, a folder with an index, one without, and a dotfile."""
    (tmp_path / "index.html").write_bytes(ROOT_INDEX)
    (tmp_path / "abc.txt").write_bytes(ABC)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "index.html").write_text("<p>dir</p>")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "x.txt").write_text("x")
    (tmp_path / ".env").write_text("SECRET=1\n")
    return tmp_path


@pytest.fixture
def site(root):
    return make_site(root)


# ---- normalize_path -------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/", ([], True)),
    ("", ([], True)),
    ("/dir/../", ([], True)),
    ("//dir///..////", ([], True)),
    ("/dir/..", ([], True)),
    ("/dir/.", (["dir"], True)),
    ("/a/./b/../c", (["a", "c"], False)),
    ("/a/b/c/./../../g", (["a", "g"], False)),  # RFC 3986 section 5.2.4's own example
    ("/a//b", (["a", "b"], False)),
    ("/a/%2e%2e/b", (["b"], False)),
    ("/a%2F..%2Fb", (["b"], False)),            # %2F separates segments, as in nginx
    ("/a%2fb", (["a", "b"], False)),
    ("/..a/b..", (["..a", "b.."], False)),      # only a whole `..` segment is a dot-segment
    ("/.../x", (["...", "x"], False)),
    ("/a/..%2e", (["a", "..."], False)),
])
def test_normalize_path(path, expected):
    assert filesystem.normalize_path(path) == expected


@pytest.mark.parametrize("path", [
    "/../", "/./dir/./../../", "/%2e%2e/", "/..", "/%2E%2E", "/a/../..", "//..", "/a/../../b",
    "/%2e%2e%2fabc.txt", "/dir/%2e%2e/%2e%2e/abc.txt", "/.%2e/x"])
def test_climbing_above_the_root_is_bad_path(path):
    with pytest.raises(filesystem.BadPath):
        filesystem.normalize_path(path)


@pytest.mark.parametrize("path", [
    "/a%5c/../b", "/a\\/../b", "/x%00/../b", "/x%0a/../b", "/x%7f/../b", "/%ff/../b",
    "/%c0%ae%c0%ae/b"])
def test_nul_backslash_control_and_bad_utf8_stay_refused_even_in_removed_segments(path):
    with pytest.raises(filesystem.NotFound):
        filesystem.normalize_path(path)


@pytest.mark.parametrize("segments, trailing, expected", [
    ([], True, "/"), ([], False, "/"), (["a"], False, "/a"), (["a", "b"], True, "/a/b/")])
def test_canonical_path(segments, trailing, expected):
    assert filesystem.canonical_path(segments, trailing) == expected


def test_dotfile_policy_applies_to_the_normalised_segments():
    assert filesystem.decode_segments("/.git/../x", allow_dotfiles=False) == (["x"], False)
    with pytest.raises(filesystem.NotFound):
        filesystem.decode_segments("/a/../.env", allow_dotfiles=False)
    assert filesystem.decode_segments("/a/../.env", allow_dotfiles=True) == ([".env"], False)


# ---- respond --------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/dir/../", "//dir///..////", "/dir/..", "/./", "/dir/./..",
                                    "http://h/dir/.."])
def test_dot_segments_that_end_at_the_root_serve_the_root_index(site, target):
    response = respond(site, target)
    assert response.status == 200
    assert body_of(response) == ROOT_INDEX


@pytest.mark.parametrize("target", ["/../", "/./dir/./../../", "/%2e%2e/", "/dir/../../abc.txt",
                                    "/%2e%2e%2fabc.txt", "http://h/../abc.txt"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_climbing_above_the_root_is_400_and_closes(site, target, method):
    response = respond(site, target, method=method)
    assert response.status == 400
    assert response.close
    assert ABC not in body_of(response)


@pytest.mark.parametrize("target, body", [
    ("/dir/../abc.txt", ABC), ("//abc.txt", ABC), ("/dir%2F..%2Fabc.txt", ABC),
    ("/dir/./index.html", b"<p>dir</p>"), ("/dir%2Findex.html", b"<p>dir</p>"),
    ("/.git/../abc.txt", ABC)])
def test_normalised_paths_serve_the_file(site, target, body):
    response = respond(site, target)
    assert response.status == 200
    assert body_of(response) == body


@pytest.mark.parametrize("target", ["/dir/../.env", "/abc.txt/../.env", "/x%5c/../abc.txt",
                                    "/x%00/../abc.txt"])
def test_dotfiles_nul_and_backslash_stay_404(site, target):
    response = respond(site, target)
    assert response.status == 404
    assert b"SECRET" not in body_of(response)


@pytest.mark.parametrize("target, location", [
    ("/abc.txt/../dir", "/dir/"), ("//dir", "/dir/"), ("/list/../dir?q=1", "/dir/?q=1"),
    ("/x/..%2Fdir", "/dir/")])
def test_directory_redirect_uses_the_normalised_path(site, target, location):
    response = respond(site, target)
    assert response.status == 301
    assert field(response, "Location") == location


def test_trailing_dot_segment_names_the_folder_without_a_redirect(site):
    response = respond(site, "/dir/.")
    assert response.status == 200
    assert body_of(response) == b"<p>dir</p>"


def test_listing_title_is_the_normalised_path_whichever_spelling_came_first(site):
    first = body_of(respond(site, "//dir/..//list//"))
    assert b"Index of /list/<" in first
    again = body_of(respond(site, "/list/"))
    assert again == first


# ---- caches keyed by the normalised path ----------------------------------------------------

def test_spellings_of_one_path_share_one_fast_path_entry(site):
    for target in ("/abc.txt", "/dir/../abc.txt", "//abc.txt", "/%61bc.txt", "/./abc.txt?x=1"):
        assert body_of(respond(site, target)) == ABC
    assert list(site._fast) == [("/abc.txt", None)]


def test_a_removed_segment_cannot_poison_another_path(site, root):
    (root / "b.txt").write_text("bee")
    assert body_of(respond(site, "/abc.txt/../b.txt")) == b"bee"
    assert body_of(respond(site, "/abc.txt")) == ABC
    assert body_of(respond(site, "/b.txt")) == b"bee"
    assert respond(site, "/dir/../..").status == 400
    assert body_of(respond(site, "/")) == ROOT_INDEX


def test_many_spellings_do_not_grow_the_cache(site):
    for number in range(site_module.FAST_PATH_ENTRIES + 50):
        assert body_of(respond(site, f"/x{number}/../abc.txt")) == ABC
    assert len(site._fast) == 1


def test_fast_key_of_a_path_that_cannot_be_normalised_is_none(site):
    plain = request("/")
    assert site_module._fast_key("/%2e%2e/abc.txt", plain) is None
    assert site_module._fast_key("/a%00", plain) is None
    assert site_module._fast_key("/dir/../abc.txt", plain) == ("/abc.txt", None)
    assert site_module._fast_key("/abc.txt", plain) == ("/abc.txt", None)


# ---- over real sockets, both engines --------------------------------------------------------

@pytest.fixture(scope="module")
def path_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    (root / "index.html").write_bytes(ROOT_INDEX)
    (root / "abc.txt").write_bytes(ABC)
    (root / "dir").mkdir()
    (root / "dir" / "index.html").write_text("<p>dir</p>")
    (root.parent / "outside.txt").write_text("outside")
    return root


@pytest.fixture(scope="module", params=MODES)
def path_server(request, path_site):
    server = ServerProcess(path_site, request.param, "--quiet")
    yield server
    server.stop()


@pytest.mark.parametrize("target", ["/dir/../", "//dir///..////", "/dir/.."])
def test_socket_dot_segments_serve_the_root_index(path_server, target):
    response = get(path_server, target)
    assert response.status == 200
    assert response.body == ROOT_INDEX


@pytest.mark.parametrize("target", ["/../", "/./dir/./../../", "/%2e%2e/", "/../outside.txt"])
def test_socket_climbing_above_the_root_is_400_and_closes(path_server, target):
    with path_server.connect() as sock:
        # Keep-alive asked for, and a second request pipelined: the 400 must close anyway.
        host = f"Host: 127.0.0.1:{path_server.port}\r\n"
        sock.sendall(f"GET {target} HTTP/1.1\r\n{host}\r\nGET /abc.txt HTTP/1.1\r\n{host}\r\n"
                     .encode("ascii"))
        response = read_response(sock, bytearray())
        assert response.status == 400
        assert response.headers["connection"] == "close"
        assert b"outside" not in response.body
        assert_closed(sock)


def test_socket_redirect_uses_the_normalised_path(path_server):
    response = get(path_server, "/abc.txt/..//dir?q=1")
    assert response.status == 301
    assert response.headers["location"] == "/dir/?q=1"


def test_socket_spellings_answer_the_same_bytes(path_server):
    plain = get(path_server, "/abc.txt")
    for target in ("/dir/../abc.txt", "//abc.txt", "/dir%2f..%2fabc.txt", "/abc.txt"):
        response = get(path_server, target)
        assert response.status == 200
        assert response.body == ABC
        assert response.headers["etag"] == plain.headers["etag"]
