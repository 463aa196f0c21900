"""Validators that hold across machines: two servers on two copies of one tree.

The README's deployment advice (the same root on every instance behind a load balancer or CDN)
needs an ETag that both copies share: a revalidation made against instance A must get its 304
from instance B, and an If-Range resume its 206 (RFC 9110 sections 13.1.2 and 13.1.5). The
default ETag is mtime and size (as nginx's); `--etag content` is a digest of the bytes, for
copies whose times differ. Both engines, over real sockets.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers.http import get
from tests.helpers.polling import wait_until
from tests.helpers.respond import body_of, field, make_site, respond

from reactor_http import content_coding, validators

BIG = 300 * 1024  # bytes: more than the small-file cache and the inline digest


@pytest.fixture
def twin_trees(tmp_path):
    """(A, B): one tree and a copy with its times preserved (as `cp -a` makes)."""
    tree = tmp_path / "A"
    tree.mkdir()
    (tree / "small.txt").write_bytes(b"0123456789abcdef" * 8)
    (tree / "big.bin").write_bytes(os.urandom(BIG))
    (tree / "app.js").write_text("console.log('reactor_http');\n" * 200)
    copy = tmp_path / "B"
    shutil.copytree(tree, copy, copy_function=shutil.copy2)
    return tree, copy


def shift_times(tree, seconds: int = 3600) -> None:
    """Give every file of `tree` another modification time (a copy made without -a)."""
    for name in os.listdir(tree):
        st = os.stat(tree / name)
        os.utime(tree / name, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10 ** 9))


@pytest.mark.parametrize("path", ["/small.txt", "/big.bin", "/app.js"])
def test_an_etag_from_one_copy_revalidates_on_the_other(twin_trees, make_server, mode, path):
    a = make_server(twin_trees[0], mode, "--quiet")
    b = make_server(twin_trees[1], mode, "--quiet")
    etag = get(a, path).headers["etag"]
    assert etag == get(b, path).headers["etag"]
    assert get(b, path, {"If-None-Match": etag}).status == 304
    resumed = get(b, path, {"Range": "bytes=10-", "If-Range": etag})
    assert resumed.status == 206
    assert resumed.body == (twin_trees[1] / path[1:]).read_bytes()[10:]


def test_the_default_etag_is_mtime_and_size_as_nginx_makes_it(twin_trees, make_server, mode):
    srv = make_server(twin_trees[0], mode, "--quiet")
    st = os.stat(twin_trees[0] / "small.txt")
    assert get(srv, "/small.txt").headers["etag"] == \
        f'"{int(st.st_mtime):x}-{st.st_size:x}"' == validators.mtime_etag(st)


def test_a_compressed_etag_from_one_copy_revalidates_on_the_other(twin_trees, make_server, mode):
    a = make_server(twin_trees[0], mode, "--quiet")
    b = make_server(twin_trees[1], mode, "--quiet")
    gzip = {"Accept-Encoding": "gzip"}
    first = get(a, "/app.js", gzip)
    assert first.headers["content-encoding"] == "gzip"
    etag = first.headers["etag"]
    assert etag == content_coding.coded_etag(get(a, "/app.js").headers["etag"], "gzip")
    assert get(b, "/app.js", {**gzip, "If-None-Match": etag}).status == 304


def test_copies_with_other_times_differ_by_default(twin_trees, make_server, mode):
    shift_times(twin_trees[1])
    a = make_server(twin_trees[0], mode, "--quiet")
    b = make_server(twin_trees[1], mode, "--quiet")
    etag = get(a, "/small.txt").headers["etag"]
    assert get(b, "/small.txt", {"If-None-Match": etag}).status == 200


def settled_etag(srv, path: str, headers: dict | None = None) -> str:
    """The ETag a --etag content server gives `path` once its digest is made (a large file is
    answered without one meanwhile: the loop never waits for the hash)."""
    tags: list[str] = []

    def has_tag() -> bool:
        tags.append(get(srv, path, headers).headers.get("etag", ""))
        return bool(tags[-1])
    assert wait_until(has_tag, timeout=30), f"no ETag for {path}"
    return tags[-1]


@pytest.mark.parametrize("path", ["/small.txt", "/big.bin", "/app.js"])
def test_content_etags_match_across_copies_whose_times_differ(twin_trees, make_server, mode,
                                                              path):
    shift_times(twin_trees[1])
    a = make_server(twin_trees[0], mode, "--quiet", "--etag", "content")
    b = make_server(twin_trees[1], mode, "--quiet", "--etag", "content")
    etag = settled_etag(a, path)
    assert etag == settled_etag(b, path)
    assert get(b, path, {"If-None-Match": etag}).status == 304
    assert get(b, path, {"Range": "bytes=10-", "If-Range": etag}).status == 206
    gzip = {"Accept-Encoding": "gzip"}
    if path == "/app.js":  # the compressed ETag derives from the digest
        coded = settled_etag(a, path, gzip)
        assert coded == content_coding.coded_etag(etag, "gzip")
        assert get(b, path, {**gzip, "If-None-Match": coded}).status == 304


def test_a_content_etag_changes_with_the_bytes_not_the_time(tmp_path, make_server, mode):
    (tmp_path / "f.txt").write_bytes(b"one")
    srv = make_server(tmp_path, mode, "--quiet", "--etag", "content")
    first = settled_etag(srv, "/f.txt")
    shift_times(tmp_path)
    assert settled_etag(srv, "/f.txt") == first
    (tmp_path / "f.txt").write_bytes(b"two")
    assert settled_etag(srv, "/f.txt") != first


def test_a_large_file_is_answered_without_an_etag_until_its_digest_is_made(tmp_path):
    """--etag content never makes a request wait for a large file's hash: until the digester
    thread is done the answer has no ETag, so no If-None-Match or If-Range can match it."""
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    site = make_site(tmp_path, etag="content")
    st = os.stat(tmp_path / "big.bin")
    first = respond(site, "/big.bin", If_None_Match='"anything"')
    body_of(first)
    assert first.status == 200
    ranged = respond(site, "/big.bin", Range="bytes=0-0", If_Range='"anything"')
    assert ranged.status == 200
    body_of(ranged)
    assert wait_until(lambda: site.digests.settled(st), timeout=30)
    etag = field(respond(site, "/big.bin", method="HEAD"), "ETag")
    expected = validators.content_etag(validators.digest_bytes((tmp_path / "big.bin").read_bytes()))
    assert etag == expected
    assert respond(site, "/big.bin", If_None_Match=etag).status == 304
