"""Site rules: `_redirects` and `_headers` parsed and matched (siterules.py), pure.

The cases are the examples of Netlify's, Cloudflare Pages' and the IPFS specification's pages,
written as our own data (their meaning, not their text): splats, placeholders, trailing
slashes, force, every status, URL targets, the query kept or replaced, the first match
winning; then every refusal with its line; then `_headers` joins, detach and managed fields;
then properties (a literal FROM matches itself and nothing else; the match is the first rule
that matches on its own; the first-segment index skips no block that matches; matching never
raises; a long path costs no backtracking blow-up).
"""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reactor_http import siterules
from reactor_http.siterules import (Match, PathFields, RedirectRule, RulesError,
                                    parse_headers, parse_redirects)

# ---------------------------------------------------------------------------- _redirects


def target(text: str, path: str, query: str = "") -> str | None:
    """The target of `path` under the `_redirects` text, or None when no rule matches."""
    found = parse_redirects(text).match(path, query)
    return None if found is None else found.target


SPLAT = "/news/*  /blog/:splat\n"


@pytest.mark.parametrize(("path", "expected"), [
    ("/news", "/blog/"),
    ("/news/", "/blog/"),
    ("/news/a", "/blog/a"),
    ("/news/2004/02/12/my-story", "/blog/2004/02/12/my-story"),
    ("/news/a/", "/blog/a/"),
    ("/newsroom", None),
    ("/News/a", None),  # case-sensitive
    ("/other/news/a", None),
])
def test_splat_matches_the_rest_of_the_path_possibly_empty(path, expected):
    assert target(SPLAT, path) == expected


def test_placeholders_match_one_segment_each_and_fill_to():
    rules = "/news/:year/:month/:date/:slug  /blog/:year/:month/:date/:slug\n"
    assert target(rules, "/news/2024/02/12/story") == "/blog/2024/02/12/story"
    assert target(rules, "/news/2024/02/12") is None  # every placeholder needs its segment
    assert target(rules, "/news/2024/02/12/story/more") is None
    ipfs = "/posts/:month/:day/:year/:slug /articles/:year/:month/:day/:slug\n"
    assert target(ipfs, "/posts/06/15/2022/hello") == "/articles/2022/06/15/hello"


def test_placeholders_and_splat_inside_a_to_segment_and_used_twice():
    rules = ("/news/:year/:month/:date /blog-:year-:month-:date.html 200\n"
             "/a/:x/* /b/:x/:x/:splat.txt 200\n")
    assert target(rules, "/news/2024/02/12") == "/blog-2024-02-12.html"
    assert target(rules, "/a/k/l/m") == "/b/k/k/l/m.txt"


@pytest.mark.parametrize(("source", "path", "matches"), [
    ("/about", "/about", True), ("/about", "/about/", True),
    ("/about/", "/about", True), ("/about/", "/about/", True),
    ("/", "/", True), ("/", "/about", False), ("/about", "/about/x", False),
    ("/:page", "/about/", True), ("/a//b", "/a/b", True),
])
def test_trailing_slash_is_optional_on_both_sides(source, path, matches):
    assert (target(f"{source} /to\n", path) is not None) is matches


@pytest.mark.parametrize(("rules", "path", "expected"), [
    # Cloudflare's examples: the slash added or removed, never a loop on the other form
    ("/trailing /trailing/ 301\n", "/trailing", "/trailing/?q=1"),
    ("/trailing /trailing/ 301\n", "/trailing/", None),
    ("/notrailing/ /notrailing 301\n", "/notrailing/", "/notrailing?q=1"),
    ("/notrailing/ /notrailing 301\n", "/notrailing", None),
    # passed over, the next rule is tried
    ("/a /a/ 302\n/a/ /b 302\n", "/a/", "/b?q=1"),
    ("/café /caf%C3%A9?x=1 302\n/* /z 302\n", "/café", "/z?q=1"),
    ("/:p/* /:p/index.html 302\n", "/x/index.html", None),
    ("/:p/* /:p/index.html 302\n", "/x", "/x/index.html?q=1"),
    # a rewrite to itself is no loop (one rewrite per request), nor a URL elsewhere
    ("/a /a 200\n", "/a", "/a"),
    ("/a https://example.com/a 301\n", "/a", "https://example.com/a?q=1"),
])
def test_a_redirect_to_the_path_asked_for_is_passed_over(rules, path, expected):
    assert target(rules, path, "q=1") == expected


def test_from_is_matched_decoded():
    assert target("/caf%C3%A9/a%20b /x\n", "/café/a b") == "/x"
    assert target("/café /x\n", "/café") == "/x"


def test_first_matching_rule_wins_in_file_order():
    rules = "/a/* /first 302\n/a/b /second 301!\n/* /catch-all 200\n"
    found = parse_redirects(rules).match("/a/b")
    assert found == Match(RedirectRule(1, "/a/*", "/first", 302, False), "/first")
    assert target(rules, "/z") == "/catch-all"


@pytest.mark.parametrize(("field", "status", "force"), [
    ("", 301, False), ("301", 301, False), ("302", 302, False), ("303", 303, False),
    ("307", 307, False), ("308", 308, False), ("200", 200, False), ("404", 404, False),
    ("410", 410, False), ("301!", 301, True), ("200!", 200, True), ("404!", 404, True),
])
def test_every_status_and_the_force_flag(field, status, force):
    found = parse_redirects(f"/from /to {field}\n").match("/from")
    assert found is not None
    assert (found.rule.status, found.rule.force) == (status, force)


def test_a_forced_rule_is_returned_like_any_other_and_shadowing_is_the_callers():
    # Netlify's example: /app/ served from /app/index.html, even when /app/ exists.
    found = parse_redirects("/app/ /app/index.html 200!\n").match("/app/")
    assert found is not None and found.rule.force and found.target == "/app/index.html"


def test_the_rule_keeps_the_line_and_the_text_as_written():
    rules = parse_redirects("# moved\n\n/old   /new\t 308\n").rules
    assert rules == (RedirectRule(3, "/old", "/new", 308, False),)


@pytest.mark.parametrize(("rules", "path", "query", "expected"), [
    # the request's query is kept on a redirect...
    ("/a /b\n", "/a", "x=1&y=2", "/b?x=1&y=2"),
    ("/a /b 302\n", "/a", "", "/b"),
    # ...unless TO has its own query
    ("/a /b?c=d\n", "/a", "x=1", "/b?c=d"),
    ("/querystrings /?query=string 301\n", "/querystrings", "q", "/?query=string"),
    # TO's fragment stays last, after the query appended
    ("/page/ /page2/#fragment 301\n", "/page", "x=1", "/page2/?x=1#fragment"),
    ("/page/ /page2/#fragment 301\n", "/page", "", "/page2/#fragment"),
    # placeholders may fill TO's query; their values are encoded for it
    ("/products/:code/:name /products?code=:code&name=:name 302\n", "/products/1/a&b c",
     "z", "/products?code=1&name=a%26b%20c"),
    # never the query for a rewrite or a 404/410 page
    ("/a /b 200\n", "/a", "x=1", "/b"),
    ("/a /b?c=d#e 200\n", "/a", "x=1", "/b"),
    ("/en/* /en/404.html 404\n", "/en/missing", "x", "/en/404.html"),
    ("/gone /gone.html 410\n", "/gone", "x", "/gone.html"),
])
def test_query_kept_or_replaced(rules, path, query, expected):
    assert target(rules, path, query) == expected


@pytest.mark.parametrize(("rules", "path", "expected"), [
    ("/twitch https://twitch.tv\n", "/twitch", "https://twitch.tv"),
    ("/blog/* https://blog.example.com/:splat 302\n", "/blog/a/b",
     "https://blog.example.com/a/b"),
    ("/x/* http://example.com:8080/y/:splat 308\n", "/x/z", "http://example.com:8080/y/z"),
])
def test_absolute_url_targets_for_redirects(rules, path, expected):
    assert target(rules, path) == expected


def test_redirect_targets_are_encoded_and_rewrite_targets_decoded():
    rules = "/r/* /to/:splat 302\n/w/* /to/:splat 200\n/lit /caf%C3%A9/é{x}\n"
    assert target(rules, "/r/é %/?#") == "/to/%C3%A9%20%25/%3F%23"
    assert target(rules, "/w/é %/?#") == "/to/é %/?#"
    # TO's own text: already-encoded escapes kept, what a URL may not hold encoded
    assert target(rules, "/lit") == "/caf%C3%A9/%C3%A9%7Bx%7D"


def test_rewrite_target_merges_the_slashes_an_empty_splat_leaves():
    assert target("/a/* /b/:splat/index.html 200\n", "/a") == "/b/index.html"


def test_a_redirect_never_leaves_for_another_host_through_a_splat():
    # A path the server did not normalise: the splat starts with a slash.
    assert target("/go/* /:splat 302\n", "/go//evil.example/x") == "/evil.example/x"


def test_comments_blank_lines_crlf_and_bom():
    text = ("\ufeff# a comment\r\n\r\n   \t\r\n  # indented comment\r\n"
            "/a /b 302 # trailing comment\r\n/c\t\t/d#frag\r\n")
    redirects = parse_redirects(text)
    assert [rule.line for rule in redirects.rules] == [5, 6]
    assert target(text, "/a") == "/b"
    assert redirects.rules[1].to == "/d#frag"  # a '#' inside a field is the field's


def test_an_empty_file_has_no_rules():
    assert parse_redirects("").rules == ()
    assert parse_redirects("# nothing\n").match("/") is None


def test_a_repeated_path_is_served_from_the_cache(monkeypatch):
    redirects = parse_redirects(SPLAT)
    first = redirects.match("/news/a")
    monkeypatch.setattr(redirects, "_compiled", ())  # a second match must not need them
    assert redirects.match("/news/a") is first
    assert redirects.match("/news/a", "q=1") == Match(first.rule, "/blog/a?q=1")


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(siterules, "CACHE_ENTRIES", 8)
    redirects = parse_redirects(SPLAT)
    for number in range(50):
        assert redirects.match(f"/news/{number}").target == f"/blog/{number}"
        assert len(redirects._cache) <= 8


REDIRECT_REFUSALS = [
    ("http://blog.example.com/* https://example.com/blog/:splat 301",
     "FROM must be a path: host-conditioned rules are not supported"),
    ("news/* /blog", "must be a path starting with /"),
    ("/a/*/b /c", "a splat (*) must be the whole last segment"),
    ("/a* /c", "a splat (*) must be the whole last segment"),
    ("/a/*/ /c", "a splat (*) must be the whole last segment"),
    ("/a/** /c", "one splat (*) per pattern at most"),
    ("/a/* /b/* 302", "'*' in TO's path: write :splat"),
    ("/a/* /b/* 200", "'*' in TO's path: write :splat"),
    ("/:1a /b", "a placeholder is ':' and a name"),
    ("/:a/:a /b", "the placeholder :a is used twice"),
    ("/:splat /b", "':splat' is reserved"),
    ("/a /b/:name", "TO uses :name, which FROM does not capture"),
    ("/a /b/:splat", "TO uses :splat, which FROM does not capture"),
    ("/a /b?x=:x 200", "TO uses :x, which FROM does not capture"),
    ("/store id=:id /blog/:id 301", "id=:id: query-parameter conditions are not supported"),
    ("/s id=:id tag=:t /b 301", "id=:id: query-parameter conditions are not supported"),
    ("/ /anz 302 Country=au,nz", "Country=au,nz: Country conditions are not supported"),
    ("/ /fr 302 Language=fr", "Language conditions are not supported"),
    ("/admin/* 200! Role=admin", "Role=admin: Role conditions are not supported"),
    ("/* /preview/:splat 302 Cookie=preview", "Cookie conditions are not supported"),
    ("/a /b Country=us", "Country conditions are not supported"),
    ("/blog/* https://blog.example.com/:splat 200",
     "TO may be a URL only for a redirect (3xx): this server is not a proxy"),
    ("/a https://example.com/ 404", "this server is not a proxy"),
    ("/a /b 500", "status 500 is not supported: use 200, 301, 302, 303, 307, 308, 404 or 410"),
    ("/a /b 451", "status 451 is not supported"),
    ("/a /b 301!!", "status 301!! is not supported"),
    ("/a /b permanent", "status permanent is not supported"),
    ("/a /b 301 extra", "extra: a rule is FROM TO [STATUS]; more fields are not supported"),
    ("/only-from", "a rule is FROM TO [STATUS]; TO is missing"),
    ("/only-from 301", "a rule is FROM TO [STATUS]; TO is missing"),
    ("/a b/c", "TO b/c must be a path starting with / (not //)"),
    ("/a //evil.example/x", "must be a path starting with / (not //)"),
    ("/a ftp://example.com/", "a URL TO must be http:// or https://"),
    ("/a https:///x 302", "the URL has no host"),
    ("/a/../b /c", "'.' and '..' segments are not allowed"),
    ("/a/%2e%2e/b /c", "'.' and '..' segments are not allowed"),
    ("/a/./b /c", "'.' and '..' segments are not allowed"),
    ("/a /b/../c", "'.' and '..' segments are not allowed"),
    ("/a /b/%2E%2E/c 200", "'.' and '..' segments are not allowed"),
    ("/a https://example.com/../x", "'.' and '..' segments are not allowed"),
    ("/a?x=1 /b", "a query (?) in FROM is not supported"),
    ("/a#x /b", "a fragment (#) never reaches the server"),
    ("/a\x01 /b", "control characters are not allowed"),
    ("/a /b\x7f", "control characters are not allowed"),
    ("/a%00 /b", "control characters or backslash"),
    ("/a%ff /b", "percent-escapes that are not UTF-8"),
    ("/a /b%ff 200", "percent-escapes that are not UTF-8"),
]


@pytest.mark.parametrize(("line", "message"), REDIRECT_REFUSALS)
def test_every_refusal_names_the_file_and_line(line, message):
    text = f"# rules\n/fine /ok\n\n{line}\n/after /ok\n"
    with pytest.raises(RulesError) as caught:
        parse_redirects(text, filename="site/_redirects")
    error = caught.value
    assert (error.filename, error.line) == ("site/_redirects", 4)
    assert message in error.message
    assert str(error) == f"site/_redirects line 4: {error.message}"
    assert "\n" not in str(error) and isinstance(error, ValueError)


def test_the_default_file_name_and_the_first_bad_line():
    with pytest.raises(RulesError, match=r"^_redirects line 2: status 999 "):
        parse_redirects("/a /b\n/c /d 999\n/e /f 998\n")


# ------------------------------------------------------------------------------ _headers

SECURITY = """\
# every page
/*
  X-Frame-Options: DENY
  Content-Security-Policy: default-src 'self'

/static/*
  Access-Control-Allow-Origin: *
  X-Robots-Tag: nosnippet

/static/*.jpg
  ! Content-Security-Policy
  X-Robots-Tag: noindex
"""


def fields(text: str, *paths: str) -> PathFields | None:
    """What the `_headers` text does to a response for `paths`."""
    return parse_headers(text).for_path(*paths)


def test_every_matching_block_applies_in_file_order_and_values_join():
    assert fields(SECURITY, "/index.html") == PathFields(
        (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "default-src 'self'")),
        frozenset())
    assert fields(SECURITY, "/static/app.css") == PathFields(
        (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "default-src 'self'"),
         ("Access-Control-Allow-Origin", "*"), ("X-Robots-Tag", "nosnippet")), frozenset())


def test_detach_drops_what_earlier_blocks_set_and_is_reported():
    assert fields(SECURITY, "/static/a/b.jpg") == PathFields(
        (("X-Frame-Options", "DENY"), ("Access-Control-Allow-Origin", "*"),
         ("X-Robots-Tag", "nosnippet, noindex")), frozenset({"content-security-policy"}))


def test_detach_alone_removes_a_global_field():
    text = "/downloads/*\n  ! X-Frame-Options\n"
    assert fields(text, "/downloads/a.zip") == PathFields((), frozenset({"x-frame-options"}))


def test_a_block_that_detaches_and_sets_replaces_earlier_values():
    text = ("/*\n  Cache-Control: no-cache\n"
            "/assets/*\n  Cache-Control: public, max-age=31536000, immutable\n"
            "  ! cache-control\n")
    assert fields(text, "/assets/app.js") == PathFields(
        (("Cache-Control", "public, max-age=31536000, immutable"),),
        frozenset({"cache-control"}))
    assert fields(text, "/index.html") == PathFields((("Cache-Control", "no-cache"),),
                                                     frozenset())


def test_a_field_set_again_after_a_detach_stays_detached_too():
    text = "/*\n  X-A: 1\n/b/*\n  ! X-A\n/b/c\n  x-a: 2\n  X-A: 3\n"
    assert fields(text, "/b/c") == PathFields((("x-a", "2, 3"),), frozenset({"x-a"}))


def test_same_name_in_one_block_joins_and_set_cookie_never_joins():
    text = ("/*\n  Cache-Control: max-age=0\n  cache-control: no-cache\n"
            "  Set-Cookie: a=1\n  Set-Cookie: b=2; Path=/\n")
    assert fields(text, "/") == PathFields(
        (("Cache-Control", "max-age=0, no-cache"), ("Set-Cookie", "a=1"),
         ("Set-Cookie", "b=2; Path=/")), frozenset())


def test_no_matching_block_is_none():
    assert fields("/only\n  X-A: 1\n", "/other") is None
    assert parse_headers("").for_path("/") is None


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/", "/", True), ("/", "/index.html", False),
    ("/*.html", "/index.html", True), ("/*.html", "/a/b/c.html", True),
    ("/*.html", "/a.htm", False), ("/assets/*.js", "/assets/x/y.js", True),
    ("/assets/*.js", "/assets/x.css", False), ("/assets/*", "/assets", True),
    ("/assets/*", "/assets/", True), ("/assets/*", "/assets/a/b", True),
    ("/assets/*", "/assetsx", False), ("/*/b", "/a/x/b", True), ("/*/b", "/b", False),
    ("/a*", "/abc/d", True), ("/about", "/about/", True), ("/about/", "/about", True),
    ("/movies/:title", "/movies/x", True), ("/movies/:title", "/movies/x/y", False),
    ("/secure/page", "/secure/Page", False),
])
def test_header_patterns_splats_anywhere_and_placeholders(pattern, path, matches):
    assert (fields(f"{pattern}\n  X-A: 1\n", path) is not None) is matches


def test_the_readme_recipe():
    text = ("/*.html\n  Cache-Control: no-cache\n/\n  Cache-Control: no-cache\n"
            "/assets/*\n  Cache-Control: public, max-age=31536000, immutable\n")
    no_cache = PathFields((("Cache-Control", "no-cache"),), frozenset())
    assert fields(text, "/") == no_cache
    assert fields(text, "/about/", "/about/index.html") == no_cache
    assert fields(text, "/assets/app.3f2a.js") == PathFields(
        (("Cache-Control", "public, max-age=31536000, immutable"),), frozenset())


def test_a_block_applies_once_when_several_paths_match_it():
    text = "/*\n  X-A: 1\n/about\n  X-B: 2\n"
    assert fields(text, "/about", "/about.html") == PathFields(
        (("X-A", "1"), ("X-B", "2")), frozenset())


def test_placeholders_and_the_splat_fill_values():
    text = ('/movies/:title\n  X-Movie: You are watching ":title"\n'
            "/files/*\n  Link: </all/:splat>; rel=canonical\n  X-Time: 12:30 at:noon\n")
    assert fields(text, "/movies/Brief Encounter") == PathFields(
        (("X-Movie", 'You are watching "Brief%20Encounter"'),), frozenset())
    assert fields(text, "/files/a/b") == PathFields(
        (("Link", "</all/a/b>; rel=canonical"), ("X-Time", "12:30 at:noon")), frozenset())


def test_headers_comments_blank_lines_crlf_bom():
    text = ("\ufeff# c\r\n/a\r\n  # an indented comment\r\n\r\n  X-A:   1  \r\n"
            "/b # c\r\n\tX-B: 2\r\n")
    headers = parse_headers(text)
    assert [(block.line, block.pattern) for block in headers.blocks] == [(2, "/a"), (6, "/b")]
    assert headers.for_path("/a") == PathFields((("X-A", "1"),), frozenset())
    assert headers.for_path("/b") == PathFields((("X-B", "2"),), frozenset())


def test_for_path_is_cached_per_paths_tuple(monkeypatch):
    headers = parse_headers(SECURITY)
    first = headers.for_path("/static/a.jpg")
    pair = headers.for_path("/static/a.jpg", "/x")
    assert pair == first and pair is not first  # the same fields, its own entry
    monkeypatch.setattr(headers, "blocks", ())  # a second call must not look at them
    assert headers.for_path("/static/a.jpg") is first
    assert headers.for_path("/static/a.jpg", "/x") is pair


HEADER_REFUSALS = [  # (lines, which of them is at fault, message)
    ("https://example.com/*\n  X-A: 1", 1,
     "the pattern must be a path: host-conditioned rules are not supported"),
    ("example/*\n  X-A: 1", 1, "must be a path starting with / (field lines are indented)"),
    ("X-Frame-Options: DENY", 1, "must be a path starting with / (field lines are indented)"),
    ("/a /b\n  X-A: 1", 1, "a pattern line holds one path pattern"),
    ("/a\n/b\n  X-A: 1", 1, "the pattern /a has no field lines"),
    ("/a\n  Content-Type: text/plain", 2, "the server sets Content-Type itself"),
    ("/a\n  content-length: 1", 2, "the server sets content-length itself"),
    ("/a\n  ETag: \"x\"", 2, "the server sets ETag itself"),
    ("/a\n  ! Content-Type", 2, "the server sets Content-Type itself"),
    ("/a\n  Server: mine", 2, "Server may not be set per path"),
    ("/a\n  ! Server", 2, "Server may not be set per path"),
    ("/a\n  X A: 1", 2, "the field name 'X A' is not a token"),
    ("/a\n  X-A : 1", 2, "is not a token"),
    ("/a\n  no colon here", 2, "a field line is 'Name: value' or '! Name'"),
    ("/a\n  X-A: caf\u20ac", 2, "X-A: the value may hold only visible characters"),
    ("/a\n  X-A: a\x01b", 2, "the value may hold only visible characters"),
    ("/a\n  !", 2, "the field name '' is not a token"),
    ("/*/*\n  X-A: :splat", 1, "/*/*: one splat (*) per pattern at most"),
    ("/*-*-*-*.html\n  X-A: 1", 1, "one splat (*) per pattern at most"),
    ("/a/:1\n  X-A: 1", 1, "a placeholder is ':' and a name"),
    ("/a/../b\n  X-A: 1", 1, "'.' and '..' segments are not allowed"),
    ("/a?b\n  X-A: 1", 1, "a query (?) in the pattern is not supported"),
    ("/a#b\n  X-A: 1", 1, "a fragment (#) never reaches the server"),
]


@pytest.mark.parametrize(("lines", "at", "message"), HEADER_REFUSALS)
def test_every_headers_refusal_names_the_file_and_line(lines, at, message):
    text = f"# fields\n/ok\n  X-Ok: 1\n{lines}\n/after\n  X-After: 1\n"
    with pytest.raises(RulesError) as caught:
        parse_headers(text, filename="www/_headers")
    error = caught.value
    assert (error.filename, error.line) == ("www/_headers", 3 + at)
    assert message in error.message
    assert str(error) == f"www/_headers line {3 + at}: {error.message}"
    assert "\n" not in str(error)


@pytest.mark.parametrize(("text", "line"), [
    ("/a\n  X-A: 1\n\n/b\n# c\n\n", 4),  # a pattern with nothing under it, at the end
    ("/a\n/b\n  X-A: 1\n", 1),
    ("/a\n  X-A: 1\n  Content-Length: 5\n", 3),
    ("\n\n  X-A: 1\n", 3),
])
def test_headers_refusals_point_at_the_line_at_fault(text, line):
    with pytest.raises(RulesError) as caught:
        parse_headers(text)
    assert caught.value.line == line


def test_rules_error_keeps_its_parts():
    error = RulesError("_redirects", 7, "status 500 is not supported")
    assert (error.filename, error.line, error.message) == ("_redirects", 7,
                                                          "status 500 is not supported")
    assert str(error) == "_redirects line 7: status 500 is not supported"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.line) == (RulesError, str(error), 7)


# ---------------------------------------------------------------------------- properties

SEGMENT = st.text(alphabet="abcxyz019-_.é~", min_size=1, max_size=6).filter(
    lambda text: text not in (".", ".."))
LITERAL_PATHS = st.lists(SEGMENT, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(LITERAL_PATHS, LITERAL_PATHS)
@example("/a", "/a/")
@example("/", "/a")
def test_a_literal_from_matches_itself_with_or_without_a_slash_and_nothing_else(source, path):
    redirects = parse_redirects(f"{source} /target 302\n")
    for form in {source, source.rstrip("/") + "/"}:
        assert redirects.match(form) is not None
    expected = path.rstrip("/") == source.rstrip("/")
    assert (redirects.match(path) is not None) is expected


PATTERN_SEGMENT = st.sampled_from(["a", "b", "é", ":p", ":q", "*"])


@st.composite
def redirect_files(draw):
    """A few rules over a tiny alphabet, so that several of them match one path."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        segments = draw(st.lists(PATTERN_SEGMENT, max_size=3))
        names = [segment for segment in segments if segment.startswith(":")]
        if "*" in segments[:-1] or len(set(names)) != len(names):
            continue
        slash = "" if segments[-1:] == ["*"] else draw(st.sampled_from(["", "/"]))
        source = "/" + "/".join(segments) + slash
        source = "/" if source == "//" else source
        lines.append(f"{source} /to{len(lines)} {draw(st.sampled_from(['301', '200']))}")
    return "\n".join(lines) + "\n"


PATHS = st.lists(st.sampled_from(["a", "b", "é", "c d", "%", "?"]), max_size=4).map(
    lambda parts: "/" + "/".join(parts)) | st.text(max_size=12)


@settings(max_examples=300)
@given(redirect_files(), PATHS, st.sampled_from(["", "x=1"]))
def test_the_match_is_the_first_rule_that_matches_alone(text, path, query):
    combined = parse_redirects(text).match(path, query)
    alone = None
    for line in text.splitlines():
        found = parse_redirects(line + "\n").match(path, query)
        if found is not None:
            alone = found
            break
    if alone is None:
        assert combined is None
    else:
        assert combined is not None
        assert (combined.rule.source, combined.rule.to) == (alone.rule.source, alone.rule.to)
        assert combined.target == alone.target


@given(st.text(max_size=30), st.text(max_size=10))
@example("/news/\udcff", "")
def test_matching_never_raises(path, query):
    redirects = parse_redirects(SPLAT + "/:a/:b/* /x/:b/:a/:splat?y 302\n/* /all 200\n")
    found = redirects.match(path, query)
    assert found is None or isinstance(found.target, str)
    headers = parse_headers(SECURITY + "/:a/*\n  X-A: :a :splat\n")
    result = headers.for_path(path, path + "/")
    assert result is None or isinstance(result, PathFields)


@given(st.text(max_size=60))
def test_parsing_arbitrary_text_raises_rules_error_or_succeeds(text):
    for parse in (parse_redirects, parse_headers):
        try:
            parse(text)
        except RulesError as error:
            assert "\n" not in str(error)
            assert re.fullmatch(r"_(redirects|headers) line \d+: .+", str(error), re.S)


HEADER_SEGMENT = st.sampled_from(["a", "b", "é", "%C3%A9", ":p", ":q", "*", "*.x", "a*", ""])
LONG = 4096  # the longest request-target by default (--max-target-bytes)


@pytest.mark.parametrize("pattern", ["/*-x.html", "/*/:a/:b", "/:a/*/:b/c", "/a*b", "/*/"])
@pytest.mark.parametrize("path", ["/" + "-" * LONG, "/" + "a/" * (LONG // 2),
                                  "/" + "-" * (LONG // 2) + "/" + "b" * (LONG // 2),
                                  "/a" + "/-x.htm" * (LONG // 7)])
def test_a_long_path_costs_no_backtracking_blowup(pattern, path):
    """One splat per pattern: a failing match is linear in the path (a regex with four
    '.*' took most of a second for a 300-byte path: refused at parse time, above). A blow-up
    here would take minutes, not fail an assertion: the test's bound is the suite's time."""
    headers = parse_headers(f"{pattern}\n  X-A: 1\n")
    redirects = parse_redirects("/:a/:b/:c/* /x 302\n/a/:b/c /y 302\n" * 50)
    for _ in range(20):
        headers.for_path(path + "z", path + "/")
        redirects.match(path + "z")
        headers._cache.clear()
        redirects._cache.clear()


@st.composite
def header_files(draw):
    """A few blocks over a tiny alphabet, so that several of them match one path."""
    blocks = []
    for number in range(draw(st.integers(1, 6))):
        segments = draw(st.lists(HEADER_SEGMENT, max_size=3))
        pattern = "/" + "/".join(segments) + draw(st.sampled_from(["", "/"]))
        names = [segment for segment in segments if segment.startswith(":")]
        if pattern.count("*") > 1 or len(set(names)) != len(names):
            continue
        detach = draw(st.sampled_from(["", "  ! X-A\n"]))
        blocks.append(f"{pattern}\n{detach}  X-{'AB'[number % 2]}: {number} :p\n")
    return "".join(blocks) or "/\n  X-A: 1\n"


@settings(max_examples=300)
@given(header_files(), st.lists(PATHS, min_size=1, max_size=3))
def test_the_first_segment_index_changes_no_answer(text, paths):
    """The index only skips blocks that cannot match: every block tried gives the same."""
    indexed = parse_headers(text)
    every = parse_headers(text)
    every._index = siterules._Index([None] * len(every.blocks))
    assert indexed.for_path(*paths) == every.for_path(*paths)
