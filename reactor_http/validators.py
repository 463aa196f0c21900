"""A file's strong ETag (RFC 9110 section 8.8.3), the same on every machine that holds the file.

Owns one decision: the entity tag a file version is served under. `--etag mtime` (the default)
builds it from what two identical copies share, the modification time in seconds and the size,
in nginx's format (`"<hex mtime>-<hex size>"`), so copies deployed with their times preserved
(`cp -a`, `rsync -t`, tar, container layers) answer each other's revalidations and `If-Range`
resumes; an nginx serving the same tree even agrees. No inode: a copy never has the same one
(Apache dropped it from its default FileETag for that reason). `--etag content`: a digest of the
bytes, for deployments whose times differ; computed once per file version (`Digests`), inline
for a file already in memory, by one background thread for a larger one.

Why whole seconds, when RFC 9110 section 8.8.1 gives "a modification timestamp that has
sub-second resolution" as its example of a strong validator: nanoseconds do not survive every
copy (GNU tar's default format, rsync before 3.1, zip, container layers truncate to seconds), so
an original and its copy would disagree, which is the failure this module exists to prevent; and
nginx, which many deployments mix with us, uses seconds too. The price is a file rewritten with
the same size within the same second: a client holding the first version may get a 304 for the
second. Last-Modified has had that grain all along; `--etag content` has none. The server's own
caches still see such a change: they compare the full stat identity (website.file_identity:
device, inode, size, mtime_ns, ctime_ns). Must not touch a socket or decide HTTP semantics.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import queue
import threading

from . import filesystem

log = logging.getLogger("reactor_http")

# Files up to this size are hashed during the request that first needs the digest (bytes): they
# are in memory already (website.SMALL_FILE_MAX) and blake2b takes about 0.1 ms for 64 KiB here.
# Larger ones are hashed by the background thread; the loop never hashes more than this.
INLINE_MAX = 64 * 1024
# Bytes read per pread while hashing in the background: bounded memory per job.
CHUNK = 1 << 20
# Digest bytes kept: 128 bits (22 base64url characters), far beyond any collision worry for
# the versions one site serves, and short in every response head.
DIGEST_SIZE = 16
# File versions whose digests are remembered (entries, about 150 bytes each); the oldest go first.
ENTRIES = 16_384
# Background jobs waiting at most (files); more are dropped and retried by a later request.
QUEUE_MAX = 64


def mtime_etag(st: os.stat_result) -> str:
    """nginx's strong ETag: modification time (whole seconds) and size, in hexadecimal."""
    return f'"{st.st_mtime_ns // 1_000_000_000:x}-{st.st_size:x}"'


def content_etag(digest: bytes) -> str:
    """The strong ETag of a content digest: base64url without padding (etagc characters)."""
    return '"' + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") + '"'


def digest_bytes(data: bytes) -> bytes:
    """The digest of bytes in memory."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def digest_file(fs_path: str, identity: tuple, identity_of) -> bytes | None:
    """The digest of a file that still has `identity`; None if it changed, vanished or is
    unreadable. Reads in CHUNK pieces (hashlib releases the GIL on each)."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
    if not filesystem.read_version(fs_path, identity, identity_of, hasher.update, CHUNK):
        return None
    return hasher.digest()


class Digests:
    """`--etag`: the ETag of each file version, by its stat identity.

    `etag(path, st, data)` is the one question. With `--etag mtime` it is `mtime_etag(st)`, a
    pure function. With `--etag content`: the remembered digest; else, for bytes in memory (a
    small file), the digest made now; else "" (no ETag yet) while one background thread hashes
    the file. The first answers for a large file go out without an ETag rather than wait: the
    reactor must not block on hashing 100 MiB, and an answer without a validator is correct
    (If-None-Match and If-Range then match nothing, RFC 9110 sections 13.1.2 and 13.1.5), while
    an mtime ETag meanwhile would differ from the one every later answer carries. (An If-Match
    naming a tag then fails with 412, as section 13.1.1 says it must without a current ETag.)

    Lookups are lock-free dict reads (atomic under the GIL); stores and the pending set change
    under `_lock`.
    """

    def __init__(self, kind: str, identity_of):
        self.by_content = kind == "content"
        self._identity_of = identity_of     # stat_result -> identity (website.file_identity)
        self._tags: dict[tuple, str] = {}   # identity -> ETag
        self._lock = threading.Lock()
        self._pending: set = set()
        self._queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self._worker: threading.Thread | None = None

    def etag(self, fs_path: str, st: os.stat_result, data: bytes | None = None) -> str:
        """The strong ETag of the file version `st` describes ("" while its digest is made);
        `data`: its bytes, when the caller holds them."""
        if not self.by_content:
            return mtime_etag(st)
        identity = self._identity_of(st)
        tag = self._tags.get(identity)
        if tag is not None:
            return tag
        if data is None and st.st_size <= INLINE_MAX:
            data = _read_small(fs_path, identity, self._identity_of)
        if data is not None and len(data) == st.st_size:
            tag = content_etag(digest_bytes(data))
            self._store(identity, tag)
            return tag
        self._schedule(identity, fs_path)
        return ""

    def _store(self, identity: tuple, tag: str) -> None:
        """Remember a version's ETag, the oldest entries out beyond ENTRIES."""
        with self._lock:
            while len(self._tags) >= ENTRIES:
                self._tags.pop(next(iter(self._tags)))
            self._tags[identity] = tag

    def _schedule(self, identity: tuple, fs_path: str) -> None:
        """Queue one digest per file version; a full queue drops it (a later request retries)."""
        with self._lock:
            if identity in self._pending:
                return
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="digester",
                                                daemon=True)
                self._worker.start()
            try:
                self._queue.put_nowait((identity, fs_path))
            except queue.Full:
                return
            self._pending.add(identity)

    def _work(self) -> None:
        """The worker thread: hash queued files one at a time, forever (a daemon)."""
        while True:
            identity, fs_path = self._queue.get()
            try:
                digest = digest_file(fs_path, identity, self._identity_of)
                if digest is not None:
                    self._store(identity, content_etag(digest))
            except Exception as exc:  # costs this file its ETag, never the worker
                log.warning("hashing %s for its ETag failed (%s: %s)", fs_path,
                            type(exc).__name__, exc)
            finally:
                with self._lock:
                    self._pending.discard(identity)

    def settled(self, st: os.stat_result) -> bool:
        """True once the ETag of this file version is known (for tests and tools)."""
        return not self.by_content or self._identity_of(st) in self._tags


def _read_small(fs_path: str, identity: tuple, identity_of) -> bytes | None:
    """A small file's bytes if it still has `identity` (so the digest names that version)."""
    chunks: list[bytes] = []
    if not filesystem.read_version(fs_path, identity, identity_of, chunks.append):
        return None
    return b"".join(chunks)
