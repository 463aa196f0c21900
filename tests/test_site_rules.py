"""Site rules over real sockets, in both engines: `_redirects`, `_headers`, --clean-urls, --spa's
X.html, reloading, refusals and --no-site-rules.

The rule files below are a site as it would be deployed on Netlify or Cloudflare Pages; each
test asks what a browser or a cache would see.
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.helpers.http import get, read_response
from tests.helpers.polling import wait_until
from tests.helpers.servers import MODES, ServerProcess, run_cli

REDIRECTS = """\
# moved sections
/old/*              /new/:splat                 301
/temp               /a.txt                      302
/see                /a.txt                      303
/keep               /a.txt                      307
/perm               /a.txt                      308
/away/*             https://example.com/go/:splat
/:year/:month/post  /posts/:year/:month.html    301
/q                  /a.txt?from=q               301
/app/*              /app.html                   200
/section/*          /section/404.html           404
/gone               /gone.html                  410
/shadowed.txt       /a.txt                      301
/forced.txt         /a.txt                      301!
/secret             /.hidden.txt                200
/hop                /hop2                       200
/hop2               /a.txt                      200
/nothing            /nope.html                  200
/dir/               /a.txt                      302
/rules              /_redirects                 200
"""

HEADERS = """\
/*
  X-Site: all
/*.html
  Cache-Control: no-cache
/assets/*
  Cache-Control: public, max-age=31536000, immutable
  X-Frame-Options: SAMEORIGIN
/assets/private/*
  ! X-Frame-Options
/:first/b.txt
  X-Placeholder: yes
"""

FILES = {
    "a.txt": b"hello a\n",
    "index.html": b"<!DOCTYPE html><title>home</title>\n",
    "app.html": b"<!DOCTYPE html><title>app</title>\n",
    "section/404.html": b"<!DOCTYPE html><title>section not found</title>\n",
    "gone.html": b"<!DOCTYPE html><title>gone</title>\n",
    "shadowed.txt": b"I shadow a rule\n",
    "forced.txt": b"never served\n",
    ".hidden.txt": b"dotfile\n",
    "assets/app.js": b"console.log(1);\n" * 10,
    "assets/private/x.js": b"let x;\n",
    "sub/b.txt": b"hello b\n",
    "dir/listed.txt": b"in a folder without index.html\n",
    "_redirects": REDIRECTS.encode(),
    "_headers": HEADERS.encode(),
}
GLOBAL = ("--max-age", "60", "--header", "X-Frame-Options: DENY")


def build(root, files=FILES):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture(scope="module", params=MODES)
def ruled(request, tmp_path_factory):
    """A server per engine over the site above, with global --max-age and --header."""
    srv = ServerProcess(build(tmp_path_factory.mktemp("ruled")), request.param, "--quiet",
                        *GLOBAL)
    yield srv
    srv.stop()


def fields(response, name: str) -> list[str]:
    return [value for field, value in response.header_list if field.lower() == name]


@pytest.mark.parametrize("path, status, location", [
    ("/old/x/y.html", 301, "/new/x/y.html"),
    ("/old", 301, "/new/"),
    ("/temp", 302, "/a.txt"),
    ("/see", 303, "/a.txt"),
    ("/keep", 307, "/a.txt"),
    ("/perm", 308, "/a.txt"),
    ("/perm/", 308, "/a.txt"),  # a trailing slash matches as on Netlify
    ("/away/a/b", 301, "https://example.com/go/a/b"),
    ("/2024/05/post", 301, "/posts/2024/05.html"),
    ("/temp?x=1&y=2", 302, "/a.txt?x=1&y=2"),  # the request's query is kept
    ("/q?x=1", 301, "/a.txt?from=q"),  # ... unless TO has its own
    ("/forced.txt", 301, "/a.txt"),  # `!`: even though the file exists
    ("/dir/", 302, "/a.txt"),  # a folder's listing does not shadow a rule
])
def test_redirect_rules(ruled, path, status, location):
    response = get(ruled, path)
    assert (response.status, response.headers.get("location")) == (status, location)
    # the reason phrase and page of every status a rule may give (RFC 9110 section 15)
    reason = {301: "Moved Permanently", 302: "Found", 303: "See Other",
              307: "Temporary Redirect", 308: "Permanent Redirect"}[status]
    assert response.reason == reason
    assert f"{status} {reason}".encode() in response.body


def test_410_has_its_reason_phrase(ruled):
    response = get(ruled, "/gone")
    assert (response.status, response.reason) == (410, "Gone")


def test_an_existing_file_shadows_a_rule_without_force(ruled):
    response = get(ruled, "/shadowed.txt")
    assert (response.status, response.body) == (200, FILES["shadowed.txt"])


def test_a_200_rule_serves_the_content_of_to_under_the_url_asked(ruled):
    response = get(ruled, "/app/some/route")
    assert (response.status, response.body) == (200, FILES["app.html"])
    assert "location" not in response.headers
    # ...as a file: validators, conditionals and ranges apply to it
    again = get(ruled, "/app/other", {"If-None-Match": response.headers["etag"]})
    assert again.status == 304
    part = get(ruled, "/app/x", {"Range": "bytes=0-8"})
    assert (part.status, part.body) == (206, FILES["app.html"][:9])


@pytest.mark.parametrize("path, status, body", [
    ("/section/missing", 404, FILES["section/404.html"]),
    ("/gone", 410, FILES["gone.html"]),
])
def test_404_and_410_rules_answer_the_content_of_to_with_that_status(ruled, path, status, body):
    response = get(ruled, path)
    assert (response.status, response.body) == (status, body)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    head = get(ruled, path, method="HEAD")
    assert (head.status, head.body, head.headers["content-length"]) == (status, b"",
                                                                        str(len(body)))


@pytest.mark.parametrize("path", [
    "/secret",   # a rewrite keeps the dotfile rule
    "/hop",      # one rewrite per request: /hop2 is not followed
    "/nothing",  # TO names nothing
    "/rules",    # the rule files are never served, not even through a rule
])
def test_a_rewrite_goes_through_every_rule_of_a_direct_request(ruled, path):
    response = get(ruled, path)
    assert response.status == 404
    assert FILES[".hidden.txt"] not in response.body and b"/a.txt" not in response.body


@pytest.mark.parametrize("path", ["/_redirects", "/_headers", "/_HEADERS", "/%5fheaders"])
def test_the_rule_files_are_never_served(ruled, path):
    assert get(ruled, path).status == 404


def test_the_listing_leaves_the_rule_files_out(tmp_path, mode):
    root = build(tmp_path, {"a.txt": b"a\n", "_redirects": b"/x /a.txt\n",
                            "_headers": b"/*\n  X-A: 1\n", "sub/_headers": b"only at the root\n"})
    srv = ServerProcess(root, mode, "--quiet")
    try:
        listing = get(srv, "/", {"Accept": "application/json"})
        assert listing.status == 200 and b"a.txt" in listing.body
        assert b"_redirects" not in listing.body and b"_headers" not in listing.body
        assert b"_headers" in get(srv, "/sub/").body  # elsewhere an ordinary name
        assert get(srv, "/sub/_headers").body == b"only at the root\n"
    finally:
        srv.stop()


def test_headers_add_per_path_fields_and_keep_the_global_ones_elsewhere(ruled):
    response = get(ruled, "/a.txt")
    assert fields(response, "x-site") == ["all"]
    assert fields(response, "cache-control") == ["max-age=60"]
    assert fields(response, "x-frame-options") == ["DENY"]
    assert fields(response, "x-placeholder") == []
    assert fields(get(ruled, "/sub/b.txt"), "x-placeholder") == ["yes"]


@pytest.mark.parametrize("path", ["/index.html", "/", "/app/route"])
def test_a_cache_control_block_replaces_max_age(ruled, path):
    # `/` is served from /index.html and /app/route from /app.html: the blocks of the file
    # served apply too, so one `/*.html` block covers every page.
    response = get(ruled, path)
    assert fields(response, "cache-control") == ["no-cache"]
    assert fields(response, "x-site") == ["all"]


def test_a_block_replaces_a_header_option_of_the_same_name(ruled):
    response = get(ruled, "/assets/app.js")
    assert fields(response, "cache-control") == ["public, max-age=31536000, immutable"]
    assert fields(response, "x-frame-options") == ["SAMEORIGIN"]


def test_detach_removes_a_field_of_an_earlier_block_and_of_header(ruled):
    response = get(ruled, "/assets/private/x.js")
    assert fields(response, "x-frame-options") == []
    assert fields(response, "cache-control") == ["public, max-age=31536000, immutable"]


@pytest.mark.parametrize("extra", [
    {},
    {"Range": "bytes=0-3"},
    {"If-None-Match": "ETAG"},
    {"Accept-Encoding": "gzip"},
])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_answer_with_the_resource_carries_the_fields(ruled, extra, method):
    if extra.get("If-None-Match") == "ETAG":
        extra = {"If-None-Match": get(ruled, "/assets/app.js").headers["etag"]}
    response = get(ruled, "/assets/app.js", extra, method=method)
    assert response.status in (200, 206, 304)
    assert fields(response, "x-frame-options") == ["SAMEORIGIN"]
    assert fields(response, "cache-control") == ["public, max-age=31536000, immutable"]
    assert fields(response, "x-site") == ["all"]


def test_a_listing_carries_the_fields_of_its_path(ruled):
    response = get(ruled, "/assets/private/")
    assert response.status == 200 and b"x.js" in response.body
    assert fields(response, "x-frame-options") == []
    assert fields(response, "cache-control") == ["public, max-age=31536000, immutable"]


def test_errors_keep_the_global_fields(ruled):
    response = get(ruled, "/assets/missing.js")
    assert response.status == 404
    assert fields(response, "x-frame-options") == ["DENY"]


@pytest.mark.parametrize("path", ["/assets/app.js", "/app/x", "/a.txt", "/temp", "/gone"])
def test_a_repeated_request_on_one_connection_gets_the_same_answer(ruled, path):
    head = f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    with socket.create_connection((ruled.host, ruled.port), timeout=5) as sock:
        buffer = bytearray()
        answers = []
        for _ in range(4):
            sock.sendall(head)
            response = read_response(sock, buffer)
            answers.append((response.status, [(name, value) for name, value in
                                              response.header_list if name.lower() != "date"],
                            response.body))
    assert answers[1:] == answers[:1] * 3


# ---- reloading, refusals, --no-site-rules ----------------------------------------------------

def test_edited_rules_apply_from_the_next_request_and_a_bad_edit_keeps_the_last(tmp_path, mode):
    root = build(tmp_path / "site", {"a.txt": b"a\n", "b.txt": b"b\n",
                                     "_redirects": b"/x /a.txt 302\n"})
    srv = ServerProcess(root, mode, "--quiet")
    try:
        assert get(srv, "/x").headers["location"] == "/a.txt"
        assert fields(get(srv, "/b.txt"), "x-new") == []
        (root / "_redirects").write_bytes(b"/x /b.txt 302\n")
        (root / "_headers").write_bytes(b"/b.txt\n  X-New: 1\n")
        # /b.txt first: its answer was cached under the old rules, and must not be replayed
        assert fields(get(srv, "/b.txt"), "x-new") == ["1"]
        assert get(srv, "/x").headers["location"] == "/b.txt"
        (root / "_redirects").write_bytes(b"/x /b.txt 302\n/y /a.txt 500\n")
        assert get(srv, "/x").headers["location"] == "/b.txt"  # the last good rules
        (root / "_redirects").unlink()
        assert get(srv, "/x").status == 404
    finally:
        _, _, err = srv.stop()
    assert "_redirects line 2" in err and "status 500" in err


@pytest.mark.parametrize("name, text, line", [
    ("_redirects", "/a /b 301\n/c\n", 2),
    ("_redirects", "# ok\n/store id=:id /blog/:id 301\n", 2),
    ("_redirects", "/a /b 302 Country=us\n", 1),
    ("_redirects", "/api/* https://api.example.com/:splat 200\n", 1),
    ("_headers", "/a\n  Content-Type: text/plain\n", 2),
    ("_headers", "  X-A: 1\n", 1),
])
def test_a_malformed_rule_file_is_refused_at_start_up_with_its_line(tmp_path, name, text, line):
    build(tmp_path, {"a.txt": b"a", name: text.encode()})
    result = run_cli("--root", str(tmp_path), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{name} line {line}" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_no_site_rules_serves_the_files_and_ignores_them(tmp_path, mode):
    root = build(tmp_path, {"a.txt": b"a\n", "_redirects": b"/a.txt /b 301!\n",
                            "_headers": b"/*\n  X-Site: 1\n"})
    srv = ServerProcess(root, mode, "--quiet", "--no-site-rules")
    try:
        response = get(srv, "/a.txt")
        assert (response.status, fields(response, "x-site")) == (200, [])
        assert get(srv, "/_redirects").body == b"/a.txt /b 301!\n"
    finally:
        srv.stop()


# ---- --clean-urls and --spa -------------------------------------------------------------------

CLEAN = {
    "index.html": b"<!DOCTYPE html><title>home</title>\n",
    "about.html": b"<!DOCTYPE html><title>about</title>\n",
    "docs/index.html": b"<!DOCTYPE html><title>docs</title>\n",
    "both": b"the file named both\n",
    "both.html": b"<!DOCTYPE html><title>both.html</title>\n",
    "folder.html": b"<!DOCTYPE html><title>folder.html</title>\n",
    "folder/index.html": b"<!DOCTYPE html><title>folder</title>\n",
    "a.txt": b"a\n",
}


@pytest.fixture(scope="module", params=MODES)
def clean(request, tmp_path_factory):
    srv = ServerProcess(build(tmp_path_factory.mktemp("clean"), CLEAN), request.param,
                        "--quiet", "--clean-urls")
    yield srv
    srv.stop()


@pytest.mark.parametrize("path, status, expected", [
    ("/about", 200, CLEAN["about.html"]),
    ("/docs/", 200, CLEAN["docs/index.html"]),
    ("/both", 200, CLEAN["both"]),            # a file of that name comes first
    ("/both.html", 200, CLEAN["both.html"]),  # ...so both.html keeps its own URL
    ("/folder/", 200, CLEAN["folder/index.html"]),  # a folder comes before X.html
    ("/", 200, CLEAN["index.html"]),
])
def test_clean_urls_serve(clean, path, status, expected):
    response = get(clean, path)
    assert (response.status, response.body) == (status, expected)


@pytest.mark.parametrize("path, location", [
    ("/about.html", "/about"),
    ("/about.html?x=1", "/about?x=1"),
    ("/about/", "/about"),
    ("/docs/index.html", "/docs/"),
    ("/index.html", "/"),
    ("/folder", "/folder/"),
])
def test_clean_urls_redirect_to_the_clean_url(clean, path, location):
    response = get(clean, path)
    assert (response.status, response.headers.get("location")) == (301, location)


@pytest.mark.parametrize("path, location", [
    ("//about/", "/about"),          # never `//about`: a scheme-relative URL names a host
    ("/./about/", "/about"),
    ("/docs/../about/", "/about"),
    ("/%61bout/", "/about"),
    ("//evil.com/../about/", "/about"),
    ("//evil.com/%2e%2e/about/?q=1", "/about?q=1"),
])
def test_a_clean_url_redirect_names_the_normalised_path(clean, path, location):
    response = get(clean, path)
    assert (response.status, response.headers.get("location")) == (301, location)


def test_a_clean_url_is_served_as_its_file(clean):
    first = get(clean, "/about", {"Accept-Encoding": "gzip"})
    assert first.status == 200 and first.headers["etag"]
    assert get(clean, "/about", {"If-None-Match": first.headers["etag"]}).status == 304
    part = get(clean, "/about", {"Range": "bytes=0-4"})
    assert (part.status, part.body) == (206, CLEAN["about.html"][:5])
    assert get(clean, "/missing").status == 404


def test_a_file_that_appears_takes_its_url_back(tmp_path, mode):
    root = build(tmp_path, {"about.html": b"<p>page</p>\n"})
    srv = ServerProcess(root, mode, "--quiet", "--clean-urls")
    try:
        assert get(srv, "/about").body == b"<p>page</p>\n"
        (root / "about").write_bytes(b"the file\n")
        assert wait_until(lambda: get(srv, "/about").body == b"the file\n", timeout=5)
    finally:
        srv.stop()


def test_spa_serves_a_page_of_its_own_before_the_app(tmp_path, mode):
    root = build(tmp_path, {"index.html": b"app\n", "about.html": b"about\n"})
    srv = ServerProcess(root, mode, "--quiet", "--spa")
    try:
        assert get(srv, "/about").body == b"about\n"
        assert get(srv, "/route/deep").body == b"app\n"
        assert get(srv, "/missing.js").status == 404
    finally:
        srv.stop()


def test_rules_and_clean_urls_together(tmp_path, mode):
    root = build(tmp_path, {"about.html": b"about\n", "a.txt": b"a\n",
                            "_redirects": b"/about /a.txt 302\n/*  /a.txt 200\n"})
    srv = ServerProcess(root, mode, "--quiet", "--clean-urls")
    try:
        assert get(srv, "/about").body == b"about\n"  # X.html is content: it shadows the rule
        assert get(srv, "/anything/else").body == b"a\n"
    finally:
        srv.stop()


def test_time_is_not_needed_for_a_reload(tmp_path):
    # The reload is decided by the file's identity (inode, size, mtime, ctime), not by a
    # period: two edits within one second are both seen.
    root = build(tmp_path, {"a.txt": b"a\n", "_redirects": b"/x /a.txt 302\n"})
    srv = ServerProcess(root, "reactor", "--quiet")
    try:
        for number in range(3):
            (root / "_redirects").write_bytes(b"/x /a%d.txt 302\n" % number)
            assert get(srv, "/x").headers["location"] == "/a%d.txt" % number
    finally:
        srv.stop()


def test_the_readme_recipe_is_a_valid_headers_file():
    from pathlib import Path

    from reactor_http import siterules
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Site rules", 1)[1]
    text = section.split("```text\n", 1)[1].split("```", 1)[0]
    rules = siterules.parse_headers(text)
    assert rules.for_path("/index.html").fields == (("Cache-Control", "no-cache"),)
    assert rules.for_path("/docs/a.png").detached == frozenset({"x-robots-tag"})


def test_where_threads_answer_the_rules_are_looked_at_once_a_millisecond_and_per_connection(
        tmp_path):
    from reactor_http import rulefiles
    (tmp_path / "_redirects").write_bytes(b"/x /a.txt 302\n")
    rules = rulefiles.RuleFiles(str(tmp_path), rulefiles.THREADED_INTERVAL)
    assert rules.fresh(10.0)
    (tmp_path / "_redirects").write_bytes(b"/x /b.txt 302\n")
    assert rules.fresh(10.0 + rulefiles.THREADED_INTERVAL / 2)  # not looked at yet
    assert not rules.fresh(10.0 + rulefiles.THREADED_INTERVAL / 2, force=True)  # a new client
    (tmp_path / "_redirects").write_bytes(b"/x /c.txt 302\n")
    assert not rules.fresh(10.0 + rulefiles.THREADED_INTERVAL * 2)
    assert rules.redirects is not None and rules.redirects.match("/x").target == "/c.txt"


def test_the_rule_files_are_hidden_under_any_name_and_through_any_link(tmp_path, mode):
    # Hidden by what they are (device and inode), not by how a URL spells them: a link to the
    # root, a link with another name and a hard link all lead to the same file.
    root = build(tmp_path / "site", {"a.txt": b"a\n", "_redirects": b"/x /a.txt 302\n",
                                     "_headers": b"/*\n  X-A: 1\n", "sub/b.txt": b"b\n"})
    (root / "self").symlink_to(".")
    (root / "sub" / "up").symlink_to("..")
    (root / "rules.txt").symlink_to("_redirects")
    os.link(root / "_headers", root / "sub" / "fields.txt")
    srv = ServerProcess(root, mode, "--quiet", "--archives")
    try:
        for path in ("/self/_redirects", "/sub/up/_headers", "/rules.txt", "/sub/fields.txt",
                     "/self/self/_headers"):
            assert get(srv, path).status == 404, path
        for folder in ("/self/", "/sub/", "/sub/up/"):
            listing = get(srv, folder, {"Accept": "application/json"})
            assert listing.status == 200
            for name in (b"_redirects", b"_headers", b"rules.txt", b"fields.txt"):
                assert b'"' + name + b'"' not in listing.body, (folder, name)
        archive = get(srv, "/sub/?download=tar", {"Connection": "close"}, version="HTTP/1.0")
        assert archive.status == 200 and b"/x /a.txt 302" not in archive.body
        assert b"X-A: 1" not in archive.body
        assert get(srv, "/x").headers["location"] == "/a.txt"  # the rules still apply
    finally:
        srv.stop()


@pytest.mark.parametrize("path, location", [
    ("/about/", "/about"),        # X.html exists: its clean URL, not the rule
    ("/page.html", "/page"),      # page.html exists: its clean URL, not the rule
])
def test_a_file_shadows_a_rule_also_when_clean_urls_redirect_to_it(tmp_path, mode, path,
                                                                    location):
    root = build(tmp_path, {"about.html": b"about\n", "page.html": b"page\n",
                            "_redirects": b"/about /moved 302\n/page.html /other 302\n"})
    srv = ServerProcess(root, mode, "--quiet", "--clean-urls")
    try:
        response = get(srv, path)
        assert (response.status, response.headers.get("location")) == (301, location)
    finally:
        srv.stop()


def test_on_a_case_insensitive_root_rules_match_every_spelling(tmp_path):
    # macOS and Windows disks: /SECRET.TXT is /secret.txt, so a forced rule and a _headers
    # block must hold for every spelling, and no spelling's cached answer may replay past them.
    from reactor_http import pathrules
    from reactor_http.config import Config
    from reactor_http.parser import parse_head
    from reactor_http.responder import respond
    from reactor_http.website import Site
    # (This disk is Linux's: the files are named as the requests below spell them, and the
    # rules in another case; MACOS rules make the site compare names as macOS does.)
    build(tmp_path, {"a.txt": b"a\n", "SECRET.TXT": b"secret\n", "page.html": b"<p>p</p>\n",
                     "_redirects": b"/secret.txt /a.txt 301!\n/old/* /New/:splat 302\n",
                     "_headers": b"/Page.HTML\n  X-Frame-Options: DENY\n"})
    site = Site(Config(root=str(tmp_path)).validate(), single_thread=True,
                path_rules=pathrules.MACOS)

    def ask(target: str, now: float):
        head = f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        return respond(parse_head(head)[0], site, now)

    for now, target in enumerate(["/secret.txt", "/SECRET.TXT", "/Secret.Txt", "/secret.txt"]):
        answer = ask(target, float(now))
        assert answer.status == 301 and ("Location", "/a.txt") in answer.headers, target
    assert ("Location", "/New/Deep/Path") in ask("/OLD/Deep/Path", 10.0).headers  # case kept
    for now, target in enumerate(["/page.html", "/page.html"], start=20):
        answer = ask(target, float(now))
        assert answer.status == 200 and ("X-Frame-Options", "DENY") in answer.headers, target


def test_a_rewrite_to_a_folder_carries_the_fields_of_the_url_asked(tmp_path, mode):
    # The blocks of the URL asked apply to a rewrite whatever TO names: a file, or a folder
    # whose index.html answers (that rewrite lost them, keeping only the index's).
    root = build(tmp_path, {
        "docs/index.html": b"<p>docs</p>\n", "a.txt": b"a\n",
        "_redirects": b"/manual /docs 200\n/guide /docs/ 200\n/file /a.txt 200\n",
        "_headers": b"/manual\n  X-Asked: manual\n/guide\n  X-Asked: guide\n"
                    b"/file\n  X-Asked: file\n/docs/index.html\n  X-Served: index\n"})
    srv = ServerProcess(root, mode, "--quiet")
    try:
        for path, served in (("/manual", "index"), ("/guide", "index"), ("/file", None)):
            for method in ("GET", "HEAD"):
                response = get(srv, path, method=method)
                assert response.status == 200, path
                assert fields(response, "x-asked") == [path[1:]], (path, method)
                assert fields(response, "x-served") == ([served] if served else []), path
    finally:
        srv.stop()


def test_with_clean_urls_a_rule_may_name_a_page_by_its_clean_url(tmp_path, mode):
    # TO goes through what a direct request for it would: with --clean-urls /about is
    # about.html, for a rewrite and for a rule's own 404 or 410 page alike.
    root = build(tmp_path, {"about.html": b"<p>about</p>\n", "gone.html": b"<p>gone</p>\n",
                            "_redirects": b"/team /about 200\n/old /gone 410\n"})
    srv = ServerProcess(root, mode, "--quiet", "--clean-urls")
    try:
        assert get(srv, "/about").body == b"<p>about</p>\n"  # the direct request
        team = get(srv, "/team")
        assert (team.status, team.body) == (200, b"<p>about</p>\n")
        old = get(srv, "/old")
        assert (old.status, old.body) == (410, b"<p>gone</p>\n")
    finally:
        srv.stop()


def test_a_rewrite_to_nothing_answers_the_sites_404_page(tmp_path, mode):
    # A rewrite whose TO names nothing (or nothing a request may have) is the 404 a direct
    # request for TO gets: the site's 404.html, not the built-in page.
    root = build(tmp_path, {"404.html": b"<p>our own 404</p>\n", ".hidden": b"dotfile\n",
                            "_redirects": b"/nothing /nope.html 200\n/secret /.hidden 200\n"})
    srv = ServerProcess(root, mode, "--quiet")
    try:
        for path in ("/nope.html", "/.hidden", "/nothing", "/secret"):
            response = get(srv, path)
            assert (response.status, response.body) == (404, b"<p>our own 404</p>\n"), path
    finally:
        srv.stop()


@pytest.mark.parametrize("mode", MODES)
def test_a_large_404_page_is_served_whole(make_server, tmp_path, mode):
    # Regression: a 404.html over 64 KiB (Next.js and Gatsby make such pages) was silently
    # replaced by the built-in page; so was a rule's large 404/410 page.
    page = b"<!DOCTYPE html><title>lost</title>\n" + b"<p>" + b"x" * 300_000 + b"</p>\n"
    (tmp_path / "404.html").write_bytes(page)
    (tmp_path / "gone.html").write_bytes(page.replace(b"lost", b"gone"))
    (tmp_path / "_redirects").write_text("/old  /gone.html  410\n")
    srv = make_server(tmp_path, mode, "--quiet")
    for target, status, body in (("/nope", 404, page),
                                 ("/old", 410, page.replace(b"lost", b"gone"))):
        response = get(srv, target)
        assert (response.status, response.body) == (status, body)
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        head = get(srv, target, method="HEAD")
        assert head.status == status and head.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("mode", MODES)
def test_an_archive_carries_the_fields_of_its_folders_blocks(make_server, tmp_path, mode):
    # Regression: `_headers` reached a folder's listing but not its ?download= answer, so a
    # site-wide X-Robots-Tag or a section's detach of a --header field missed the downloads.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(b"a\n")
    (tmp_path / "_headers").write_text(
        "/*\n  X-Robots-Tag: noindex\n  Cache-Control: public, max-age=60\n"
        "/docs/*\n  ! X-Frame-Options\n")
    srv = make_server(tmp_path, mode, "--quiet", "--archives",
                      "--header", "X-Frame-Options: DENY")
    for method in ("GET", "HEAD"):
        response = get(srv, "/docs/?download=tar", method=method)
        assert response.status == 200
        assert response.headers["x-robots-tag"] == "noindex"
        assert "x-frame-options" not in response.headers
        # An archive made on the fly stays out of caches whatever a block says of the folder.
        assert response.headers["cache-control"] == "no-store"
    assert get(srv, "/?download=tar").headers["x-frame-options"] == "DENY"
