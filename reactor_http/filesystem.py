"""The filesystem side: safe resolution under the root, file facts, content types, ranges, and
which names of a folder a listing may show (listing.py orders and renders them).

Owns every decision about which bytes on disk a URL path may name. Never touches a socket.
A URL path is first normalised (`normalize_path`): percent-decoded (`%2F` too, as nginx does, so
an encoded slash separates segments like a plain one), checked (no NUL, no backslash, no control
character), then dot-segments are removed as RFC 3986 section 5.2.4 describes and repeated slashes
merged (nginx's `merge_slashes`). A path whose `..` would climb above the root is refused
(`BadPath`, a 400 as in nginx), never clamped. The segments that remain then pass the name
rules of the root's filesystem (pathrules.check_segments: dotfiles by policy, and under Windows
rules the names NTFS would not open as asked), still without touching the disk. Only then is
the path mapped onto the root, and unless `follow_symlinks` is set the real path of what we
serve must lie under the real root *with* a trailing separator, so /srv/www2 cannot pass for
/srv/www (names compared as the root's filesystem does): that containment check stays the last
guard. It holds for the requested path (`resolve`) and for every path derived from it, which
goes through `stat_inside`: a folder's index.html, the --spa index.html, 404.html and the
precompressed .br/.gz siblings. (A name swapped for a symlink between that check and the open
is not caught, as with any check-then-open.)
What exists but may not be opened or listed (EACCES, EPERM) raises `Forbidden` (a 403).
"""

from __future__ import annotations

import dataclasses
import mimetypes
import os
import stat
import time
import urllib.parse
from typing import NamedTuple

from .facilities import FACTS, pread
from .headers import format_http_date
from .pathrules import POSIX, PathRules, check_segments, hides, is_inside

# Content types that mimetypes gets wrong, old, or not at all (checked against nginx's mime.types
# and the WHATWG MIME sniffing spec; RFC 9239 makes text/javascript the JavaScript type).
_TYPE_OVERRIDES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".json": "application/json", ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm", ".webp": "image/webp", ".avif": "image/avif",
    ".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".md": "text/markdown", ".txt": "text/plain", ".csv": "text/csv", ".css": "text/css",
    ".html": "text/html", ".htm": "text/html", ".xml": "application/xml",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".opus": "audio/ogg", ".flac": "audio/flac", ".wav": "audio/wav", ".pdf": "application/pdf",
    ".gz": "application/gzip", ".br": "application/x-brotli", ".zip": "application/zip",
    # What sites also hold, which the built-in table lacks (it differs between Python versions):
    # nginx's mime.types' type or, where it has none, IANA's registered one.
    ".xhtml": "application/xhtml+xml", ".rss": "application/rss+xml",
    ".atom": "application/atom+xml", ".jsonld": "application/ld+json",
    ".geojson": "application/geo+json", ".ics": "text/calendar", ".vtt": "text/vtt",
    ".yaml": "application/yaml", ".yml": "application/yaml", ".toml": "application/toml",
    ".apng": "image/apng", ".jxl": "image/jxl", ".heic": "image/heic",
    ".epub": "application/epub+zip",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".7z": "application/x-7z-compressed", ".rar": "application/vnd.rar",
    ".xz": "application/x-xz", ".bz2": "application/x-bzip2", ".zst": "application/zstd",
    ".tar": "application/x-tar", ".eot": "application/vnd.ms-fontobject",
    ".rtf": "application/rtf", ".jar": "application/java-archive",
    ".m4a": "audio/mp4", ".aac": "audio/aac", ".oga": "audio/ogg", ".mid": "audio/midi",
    ".midi": "audio/midi", ".m4v": "video/mp4", ".ogv": "video/ogg", ".mkv": "video/x-matroska",
    ".mov": "video/quicktime", ".mpd": "application/dash+xml",
    ".m3u8": "application/vnd.apple.mpegurl", ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json", ".kml": "application/vnd.google-earth.kml+xml",
}
DEFAULT_TYPE = "application/octet-stream"
# Types that are text even though they are not text/*: they get `charset=utf-8` too, as does
# every +xml and +json type (RFC 7303 section 3.2, RFC 6839 section 3.1).
_TEXTUAL_TYPES = {"application/json", "application/xml", "application/yaml", "application/toml",
                  "text/javascript"}
# Precompressed siblings we look for, in our order of preference: (coding, suffix).
PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))
# Range positions with more digits than this (after leading zeros) are past the end of any file
# (st_size is at most 2**63 - 1, which has 19 digits) and are never converted with int().
MAX_POSITION_DIGITS = 19

# Built-in table only: /etc/mime.types differs from machine to machine.
_MIME = mimetypes.MimeTypes(filenames=())


class NotFound(Exception):
    """The URL path names nothing we may serve."""


class BadPath(Exception):
    """The URL path climbs above the root once its dot-segments are removed (answered 400)."""


class Forbidden(Exception):
    """The path names something that exists but may not be opened or listed (answered 403).

    Raised for PermissionError, that is EACCES (mode bits) and EPERM.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class Redirect:
    """A directory asked for without its trailing slash: 301 to `location`."""

    location: str


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A resolved path: `fs_path` exists inside the root and `st` is its stat."""

    fs_path: str
    st: os.stat_result
    is_dir: bool
    url_path: str = "/"  # the normalised, decoded URL path (a listing's title)


def content_type(fs_path: str, overrides: dict | None = None) -> str:
    """The Content-Type for a file name, with charset=utf-8 for text.

    `overrides` ({'.ext': 'type/subtype'}, from --mime) are consulted before the built-in table.
    """
    _, ext = os.path.splitext(fs_path)
    ext = ext.lower()
    ctype = (overrides.get(ext) if overrides else None) or _TYPE_OVERRIDES.get(ext) or \
        _MIME.types_map[True].get(ext) or DEFAULT_TYPE
    if ctype.startswith("text/") or ctype in _TEXTUAL_TYPES or ctype.endswith(("+xml", "+json")):
        return ctype + "; charset=utf-8"
    return ctype


def last_modified(st: os.stat_result) -> str:
    """The Last-Modified value for a stat result: its mtime, or the present if that is later.

    RFC 9110 section 8.8.2.1: an origin server MUST NOT send a Last-Modified later than its Date
    and replaces a future one with the message's date (a file copied from a machine whose clock
    ran ahead, `touch -d tomorrow`). Date is rendered after this, from the same clock.
    """
    return format_http_date(modified_seconds(st))


def modified_seconds(st: os.stat_result) -> int:
    """The modification time Last-Modified states, in whole seconds: the date conditions
    (If-Modified-Since, If-Unmodified-Since) compare against it."""
    return int(min(st.st_mtime, time.time()))


def modified_in_future(st: os.stat_result) -> bool:
    """Is the file's mtime later than now (its Last-Modified then follows the clock)?"""
    return st.st_mtime > time.time()


def split_target(target: str) -> tuple[str, str] | None:
    """Split a request-target into (path, query). None for forms that name no path (`*`).

    Accepts origin-form and absolute-form (RFC 9112 section 3.2.2: a server MUST accept it).
    """
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query
    lowered = target[:8].lower()
    if lowered.startswith("http://") or lowered.startswith("https://"):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        query_mark = rest.find("?")
        if slash < 0 or (0 <= query_mark < slash):
            path_and_query = "/" + (rest[query_mark:] if query_mark >= 0 else "")
        else:
            path_and_query = rest[slash:]
        path, _, query = path_and_query.partition("?")
        return path, query
    return None


def normalize_path(path: str) -> tuple[list[str], bool]:
    """Percent-decode a URL path and remove its dot-segments: (segments, trailing_slash).

    Raises NotFound for bytes that are not UTF-8 and for NUL, backslash or control characters
    anywhere in the decoded path (even in a segment a `..` later removes), and BadPath when a
    `..` would climb above the root. Follows RFC 3986 section 5.2.4 on the decoded path, with
    empty segments (`//`) merged away: `/a/./b/../c` is ["a", "c"], and a path ending in `.`
    or `..` names a folder (`/a/..` is the root, with its trailing slash).
    """
    raw = urllib.parse.unquote_to_bytes(path)
    try:
        decoded = raw.decode("utf-8")  # strict: overlong forms and stray bytes fail here
    except UnicodeDecodeError:
        raise NotFound("path is not UTF-8") from None
    if _refused_characters(decoded):
        raise NotFound("NUL, control character or backslash in path")
    segments: list[str] = []
    parts = decoded.split("/")
    for segment in parts:
        if segment == "..":
            if not segments:
                raise BadPath("path climbs above the root")
            segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing_slash = parts[-1] in ("", ".", "..")
    return segments, trailing_slash


def _refused_characters(text: str) -> bool:
    """Does a decoded path (or name) hold a backslash or a control character? Never served."""
    return "\\" in text or (not text.isprintable() and _has_control(text))


def _has_control(text: str) -> bool:
    """Does `text` hold a C0 control character (NUL included) or DEL?"""
    return any(ord(ch) < 0x20 or ch == "\x7f" for ch in text)


def canonical_path(segments: list[str], trailing_slash: bool) -> str:
    """The decoded URL path that `normalize_path` results stand for, e.g. "/a/b/" or "/"."""
    if not segments:
        return "/"
    return "/" + "/".join(segments) + ("/" if trailing_slash else "")


def decode_segments(path: str, allow_dotfiles: bool,
                    rules: PathRules = POSIX) -> tuple[list[str], bool]:
    """Normalise a URL path into segments we may map onto the root: (segments, trailing_slash).

    Raises what `normalize_path` raises, and NotFound for segments `rules` refuse
    (pathrules.check_segments: dotfiles unless allowed, `.well-known` excepted; under Windows
    rules, names NTFS would not open as asked), all decided before any disk access.
    """
    segments, trailing_slash = normalize_path(path)
    if not allow_dotfiles or rules.windows_names or rules.hidden:
        refusal = check_segments(segments, rules, allow_dotfiles)
        if refusal is not None:
            raise NotFound(refusal)
    return segments, trailing_slash


def resolve(real_root: str, path: str, *, allow_dotfiles: bool = False,
            follow_symlinks: bool = False, query: str = "", rules: PathRules = POSIX):
    """Map a URL path to a Found file or directory, or a Redirect.

    Raises NotFound, BadPath (climbs above the root) or Forbidden (a folder on the way may not
    be searched). `rules`: the name rules of the root's filesystem (pathrules.for_root).
    """
    segments, trailing_slash = decode_segments(path, allow_dotfiles, rules)
    fs_path = os.path.join(real_root, *segments)
    try:
        st = os.stat(fs_path)
    except PermissionError:
        # Say 403 only for what lies inside the root: a symlink out of it stays a plain 404.
        if follow_symlinks or is_inside(real_root, os.path.realpath(fs_path), rules):
            raise Forbidden("a folder on the path may not be searched") from None
        raise NotFound("symlink leads outside the root") from None
    except (OSError, ValueError):
        raise NotFound("no such file") from None
    if not follow_symlinks and segments and \
            not is_inside(real_root, os.path.realpath(fs_path), rules):
        raise NotFound("symlink leads outside the root")
    if hides(rules, st):
        raise NotFound("the site's own file")
    if stat.S_ISDIR(st.st_mode):
        if not trailing_slash and segments:
            location = urllib.parse.quote(canonical_path(segments, True))
            return Redirect(location + ("?" + query if query else ""))
        return Found(fs_path, st, True, canonical_path(segments, True))
    if not stat.S_ISREG(st.st_mode) or trailing_slash:
        # RFC 3986: "/abc.txt/" names a child of a file, which cannot exist.
        raise NotFound("not a regular file")
    return Found(fs_path, st, False, canonical_path(segments, False))


def stat_inside(real_root: str, fs_path: str, follow_symlinks: bool, *,
                forbidden: bool = False, rules: PathRules = POSIX) -> os.stat_result | None:
    """The stat of `fs_path` if it is a regular file we may serve; None otherwise.

    For paths the server derives rather than resolves (index.html, 404.html, .br/.gz siblings):
    unless `follow_symlinks` is set, the file's real path must lie inside the real root, so a
    symlink in the root cannot expose a file outside it. Symlinks that stay inside still work.
    With `forbidden`, a stat refused for lack of permission raises Forbidden instead of reading
    as "no such file" (a folder's index.html in a folder that may not be searched).
    `rules`: how the root's filesystem compares names (pathrules.is_inside).
    """
    try:
        st = os.stat(fs_path)
    except PermissionError:
        if forbidden:
            raise Forbidden("the folder may not be searched") from None
        return None
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or hides(rules, st):
        return None
    # realpath only after the cheap stat found a file: a missing sibling costs one syscall.
    if not follow_symlinks and not is_inside(real_root, os.path.realpath(fs_path), rules):
        return None
    return st


# How a served file is opened: read-only, never blocking on a FIFO, not inherited, binary.
_OPEN_FLAGS = os.O_RDONLY | FACTS.o_nonblock | FACTS.o_cloexec | FACTS.o_binary


def open_regular(fs_path: str) -> tuple[int, os.stat_result] | None:
    """Open a regular file for reading and fstat the descriptor we got (not the name).

    O_NONBLOCK keeps a FIFO swapped in after our stat from blocking the loop; the fstat makes the
    headers describe the file actually opened, even if it was replaced in between. None if it
    is gone or not a regular file; Forbidden if we may not open it (EACCES, EPERM). Where a flag
    is missing (Windows: no O_NONBLOCK nor O_CLOEXEC) it is 0; O_BINARY keeps Windows from
    translating line ends.
    """
    try:
        fd = os.open(fs_path, _OPEN_FLAGS)
    except PermissionError:
        raise Forbidden("the file may not be opened") from None
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st



def read_version(fs_path: str, identity: tuple, identity_of, consume,
                 chunk: int | None = None) -> bool:
    """Give `consume` the bytes of the regular file at `fs_path`, in reads of at most `chunk`
    bytes (None: as few as the kernel allows), if it still has `identity`; False, having read
    what it read, if it changed, vanished, shrank or is unreadable. A write in place keeps the
    inode: a second fstat catches one made while we read, so the bytes are that version's."""
    try:
        opened = open_regular(fs_path)
    except Forbidden:
        return False
    if opened is None:
        return False
    fd, st = opened
    try:
        if identity_of(st) != identity:
            return False
        offset = 0
        while offset < st.st_size:
            left = st.st_size - offset
            data = pread(fd, left if chunk is None else min(chunk, left), offset)
            if not data:
                return False  # shrank under us
            consume(data)
            offset += len(data)
        return identity_of(os.fstat(fd)) == identity
    except OSError:
        return False
    finally:
        os.close(fd)

def parse_range(value: str, size: int, max_ranges: int = 16):
    """Parse a Range header for a representation of `size` bytes (RFC 9110 section 14.1.1).

    Returns None to ignore the header (invalid syntax, another unit, or a request that would
    amplify the response), [] when no range is satisfiable (416), or a sorted list of coalesced
    inclusive (first, last) pairs.
    """
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    ranges = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue  # empty list elements are allowed (RFC 9110 section 5.6.1)
        try:
            byte_range = _range_spec(item, size)
        except _InvalidRange:
            return None  # an invalid range-spec makes the whole header invalid
        if byte_range is not None:
            ranges.append(byte_range)
    if not ranges:
        return []
    # Overlapping and adjacent ranges are merged, so the parts never add up to more than the file;
    # RFC 9110 section 14.2 lets a server ignore a Range asking for many pieces, so past
    # `max_ranges` parts we serve the whole file (200) rather than amplify it with part headers.
    merged = coalesce_ranges(ranges)
    if len(merged) > max_ranges:
        return None
    return merged


class _InvalidRange(ValueError):
    """A range-spec that is not `first-last`, `first-` or `-suffix` with ASCII digits."""


def _range_spec(item: str, size: int) -> tuple[int, int] | None:
    """One range-spec as an inclusive (first, last) pair; None if it is unsatisfiable alone.

    Raises _InvalidRange for a spec that breaks the grammar (RFC 9110 section 14.1.1).
    """
    first_text, dash, last_text = item.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or (first_text and not first_text.isdigit()) or \
            (last_text and not last_text.isdigit()) or not (first_text or last_text):
        raise _InvalidRange(item)
    if not first_text.isascii() or not last_text.isascii():
        raise _InvalidRange(item)
    # Numbers are compared as digit strings and converted only when short: int() raises on
    # more than sys.int_max_str_digits (4,300) digits, and no file is 10**18 bytes long.
    first_digits = first_text.lstrip("0") or "0"
    last_digits = last_text.lstrip("0") or "0"
    if not first_text:
        return _suffix_range(last_digits, size)
    if last_text and _digits_less(last_digits, first_digits):
        raise _InvalidRange(item)
    if len(first_digits) > MAX_POSITION_DIGITS or int(first_digits) >= size:
        # Unsatisfiable on its own (section 14.1.1), also for `N-` with N = size: the
        # 416 is how `curl -C -` learns a download is already complete.
        return None
    first = int(first_digits)
    if not last_text or len(last_digits) > MAX_POSITION_DIGITS:
        return first, size - 1  # a last-byte-pos past the end means the end (14.1.2)
    return first, min(int(last_digits), size - 1)


def _suffix_range(digits: str, size: int) -> tuple[int, int] | None:
    """`-N`: the last N bytes (RFC 9110 section 14.1.2); None if N or the file is empty."""
    if len(digits) > MAX_POSITION_DIGITS:
        suffix = size  # a suffix longer than the file is the whole file (14.1.2)
    else:
        suffix = int(digits)
    if suffix == 0 or size == 0:
        return None
    return max(0, size - suffix), size - 1


def _digits_less(a: str, b: str) -> bool:
    """Is the number written `a` less than `b`? (Digit strings without leading zeros.)"""
    return (len(a), a) < (len(b), b)


def coalesce_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort ranges and merge those that overlap or touch."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


class Entry(NamedTuple):
    """One name a listing shows: the name as on disk, whether it is a folder, and its stat."""

    name: str
    is_dir: bool
    st: os.stat_result


def nameable(name: str) -> bool:
    """Can a request name `name` at all? Not if it is not UTF-8 (surrogate escapes of
    os.listdir) or holds what `normalize_path` refuses (a control character, a backslash)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not _refused_characters(name)


def folder_name_rules(real_root: str, fs_dir: str, rules: PathRules) -> PathRules:
    """The name rules of the entries of folder `fs_dir`: the site's own files are hidden at the
    root only (pathrules.PathRules.hidden)."""
    if rules.hidden and fs_dir.rstrip(os.sep) != real_root.rstrip(os.sep):
        return dataclasses.replace(rules, hidden=frozenset())
    return rules


def shown(name: str, name_rules: PathRules, allow_dotfiles: bool) -> bool:
    """Is a folder's entry `name` one a request could be answered for (`name_rules`: the
    folder's, folder_name_rules)? What listings show and archives hold."""
    return nameable(name) and check_segments((name,), name_rules, allow_dotfiles) is None


def listing_entries(real_root: str, fs_dir: str, *, allow_dotfiles: bool, follow_symlinks: bool,
                    rules: PathRules = POSIX) -> list[Entry]:
    """The names of a folder that a listing shows, in no particular order (listing.py sorts).

    Exactly the names a request could be answered for: those `nameable` and that
    pathrules.check_segments allows (at the root, none of the site's own files; dotfiles by
    policy, `.well-known` included; under Windows rules no name NTFS would open as another),
    symlinks leading out of the root only with
    `follow_symlinks`, only folders and regular files. So no link in a listing answers 404.
    Raises Forbidden if the folder may not be listed (never an empty 200 listing), NotFound if
    it is gone. Entries we may not stat are left out, as nginx's autoindex does.
    """
    entries = []
    try:
        names = os.listdir(fs_dir)
    except PermissionError:
        raise Forbidden("the folder may not be listed") from None
    except OSError:
        raise NotFound("the folder is gone") from None
    name_rules = folder_name_rules(real_root, fs_dir, rules)
    for name in names:
        if not shown(name, name_rules, allow_dotfiles):
            continue
        full = os.path.join(fs_dir, name)
        try:
            st = os.stat(full)
        except OSError:
            continue
        if not follow_symlinks and not is_inside(real_root, os.path.realpath(full), rules):
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if (is_dir or stat.S_ISREG(st.st_mode)) and not hides(rules, st):
            entries.append(Entry(name, is_dir, st))
    return entries
