"""On-the-fly compression: which files qualify, which coding a client gets, and the cache of
compressed bodies.

Owns three decisions: whether a file's type and size make it worth compressing (`eligible`),
which of the offered content codings a request's Accept-Encoding selects (`negotiate`, RFC 9110
section 12.5.3), and where a compressed body comes from (`Compressor.lookup`): memory, a
compression done right away for a small file, or nothing yet while one background thread
compresses a larger file (the identity representation is served meanwhile, so nobody waits and
the loop needs no wake-up). It never touches a socket and never decides HTTP semantics beyond
that: the responder builds validators, ranges and conditionals on the bytes it gets from here.

Compressed bodies are keyed by the file's identity (device, inode, size, mtime_ns, ctime_ns; see
website.file_identity) and the coding, so a changed file is looked up under a new key and never
answered from an older body; the worker checks that the bytes it read still belong to that
identity before storing them.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
import zlib

from . import filesystem
from .facilities import FACTS

log = logging.getLogger("reactor_http")

try:  # Python 3.14+: Zstandard in the standard library (PEP 784)
    from compression import zstd as _zstd
except ImportError:  # pragma: no cover - depends on the running Python
    _zstd = None

# gzip level. The body is compressed once per file version and then served from memory, so the
# cost per request is nil and a level above nginx's default 1 (chosen for compressing every
# response anew) pays: on a 128 KiB JavaScript file here level 1 gives 38.6 % of the size, level
# 5 (Caddy's default) 33.6 %, 6 33.5 %, 9 33.4 % at 1.3x the time of 6. Level 6 is zlib's and the
# gzip tool's default, so bodies match what `gzip -k` would prepare.
GZIP_LEVEL = 6
# zstd level: the library's default (Caddy's "default" is about the same).
ZSTD_LEVEL = 3
# Smaller files are not compressed (bytes). Below about a kilobyte the gzip header and trailer
# (18 bytes) and a packet that is not saved make it pointless (Caddy: 512, nginx's common
# configurations: 1000 to 1024).
MIN_BYTES = 1024
# Files up to this size are compressed during the request that first asks (bytes): about 0.3 ms
# at level 6 on this machine for JavaScript (0.04 ms for 4 KiB, 0.65 ms for 32 KiB). Larger files
# go to the background thread; the loop never spends more than this on compression.
INLINE_MAX = 16 * 1024
# Background jobs waiting at most (files); more are dropped and retried by a later request.
QUEUE_MAX = 64
# The worker thread's nice value (Linux schedules threads one by one): on a busy machine the
# loop's thread gets the CPU first, and the compression takes what is left.
WORKER_NICE = 10
# What one cache entry costs besides its body (bytes): its key tuple, path and dict slot. Also
# the whole cost of a "not worth it" entry, so those are bounded by the budget too.
ENTRY_OVERHEAD = 256
# Failed jobs remembered so each is logged once (keys; the set starts over beyond it).
FAILED_LOGGED_MAX = 4096

# Content codings we can produce, in our order of preference when the client has none (Caddy's:
# zstd, then gzip).
CODINGS = (("zstd",) if _zstd is not None else ()) + ("gzip",)

# Media types (without parameters) worth compressing besides text/*: scripts, data, markup,
# SVG, WebAssembly (code compresses to about half, and Caddy's defaults include it), and
# uncompressed font formats. Already-compressed formats (images other than SVG and icons,
# audio, video, archives, WOFF/WOFF2 fonts, PDF) are left alone: gzip would only add bytes.
_COMPRESSIBLE_TYPES = frozenset({
    "application/javascript", "application/x-javascript", "application/json",
    "application/ld+json", "application/manifest+json", "application/geo+json",
    "application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/wasm", "application/vnd.ms-fontobject", "application/x-font-ttf",
    "application/x-font-opentype", "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon",
    "image/bmp", "font/ttf", "font/otf", "font/collection"})


def compressible_type(ctype: str) -> bool:
    """Is a Content-Type (parameters allowed) one worth compressing?"""
    media = ctype.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in _COMPRESSIBLE_TYPES or \
        media.endswith("+json") or media.endswith("+xml")


def negotiate(accepted: dict, offers: list):
    """The offer a client's Accept-Encoding selects, or None for identity (RFC 9110 12.5.3).

    `accepted` is headers.quality_values() of the field; `offers` are tuples whose first item is
    a content coding, in our order of preference. The highest q wins; ties go to the earlier
    offer. `*` stands for every coding the field does not name, `x-gzip` for gzip (section
    8.4.1.3), and a q of 0 excludes. Identity is acceptable unless excluded; when the client
    names it (or `*`) with a higher q than every coding, identity is chosen. A field that
    excludes identity and accepts no coding we have still gets identity, as nginx and Caddy
    answer, rather than a 406: a body the client may not decode beats no body.
    """
    if not accepted:
        return None
    wildcard = accepted.get("*", 0.0)
    best, best_q = None, 0.0
    for offer in offers:
        coding = offer[0]
        q = accepted.get(coding)
        if q is None and coding == "gzip":
            q = accepted.get("x-gzip")
        if q is None:
            q = wildcard
        if q > best_q:
            best, best_q = offer, q
    if best is not None:
        identity_q = accepted.get("identity", accepted.get("*"))
        if identity_q is not None and identity_q > best_q:
            return None
    return best


def coded_etag(etag: str, coding: str) -> str:
    """The strong ETag of a compressed representation: the identity one with the coding added.

    Distinct per coding (RFC 9110 section 8.8.3: a strong validator names one representation),
    stable across restarts, and computable without the compressed bytes. "" (no ETag yet, see
    validators.Digests) stays "".
    """
    return f'{etag[:-1]}-{coding}"' if etag else ""


def compress(data: bytes, coding: str) -> bytes:
    """`data` in the content coding `coding` (gzip or zstd)."""
    if coding == "gzip":
        # wbits 31: the gzip container (RFC 1952) with mtime 0, so the bytes are deterministic.
        if sys.version_info >= (3, 11):  # one call: no second copy of the result (GIL held)
            return zlib.compress(data, GZIP_LEVEL, 31)
        packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        return packer.compress(data) + packer.flush()
    if coding == "zstd" and _zstd is not None:
        return _zstd.compress(data, level=ZSTD_LEVEL)
    raise ValueError(f"unsupported content coding {coding!r}")


def read_identity(fs_path: str, identity: tuple, identity_of) -> bytes | None:
    """The whole file if it still has `identity`; None if it changed, vanished or is unreadable."""
    chunks: list[bytes] = []
    if not filesystem.read_version(fs_path, identity, identity_of, chunks.append):
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one read: no copy


class Compressor:
    """Compressed bodies by (file identity, coding), LRU-bounded in bytes, plus one worker thread.

    Lookups are lock-free dict reads (atomic under the GIL); every change of the cache, the
    pending set and the worker's counters happens under `_lock`, so the threaded engine's
    threads and the worker never lose an update. The per-request counters (hits, misses,
    saved bytes) are written by request threads only: with `single_writer` (one request thread,
    the reactor) they are plain additions, since a lock costs five times as much; otherwise
    they take the lock too.
    """

    def __init__(self, max_bytes: int, cache_bytes: int, identity_of,
                 single_writer: bool = False):
        self.max_bytes = max_bytes        # larger files are served as they are
        self.cache_bytes = cache_bytes    # the budget of `_bodies`
        self._identity_of = identity_of   # stat_result -> identity tuple (site.file_identity)
        self._single_writer = single_writer
        self._lock = threading.Lock()
        # (identity, coding) -> compressed bytes, or None: compression does not shrink it, or
        # the body alone exceeds the budget (serve identity, do not try again).
        self._bodies: collections.OrderedDict = collections.OrderedDict()
        self._used = 0                    # bytes charged to the budget
        self._pending: set = set()        # keys queued or being compressed
        self._queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self._worker: threading.Thread | None = None
        self.hits = 0          # compressed bodies answered from memory
        self.misses = 0        # compressed bodies that had to be made first
        self.saved_bytes = 0   # identity minus compressed size, per compressed 200 to a GET
        self.background_done = 0  # files compressed by the worker
        self.failures = 0      # worker jobs that raised (the file is served as it is)
        # Keys whose failure was logged: one line per file version and coding, not per retry.
        self._failed_logged: set = set()

    def eligible(self, ctype: str, size: int) -> bool:
        """Would a file of this type and size be compressed (so its responses vary)?"""
        return MIN_BYTES <= size <= self.max_bytes and compressible_type(ctype)

    def lookup(self, fs_path: str, st, coding: str,
               transform=None) -> tuple[bytes | None, bool]:
        """(compressed body or None, settled) for the file `st` describes in `coding`.

        None with settled True: identity is the answer for this file version (compression does
        not shrink it, or it cannot be kept). None with settled False: not ready yet, the
        identity representation serves meanwhile (a background job is queued) and a later
        request may get the body.

        `transform` (a module-level function of the file's bytes, e.g. livereload.inject): the
        body is its result compressed, kept apart from the file's own, and always made by the
        worker (a caller compresses a small result from the bytes it already holds).
        """
        identity = self._identity_of(st)
        key = (identity, coding) if transform is None else (identity, coding, transform)
        try:
            body = self._bodies[key]
        except KeyError:
            pass
        else:
            try:
                self._bodies.move_to_end(key)
            except KeyError:  # evicted meanwhile by another thread: the body we hold is right
                pass
            if body is not None:
                self._count(hits=1)
            return body, True
        self._count(misses=1)
        if st.st_size > INLINE_MAX or transform is not None:
            self._schedule(key, fs_path, transform)
            return None, False
        data = read_identity(fs_path, identity, self._identity_of)
        if data is None:
            return None, False  # changed or unreadable: the identity route decides what to say
        body = compress(data, coding)
        if len(body) >= len(data):
            body = None
        self._store(key, body)
        return body, True

    def served(self, saved: int) -> None:
        """A compressed 200 answered a GET, `saved` bytes fewer than the identity body."""
        self._count(saved=saved)

    def hit(self, saved: int) -> None:
        """The answer cache answered with a compressed response (`saved` bytes, 0 for HEAD)."""
        self._count(hits=1, saved=saved)

    def _count(self, hits: int = 0, misses: int = 0, saved: int = 0) -> None:
        """Add to the per-request counters (see the class docstring for the lock rule)."""
        if self._single_writer:
            self.hits += hits
            self.misses += misses
            self.saved_bytes += saved
            return
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.saved_bytes += saved

    def snapshot(self) -> dict:
        """The counters and cache occupancy, for --status."""
        with self._lock:
            return {"hits_total": self.hits, "misses_total": self.misses,
                    "saved_bytes_total": self.saved_bytes,
                    "background_total": self.background_done,
                    "failures_total": self.failures,
                    "cached_entries": len(self._bodies), "cached_bytes": self._used,
                    "pending": len(self._pending)}

    # ---- the cache ---------------------------------------------------------------------------

    def _store(self, key: tuple, body: bytes | None) -> None:
        """Keep a body (or a None verdict), least recently used entries out beyond the budget."""
        cost = ENTRY_OVERHEAD + (len(body) if body is not None else 0)
        if cost > self.cache_bytes:
            body, cost = None, ENTRY_OVERHEAD  # too big to keep: remember to serve identity
        with self._lock:
            old = self._bodies.pop(key, False)
            if old is not False:
                self._used -= ENTRY_OVERHEAD + (len(old) if old is not None else 0)
            while self._bodies and self._used + cost > self.cache_bytes:
                _, evicted = self._bodies.popitem(last=False)
                self._used -= ENTRY_OVERHEAD + (len(evicted) if evicted is not None else 0)
            self._bodies[key] = body
            self._used += cost

    # ---- the background worker -----------------------------------------------------------------

    def _schedule(self, key: tuple, fs_path: str, transform=None) -> None:
        """Queue one compression per key; a full queue drops the job (a later request retries)."""
        with self._lock:
            if key in self._pending:
                return
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="compressor",
                                                daemon=True)
                self._worker.start()
            try:
                self._queue.put_nowait((key, fs_path, transform))
            except queue.Full:
                return
            self._pending.add(key)

    def _work(self) -> None:
        """The worker thread: compress queued files one at a time, forever (a daemon)."""
        if FACTS.thread_nice:  # elsewhere a thread id names no process: the loop's level
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
            except OSError:  # not allowed: run at the loop's level
                pass
        while True:
            key, fs_path, transform = self._queue.get()
            try:
                identity, coding = key[:2]
                data = read_identity(fs_path, identity, self._identity_of)
                if data is not None:
                    if transform is not None:
                        data = transform(data)
                    # zlib and zstd release the GIL while they work: the loop keeps serving.
                    body = compress(data, coding)
                    self._store(key, body if len(body) < len(data) else None)
                    with self._lock:
                        self.background_done += 1
            except Exception as exc:  # costs this file its compression, never the worker
                self._failed(key, fs_path, exc)
            finally:
                with self._lock:
                    self._pending.discard(key)

    def _failed(self, key: tuple, fs_path: str, exc: Exception) -> None:
        """A job raised: this file version is served as it is from now on (not retried on every
        request); the failure is counted and logged once per file version and coding."""
        self._store(key, None)
        with self._lock:
            self.failures += 1
            first = key not in self._failed_logged
            if first:
                if len(self._failed_logged) >= FAILED_LOGGED_MAX:
                    self._failed_logged.clear()
                self._failed_logged.add(key)
        if first:
            log.warning("compressing %s as %s failed (%s: %s); it is served uncompressed",
                        fs_path, key[1], type(exc).__name__, exc)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is queued or running (for tests and tools); True if idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.005)
        return False
