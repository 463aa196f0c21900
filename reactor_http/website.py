"""The Site: what the responder keeps between requests, and which of its answers may be replayed.

Owns the configuration's derived values (real root, Cache-Control, extra fields, --mime, --auth),
the caches (small files, directory listings, the answer cache of whole 200 responses keyed by
normalised path and Accept-Encoding) and their locks, and the one declaration the protocol's
short route obeys: `replay_key(request, key)`, whether an answer to an exact request head may be
replayed from the answer cache without running `responder.respond` again. Every option that
looks at a request beyond its head bytes and the file's identity takes part in that
declaration, so a new per-request rule cannot be skipped by the short route.

Must not decide HTTP semantics (responder.py does) or touch a socket.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from . import archive, content_coding, extras, filesystem, pathrules, rulefiles, validators
from .facilities import pread
from .headers import DateCache
from .listing import DEFAULT_ORDER, Order, listing_etag, render_html, render_json, sort_entries
from .messages import CachedResponse, Request, Response, target_path

# Files up to this size are kept in memory and sent with the head in one send (bytes).
SMALL_FILE_MAX = 64 * 1024
# Total bytes of small files kept in memory; the oldest entries go first beyond it.
SMALL_FILE_CACHE_BYTES = 32 * 1024 * 1024
# Directory listings kept in memory (entries), rebuilt when the folder's stat changes.
LISTING_CACHE_ENTRIES = 256
# A cached listing is rebuilt after this long (seconds) even if the folder's own stat is unchanged:
# a file modified inside it changes the size and date the listing shows but not the folder.
LISTING_TTL = 1.0
# A cached small-file response is re-validated by one os.stat per request, and rebuilt from
# scratch after this long (seconds) anyway, which bounds how late we notice a precompressed
# sibling appearing or a symlink changing without the file's identity changing.
FAST_PATH_TTL = 1.0
# Cached small-file responses kept (entries); the oldest go first beyond it. Each entry's body is
# shared with the small-file cache; the rendered copies of an answer (head + body) live with
# the request heads that replay it (protocol.Replay, at most one per memoised head). Keys are
# normalised paths without the query (see _fast_key), so `/app.js?v=1`, `?v=2`,
# `/x/../app.js`, `//app.js` ... share one entry.
FAST_PATH_ENTRIES = 1024
# Requests carrying any of these fields take the full path (conditionals and ranges).
_FULL_PATH_FIELDS = frozenset({"range", "if-range", "if-match", "if-none-match",
                               "if-modified-since", "if-unmodified-since"})


@dataclasses.dataclass(frozen=True, slots=True)
class PathExtras:
    """What the answers about one URL path carry besides their own fields.

    `file_fields` follow a file's validators (200, 206, 304, HEAD): --max-age's Cache-Control,
    --cors's field, then the fields of the `_headers` blocks that match the path.
    `listing_fields` follow a listing's ETag: its own Cache-Control, Vary, CORS, those fields.
    `site_fields`: the --header lines the answers carry instead of all of them (rendered),
    where a block sets or detaches (`! Name`) a field of that name; None: all of them.
    A block's Cache-Control replaces --max-age's (and a listing's no-cache); a block's field
    replaces a --header field of the same name, and --cors's.
    `archive_fields` follow a folder's archive (--archives): --cors's and the blocks' fields but
    Cache-Control (an archive made on the fly is never stored: no-store).
    """

    file_fields: tuple[tuple[str, str], ...]
    listing_fields: tuple[tuple[str, str], ...]
    site_fields: bytes | None
    archive_fields: tuple[tuple[str, str], ...] = ()


class Site:
    """What the responder keeps between requests: the configuration, the real root and caches.

    One Site serves every thread of the threaded engine. Cache hits are plain dict lookups
    (atomic under the GIL, no lock); every mutation of a cache (insert, evict, invalidate, and
    the small-file byte count) happens under `_lock`, so two threads can never both evict the
    same key or lose an update of the count. Engines never write to a Site: what differs by
    engine is given to the constructor.

    `live`: --live-reload's livereload.Hub, or None. `single_thread`: one thread answers every
    request and each of its instants is one loop turn (the reactor). Answer-cache checks then
    share one stat per file per instant: the requests one poll returned arrived together; a
    later turn has a later `now` and stats afresh, so a change on disk is seen by every request
    that arrives after it. The compressor's per-request counters then need no lock.

    `path_rules`: the name rules of the root's filesystem (pathrules.PathRules), by default
    those `pathrules.for_root` finds. Where names are case-insensitive, every cache keyed by a
    path is keyed by the path as the filesystem compares it (`PathRules.fold`), so `/INDEX.HTML`
    and `/index.html`, one file there, are one entry under the rules of one name.
    """

    # The archive formats an HTML listing links to (`?download=<format>`, listing.render_html);
    # none until archives are served.
    listing_downloads: tuple[str, ...] = ()

    def __init__(self, config, *, live=None, single_thread: bool = False,
                 path_rules: pathrules.PathRules | None = None):
        self.config = config
        self.real_root = os.path.realpath(config.root)
        self.dates = DateCache()
        self.allow_dotfiles = config.dotfiles == "allow"
        self.live = live
        self.stat_per_instant = single_thread
        self.rules, self.path_rules = self._site_rules(path_rules)
        self._lock = threading.Lock()
        self._small_files: dict[str, tuple[tuple, bytes]] = {}
        self._small_file_bytes = 0
        # (folder path, JSON?, listing.Order) -> (identity, expires, body, weak ETag)
        self._listings: dict[tuple[str, bool, Order], tuple[tuple, float, bytes, str]] = {}
        # (normalised URL path, Accept-Encoding) -> (checks, expires, GET response, HEAD
        # response), where checks are the (path, identity) pairs whose stat must be unchanged.
        self._fast: dict[tuple, tuple] = {}
        # With stat_per_instant: the instant the identities below were taken at.
        self._stat_instant = -1.0
        self._identities: dict[str, tuple] = {}
        # --etag: each file version's strong ETag (validators.py), by its stat identity.
        self.digests = validators.Digests(config.etag, file_identity)
        # On-the-fly compression (content_coding.py), or None with --no-compress.
        self.compression = content_coding.Compressor(
            config.compress_max_bytes, config.compress_cache_bytes, file_identity,
            single_writer=single_thread) if config.compress else None
        # What every response head carries besides its own fields (--header), rendered once:
        # protocol.py puts them in every head it renders, errors included.
        self.server_field, self.extra_fields = extras.header_fields(config.headers)
        self._header_lines = extras.header_lines(config.headers)
        # --mime: {'.ext': 'type/subtype'} consulted before the built-in table.
        self.mime = extras.mime_table(config.mime)
        # --auth: every request but --status and CORS preflights must carry these credentials.
        self.auth = extras.BasicAuth(config.auth) if config.auth is not None else None
        self.cache_control, self.listing_cache_control = _cache_controls(config)
        # --status: its page is made afresh per request (stats.Stats.answer), never replayed.
        self.status_path = config.status_path
        # --archives: the count of archives being made (None: archives are off), and the
        # formats a listing offers links to.
        self.archive_slots = archive.Slots() if config.archives else None
        # --archives: folder path -> (identity, expires, too large?) of its last walk.
        self._walks: dict[str, tuple[tuple, float, bool]] = {}
        if config.archives:
            self.listing_downloads = tuple(archive.FORMATS)
        # What a file's or listing's answer carries where no `_headers` block applies.
        self.default_extras = self._extras_for(None)
        # The URL paths an answer stands for -> their PathExtras, under the rules' generation.
        self._extras: dict[tuple[str, ...], PathExtras] = {}
        self._extras_generation = 0

    def _site_rules(self, path_rules: pathrules.PathRules | None) -> tuple:
        """(rulefiles.RuleFiles or None with --no-site-rules, the root's name rules).

        The rule files are read now (siterules.RulesError, a ValueError naming file and line,
        for a malformed one), and never served themselves: the name rules hide them.
        """
        rules = path_rules or pathrules.for_root(self.real_root)
        if not self.config.site_rules:
            return None, rules
        interval = 0.0 if self.stat_per_instant else rulefiles.THREADED_INTERVAL
        files = rulefiles.RuleFiles(self.real_root, interval, rules.case_insensitive)
        return files, dataclasses.replace(
            rules, hidden=frozenset(rules.fold(name) for name in rulefiles.NAMES),
            hidden_files=files.inodes)

    def replay_key(self, request: Request, key: tuple | None) -> tuple | None:
        """The answer-cache key under which answers to this exact request head may be replayed.

        The declaration the protocol's short route obeys (protocol.HttpConnection.take_request):
        for a head that parsed before, a non-None key means that `respond` would answer it with
        `cached_response(key, ...)` whenever that is not None, so the protocol may ask the
        answer cache directly. None: every request with this head runs `respond`.

        `key` is the request's plain_key (the protocol has it memoised with the head).
        A pure function of the head (the protocol computes it once per distinct head). Every
        option that looks at a request beyond its head bytes and the file's identity takes part
        here; a new per-request rule must too, or the short route would skip it:
        - plain GET/HEAD only (plain_key: no conditionals, ranges or unnormalisable path);
        - --status: its path is answered per request by the engine's counters;
        - --auth: only a head whose credentials are right (checked once per head, in constant
          time): a wrong or missing one never reaches a cached answer;
        - --archives: no head asking for a download (`download=` in the query, which the key
          ignores): a folder's archive is made per request, and never cached.
        """
        if key is None:
            return None
        if self.archive_slots is not None and "download=" in request.target:
            return None
        if self.status_path is not None and target_path(request) == self.status_path:
            return None
        if self.auth is not None and not self.auth.allows(request.fields.get("authorization")):
            return None
        return key

    def path_extras(self, paths: tuple[str, ...]) -> PathExtras:
        """What the answers for these URL paths carry (PathExtras): the request's normalised,
        decoded path, and the path of the file served when that is another (/about served from
        /about.html, a rewrite's target). One lookup per distinct `paths` while the rules stand.
        """
        rules = self.rules
        if rules is None:
            return self.default_extras
        # The generation before the rules: a reload sets the rules, then counts (RuleFiles.fresh),
        # so what another thread's reload makes stale here is never kept as the new rules'.
        generation = rules.generation
        headers = rules.headers
        if headers is None:
            return self.default_extras
        extras = self._extras
        if self._extras_generation != generation or len(extras) >= FAST_PATH_ENTRIES:
            extras = self._extras = {}
            self._extras_generation = generation
        found = extras.get(paths)
        if found is None:
            found = extras[paths] = self._extras_for(headers.for_path(*paths))
        return found

    def _extras_for(self, matched) -> PathExtras:
        """The PathExtras of a path whose `_headers` blocks give `matched` (siterules.PathFields,
        or None where none applies)."""
        added = matched.fields if matched is not None else ()
        gone = {name.lower() for name, _ in added}
        if matched is not None:
            gone |= matched.detached
        cors = (("Access-Control-Allow-Origin", "*"),) \
            if self.config.cors and "access-control-allow-origin" not in gone else ()
        keep_cache_control = "cache-control" not in gone
        file_fields = ((("Cache-Control", self.cache_control),)
                       if self.cache_control and keep_cache_control else ()) + cors + added
        listing_fields = ((("Cache-Control", self.listing_cache_control),)
                          if keep_cache_control else ()) + (("Vary", "Accept"),) + cors + added
        kept = [line for name, line in self._header_lines if name not in gone]
        site_fields = None if len(kept) == len(self._header_lines) else b"".join(kept)
        archive_fields = cors + tuple(field for field in added
                                      if field[0].lower() != "cache-control")
        return PathExtras(file_fields, listing_fields, site_fields, archive_fields)

    def rules_stand(self, now: float, force: bool = False) -> bool:
        """Are the site's rules as they were (rulefiles.RuleFiles.fresh: one look per instant;
        where many threads answer, one per millisecond, and one per connection with `force`)?

        When they changed, every cached answer (made under the old rules) is dropped, so the
        new rules apply from the next request on either route.
        """
        rules = self.rules
        if rules is None:
            return True
        fresh = rules.fresh(now, force)
        if rules.inodes is not self.path_rules.hidden_files:  # a rule file came or was replaced
            self.path_rules = dataclasses.replace(self.path_rules, hidden_files=rules.inodes)
        if fresh:
            return True
        with self._lock:
            self._fast.clear()
        return False

    def access_user(self, request: Request) -> str:
        """The access log's authuser for this request: --auth's user if the request carries the
        right credentials, else "" (logged as `-`).

        A refused attempt logs no name, unlike nginx's $remote_user (the decoded name whatever
        the outcome) and Apache's %u ("may be bogus if the status is 401"): that name is the
        client's own text, and people type passwords into name fields, which would put them in
        a log file. The name logged is only ever the one configured here. A pure function of
        the head, memoised with it (protocol.ParsedHead.user).
        """
        auth = self.auth
        if auth is None or not auth.allows(request.fields.get("authorization")):
            return ""
        return auth.user

    def derived_stat(self, fs_path: str, forbidden: bool = False) -> os.stat_result | None:
        """The stat of a path we derived (index.html, 404.html, .br/.gz) if we may serve it.

        With `forbidden`, a folder that may not be searched raises filesystem.Forbidden.
        """
        return filesystem.stat_inside(self.real_root, fs_path, self.config.follow_symlinks,
                                      forbidden=forbidden, rules=self.path_rules)

    def small_file(self, fs_path: str, st: os.stat_result) -> bytes | None:
        """The bytes of a small regular file, from memory if its identity is unchanged."""
        identity = file_identity(st)
        key = self.path_rules.fold(fs_path)
        cached = self._small_files.get(key)
        if cached is not None and cached[0] == identity:
            return cached[1]
        opened = filesystem.open_regular(fs_path)
        if opened is None:
            return None
        fd, st_open = opened
        try:
            if st_open.st_size > SMALL_FILE_MAX:
                return None
            data = pread(fd, st_open.st_size, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) != st_open.st_size or file_identity(st_open) != identity:
            return None  # changed under us: do not cache, the caller serves from a descriptor
        self._remember_small_file(key, identity, data)
        return data

    def _remember_small_file(self, key: str, identity: tuple, data: bytes) -> None:
        """Cache file bytes under `key` (the folded path), evicting the oldest entries beyond
        the byte budget."""
        with self._lock:
            old = self._small_files.pop(key, None)
            if old is not None:
                self._small_file_bytes -= len(old[1])
            while self._small_file_bytes + len(data) > SMALL_FILE_CACHE_BYTES:
                popped = _pop_oldest(self._small_files)
                if popped is None:
                    break
                self._small_file_bytes -= len(popped[1][1])
            self._small_files[key] = (identity, data)
            self._small_file_bytes += len(data)

    def cached_response(self, key: tuple, method: str, now: float) -> Response | None:
        """A cached answer for a plain GET/HEAD of a small file (see _fast_key), if still valid
        (its files unchanged, and the site's rules: rules_stand)."""
        if self.rules is not None and not self.rules_stand(now):
            return None
        entry = self._fast.get(key)
        if entry is None:
            return None
        checks, expires, get_response, head_response = entry
        if now < expires:
            for fs_path, identity in checks:
                if self.stat_per_instant:
                    if now != self._stat_instant:
                        self._stat_instant = now
                        self._identities = {}
                    current = self._identities.get(fs_path)
                    if current is None:
                        current = self._identities[fs_path] = self._current_identity(fs_path)
                else:
                    current = self._current_identity(fs_path)
                if current != identity:
                    break
            else:
                response = head_response if method == "HEAD" else get_response
                compressor = self.compression
                if response.saved is not None and compressor is not None:  # count a coded one
                    compressor.hit(response.saved)
                return response
        with self._lock:
            if self._fast.get(key) is entry:  # not a fresh entry another thread just stored
                del self._fast[key]
        return None

    @staticmethod
    def _current_identity(fs_path: str) -> tuple:
        """The file's identity now (see file_identity); () if it cannot be stat'ed."""
        try:
            return file_identity(os.stat(fs_path))
        except OSError:
            return ()

    def remember_response(self, key: tuple, now: float, checks: tuple,
                          response: Response, saved: int | None = None) -> None:
        """Cache a full 200 answer (headers + small body) for plain GET/HEAD requests.

        `saved`: for a body compressed on the fly, how many bytes it saves (counted per hit).
        """
        head_response = CachedResponse(200, response.headers, [], 0,
                                       saved=None if saved is None else 0,
                                       site_fields=response.site_fields)
        get_response = CachedResponse(200, response.headers, response.segments,
                                      response.body_length, saved=saved,
                                      site_fields=response.site_fields)
        entry = (checks, now + FAST_PATH_TTL, get_response, head_response)
        with self._lock:
            while key not in self._fast and len(self._fast) >= FAST_PATH_ENTRIES:
                if _pop_oldest(self._fast) is None:
                    break
            self._fast[key] = entry

    def archive_verdict(self, fs_dir: str, st: os.stat_result, now: float) -> bool | None:
        """Was the folder too large for an archive at its walk within the last LISTING_TTL
        (True or False), or is that unknown (None)?

        The walk that decides 413 runs on the engine's thread and reads every entry (40 ms for
        10,000 here): a client repeating HEAD, or a download refused as too large, must not make
        it walk again each time. A download that goes ahead walks afresh, since its archive
        holds what the walk saw.
        """
        known = self._walks.get(self.path_rules.fold(fs_dir))
        if known is None or known[0] != file_identity(st) or now >= known[1]:
            return None
        return known[2]

    def remember_archive_verdict(self, fs_dir: str, st: os.stat_result, now: float,
                                 too_large: bool) -> None:
        """Keep what a walk of the folder found (see archive_verdict)."""
        with self._lock:
            if len(self._walks) >= LISTING_CACHE_ENTRIES:
                self._walks.clear()
            self._walks[self.path_rules.fold(fs_dir)] = (file_identity(st), now + LISTING_TTL,
                                                         too_large)

    def listing(self, fs_dir: str, st: os.stat_result, url_path: str, now: float,
                as_json: bool = False, order: Order = DEFAULT_ORDER) -> tuple[bytes, str]:
        """The HTML (or JSON) listing of a directory in `order` and its weak ETag, rebuilt when
        it may have changed.

        Keyed by the folder path, the format and the order (listing.parse_order gives one of
        six, so a query cannot grow the cache): `url_path` is normalised, so one folder has one
        title. Raises filesystem.Forbidden or NotFound (nothing is cached then).
        """
        identity = file_identity(st)
        key = (self.path_rules.fold(fs_dir), as_json, order)
        cached = self._listings.get(key)
        if cached is not None and cached[0] == identity and now < cached[1]:
            return cached[2], cached[3]
        entries = sort_entries(filesystem.listing_entries(
            self.real_root, fs_dir, allow_dotfiles=self.allow_dotfiles,
            follow_symlinks=self.config.follow_symlinks, rules=self.path_rules), order)
        if as_json:
            body = render_json(entries)
        else:
            body = render_html(entries, url_path, order, self.listing_downloads)
        etag = listing_etag(body, order)
        with self._lock:
            while key not in self._listings and len(self._listings) >= LISTING_CACHE_ENTRIES:
                if _pop_oldest(self._listings) is None:
                    break
            self._listings[key] = (identity, now + LISTING_TTL, body, etag)
        return body, etag


def _cache_controls(config) -> tuple[str | None, str]:
    """The Cache-Control of files (None: none) and of listings, from --max-age, --immutable and
    --auth."""
    # No `public`: it would let shared caches store answers to requests that carried
    # credentials (RFC 9111 section 5.2.2.9); max-age alone makes a response cacheable.
    cache_control = None
    if config.max_age is not None:
        cache_control = f"max-age={config.max_age}"
        if config.immutable:  # Config refuses it without --max-age
            cache_control += ", immutable"
    user_cache_control = any(text.partition(":")[0].strip().lower() == "cache-control"
                             for text in config.headers)
    if config.auth is not None and not user_cache_control:
        # An answer to a request with credentials is for that user only (RFC 9111 section
        # 5.2.2.7); --max-age or a --header Cache-Control is the user's own choice instead.
        return cache_control or "private", "private, no-cache"
    return cache_control, "no-cache"


def _fast_key(path: str, request: Request,
              rules: pathrules.PathRules = pathrules.POSIX) -> tuple | None:
    """The fast-path cache key: the *normalised* URL path without the query, and Accept-Encoding.

    The responder ignores the query, so keying on the whole target would let `/f.js?v=0`,
    `?v=1`, ... each fill an entry with the same answer; normalising first means `/a/../b`,
    `//b` and `/%62` share the entry of `/b` instead of each filling one. A path without `%`,
    `//` or `/.` is already its own normal form (decoding and dot-segment removal leave it
    unchanged), so the common case costs three substring tests. None for a path that cannot
    be normalised (it is refused before anything is cached). Where `rules` say names are
    case-insensitive, the path as the filesystem compares it (`PathRules.fold`): every spelling
    folded to one key gets the same verdict from pathrules.check_segments, so a refused
    spelling can never replay an answer another spelling was allowed.
    """
    if "%" in path or "//" in path or "/." in path:
        try:
            path = filesystem.canonical_path(*filesystem.normalize_path(path))
        except (filesystem.NotFound, filesystem.BadPath):
            return None
    if rules.case_insensitive:
        path = rules.fold(path)
    return path, request.fields.get("accept-encoding")


def _pop_oldest(cache: dict):
    """Remove and return the first-inserted (key, value) of a dict; None if there is none.

    Callers hold the Site lock; even so, an empty dict or a key gone meanwhile is not an error.
    """
    try:
        key = next(iter(cache))
    except (StopIteration, RuntimeError):  # RuntimeError: the dict changed while iterating
        return None
    value = cache.pop(key, None)
    return None if value is None else (key, value)


def file_identity(st: os.stat_result) -> tuple:
    """What changes when a file is replaced or modified, or its mode or owner changes (ctime)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def plain_key(request: Request,
              rules: pathrules.PathRules = pathrules.POSIX) -> tuple | None:
    """The answer-cache key of a plain GET/HEAD (see _fast_key); None for any other request.

    Plain: no field that changes the answer beyond path and Accept-Encoding (conditionals,
    ranges, CORS preflight...). A pure function of the request and the site's name rules
    (`rules`, Site.path_rules), so the protocol may memoise it with the parsed head.
    """
    method = request.method
    if (method != "GET" and method != "HEAD") or \
            not request.fields.keys().isdisjoint(_FULL_PATH_FIELDS):
        return None
    split = filesystem.split_target(request.target)
    if split is None:
        return None
    return _fast_key(split[0], request, rules)

