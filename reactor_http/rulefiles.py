"""The site's rule files, `_redirects` and `_headers` at the root: read, watched and re-read.

`RuleFiles` reads both files at start-up (a malformed one is refused: `siterules.RulesError`, a
ValueError whose text names the file and the line) and looks at them again at most once per
instant (`fresh`): one `os.stat` of each. A changed file is read again and its new rules apply
from the next request; a malformed edit keeps the last good rules and logs one line. An absent
file is no rules, and a file that appears is read like a changed one.

With --workers, a worker is forked from the supervisor, which looks at the files on each turn
of its loop (`look_again`): a worker (re)started while a rule file is malformed serves the
supervisor's last good rules, as a running worker keeps its own, instead of failing to start
(which, repeated, stops the supervisor and the server with it).

An edit that keeps the size and lands within the filesystem's timestamp granularity of the
previous one (a few milliseconds) leaves the stat unchanged. As git does with its "racily
clean" index entries, a file modified less than RACY_SECONDS before it was read is compared by
its bytes at each look until that much time has passed, so no edit goes unseen.

Owns the file I/O only: parsing and matching are `siterules`' (pure), and what the rules do to
an answer is the responder's. Never touches a socket.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from . import siterules

log = logging.getLogger("reactor_http")

REDIRECTS_NAME = "_redirects"
HEADERS_NAME = "_headers"
# The names the server reads at the root and never serves (404, like a dotfile).
NAMES = frozenset({REDIRECTS_NAME, HEADERS_NAME})
# A rule file larger than this is refused (bytes): thousands of rules, more than any site has.
MAX_BYTES = 1 << 20
# A file modified this recently (seconds) when read is compared by its bytes at each look.
RACY_SECONDS = 2.0
# Where many threads answer (the threaded engine), a look at most this often (seconds), and at
# each new connection: a look is two system calls, each a GIL hand-off among the connection
# threads (13 % of the threaded engine's 1 KiB keep-alive throughput when made per request).
THREADED_INTERVAL = 0.001


# The rule files read well in this process, by (real root, ignore_case): the reader whose rules
# a worker forked from this process falls back on (see the module's docstring).
_READERS: dict[tuple[str, bool], RuleFiles] = {}


def look_again(now: float) -> None:
    """Look at the files of every root read in this process (the supervisor, between forks)."""
    for reader in list(_READERS.values()):
        reader.fresh(now)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _look_at(path: str, present: bool) -> tuple:
    """The identity of a file now: `present` says whether it was there at the last look.

    An absent file is looked for with os.access, not os.stat: no stat result to build and no
    exception to raise, a third of the cost (0.7 us against 1.7) on the path every request
    takes when a site has no rule files.
    """
    if not present and not os.access(path, os.F_OK):
        return ()
    return _identity(_stat(path))


def _identity(st: os.stat_result | None) -> tuple:
    """What changes when the file is edited or replaced (but see RACY_SECONDS); () if absent."""
    if st is None:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read(path: str, name: str) -> bytes:
    """The bytes of a rule file; b"" when there is none. Raises RulesError."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise siterules.RulesError(name, 0, f"cannot be read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise siterules.RulesError(name, 0, f"larger than {MAX_BYTES} bytes")
    return data


def _text(data: bytes, name: str) -> str:
    """A rule file's bytes as text (UTF-8). Raises RulesError."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise siterules.RulesError(name, line, "is not UTF-8 text") from None


def _inodes(identities: tuple) -> frozenset[tuple[int, int]]:
    """(st_dev, st_ino) of each file present, from its identity (see _identity)."""
    return frozenset(identity[:2] for identity in identities if identity)


class RuleFiles:
    """The rules of one root's `_redirects` and `_headers`, kept current.

    `redirects` and `headers` are None while the file is absent (or holds no rule).
    `generation` grows by one each time the rules change, so what was derived from older rules
    (the per-path fields) can tell. Reads are plain attribute reads; a reload happens under a
    lock, so of several threads that see a change one reads the files.
    """

    def __init__(self, real_root: str, interval: float = 0.0, ignore_case: bool = False):
        # Looks closer together than this (seconds) are skipped, but forced ones (`fresh`).
        self.interval = interval
        # The root's filesystem ignores case: so do the rules' paths (siterules).
        self._ignore_case = ignore_case
        self._paths = (os.path.join(real_root, REDIRECTS_NAME),
                       os.path.join(real_root, HEADERS_NAME))
        self._lock = threading.Lock()
        self._checked = float("-inf")  # the instant of the last look
        self.generation = 0
        self._bytes: tuple[bytes, bytes] | None
        try:
            self._seen, self._bytes, self._racy_until = self._look()
            self.redirects, self.headers = self._parse(self._bytes)
        except siterules.RulesError as exc:
            self._inherit(real_root, exc)  # raises RulesError if nothing is inherited
        # The files as (st_dev, st_ino), for pathrules.PathRules.hidden_files.
        self.inodes = _inodes(self._seen)
        _READERS[(real_root, ignore_case)] = self

    def _inherit(self, real_root: str, exc: siterules.RulesError) -> None:
        """A malformed file at start: the last good rules of the process this one was forked
        from (a worker's supervisor), said once as a malformed edit is; else `exc` raised."""
        inherited = _READERS.get((real_root, self._ignore_case))
        if inherited is None:
            raise exc
        if not hasattr(self, "_seen"):  # unreadable or too large: no bytes to compare
            self._seen = tuple(_identity(_stat(path)) for path in self._paths)
            self._bytes, self._racy_until = None, 0.0
        self.redirects, self.headers = inherited.redirects, inherited.headers
        log.warning("%s; the rules in force are kept", exc)

    def _look(self) -> tuple[tuple, tuple[bytes, bytes], float]:
        """(identities, bytes, until when the bytes must be compared) of both files now."""
        stats = [_stat(path) for path in self._paths]
        data = (_read(self._paths[0], REDIRECTS_NAME), _read(self._paths[1], HEADERS_NAME))
        newest = max((st.st_mtime for st in stats if st is not None), default=None)
        racy_until = newest + RACY_SECONDS if newest is not None else 0.0
        return tuple(_identity(st) for st in stats), data, racy_until

    def _parse(self, data: tuple[bytes, bytes]) -> tuple:
        """(Redirects or None, Headers or None) of the files' bytes. Raises RulesError."""
        redirects = siterules.parse_redirects(_text(data[0], REDIRECTS_NAME), REDIRECTS_NAME,
                                              self._ignore_case)
        headers = siterules.parse_headers(_text(data[1], HEADERS_NAME), HEADERS_NAME,
                                          self._ignore_case)
        return (redirects if redirects.rules else None, headers if headers.blocks else None)

    def fresh(self, now: float, force: bool = False) -> bool:
        """Look at the files (at most once per instant `now`, and per `interval` unless
        `force`): False if the rules just changed.

        A malformed edit keeps the rules in force and logs one line, once per edit.
        """
        if now == self._checked or (now - self._checked < self.interval and not force):
            return True
        self._checked = now
        last = self._seen
        seen = (_look_at(self._paths[0], bool(last[0])), _look_at(self._paths[1], bool(last[1])))
        if seen != last:
            self.inodes = _inodes(seen)
        if seen == last:
            if not self._racy_until:
                return True
            if time.time() >= self._racy_until:
                self._racy_until = 0.0
                return True
        with self._lock:
            try:
                seen, data, racy_until = self._look()
            except siterules.RulesError as exc:  # unreadable, or too large
                self._racy_until = 0.0
                return self._refused(seen, exc)
            if data == self._bytes:  # the same rules (touched, or racily clean)
                self._seen, self._racy_until = seen, racy_until
                return True
            # A malformed edit's bytes are remembered too, so it is said once.
            self._seen, self._bytes, self._racy_until = seen, data, racy_until
            try:
                self.redirects, self.headers = self._parse(data)
            except siterules.RulesError as exc:
                return self._refused(seen, exc)
            self.generation += 1
        log.info("site rules re-read (%s, %s)", REDIRECTS_NAME, HEADERS_NAME)
        return False

    def _refused(self, seen: tuple, exc: siterules.RulesError) -> bool:
        """A malformed edit: said once, and the rules in force kept."""
        self._seen = seen
        log.warning("%s; the rules in force are kept", exc)
        return True
