"""Per-path site rules: the `_redirects` and `_headers` files of Netlify and Cloudflare Pages.

Owns the syntax of both files, their compilation into matchers and the matching of a URL path
against them. Each pattern becomes one regex at parse time; a path is tried only against the
patterns that start with its first segment and those that start with a placeholder or the
splat (`_Index`), and what a path gets is kept in a bounded per-path cache. Pure: text in,
values out. It reads no file, touches no socket and decides no HTTP semantics (whether
a file at FROM shadows a rule, what a 200 rewrite serves, where the fields go: the responder's).
Everything the formats allow that this server does not do is refused with the file's line
number (`RulesError`), never ignored.

`_redirects` (Netlify's format; the IPFS "Web _redirects File Specification"):
- One rule a line, `FROM TO [STATUS]`, fields separated by runs of spaces or tabs. Blank lines
  and lines whose first visible character is `#` are comments; a field starting with `#` starts
  a comment to the end of the line. CRLF line ends and a UTF-8 byte order mark are accepted.
- FROM is a path starting with `/`. A segment `:name` (`name` is `[A-Za-z_][A-Za-z0-9_]*`, each
  name once, `splat` reserved; a colon inside a segment is text) matches one non-empty
  segment; a last segment `*` (the splat) matches the rest of the path, possibly empty:
  `/news/*` matches `/news`, `/news/`, `/news/a` and `/news/a/b`. Other text matches itself,
  case-sensitively, after percent-decoding (the path matched is decoded, as the server
  decodes a request's). With or without a trailing slash, FROM matches the path with or
  without one (`/about` matches `/about/`, and the other way round); `/` matches only `/`.
  Empty segments are merged, as in a request's path.
- TO is a path starting with `/` (not `//`), or, for a redirect (3xx) only, an `http://` or
  `https://` URL; it may hold a `?query` and a `#fragment`. `:splat` and the `:name`s FROM
  captures are replaced by what they matched (a name FROM does not capture is refused).
- STATUS is 301 (when omitted), 302, 303, 307, 308 (a redirect to TO), 200 (a rewrite: TO's
  content under FROM's URL), 404 or 410 (TO's content with that status); a trailing `!` forces
  the rule (`301!`). The first rule in file order whose FROM matches is the match, forced or not,
  except a redirect to the very path asked for (query aside), which would loop: it is passed
  over. With trailing slashes optional in FROM, `/about /about/ 301` matches `/about/` too,
  and sends only `/about` to `/about/`; `/about/ /about 301` the other way round.
- Refused, with the line: a FROM that is a URL (host-conditioned rules), `*` anywhere but as
  FROM's whole last segment, a query or fragment in FROM, `.` or `..` segments in FROM or in
  TO's path, `*` in TO's path (`:splat` says it), query-parameter conditions (a `key=value`
  field before TO), conditions after the status (`Country=`, `Language=`, `Role=`, `Cookie=`,
  any `key=value`), proxying (a URL TO with a 200, 404 or 410), any other status, a line with
  FROM alone or more than three fields, control characters.
- A match's target: for a redirect, the Location to send: substituted values percent-encoded
  (`urllib.parse.quote(value, safe="/")`), TO's own text kept as written but for the characters
  a URL may not hold (spaces cannot occur; non-ASCII and `"<>\\^`{|}` are encoded), and the
  request's query appended before TO's fragment unless TO has a query of its own. For 200, 404
  and 410: the decoded URL path to serve, TO's query and fragment dropped, repeated slashes
  merged.

`_headers` (Netlify's format, with Cloudflare Pages' detach):
- A line starting in column 0 is a path pattern: FROM's syntax, except that its one `*` (one
  per pattern, as Cloudflare Pages allows) may be anywhere and matches any run of characters,
  `/` included (`/*.html` matches `/a/b.html`); a last segment `*` also matches the path
  without it (`/assets/*` matches `/assets`). Trailing slashes are treated as in FROM, unless
  the pattern ends in `*`.
  A URL pattern (`https://host/...`) is refused: host-conditioned rules are not supported.
- Indented lines under it: `Name: value` adds a field, `! Name` detaches one. Names and values
  are checked as `--header` checks them; the fields the server manages (extras.MANAGED_FIELDS)
  and `Server` are refused. Lines starting with `#` (indented or not) and blank lines are
  comments. A field line before any pattern, or a pattern without field lines, is refused.
- `:name` and `:splat` in a value are replaced by what the pattern captured (percent-encoded
  as in a Location), as Cloudflare does; other colons are text.
- For a response, every block whose pattern matches the path (or one of the paths: the URL
  asked for and the URL of the content served) applies once, in file order; a block's values
  come from the first of those paths it matches. The rule, applying blocks in turn:
  1. the block's `! Name` lines first: every field of that name set by EARLIER blocks is
     dropped, and the lower-case name joins `detached` (the responder then also drops the
     global `--header` field of that name);
  2. then its `Name: value` lines, in order: a value is appended to the field of that name
     (case-insensitive) if it exists, joined with ", " (as Netlify and Cloudflare do), else it
     starts a new field, with the name as this line writes it, after the existing fields.
     `Set-Cookie` values are never joined (RFC 9110 section 5.3): each is a field of its own.
  So a block that both detaches and sets a name replaces earlier values with its own, and a
  name set again after a detach is in `fields` and still in `detached`.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
import urllib.parse
from dataclasses import dataclass

from . import extras

#: Entries in each per-path cache before it is cleared: paths, not rules, so a crawl of unique
#: URLs costs a rebuild every 4096 of them, and the memory stays a few hundred KiB.
CACHE_ENTRIES = 4096
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
REWRITE_STATUSES = frozenset({200, 404, 410})
_STATUS_LIST = "200, 301, 302, 303, 307, 308, 404 or 410"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A placeholder in TO or in a header value: a colon, then the longest name that follows.
_PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_FIELD_SPLIT = re.compile(r"[ \t]+")
_STATUS = re.compile(r"([0-9]{3})(!?)")
_CONDITION = re.compile(r"[^/=][^=]*=.*")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SLASHES = re.compile(r"//+")
# What may stay as written in a URL TO: RFC 3986's reserved and unreserved characters and the
# percent sign of escapes already there (quote keeps letters, digits and "_.-~" anyway).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]"
# Field names a block may not set or detach: ours (see extras.MANAGED_FIELDS), and Server,
# which only --header may replace (one Server field for the whole server).
_NOT_PER_PATH = {"server": "Server may not be set per path: use --header Server"}
_UNSET = object()


class RulesError(ValueError):
    """A malformed or unsupported line: str(e) == f"{filename} line {line}: {message}"."""

    def __init__(self, filename: str, line: int, message: str):
        super().__init__(f"{filename} line {line}: {message}")
        self.filename = filename
        self.line = line
        self.message = message

    def __reduce__(self):
        """Pickled by its parts (the default would call __init__ with the one string)."""
        return type(self), (self.filename, self.line, self.message)


class _LineError(Exception):
    """A line's problem, raised by the helpers; the parse loop adds the file name and the
    line (the line being read, unless the problem belongs to an earlier one: `line`)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """One `_redirects` line, as written (`status` 301 when omitted)."""

    line: int
    source: str
    to: str
    status: int
    force: bool


@dataclass(frozen=True, slots=True)
class Match:
    """The rule a path matched and its target (a Location for 3xx, a decoded path otherwise)."""

    rule: RedirectRule
    target: str


@dataclass(frozen=True, slots=True)
class PathFields:
    """What `_headers` does to one response: fields to add, in order, and names detached."""

    fields: tuple[tuple[str, str], ...]
    detached: frozenset[str]


def _lines(text: str):
    """(1-based number, line) of `text`, a leading BOM and each line's CR removed."""
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line[:-1] if line.endswith("\r") else line


def _shown(text: str) -> str:
    """`text` for a one-line message: as is when printable, else its repr."""
    return text if text.isprintable() else repr(text)


def _decoded(raw: str, what: str) -> str:
    """Percent-decode `raw` (UTF-8, strict); _LineError if not UTF-8 or control characters."""
    try:
        text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _LineError(f"{what} {_shown(raw)}: percent-escapes that are not UTF-8") from None
    if _CONTROL.search(text) or "\\" in text:
        raise _LineError(f"{what} {_shown(raw)}: control characters or backslash")
    return text


def _check_dots(decoded_path: str, what: str, raw: str) -> None:
    """_LineError if the decoded path has a `.` or `..` segment (it can be neither matched
    nor served: a request's path has none left after normalisation)."""
    if any(segment in (".", "..") for segment in decoded_path.split("/")):
        raise _LineError(f"{what} {_shown(raw)}: '.' and '..' segments are not allowed")


def _check_path_text(raw: str, what: str) -> None:
    """Refuse what no path pattern (FROM or a `_headers` pattern) may hold."""
    if _URL.match(raw):
        raise _LineError(f"{what} must be a path: host-conditioned rules are not supported")
    if not raw.startswith("/"):
        raise _LineError(f"{what} {_shown(raw)} must be a path starting with /")
    if "?" in raw:
        raise _LineError(f"{what} {_shown(raw)}: a query (?) in {what} is not supported "
                         f"(query-parameter conditions are not supported)")
    if "#" in raw:
        raise _LineError(f"{what} {_shown(raw)}: a fragment (#) never reaches the server")


def _placeholder_group(segment: str, names: set[str]) -> str:
    """The regex group of a `:name` segment; adds the name to `names`."""
    name = segment[1:]
    if not _NAME.fullmatch(name):
        raise _LineError(f"{_shown(segment)}: a placeholder is ':' and a name of letters, "
                         f"digits and '_', not starting with a digit")
    if name == "splat":
        raise _LineError("':splat' is reserved for what '*' matches")
    if name in names:
        raise _LineError(f"the placeholder :{name} is used twice")
    names.add(name)
    return f"(?P<{name}>[^/]+)"


def _literal(raw: str, what: str, whole: str) -> str:
    """The regex of a literal piece of a pattern: its decoded text, escaped."""
    text = _decoded(raw, what)
    _check_dots(text, what, whole)
    return re.escape(text)


def _compile_path(raw: str, what: str, star_anywhere: bool) -> tuple[re.Pattern[str], set[str]]:
    """(regex, names it captures) of a FROM or a `_headers` pattern.

    One `*` at most: `.*` twice in a regex costs time polynomial in the path's length when
    the match fails (four of them on a 300-byte path: most of a second), and the path is the
    client's. With one, and placeholders bounded by slashes, a match costs time linear in it.
    """
    _check_path_text(raw, what)
    stars = raw.count("*")
    if stars > 1:
        raise _LineError(f"{what} {_shown(raw)}: one splat (*) per pattern at most")
    if not star_anywhere and stars and not raw.endswith("/*"):
        raise _LineError(f"{what} {_shown(raw)}: a splat (*) must be the whole last segment, "
                         f"as in /news/*")
    names = {"splat"} if stars else set()
    segments = [segment for segment in raw.split("/") if segment]
    splat_group = "(?P<splat>.*)"
    pieces = []
    for index, segment in enumerate(segments):
        if segment == "*" and index == len(segments) - 1:
            pieces.append(f"(?:/{splat_group})?")
        elif segment.startswith(":"):
            pieces.append("/" + _placeholder_group(segment, names))
        else:
            parts = [_literal(part, what, raw) for part in segment.split("*")]
            pieces.append("/" + splat_group.join(parts))
    if not pieces:
        pieces.append("/")
    elif not raw.endswith("*"):
        pieces.append("/?")  # Netlify: with or without a trailing slash
    return re.compile("".join(pieces)), names


def _first_segment(raw: str) -> str | None:
    """The decoded first segment every path a (valid) pattern matches starts with, or None
    when it is a placeholder or holds the splat: see `_Index`."""
    first = next((segment for segment in raw.split("/") if segment), "")
    if "*" in first or first.startswith(":"):
        return None
    return urllib.parse.unquote(first).partition("/")[0]


def _key(path: str) -> str:
    """A path's first segment ("" for "/"), as `_Index` looks it up."""
    return path[1:].partition("/")[0]


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold_key(key: str | None) -> str | None:
    """An `_Index` key without ASCII case (as pathrules.PathRules.fold compares names)."""
    return key.translate(_ASCII_LOWER) if key is not None else None


def _ignoring_case(regex: re.Pattern[str]) -> re.Pattern[str]:
    """The same pattern matching without ASCII case (re.ASCII: other letters keep theirs, as
    pathrules.PathRules.fold has it)."""
    return re.compile(regex.pattern, re.IGNORECASE | re.ASCII)


class _Index:
    """Which rules may match a path, from its first segment, in file order.

    A pattern whose first segment is literal can only match a path with that first segment;
    the others ("wild": a placeholder or a splat there) may match any. So a path is tried
    against its first segment's rules and the wild ones, merged in file order, instead of
    every rule: with 2,000 rules of distinct first segments, a few regexes, not 2,000.
    (One alternation of every pattern was tried first: Python's re spends time quadratic in
    the alternatives on a failing match, 3 ms for 2,000 rules, 0.2 s for 10,000.)
    """

    __slots__ = ("_by_key", "_fold", "_wild")

    def __init__(self, keys: list[str | None], fold: bool = False):
        self._fold = fold  # keys are folded (_fold_key): fold each path's too
        by_key: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key is not None:
                by_key.setdefault(key, []).append(index)
        self._by_key = {key: tuple(indices) for key, indices in by_key.items()}
        self._wild = tuple(index for index, key in enumerate(keys) if key is None)

    def candidates(self, paths: tuple[str, ...]):
        """Indices of the rules that may match one of `paths`, ascending, each once."""
        if self._fold:
            paths = tuple(path.translate(_ASCII_LOWER) for path in paths)
        if len(paths) == 1:
            own = self._by_key.get(_key(paths[0]))
            if own is None or not self._wild:
                return own or self._wild
            return heapq.merge(own, self._wild)
        return sorted(set(self._wild).union(*(self._by_key.get(_key(path), ())
                                               for path in paths)))


def _template(text: str, names: set[str], encode, strict: bool = True) -> tuple[str, ...]:
    """`text` split at its `:name`s: literal, group, literal, ..., literal (odd length).

    `encode` turns each literal piece into its final form. A `:name` that `names` does not
    hold is refused when `strict` (TO), else kept as text (a header value's other colons).
    """
    parts: list[str] = []
    literal_start = 0
    for found in _PLACEHOLDER.finditer(text):
        name = found.group(1)
        if name not in names:
            if not strict:
                continue
            raise _LineError(f"TO uses :{name}, which FROM does not capture")
        parts.append(encode(text[literal_start:found.start()]))
        parts.append(name)
        literal_start = found.end()
    parts.append(encode(text[literal_start:]))
    return tuple(parts)


def _fill(parts: tuple[str, ...], groups, encode) -> str:
    """The text of a template with each group's matched text, through `encode`."""
    out = [parts[0]]
    for index in range(1, len(parts), 2):
        out.append(encode(groups(parts[index]) or ""))
        out.append(parts[index + 1])
    return "".join(out)


def _quote_value(value: str) -> str:
    """A matched (decoded) path text, percent-encoded for a URL or a field value."""
    # (errors="replace": a lone surrogate, which no UTF-8 request path decodes to, is "?".)
    return urllib.parse.quote(value, safe="/", errors="replace")


def _keep_value(value: str) -> str:
    """A matched path text as it is (a rewrite's target is a decoded path)."""
    return value


def _url_literal(text: str) -> str:
    """TO's own text with only what a URL may not hold percent-encoded."""
    return urllib.parse.quote(text, safe=_URL_SAFE)


def _path_literal(text: str) -> str:
    """TO's own text of a rewrite path, decoded (its control characters refused)."""
    return _decoded(text, "TO")


def _parse_status(token: str) -> tuple[int, bool]:
    """(status, forced) of a STATUS field."""
    found = _STATUS.fullmatch(token)
    status = int(found.group(1)) if found else 0
    if found is None or (status not in REDIRECT_STATUSES and status not in REWRITE_STATUSES):
        raise _LineError(f"status {_shown(token)} is not supported: use {_STATUS_LIST}")
    return status, found.group(2) == "!"


def _check_to(to: str, status: int) -> str:
    """TO's path part (before `?` and `#`) after the checks every TO passes."""
    base = to.partition("#")[0].partition("?")[0]
    if _URL.match(to):
        if not to.lower().startswith(("http://", "https://")):
            raise _LineError(f"TO {_shown(to)}: a URL TO must be http:// or https://")
        if status not in REDIRECT_STATUSES:
            raise _LineError("TO may be a URL only for a redirect (3xx): "
                             "this server is not a proxy")
        authority, _, path = base.partition("://")[2].partition("/")
        if not authority:
            raise _LineError(f"TO {_shown(to)}: the URL has no host")
        base = "/" + path
    elif not to.startswith("/") or to.startswith("//"):
        raise _LineError(f"TO {_shown(to)} must be a path starting with / (not //) "
                         f"or an http:// or https:// URL")
    if "*" in base:
        raise _LineError(f"TO {_shown(to)}: '*' in TO's path: write :splat for what "
                         f"FROM's * matched")
    # Decoded leniently: a URL elsewhere may use escapes that are not UTF-8.
    _check_dots(urllib.parse.unquote(_PLACEHOLDER.sub("x", base), errors="replace"), "TO", to)
    return base


def _split_fields(line: str) -> list[str]:
    """A `_redirects` line's fields, without a trailing `# comment`."""
    fields = [field for field in _FIELD_SPLIT.split(line.strip(" \t")) if field]
    for index, field in enumerate(fields):
        if field.startswith("#"):
            return fields[:index]
    return fields


def _is_condition(field: str) -> bool:
    """Is this field a `key=value` condition (not a path or URL holding `=`)?"""
    return _CONDITION.fullmatch(field) is not None and not _URL.match(field)


def _check_fields(fields: list[str]) -> None:
    """Refuse conditions, FROM alone and extra fields, each with its own message."""
    for index, field in enumerate(fields[1:], 1):
        if _is_condition(field):
            if all(_is_condition(before) for before in fields[1:index]):
                raise _LineError(f"{_shown(field)}: query-parameter conditions are not "
                                 f"supported")
            key = field.partition("=")[0]
            raise _LineError(f"{_shown(field)}: {key} conditions are not supported")
    if len(fields) == 1:
        raise _LineError(f"{_shown(fields[0])}: a rule is FROM TO [STATUS]; TO is missing")
    if _STATUS.fullmatch(fields[1]):
        raise _LineError(f"{fields[1]}: a rule is FROM TO [STATUS]; TO is missing")
    if len(fields) > 3:
        raise _LineError(f"{_shown(fields[3])}: a rule is FROM TO [STATUS]; "
                         f"more fields are not supported")


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    """A rule with its regex source and its target template (private to Redirects)."""

    rule: RedirectRule
    regex: re.Pattern[str]
    key: str | None  # see _Index
    parts: tuple[str, ...]
    has_query: bool


def _compile_rule(line: str, number: int) -> _CompiledRule | None:
    """One `_redirects` line compiled (None for a blank or comment line)."""
    fields = _split_fields(line)
    if not fields:
        return None
    for field in fields:
        if _CONTROL.search(field):
            raise _LineError(f"{field!r}: control characters are not allowed")
    _check_fields(fields)
    source, to = fields[0], fields[1]
    status, force = _parse_status(fields[2]) if len(fields) == 3 else (301, False)
    regex, names = _compile_path(source, "FROM", star_anywhere=False)
    path = _check_to(to, status)
    _template(to, names, _keep_value)  # every :name of TO captured, even in a dropped query
    if status in REDIRECT_STATUSES:
        parts = _template(to, names, _url_literal)
        has_query = "?" in to.partition("#")[0]
    else:
        parts = _template(path, names, _path_literal)
        has_query = False
    rule = RedirectRule(number, source, to, status, force)
    return _CompiledRule(rule, regex, _first_segment(source), parts, has_query)


def parse_redirects(text: str, filename: str = "_redirects",
                    ignore_case: bool = False) -> Redirects:
    """The rules of a `_redirects` file; RulesError (one line) for the first bad line.

    `ignore_case`: FROM matches without ASCII case (a root whose filesystem ignores case,
    pathrules.PathRules.case_insensitive, where /A.TXT and /a.txt are one file); what the
    placeholders capture keeps the request's case.
    """
    compiled: list[_CompiledRule] = []
    for number, line in _lines(text):
        try:
            rule = _compile_rule(line, number)
        except _LineError as error:
            raise RulesError(filename, number, str(error)) from None
        if rule is not None:
            compiled.append(rule)
    if ignore_case:
        compiled = [dataclasses.replace(item, regex=_ignoring_case(item.regex),
                                        key=_fold_key(item.key)) for item in compiled]
    return Redirects(compiled, ignore_case)


class Redirects:
    """A `_redirects` file compiled: a regex per FROM, indexed by FROM's first segment."""

    __slots__ = ("_cache", "_compiled", "_index", "rules")

    def __init__(self, compiled: list[_CompiledRule], ignore_case: bool = False):
        self.rules = tuple(item.rule for item in compiled)
        self._compiled = tuple(compiled)
        self._index = _Index([item.key for item in compiled], ignore_case)
        # path -> None, or (Match with no query appended, the Location before its '#' (None
        # when TO has a query of its own, or for a rewrite), the '#' and fragment or "").
        self._cache: dict[str, tuple[Match, str | None, str] | None] = {}

    def match(self, path: str, query: str = "") -> Match | None:
        """The first rule in file order whose FROM matches `path` (decoded, normalised,
        starting with "/"), else None; `query` is the request's query without its `?`.

        Cached per path (cleared when CACHE_ENTRIES are held; safe under the GIL from
        several threads): a repeated path is one dict lookup, plus the query appended.
        """
        entry: tuple[Match, str | None, str] | None
        entry = self._cache.get(path, _UNSET)  # type: ignore[arg-type]
        if entry is _UNSET:
            entry = self._lookup(path)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[path] = entry
        if entry is None:
            return None
        found, base, fragment = entry
        if not query or base is None:
            return found
        return Match(found.rule, f"{base}?{query}{fragment}")

    def _lookup(self, path: str) -> tuple[Match, str | None, str] | None:
        """The cache entry of `path`: see `_cache`."""
        for index in self._index.candidates((path,)):
            item = self._compiled[index]
            matched = item.regex.fullmatch(path)
            if matched is not None:
                entry = _entry(item, matched)
                if not _redirects_to_itself(entry[0], path):
                    return entry
        return None


def _redirects_to_itself(found: Match, path: str) -> bool:
    """Would this redirect send the client back to `path`, its query aside (forever)?"""
    if found.rule.status not in REDIRECT_STATUSES or not found.target.startswith("/"):
        return False
    location = found.target.partition("#")[0].partition("?")[0]
    return urllib.parse.unquote(location, errors="replace") == path


def _entry(item: _CompiledRule, matched: re.Match[str]) -> tuple[Match, str | None, str]:
    """The cache entry of a path `item`'s FROM matched: see `Redirects._cache`."""
    if item.rule.status in REDIRECT_STATUSES:
        target = _fill(item.parts, matched.group, _quote_value)
        if target.startswith("//"):  # never a scheme-relative Location off-site
            target = "/" + target.lstrip("/")
        base, hash_sign, fragment = target.partition("#")
        # base None: TO has its own query, the request's is not appended.
        return (Match(item.rule, target), None if item.has_query else base,
                hash_sign + fragment)
    target = _SLASHES.sub("/", _fill(item.parts, matched.group, _keep_value))
    return Match(item.rule, target), None, ""


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """One `_headers` block compiled: its pattern's regex, detached names, field templates.

    A field's value is a template (see `_template`): one string when constant.
    """

    line: int
    pattern: str
    regex: re.Pattern[str]
    detach: tuple[str, ...]
    fields: tuple[tuple[str, tuple[str, ...]], ...]
    key: str | None  # see _Index


class _Draft:
    """A block being read: its pattern line, then each field line in turn."""

    __slots__ = ("detach", "fields", "line", "names", "pattern", "regex")

    def __init__(self, pattern: str, line: int):
        self.regex, self.names = _compile_path(pattern, "the pattern", star_anywhere=True)
        self.pattern, self.line = pattern, line
        self.detach: list[str] = []
        self.fields: list[tuple[str, tuple[str, ...]]] = []

    def finish(self) -> HeaderBlock:
        """The compiled block; _LineError if it has no field line."""
        if not self.fields and not self.detach:
            raise _LineError(f"the pattern {_shown(self.pattern)} has no field lines under "
                             f"it (indented 'Name: value' or '! Name')", self.line)
        return HeaderBlock(self.line, self.pattern, self.regex, tuple(self.detach),
                           tuple(self.fields), _first_segment(self.pattern))


def _per_path_name(name: str) -> str:
    """`name` if a `_headers` block may set or detach it, else _LineError."""
    if not extras.is_token(name):
        raise _LineError(f"the field name {name!r} is not a token "
                         f"(RFC 9110 section 5.6.2)")
    if name.lower() in _NOT_PER_PATH:
        raise _LineError(_NOT_PER_PATH[name.lower()])
    if name.lower() in extras.MANAGED_FIELDS:
        raise _LineError(f"the server sets {name} itself")
    return name


def _add_field_line(draft: _Draft, text: str) -> None:
    """One indented line (`Name: value` or `! Name`, stripped) added to its block."""
    if text.startswith("!"):
        draft.detach.append(_per_path_name(text[1:].strip(" \t")).lower())
        return
    name, sep, value = text.partition(":")
    if not sep:
        raise _LineError(f"{_shown(text)}: a field line is 'Name: value' or '! Name'")
    name, value = _per_path_name(name), value.strip(" \t")
    problem = extras.field_problem(name, value)
    if problem is not None:
        raise _LineError(f"{name}: {problem}")
    draft.fields.append((name, _template(value, draft.names, _keep_value, strict=False)))


def _header_line(draft: _Draft | None, line: str, number: int, blocks: list) -> _Draft | None:
    """Read one line of `_headers`: the draft block afterwards (finished ones go to blocks)."""
    text = line.strip(" \t")
    if not text or text.startswith("#"):
        return draft
    if line[0] in " \t":
        if draft is None:
            raise _LineError("a field line needs a path pattern line above it (patterns "
                             "start in column 0, field lines are indented)")
        _add_field_line(draft, text)
        return draft
    fields = _split_fields(text)
    if draft is not None:
        blocks.append(draft.finish())
    if not fields[0].startswith("/") and not _URL.match(fields[0]):
        raise _LineError(f"{_shown(text)}: a pattern must be a path starting with / "
                         f"(field lines are indented)")
    draft = _Draft(fields[0], number)
    if len(fields) > 1:
        raise _LineError(f"{_shown(text)}: a pattern line holds one path pattern "
                         f"(field lines are indented)")
    return draft


def parse_headers(text: str, filename: str = "_headers", ignore_case: bool = False) -> Headers:
    """The blocks of a `_headers` file; RulesError (one line) for the first bad line
    (`ignore_case`: as parse_redirects)."""
    blocks: list[HeaderBlock] = []
    draft: _Draft | None = None
    for number, line in _lines(text):
        try:
            draft = _header_line(draft, line, number, blocks)
        except _LineError as error:
            raise RulesError(filename, error.line or number, str(error)) from None
    try:
        if draft is not None:
            blocks.append(draft.finish())
    except _LineError as error:
        raise RulesError(filename, error.line or 0, str(error)) from None
    if ignore_case:
        blocks = [dataclasses.replace(block, regex=_ignoring_case(block.regex),
                                      key=_fold_key(block.key)) for block in blocks]
    return Headers(blocks, ignore_case)


class Headers:
    """A `_headers` file compiled: its blocks in file order, and a per-paths cache."""

    __slots__ = ("_cache", "_index", "blocks")

    def __init__(self, blocks: list[HeaderBlock], ignore_case: bool = False):
        self.blocks = tuple(blocks)
        self._index = _Index([block.key for block in blocks], ignore_case)
        self._cache: dict[tuple[str, ...], PathFields | None] = {}

    def for_path(self, *paths: str) -> PathFields | None:
        """What every block matching any of `paths` does (module docstring, `_headers`), or
        None when no block matches. Cached per `paths` tuple, as Redirects.match is."""
        entry = self._cache.get(paths, _UNSET)
        if entry is _UNSET:
            entry = self._fields(paths)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[paths] = entry
        return entry  # type: ignore[return-value]

    def _fields(self, paths: tuple[str, ...]) -> PathFields | None:
        """Apply the matching blocks in file order: detach first, then add (see above)."""
        present: dict[str, tuple[str, list[str]]] = {}
        detached: set[str] = set()
        matched_any = False
        for index in self._index.candidates(paths):
            block = self.blocks[index]
            matched = next(filter(None, map(block.regex.fullmatch, paths)), None)
            if matched is None:
                continue
            matched_any = True
            for key in block.detach:
                present.pop(key, None)
                detached.add(key)
            for name, parts in block.fields:
                value = parts[0] if len(parts) == 1 else _fill(parts, matched.group,
                                                               _quote_value)
                if name.lower() in present:
                    present[name.lower()][1].append(value)
                else:
                    present[name.lower()] = (name, [value])
        if not matched_any:
            return None
        fields: list[tuple[str, str]] = []
        for key, (name, values) in present.items():
            if key == "set-cookie":  # never joined: RFC 9110 section 5.3, RFC 6265 section 3
                fields.extend((name, value) for value in values)
            else:
                fields.append((name, ", ".join(values)))
        return PathFields(tuple(fields), frozenset(detached))
