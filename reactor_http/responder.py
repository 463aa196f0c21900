"""HTTP semantics for a static site: one request in, one `Response` (head fields + body plan) out.

`respond(request, site, now)` decides methods, redirects, 200/206/304/400/403/404/405/412/416/501,
conditional requests (RFC 9110 section 13), ranges (section 14), precompressed representations and
the options users ask for. It never touches a socket and never sends; connection management
(Connection, Keep-Alive) belongs to protocol.py, which adds those fields. A file's answer is one
`Representation` value, built in one step and transformed in small ones (see `_serve_file`).
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from typing import Final

from . import archive, content_coding, extras, filesystem, listing, livereload, siterules
from .headers import comma_list, parse_http_date, quality_values
from .messages import REASONS, FileRegion, ProducedBody, Request, Response
from .website import SMALL_FILE_MAX, PathExtras, Site, file_identity, plain_key

ALLOWED_METHODS = "GET, HEAD, OPTIONS"
# Methods we know (RFC 9110 section 9, RFC 5789, WebDAV) and refuse with 405; others are 501.
KNOWN_METHODS = frozenset({
    "POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH", "PROPFIND", "PROPPATCH", "MKCOL",
    "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "QUERY"})
# At most this many parts in a multipart/byteranges answer (see filesystem.parse_range).
MAX_RANGES = 16


def error_page(status: int) -> bytes:
    """A small HTML page for an error status; it never echoes request data."""
    title = f"{status} {REASONS.get(status, 'Error')}"
    return (f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1></body></html>\n").encode("ascii")


def error_response(status: int, *, close: bool = False, head_only: bool = False,
                   extra: list | None = None) -> Response:
    """A complete error response with a small HTML body."""
    body = error_page(status)
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    if extra:
        headers.extend(extra)
    if head_only:
        return Response(status, headers, close=close)
    return Response(status, headers, [body], len(body), close=close)

def respond(request: Request, site: Site, now: float, cache_key: tuple | None = None) -> Response:
    """Decide the response to one parsed request (`cache_key`: its plain_key, if known)."""
    method = request.method
    head_only = method == "HEAD"
    auth = site.auth
    # --auth is checked before the answer cache is consulted, so a cached answer never reaches
    # a request without the credentials (protocol.py sends no request past this with --auth).
    if auth is not None and not auth.allows(request.fields.get("authorization")) and \
            not _is_preflight(request):
        return error_response(401, head_only=head_only,
                              extra=[("WWW-Authenticate", extras.WWW_AUTHENTICATE)] + _cors(site))
    if cache_key is None:
        cache_key = plain_key(request, site.path_rules)
    if cache_key is not None and site.archive_slots is not None:
        cache_key = _archive_cache_key(request, cache_key)
    if cache_key is not None:
        cached = site.cached_response(cache_key, method, now)
        if cached is not None:
            return cached
    split = filesystem.split_target(request.target)
    if method not in ("GET", "HEAD", "OPTIONS"):
        if method in KNOWN_METHODS:
            return error_response(405, extra=[("Allow", ALLOWED_METHODS)])
        return error_response(501)
    if split is None:
        if method == "OPTIONS" and request.target == "*":
            return _options(request, site)
        return error_response(400, close=True, head_only=head_only)
    path, query = split
    if method == "OPTIONS":
        return _options(request, site)
    if site.live is not None and path == livereload.STREAM_PATH:
        return livereload.stream_response(head_only)
    if site.rules is not None:
        site.rules_stand(now)  # the rules of this instant (when they change, from the next one)
    try:
        return _route(request, site, path, query, cache_key, now)
    except filesystem.BadPath:
        # A `..` above the root is a malformed request, not a missing file (nginx answers 400).
        return error_response(400, close=True, head_only=head_only)
    except filesystem.NotFound:
        return _not_found(request, site, path)
    except filesystem.Forbidden:
        return error_response(403, head_only=head_only, extra=_cors(site))


class Route:
    """How a request reached what answers it (immutable; slots, built per request).

    `key`: the answer-cache key a small whole 200 is kept under, None where it must not be;
    `now`: the request's instant; `extras`: what the answers for its URL paths carry
    (website.PathExtras); `checks`: (path, identity) pairs the answer relies on besides the
    files it is read from, () for a path that must stay absent (/about served from about.html
    only while nothing named `about` exists).
    """

    __slots__ = ("key", "now", "extras", "checks")

    def __init__(self, key: tuple | None, now: float, extras: PathExtras, checks: tuple = ()):
        self.key: Final = key
        self.now: Final = now
        self.extras: Final = extras
        self.checks: Final = checks

    def uncached(self) -> Route:
        """The same route, whose answer is not kept in the answer cache."""
        return Route(None, self.now, self.extras, self.checks)


def _route(request: Request, site: Site, path: str, query: str, key: tuple | None,
           now: float) -> Response:
    """The answer the site's rules and the filesystem give, in this order (README, "Site
    rules"): a forced `_redirects` rule (`!`); what the path names (a file, a folder with
    index.html, with --clean-urls X.html for /X); another `_redirects` rule that matches
    (shadowed by any of those, as on Netlify); a folder's listing. Raises NotFound (the caller
    answers 404, --spa's page or 404.html), BadPath or Forbidden.
    """
    rules = site.rules
    match = None
    if rules is not None and rules.redirects is not None:
        match = rules.redirects.match(_asked(path), query)
        if match is not None and match.rule.force:
            return _follow(request, site, match, Route(key, now, site.default_extras), path)
    try:
        found, checks = _find(site, path, query)
    except filesystem.NotFound:
        if match is None:
            raise
        return _follow(request, site, match, Route(None, now, site.default_extras), path)
    if match is not None and _without_content(site, found):
        return _follow(request, site, match, Route(None, now, site.default_extras), path)
    if isinstance(found, filesystem.Redirect):
        return error_response(301, head_only=request.method == "HEAD",
                              extra=[("Location", found.location)])
    route = Route(key, now, _extras(site, path, found.url_path), checks)
    if found.is_dir:
        return _serve_folder(request, site, found, route, path)
    return _serve_file(request, site, found.fs_path, found.st, route)


def _asked(path: str) -> str:
    """The request's URL path decoded and normalised, as rules match it (raises NotFound or
    BadPath as filesystem.normalize_path does)."""
    return filesystem.canonical_path(*filesystem.normalize_path(path))


def _extras(site: Site, path: str, served: str) -> PathExtras:
    """What the answers carry for request path `path` served from URL path `served`
    (`_headers` blocks matching either apply)."""
    rules = site.rules
    if rules is None or rules.headers is None:
        return site.default_extras
    asked = _asked(path)
    return site.path_extras((asked,) if asked == served else (asked, served))


def _find(site: Site, path: str, query: str) -> tuple[filesystem.Found | filesystem.Redirect,
                                                      tuple]:
    """What the path names, and the checks an answer from it relies on (see Route).

    A file, a folder, or a Redirect (a folder without its slash); with --clean-urls, /X is
    X.html when nothing named X exists, and /X.html, /X/ (for an X.html) and /d/index.html
    redirect to /X and /d/. Raises NotFound, BadPath or Forbidden.
    """
    try:
        found = _resolve(site, path, query)
    except filesystem.NotFound:
        if not site.config.clean_urls or path == "/":
            raise
        if path.endswith("/"):  # /about/ for about.html: its clean URL
            found = _resolve_file(site, path.rstrip("/") + ".html")
            # From the file's normalised URL, never the raw path: `//about/` must not become
            # `//about`, a URL of another host.
            location = urllib.parse.quote(found.url_path[:-len(".html")])
            return filesystem.Redirect(_with_query(location, query)), ()
        found = _resolve_file(site, path + ".html")
        return found, ((found.fs_path[:-5], ()),)
    if site.config.clean_urls and isinstance(found, filesystem.Found) and not found.is_dir \
            and found.url_path.endswith(".html"):
        clean = _clean_url(found)
        if clean is not None:
            return filesystem.Redirect(_with_query(urllib.parse.quote(clean), query)), ()
    return found, ()


def _resolve(site: Site, path: str, query: str) -> filesystem.Found | filesystem.Redirect:
    """filesystem.resolve under the site's rules."""
    return filesystem.resolve(site.real_root, path, allow_dotfiles=site.allow_dotfiles,
                              follow_symlinks=site.config.follow_symlinks, query=query,
                              rules=site.path_rules)


def _resolve_file(site: Site, path: str) -> filesystem.Found:
    """The regular file `path` names; NotFound for anything else."""
    found = _resolve(site, path, "")
    if not isinstance(found, filesystem.Found) or found.is_dir:
        raise filesystem.NotFound("not a file")
    return found


def _clean_url(found: filesystem.Found) -> str | None:
    """--clean-urls: the URL path an X.html file is asked for instead, if it has one.

    /d/index.html is /d/; /about.html is /about while nothing named `about` exists beside it
    (else /about names that, and about.html keeps its own URL).
    """
    url = found.url_path
    if url == "/index.html" or url.endswith("/index.html"):
        return url[:-len("index.html")]
    try:
        os.stat(found.fs_path[:-5])
    except (OSError, ValueError):
        return url[:-5]
    return None


def _with_query(location: str, query: str) -> str:
    """A redirect's Location with the request's query kept."""
    return location + "?" + query if query else location


def _without_content(site: Site, found: filesystem.Found | filesystem.Redirect) -> bool:
    """Does what the path names leave a `_redirects` rule without `!` to apply? A folder does
    without an index.html (its listing does not shadow a rule); files always shadow, and so
    does what a redirect of ours leads to (a folder's slash, a clean URL's X.html)."""
    if isinstance(found, filesystem.Redirect):
        try:
            found = _find(site, found.location.partition("?")[0], "")[0]
        except filesystem.NotFound:
            return True
    if not isinstance(found, filesystem.Found) or not found.is_dir:
        return False
    return site.derived_stat(os.path.join(found.fs_path, "index.html")) is None


def _follow(request: Request, site: Site, match: siterules.Match, route: Route,
            path: str) -> Response:
    """The answer of a `_redirects` rule: a redirect, the content of TO under the request's
    URL (200), or TO's content with 404 or 410. One rule per request: TO is resolved with
    every safety rule of a direct request (root, dotfiles, symlinks, 403) and no rule again.
    """
    head_only = request.method == "HEAD"
    status = match.rule.status
    if 300 <= status < 400:
        return error_response(status, head_only=head_only, extra=[("Location", match.target)])
    target = urllib.parse.quote(match.target)
    if status != 200:
        return _status_page(request, site, target, status)
    # TO naming nothing raises NotFound: the caller answers the 404 a direct request gets.
    found, checks = _resolve_target(site, target)
    route = Route(route.key, route.now, _extras(site, path, found.url_path), checks)
    if found.is_dir:
        return _serve_folder(request, site, found, route, path)
    return _serve_file(request, site, found.fs_path, found.st, route)


def _resolve_target(site: Site, target: str) -> tuple[filesystem.Found, tuple]:
    """What a rule's TO names, as a direct request for it would find it, and the checks an
    answer from it relies on (see Route): a folder named without its slash is that folder, and
    with --clean-urls /X is X.html while nothing named X exists. Raises NotFound, BadPath or
    Forbidden."""
    try:
        found = _resolve(site, target, "")
    except filesystem.NotFound:
        if not site.config.clean_urls or target.endswith("/"):
            raise
        found = _resolve_file(site, target + ".html")
        return found, ((found.fs_path[:-5], ()),)
    if isinstance(found, filesystem.Redirect):  # a folder named without its slash
        found = _resolve(site, target + "/", "")
    assert isinstance(found, filesystem.Found)
    return found, ()


def _status_page(request: Request, site: Site, target: str, status: int) -> Response:
    """A rule's 404 or 410: the content of `target` with that status, or our own page."""
    try:
        found = _resolve_target(site, target)[0]
        if found.is_dir:
            raise filesystem.NotFound("not a file")
    except (filesystem.NotFound, filesystem.Forbidden):
        return error_response(status, head_only=request.method == "HEAD", extra=_cors(site))
    return _page_with_status(request, site, found.fs_path, found.st, status)


def _page_with_status(request: Request, site: Site, fs_path: str, st: os.stat_result,
                      status: int) -> Response:
    """A page of the site answered with an error status (404.html, a rule's 404 or 410 page).

    Read as a file is (a small one from memory, a larger one sent from its descriptor; an
    unreadable one gives our own page), with the live-reload script in a small HTML page, and
    never cached: no validators, no ranges.
    """
    head_only = request.method == "HEAD"
    try:
        loaded = _read(site, fs_path, st)
    except filesystem.Forbidden:
        loaded = None
    if loaded is None:
        return error_response(status, head_only=head_only, extra=_cors(site))
    body, fd, st = loaded
    ctype = filesystem.content_type(fs_path, site.mime)
    if body is None:  # over SMALL_FILE_MAX: sent as a file (and without the live script)
        assert fd is not None
        size = st.st_size
        headers = [("Content-Type", ctype), ("Content-Length", str(size)), *_cors(site)]
        segments = [] if head_only or not size else [FileRegion(fd, 0, size)]
        return Response(status, headers, segments, 0 if head_only else size, fd)
    if site.live is not None and livereload.is_html(ctype):  # --live-reload: a page too
        body = livereload.inject(body)
    return _bytes_response(status, ctype, body, head_only, _cors(site))


def _archive_cache_key(request: Request, cache_key: tuple) -> tuple | None:
    """--archives: no answer-cache key for a request asking for a download. The key ignores the
    query, so a folder's archive is never its cached answer, and never replays one
    (Site.replay_key declines such heads too)."""
    return None if "download=" in request.target else cache_key


def _is_preflight(request: Request) -> bool:
    """A CORS preflight: answered without credentials, since browsers never send them with one
    (Fetch standard, CORS-preflight request); it reveals nothing but the allowed methods."""
    fields = request.fields
    return request.method == "OPTIONS" and "origin" in fields and \
        "access-control-request-method" in fields


def _serve_folder(request: Request, site: Site, found: filesystem.Found, route: Route,
                  path: str) -> Response:
    """A folder: its index.html, else its listing (with a weak ETag), else 404.

    `path`: the request's URL path (the index.html's `_headers` blocks are those of both).
    The listing is sorted as the request's query asks (listing.parse_order: `?sort=&order=`;
    any other query is the default order), a folder a `_redirects` rule rewrites to included.
    It never enters the answer cache, whose key has no query: only an index.html's answer is
    remembered under a folder's path.
    """
    head_only = request.method == "HEAD"
    index = os.path.join(found.fs_path, "index.html")
    index_st = site.derived_stat(index, forbidden=True)
    if index_st is not None:
        if site.rules is not None and site.rules.headers is not None:
            route = Route(route.key, route.now, _extras(site, path, found.url_path + "index.html"),
                          route.checks)
        return _serve_file(request, site, index, index_st, route)
    if not site.config.listing:
        raise filesystem.NotFound("no index.html and listings are off")
    split = filesystem.split_target(request.target)
    query = split[1] if split is not None else ""
    if site.archive_slots is not None:
        # Offered where the listing is, as miniserve does: an index.html wins, and with
        # --no-listing a folder's contents are not for download either.
        kind = archive.requested_format(query)
        if kind is not None:
            return _serve_archive(request, site, found, kind, route)
    as_json = wants_json(request.fields.get("accept"))
    order = listing.parse_order(query)
    body, etag = site.listing(found.fs_path, found.st, found.url_path, route.now, as_json,
                              order)
    if site.live is not None and not as_json:  # --live-reload: the HTML listing is a page too
        body, etag = livereload.inject(body), livereload.page_etag(etag)
    # no-cache: caches may store the listing but must revalidate it, which the ETag allows.
    # Vary: Accept, since the same URL answers HTML or JSON (RFC 9110 section 12.5.5).
    extra = [("ETag", etag), *route.extras.listing_fields]
    # No Last-Modified (a folder's mtime misses changes to its files), so only If-None-Match
    # and If-Match apply (RFC 9110 sections 13.1.3 and 13.1.4 ignore dates then).
    outcome = _preconditions(request, etag, None)
    site_fields = route.extras.site_fields
    if outcome == 304:
        return Response(304, extra, site_fields=site_fields)
    if outcome is not None:
        return error_response(outcome, head_only=head_only)
    # RFC 8259 section 11: application/json defines no charset parameter (it is UTF-8).
    ctype = "application/json" if as_json else "text/html; charset=utf-8"
    return _bytes_response(200, ctype, body, head_only, extra, site_fields)


def _serve_archive(request: Request, site: Site, found: filesystem.Found, kind: str,
                   route: Route) -> Response:
    """200 with the folder as an archive made while it is sent, or 413 (too large) or 503 (as
    many archives as archive.ARCHIVES_AT_ONCE already being made), or a precondition's 304/412.

    Framed with the chunked coding for HTTP/1.1, closed at the end for HTTP/1.0 (RFC 9112
    section 6.3). Never cached, never a range: no-store, no validators, no Accept-Ranges.
    A HEAD, or a folder found too large, within a second of a walk answers from its verdict
    (Site.archive_verdict) without walking again.
    """
    head_only, now = request.method == "HEAD", route.now
    # No entity tag, no date: only `*` can match (RFC 9110 sections 13.1.1 and 13.1.2).
    outcome = _preconditions(request, "", None)
    if outcome == 304:
        return Response(304, [("Cache-Control", "no-store")])
    if outcome is not None:
        return error_response(outcome, head_only=head_only)
    slots = site.archive_slots
    assert slots is not None  # only with --archives
    if slots.full():
        return error_response(503, head_only=head_only,
                              extra=[("Retry-After", str(archive.RETRY_AFTER))])
    top = archive.archive_name(found.url_path, site.real_root)
    known = site.archive_verdict(found.fs_path, found.st, now)
    if known or (known is False and head_only):
        return error_response(413, head_only=head_only) if known else \
            _archive_response(request, kind, top, route.extras)
    config = site.config
    try:
        entries = archive.walk(site.real_root, found.fs_path, top,
                               allow_dotfiles=site.allow_dotfiles,
                               follow_symlinks=config.follow_symlinks, rules=site.path_rules,
                               max_bytes=config.archive_max_bytes,
                               max_entries=config.archive_max_files)
    except archive.TooLarge:
        site.remember_archive_verdict(found.fs_path, found.st, now, True)
        return error_response(413, head_only=head_only)
    site.remember_archive_verdict(found.fs_path, found.st, now, False)
    return _archive_response(request, kind, top, route.extras, None if head_only else entries)


def _archive_response(request: Request, kind: str, top: str, extras: PathExtras,
                      entries: tuple | None = None) -> Response:
    """An archive's 200: its type, its file name, no-store, the framing, the folder's
    `_headers` fields (PathExtras.archive_fields); its body made of `entries` unless None."""
    ctype, suffix = archive.FORMATS[kind]
    chunked = request.version >= (1, 1)
    fields = [("Content-Type", ctype),
              ("Content-Disposition", archive.content_disposition(top + suffix)),
              ("Cache-Control", "no-store")]
    if chunked:
        fields.append(("Transfer-Encoding", "chunked"))
    fields.extend(extras.archive_fields)
    if entries is None:
        return Response(200, fields, site_fields=extras.site_fields)
    body = ProducedBody(kind, entries, chunked, request.request_line)
    # HTTP/1.0: the body ends with the connection (close-delimited).
    return Response(200, fields, [body], 0, close=not chunked, site_fields=extras.site_fields)


def _media_quality(accepted: dict[str, float], media_type: str) -> float:
    """The q the Accept ranges give `media_type`: the most specific range that matches it
    (RFC 9110 section 12.5.1: type/subtype over type/* over */*); 0 if none does."""
    kind = media_type.split("/", 1)[0]
    for candidate in (media_type, kind + "/*", "*/*"):
        if candidate in accepted:
            return accepted[candidate]
    return 0.0


def wants_json(accept: str | None) -> bool:
    """True if Accept prefers application/json to text/html (a tie, or no Accept, is HTML)."""
    if not accept:
        return False
    # quality_values keeps parameters other than q out of the key: `text/html;level=1` is
    # text/html, which is as specific as this choice between two types needs.
    accepted = {name.replace(" ", ""): q for name, q in quality_values(accept).items()}
    return _media_quality(accepted, "application/json") > _media_quality(accepted, "text/html")


def _bytes_response(status, ctype, body, head_only, extra=(), site_fields=None) -> Response:
    """A response whose body is bytes already in memory."""
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    if head_only:
        return Response(status, headers, site_fields=site_fields)
    return Response(status, headers, [body], len(body), site_fields=site_fields)


def _cors(site: Site) -> list:
    """CORS fields for simple GET/HEAD responses when --cors is on."""
    return [("Access-Control-Allow-Origin", "*")] if site.config.cors else []


def _options(request: Request, site: Site) -> Response:
    """OPTIONS: 204 with Allow; with --cors, a full preflight answer (Fetch standard)."""
    headers = [("Allow", ALLOWED_METHODS)]
    if site.config.cors and "origin" in request.fields:
        headers.append(("Access-Control-Allow-Origin", "*"))
        headers.append(("Access-Control-Allow-Methods", ALLOWED_METHODS))
        asked = request.fields.get("access-control-request-headers")
        if asked:
            names = [name for name in comma_list(asked) if name.replace("-", "").isalnum()]
            if names:
                headers.append(("Access-Control-Allow-Headers", ", ".join(names)))
        headers.append(("Access-Control-Max-Age", "86400"))
    return Response(204, headers)


def _not_found(request: Request, site: Site, path: str) -> Response:
    """404, or under --spa for paths that do not look like files X.html or the app's
    index.html, or 404.html."""
    head_only = request.method == "HEAD"
    root = site.real_root
    if site.config.spa and "." not in path.rstrip("/").rsplit("/", 1)[-1]:
        try:
            return _spa_page(request, site, path)
        except filesystem.Forbidden:
            return error_response(403, head_only=head_only, extra=_cors(site))
        except (filesystem.NotFound, filesystem.BadPath):
            pass
    custom = os.path.join(root, "404.html")
    custom_st = site.derived_stat(custom)
    if custom_st is not None:  # (one we may not read, or too large: the built-in page)
        return _page_with_status(request, site, custom, custom_st, 404)
    return error_response(404, head_only=head_only, extra=_cors(site))


def _spa_page(request: Request, site: Site, path: str) -> Response:
    """--spa: /X is X.html if that exists (a page of its own wins over the app, as `serve` and
    Cloudflare Pages have it), else the root's index.html. Raises NotFound if neither does.
    Never kept in the answer cache: the path names no file, and one may appear."""
    if path != "/" and not path.endswith("/"):
        try:
            found = _resolve_file(site, path + ".html")
            route = Route(None, 0.0, _extras(site, path, found.url_path))
            return _serve_file(request, site, found.fs_path, found.st, route)
        except filesystem.NotFound:
            pass
    index = os.path.join(site.real_root, "index.html")
    index_st = site.derived_stat(index)
    if index_st is None:
        raise filesystem.NotFound("no index.html")
    route = Route(None, 0.0, _extras(site, path, "/index.html"))
    return _serve_file(request, site, index, index_st, route)


# ---- a file: one representation value, built in one step and transformed in small ones ------
#
# _serve_file runs the steps in this order: choose the representation (identity, a precompressed
# sibling, or a coding made on the fly) and read its bytes, inject the live-reload script, make
# the page's coding, then validators -> preconditions (RFC 9110 section 13.2.2) -> ranges
# (section 14) -> the Response.

# A coding on offer: (coding, sibling path, sibling stat); path and stat None when the coding
# is made on the fly.
Offer = tuple[str, str | None, os.stat_result | None]


@dataclasses.dataclass(slots=True)
class Representation:
    """One representation of a file as the answer will carry it; each step makes a new one.

    Before `_load` it names the bytes (`path`) but holds none (`data` and `fd` None; `size`,
    `etag` and `last_modified` not yet known), except a body compressed on the fly, which comes
    in memory. Immutable for the type checker (Final, as messages.Response), not frozen at run
    time: a frozen dataclass takes 1.6 us to build here against 0.26, and every file answer the
    answer cache does not give builds two (the whole path costs 20 to 30 us; a NamedTuple, with
    its unspecialised attribute reads, cost 1 us more per answer). For the same reason the
    steps common on that path build anew rather than call dataclasses.replace (2 us).
    """

    fs_path: Final[str]               # the file the URL names (the answer cache re-checks it)
    st: Final[os.stat_result]         # its stat as resolved
    path: Final[str]                  # the file the bytes come from: fs_path or a sibling
    path_st: Final[os.stat_result]    # that file's stat; once opened, the descriptor's fstat
    ctype: Final[str]                 # Content-Type
    coding: Final[str | None]         # Content-Encoding; None for identity
    fields: Final[tuple]              # Vary, Cache-Control, CORS, `_headers`: after validators
    route: Final[Route]               # how the request got here; a small full 200's cache key
    data: Final[bytes | None] = None  # the bytes in memory, or None when `fd` holds them
    fd: Final[int | None] = None      # the open descriptor: ours until a Response takes it
    size: Final[int] = 0              # bytes of the representation
    etag: Final[str] = ""             # strong ETag (RFC 9110 section 8.8.3)
    last_modified: Final[str] = ""    # Last-Modified, an IMF-fixdate
    saved: Final[int | None] = None   # a body compressed on the fly: bytes fewer than identity
    page_coding: Final[str | None] = None  # --live-reload: the coding the injected page gets


def _serve_file(request: Request, site: Site, fs_path: str, st: os.stat_result,
                route: Route) -> Response:
    """200/206/304/412/416 for a regular file, in the representation the request gets.

    With a `route` key (a plain GET/HEAD), a small file's 200 is remembered in the answer cache.
    Raises filesystem.Forbidden if the file may not be opened.
    """
    skip: tuple[str, ...] = ()
    while True:
        chosen = _choose_representation(request, site, fs_path, st, route, skip)
        if isinstance(chosen, Response):
            return chosen  # a 304 for a body still being compressed
        try:
            rep = _load(site, chosen)
            break
        except filesystem.Forbidden:
            if chosen.path == fs_path:
                raise
            # A prepared sibling we may not read is skipped, as nginx's gzip_static does: choose
            # again without it, so the file is compressed on the fly like any other.
            skip += (chosen.path,)
    if rep is None:
        # Gone since our stat: a plain 404. Not _not_found(), which under --spa serves
        # index.html, so an index.html that stats but cannot be opened would recurse without
        # end, and a file that vanished would turn into the app page with a 200.
        return error_response(404, head_only=request.method == "HEAD", extra=_cors(site))
    # From here the fd is ours until a Response takes it: close it on every other way out,
    # including an exception raised while evaluating the request's conditionals and ranges.
    fd = rep.fd
    try:
        if site.live is not None:  # --live-reload: the steps that change a page
            rep = _compress_page(site, _inject_live(rep))
        response = _answer(request, site, rep)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    if fd is not None and response.fd is None:
        os.close(fd)  # 304, 412 and 416 do not send the file
    return response


def _choose_representation(request: Request, site: Site, fs_path: str, st: os.stat_result,
                           route: Route,
                           skip: tuple[str, ...] = ()) -> Representation | Response:
    """Which representation the request gets: identity, a sibling or a coding made on the fly.

    A Response when the choice is already the answer (a 304 for a coded body still being made).
    `skip`: siblings found unreadable, offered no more.
    """
    ctype = filesystem.content_type(fs_path, site.mime)
    # --live-reload: an HTML page is served with the script in it, so never as a prepared
    # .gz/.br sibling; a coding made on the fly applies to the injected page (_compress_page).
    live = site.live is not None and livereload.is_html(ctype)
    chosen, vary = _choose_encoding(request, site, fs_path, st, ctype, not live, skip)
    fields = (("Vary", "Accept-Encoding"),) + route.extras.file_fields if vary \
        else route.extras.file_fields
    coding, path, path_st = chosen if chosen is not None else (None, None, None)
    if path is not None and path_st is not None:  # a precompressed sibling
        return Representation(fs_path, st, path, path_st, ctype, coding, fields, route)
    if live:  # no sibling was offered: a coding chosen is made on the fly, of the injected page
        return Representation(fs_path, st, fs_path, st, ctype, None, fields, route,
                              page_coding=coding)
    rep = Representation(fs_path, st, fs_path, st, ctype, None, fields, route)
    return rep if coding is None else _coded_on_the_fly(request, site, rep, coding)


def _choose_encoding(request: Request, site: Site, fs_path: str, st: os.stat_result,
                     ctype: str, siblings: bool = True,
                     skip: tuple[str, ...] = ()) -> tuple[Offer | None, bool]:
    """Pick the coding the client gets: (coding, path, stat), path None for on the fly; or None.

    The offers are the precompressed siblings, then the codings compressed on the fly that no
    sibling provides, so a prepared sibling wins a tie (content_coding.negotiate). Also reports
    whether responses vary on Accept-Encoding: when a sibling exists (as nginx gzip_static and
    Caddy's precompressed do) or the file qualifies for on-the-fly compression, every response
    does, identity ones included. A sibling that is not a regular file inside the root (a
    symlink out of it, without --follow-symlinks) does not exist for us.
    """
    offers: list[Offer] = []
    vary = False
    for coding, suffix in filesystem.PRECOMPRESSED if siblings else ():
        sibling_st = site.derived_stat(fs_path + suffix)
        if sibling_st is None or sibling_st.st_mtime_ns < st.st_mtime_ns:
            continue  # an older sibling is stale: never serve it
        vary = True  # it exists: whether it can be read or not, the answer varies
        if fs_path + suffix in skip:
            continue
        offers.append((coding, fs_path + suffix, sibling_st))
    compressor = site.compression
    if compressor is not None and compressor.eligible(ctype, st.st_size):
        vary = True
        prepared = {offer[0] for offer in offers}
        offers.extend((coding, None, None) for coding in content_coding.CODINGS
                      if coding not in prepared)
    if not offers:
        return None, False
    accepted = quality_values(request.fields.get("accept-encoding"))
    return content_coding.negotiate(accepted, offers), vary


def _coded_on_the_fly(request: Request, site: Site, rep: Representation,
                      coding: str) -> Representation | Response:
    """The file in a coding made on the fly, if content_coding has the body; else identity.

    Validators, conditionals, HEAD and ranges apply to the compressed bytes exactly as to a
    prepared sibling, under the coded ETag (content_coding.coded_etag). While the body is being
    made in the background, identity is served without the answer cache, so it does not keep
    that identity answer past the worker's finish; a request whose If-None-Match names the
    coded ETag still gets its 304, which needs no body.
    """
    compressor = site.compression
    assert compressor is not None  # _choose_encoding offers no such coding without it
    st = rep.st
    body, settled = compressor.lookup(rep.fs_path, st, coding)
    # Derived from the file's own ETag, whichever --etag makes (none while its digest is made).
    etag = content_coding.coded_etag(site.digests.etag(rep.fs_path, st), coding)
    if body is not None:
        return Representation(rep.fs_path, st, rep.fs_path, st, rep.ctype, coding, rep.fields,
                              rep.route, body, None, len(body), etag,
                              filesystem.last_modified(st), st.st_size - len(body))
    if settled:
        return rep
    if etag and "if-none-match" in request.fields and \
            _preconditions(request, etag, filesystem.modified_seconds(st)) == 304:
        validators = [("Last-Modified", filesystem.last_modified(st)), ("ETag", etag)]
        return Response(304, validators + [("Content-Encoding", coding), *rep.fields],
                        site_fields=rep.route.extras.site_fields)
    return dataclasses.replace(rep, route=rep.route.uncached())


def _load(site: Site, rep: Representation) -> Representation | None:
    """The representation with its bytes and validators; None if its file is gone.

    Raises filesystem.Forbidden if the file may not be opened (for a sibling, _serve_file then
    chooses again without it).
    """
    if rep.data is not None:
        return rep  # a body compressed on the fly: already in memory, validators set
    loaded = _read(site, rep.path, rep.path_st)
    if loaded is None:
        return None
    data, fd, path_st = loaded  # with an fd, path_st describes the file we actually opened
    etag = site.digests.etag(rep.path, path_st, data)
    if rep.coding is not None:
        # A sibling's own tag, marked with its coding: mtime and size alone could coincide
        # with the file's, and a strong tag names one representation (RFC 9110 section 8.8.3).
        etag = content_coding.coded_etag(etag, rep.coding)
    return Representation(rep.fs_path, rep.st, rep.path, path_st, rep.ctype, rep.coding,
                          rep.fields, rep.route, data, fd,
                          len(data) if data is not None else path_st.st_size, etag,
                          filesystem.last_modified(path_st),
                          page_coding=rep.page_coding)


def _read(site: Site, path: str,
          st: os.stat_result) -> tuple[bytes | None, int | None, os.stat_result] | None:
    """(bytes, None, st) for a small file, (None, fd, fstat) otherwise; None if it is gone.

    Raises filesystem.Forbidden if the file may not be opened.
    """
    data = site.small_file(path, st) if st.st_size <= SMALL_FILE_MAX else None
    if data is not None:
        return data, None, st
    opened = filesystem.open_regular(path)
    if opened is None:
        return None
    fd, st_open = opened
    return None, fd, st_open


def _inject_live(rep: Representation) -> Representation:
    """--live-reload: an HTML page with the script in it, under the page's own ETag."""
    if not livereload.is_html(rep.ctype):
        return rep
    data, size, etag = livereload.injected_page(rep.data, rep.fd, rep.size, rep.etag)
    return dataclasses.replace(rep, data=data, size=size, etag=etag)


def _compress_page(site: Site, rep: Representation) -> Representation:
    """The injected page in the coding the client chose.

    Made here up to INLINE_MAX (the answer cache keeps the result of a small page per
    Accept-Encoding); a larger one off the loop, as any large file (_page_off_the_loop).
    """
    coding = rep.page_coding
    if coding is None or rep.data is None:
        return rep
    if rep.size > content_coding.INLINE_MAX:
        return _page_off_the_loop(site, rep, coding)
    data = content_coding.compress(rep.data, coding)
    return dataclasses.replace(rep, coding=coding, data=data, size=len(data),
                               etag=content_coding.coded_etag(rep.etag, coding), page_coding=None)


def _page_off_the_loop(site: Site, rep: Representation, coding: str) -> Representation:
    """A large injected page in `coding` if the compressor's worker has made it, else as it is.

    The worker injects the file's bytes itself (the key is the file version `path_st` the page
    was read from, so the body and the page's ETag agree). While it works, the identity page
    answers without the answer cache, which would otherwise keep that answer past its finish.
    """
    compressor = site.compression
    assert compressor is not None  # no coding is offered without it (_choose_encoding)
    body, settled = compressor.lookup(rep.path, rep.path_st, coding, livereload.inject)
    if body is None:
        return dataclasses.replace(rep, page_coding=None,
                                   route=rep.route if settled else rep.route.uncached())
    return dataclasses.replace(rep, coding=coding, data=body, size=len(body),
                               etag=content_coding.coded_etag(rep.etag, coding),
                               saved=rep.size - len(body), page_coding=None)


def _answer(request: Request, site: Site, rep: Representation) -> Response:
    """Validators, then preconditions (RFC 9110 section 13.2.2), then ranges: the Response.

    Never closes the fd: a response that sends the file carries it, and _serve_file closes it
    otherwise.
    """
    validators = [("Last-Modified", rep.last_modified)]
    if rep.etag:  # none while --etag content's digest of a large file is being made
        validators.append(("ETag", rep.etag))
    extra = list(rep.fields)
    if rep.coding is not None:
        extra.insert(0, ("Content-Encoding", rep.coding))
    outcome = _preconditions(request, rep.etag, filesystem.modified_seconds(rep.path_st))
    if outcome is not None:
        if outcome == 304:
            return Response(304, validators + extra, site_fields=rep.route.extras.site_fields)
        return error_response(412, head_only=request.method == "HEAD")
    ranges = _ranges(request, rep)
    if ranges == []:
        # The 416 body is our own HTML page, not the encoded file: it must not claim the coding.
        return error_response(416, extra=[("Content-Range", f"bytes */{rep.size}"),
                                          *rep.fields])
    tail = validators + [("Accept-Ranges", "bytes")] + extra
    if not ranges:
        return _full_response(request, site, rep, tail)
    if len(ranges) == 1:
        return _single_range(rep, ranges[0], tail)
    return _multipart(rep, ranges, tail)


def _etag_matches(header: str, etag: str, weak: bool) -> bool:
    """Does an If-Match / If-None-Match list match our ETag (RFC 9110 section 8.8.3.2)?"""
    if header.strip() == "*":
        return True
    ours = etag[2:] if etag.startswith("W/") else etag
    for candidate in comma_list(header):
        if candidate.startswith("W/"):
            if not weak:
                continue  # strong comparison: weak tags never match
            candidate = candidate[2:]
        if candidate == ours:
            return True
    return False


def _preconditions(request: Request, etag: str, mtime: int | None) -> int | None:
    """Evaluate conditional fields in the order of RFC 9110 section 13.2.2: 412, 304 or None.

    `mtime` None means the resource has no modification date: date conditions are ignored.
    """
    fields = request.fields
    safe = request.method in ("GET", "HEAD")
    if_match = fields.get("if-match")
    if if_match is not None:
        if not _etag_matches(if_match, etag, weak=False):
            return 412
    else:
        since = fields.get("if-unmodified-since")
        if since is not None and mtime is not None:
            date = parse_http_date(since)
            if date is not None and mtime > date:
                return 412
    if_none_match = fields.get("if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, etag, weak=True):
            return 304 if safe else 412
    elif safe:
        # If-Modified-Since is ignored when If-None-Match is present (section 13.1.3), when the
        # method is not GET/HEAD, and when the date is invalid.
        since = fields.get("if-modified-since")
        if since is not None and mtime is not None:
            date = parse_http_date(since)
            if date is not None and mtime <= date:
                return 304
    return None


def _if_range_allows(request: Request, etag: str, last_mod: str) -> bool:
    """If-Range (RFC 9110 section 13.1.5): honour Range only if the validator still matches."""
    value = request.fields.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # strong comparison; a weak tag never matches
    return value == last_mod  # a date must be an exact match of our Last-Modified




def _ranges(request: Request, rep: Representation) -> list[tuple[int, int]] | None:
    """The Range to honour (RFC 9110 section 14): None for the whole, [] if unsatisfiable."""
    range_header = request.fields.get("range")
    # Range is defined for GET only (RFC 9110 section 14.2): HEAD gets the 200 fields.
    if range_header is None or request.method != "GET" or \
            not _if_range_allows(request, rep.etag, rep.last_modified):
        return None
    return filesystem.parse_range(range_header, rep.size, MAX_RANGES)


def _full_response(request: Request, site: Site, rep: Representation, tail: list) -> Response:
    """200 with the whole representation (its fields only for HEAD).

    A small one held in memory is remembered in the answer cache for a plain GET/HEAD; the
    bytes a body compressed on the fly saves a GET are counted.
    """
    head_only = request.method == "HEAD"
    size = rep.size
    headers = [("Content-Type", rep.ctype), ("Content-Length", str(size))] + tail
    segments = [] if head_only or size == 0 else [_piece(rep, 0, size)]
    response = Response(200, headers, segments, 0 if head_only else size, rep.fd,
                        site_fields=rep.route.extras.site_fields)
    if rep.route.key is not None and rep.data is not None and size <= SMALL_FILE_MAX:
        _remember(site, rep, rep.data, headers)
    if rep.saved is not None and request.method == "GET":
        assert site.compression is not None  # a body compressed on the fly came from it
        site.compression.served(rep.saved)
    return response


def _remember(site: Site, rep: Representation, data: bytes, headers: list) -> None:
    """Keep a full 200 in the answer cache while the files it was read from are unchanged.

    Not a file whose mtime is ahead of the clock: its Last-Modified is the present second
    (filesystem.last_modified), which a kept answer would repeat after that second.
    """
    if filesystem.modified_in_future(rep.path_st):
        return
    route = rep.route
    assert route.key is not None  # _full_response asks for a key
    checks: tuple[tuple[str, tuple], ...] = ((rep.fs_path, file_identity(rep.st)),)
    if rep.path != rep.fs_path:
        checks += ((rep.path, file_identity(rep.path_st)),)
    full = Response(200, headers, [data] if rep.size else [], rep.size,
                    site_fields=route.extras.site_fields)
    site.remember_response(route.key, route.now, checks + route.checks, full, rep.saved)


def _single_range(rep: Representation, byte_range: tuple[int, int], tail: list) -> Response:
    """206 with one range of the representation (RFC 9110 section 14.4)."""
    first, last = byte_range
    count = last - first + 1
    headers = [("Content-Type", rep.ctype), ("Content-Length", str(count)),
               ("Content-Range", f"bytes {first}-{last}/{rep.size}")] + tail
    return Response(206, headers, [_piece(rep, first, count)], count, rep.fd,
                    site_fields=rep.route.extras.site_fields)


def _multipart(rep: Representation, ranges: list[tuple[int, int]], tail: list) -> Response:
    """206 multipart/byteranges with several ranges (RFC 9110 section 14.6)."""
    boundary = os.urandom(12).hex()
    segments: list[bytes | FileRegion] = []
    for first, last in ranges:
        part_head = (f"\r\n--{boundary}\r\nContent-Type: {rep.ctype}\r\n"
                     f"Content-Range: bytes {first}-{last}/{rep.size}\r\n\r\n").encode("latin-1")
        segments.append(part_head)
        segments.append(_piece(rep, first, last - first + 1))
    segments.append(f"\r\n--{boundary}--\r\n".encode("latin-1"))
    length = sum(len(s) if isinstance(s, bytes) else s.count for s in segments)
    headers = [("Content-Type", f"multipart/byteranges; boundary={boundary}"),
               ("Content-Length", str(length))] + tail
    return Response(206, headers, segments, length, rep.fd,
                    site_fields=rep.route.extras.site_fields)


def _piece(rep: Representation, first: int, count: int) -> bytes | FileRegion:
    """`count` bytes of the representation from `first`: a slice in memory, or a FileRegion."""
    if rep.data is not None:
        return rep.data[first:first + count]
    assert rep.fd is not None  # a loaded representation holds its bytes one way or the other
    return FileRegion(rep.fd, first, count)
