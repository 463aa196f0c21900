"""--archives: a folder streamed as a zip or tar archive, made off the loop as it is sent.

Owns what goes into an archive and how it is made, never a socket:
- `walk`: the folder's tree with exactly the listing's rules (those of
  filesystem.listing_entries: dotfiles, symlinks out of the root, names the path rules refuse,
  folders and regular files only), recursively, bounded in entries and bytes before anything is
  sent (413 beyond either). A folder is descended only if its real path lies inside the root,
  even with --follow-symlinks, and only once (a symlink loop, or two links to one folder, is
  walked once). The walk runs on the engine's thread, as a listing does, so it lists each
  folder its own cheaper way (`folder_entries`: one scandir, one stat per entry, a real path
  only for a symlink), which tests/test_archives.py holds equal to listing_entries.
- `produce`: the producers, stdlib `zipfile` (stored: no compression, which is fast and what
  photos and videos need anyway; data descriptors, since the output cannot seek; ZIP64 where a
  size needs it) and `tarfile` in stream mode (tar, and tar + gzip level GZIP_LEVEL). Each file
  is opened when its turn comes and must be the file the walk saw (device and inode), read up
  to the size the walk saw; one that cannot be opened is left out and named in the log; one
  that shrank ends the archive (the client sees it cut short, never a wrong file).
- the framing (`ChunkWriter`): the producers' writes gathered into CHUNK-byte pieces, each a
  chunk of the chunked transfer coding (RFC 9112 section 7.1) for an HTTP/1.1 client, or bare
  bytes for an HTTP/1.0 one (the body ends with the connection).
- `Feed`: the reactor's bounded buffer between a producer thread and the loop. The producer
  blocks once FEED_MAX bytes wait (back-pressure: it never runs further ahead of the socket);
  the loop takes what is there without ever waiting, and asks to be woken when it finds
  nothing. The threaded engine needs no feed: its connection thread runs the same producer and
  sends as it writes (`produce` with a sending `emit`).
`Slots` bounds how many archives are made at once (ARCHIVES_AT_ONCE).
"""

from __future__ import annotations

import collections
import gzip
import logging
import os
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple, cast
from urllib.parse import quote

from . import filesystem
from .facilities import FACTS, pread
from .sending import FileShrank
from .pathrules import PathRules, hides, is_inside

# The download values (miniserve's) and what each answers: Content-Type, file name suffix.
FORMATS = {
    "zip": ("application/zip", ".zip"),
    "tar": ("application/x-tar", ".tar"),
    "tar_gz": ("application/gzip", ".tar.gz"),
}
# Bytes of output gathered before they go out as one chunk, and bytes of a file read at once:
# 64 KiB keeps the chunk framing under 0.01 % and each read one page-cache copy.
CHUNK = 64 * 1024
# Bytes a producer may run ahead of the socket in the reactor (the feed's bound): two sends'
# worth at the autotuned buffer's slice, and what one archive costs in memory at most.
FEED_MAX = 512 * 1024
# gzip level of tar_gz: 6 is gzip(1)'s default; 9 (tarfile's) costs about three times the CPU
# for a few percent.
GZIP_LEVEL = 6
# Archives made at the same time, per server process; one more request gets 503 with
# Retry-After. Each holds a thread (the reactor's producer, or the threaded engine's connection)
# and a feed, so the bound is on memory and disk reads, not on clients.
ARCHIVES_AT_ONCE = 8
RETRY_AFTER = 5  # seconds, in the 503's Retry-After
# Files left out of one archive that are named in the log, one line each; the rest are counted.
SKIP_LOG_LINES = 20
# The archive's top folder when the root itself is downloaded and its name is empty ("/").
ROOT_NAME = "site"
# The zip format's earliest and latest dates (MS-DOS time, a 7-bit year from 1980, seconds in
# twos): mtimes outside are written as these (zipfile cannot write them: struct.error).
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
ZIP_LATEST = (2107, 12, 31, 23, 59, 58)

log = logging.getLogger("reactor_http")
# Where a link can be something other than a symlink (Windows: junctions, which scandir's
# is_symlink does not report before Python 3.12), every entry's real path is checked.
EVERY_REAL_PATH = FACTS.name == "windows"


class Entry(NamedTuple):
    """One thing the walk found: a file or folder, its name in the archive, and what it was.
    (A named tuple: the walk makes one per entry on the engine's thread, and a frozen
    dataclass costs several times as much to build.)"""

    fs_path: str
    arcname: str    # "top/sub/name", '/'-separated
    is_dir: bool
    size: int       # bytes (0 for a folder)
    mtime: float
    mode: int       # permission bits
    identity: tuple  # (st_dev, st_ino): the file opened must be this one
    listed: bool = True  # False: a folder that could not be listed (left empty, and logged)


class TooLarge(Exception):
    """The folder exceeds --archive-max-bytes or --archive-max-files (answered 413)."""


class Cancelled(Exception):
    """The exchange closed (client gone, send timeout, stop): the producer stops."""


class ArchiveFailed(FileShrank):
    """The producer could not finish (a file shrank, a read failed): the response is cut, as
    for a file that shrank while sent (the engines close the connection)."""


def requested_format(query: str) -> str | None:
    """The `download` value of a query if it names a format we make; None otherwise.

    An unknown value is ignored, as miniserve ignores a query it cannot parse: the folder
    answers as usual (its listing), never an error page.
    """
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "download" and value in FORMATS:
            return value
    return None


def archive_name(url_path: str, real_root: str) -> str:
    """The archive's top folder name: the folder's own, the root's for `/` (else ROOT_NAME)."""
    name = url_path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        name = os.path.basename(real_root.rstrip(os.sep))
    return name or ROOT_NAME


def content_disposition(filename: str) -> str:
    """`attachment` with the name (RFC 6266 section 4.1): an ASCII `filename` (other characters,
    quotes, backslashes and `%` as `_`: some browsers percent-decode `filename`, RFC 6266
    appendix D) and, when that lost anything, `filename*` in UTF-8 percent encoding (RFC 8187
    section 3.2), which every current browser prefers."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\%' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        encoded = quote(filename.encode("utf-8", "surrogateescape"), safe="")
        value += f"; filename*=UTF-8''{encoded}"
    return value


def folder_entries(real_root: str, fs_dir: str, *, allow_dotfiles: bool, follow_symlinks: bool,
                   rules: PathRules) -> list[tuple[str, bool, os.stat_result, bool, str]]:
    """What filesystem.listing_entries gives for a folder whose real path lies inside the root,
    as (name, is folder, stat, is a link, path), in its order.

    Cheaper: the listing takes every entry's real path (about 10 us each, four fifths of its
    cost); inside a folder that lies inside the root only a symlink can lead out, so only a
    symlink's is taken (every entry's where links may be junctions: EVERY_REAL_PATH).
    Raises Forbidden or NotFound as listing_entries does.
    """
    try:
        scan = os.scandir(fs_dir)
    except PermissionError:
        raise filesystem.Forbidden("the folder may not be listed") from None
    except OSError:
        raise filesystem.NotFound("the folder is gone") from None
    entries = []
    name_rules = filesystem.folder_name_rules(real_root, fs_dir, rules)
    with scan:
        for item in scan:
            name = item.name
            if not filesystem.shown(name, name_rules, allow_dotfiles):
                continue
            try:
                st = item.stat()
                link = EVERY_REAL_PATH or item.is_symlink()
            except OSError:
                continue
            if link and not follow_symlinks and \
                    not is_inside(real_root, os.path.realpath(item.path), rules):
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if (is_dir or stat.S_ISREG(st.st_mode)) and not hides(rules, st):
                entries.append((not is_dir, name.lower(), name, is_dir, st, link, item.path))
    entries.sort(key=lambda entry: entry[:3])
    return [entry[2:] for entry in entries]


def walk(real_root: str, fs_dir: str, top: str, *, allow_dotfiles: bool,
         follow_symlinks: bool, rules: PathRules, max_bytes: int,
         max_entries: int) -> tuple[Entry, ...]:
    """What the archive of `fs_dir` holds, under the top folder `top`: breadth first, each
    folder's entries in its listing's order.

    Raises TooLarge past `max_entries` entries or `max_bytes` of files, and what
    folder_entries raises for `fs_dir` itself (Forbidden, NotFound). A subfolder that cannot
    be listed is kept as an empty folder, marked unlisted (the producer names it in the log).
    """
    try:
        st = os.stat(fs_dir)
    except OSError:
        raise filesystem.NotFound("the folder is gone") from None
    entries = [Entry(fs_dir, top, True, 0, st.st_mtime, stat.S_IMODE(st.st_mode),
                     (st.st_dev, st.st_ino))]
    seen = {(st.st_dev, st.st_ino)}
    pending = collections.deque([0])  # indexes of folders to list
    total = 0
    while pending:
        index = pending.popleft()
        folder = entries[index]
        try:
            listed = folder_entries(real_root, folder.fs_path, allow_dotfiles=allow_dotfiles,
                                    follow_symlinks=follow_symlinks, rules=rules)
        except (filesystem.Forbidden, filesystem.NotFound):
            if not index:
                raise
            entries[index] = folder._replace(listed=False)
            continue
        for name, is_dir, st, link, full in listed:
            if len(entries) >= max_entries:
                raise TooLarge(f"more than {max_entries} files and folders")
            identity = (st.st_dev, st.st_ino)
            if is_dir and (identity in seen or (
                    (link or follow_symlinks) and
                    not is_inside(real_root, os.path.realpath(full), rules))):
                continue  # walked already (a loop), or outside the root: never descended
            entry = Entry(full, f"{folder.arcname}/{name}", is_dir, 0 if is_dir else st.st_size,
                          st.st_mtime, stat.S_IMODE(st.st_mode), identity)
            if is_dir:
                seen.add(identity)
                pending.append(len(entries))
                entries.append(entry)
            else:
                entries.append(entry)
                total += st.st_size
                if total > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
    return tuple(entries)


# ---- producing -------------------------------------------------------------------------------

class ChunkWriter:
    """A write-only, non-seekable file for zipfile and tarfile: their writes gathered into
    pieces of at least CHUNK bytes, each given to `emit` as one chunk (`chunked`) or as is.
    No tell(): zipfile then writes data descriptors and keeps its own count."""

    def __init__(self, emit: Callable[[bytes], None], chunked: bool):
        self.emit = emit
        self.chunked = chunked
        self.buffer = bytearray()
        # What the first failed emit raised: every later write raises it at once, so the
        # archive's own closing (zipfile's central directory, tarfile's last record, written
        # as its `with` unwinds) does not wait out another send timeout.
        self.failed: BaseException | None = None

    def write(self, data) -> int:
        """Gather `data`; emit a piece once CHUNK bytes wait."""
        if self.failed is not None:
            raise self.failed
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._emit()
        return len(data)

    def flush(self) -> None:
        """Nothing: pieces go out by size (a flush per file would make small chunks)."""

    def _emit(self) -> None:
        data = bytes(self.buffer)
        self.buffer.clear()
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        try:
            self.emit(data)
        except BaseException as exc:
            self.failed = exc
            raise

    def finish(self) -> None:
        """The archive is complete: the rest, then the last chunk (no trailer fields)."""
        if self.buffer:
            self._emit()
        if self.chunked:
            self.emit(b"0\r\n\r\n")


class SkipLog:
    """Names each file left out of one archive in the log, up to SKIP_LOG_LINES, then counts."""

    def __init__(self, report: Callable[[str], None], request_line: str):
        self.report = report
        self.request_line = request_line
        self.count = 0

    def __call__(self, entry: Entry, why: str) -> None:
        self.count += 1
        if self.count <= SKIP_LOG_LINES:
            self.report(f'"{self.request_line}": left out of the archive: {entry.arcname!r} '
                        f'({why})')

    def close(self) -> None:
        """One line for those not named."""
        if self.count > SKIP_LOG_LINES:
            self.report(f'"{self.request_line}": {self.count - SKIP_LOG_LINES} more files left '
                        f'out of the archive')


def produce(body, emit: Callable[[bytes], None], report: Callable[[str], None]) -> None:
    """Make the archive of a messages.ProducedBody, giving its framed bytes to `emit`.

    `report` takes one log line per file left out. Raises what `emit` raises (Cancelled, a
    send's timeout) and ArchiveFailed; every file it opened is closed by then.
    """
    writer = ChunkWriter(emit, body.chunked)
    skipped = SkipLog(report, body.request_line)
    try:
        if body.kind == "zip":
            _zip(body.entries, writer, skipped)
        else:
            _tar(body.entries, writer, skipped, body.kind == "tar_gz")
    finally:
        skipped.close()
    writer.finish()


def _open(entry: Entry, skipped: SkipLog) -> int | None:
    """The entry's file, opened, if it is still the file the walk saw; else None, logged."""
    try:
        opened = filesystem.open_regular(entry.fs_path)
    except filesystem.Forbidden:
        skipped(entry, "may not be read")
        return None
    if opened is None:
        skipped(entry, "gone")
        return None
    fd, st = opened
    if (st.st_dev, st.st_ino) != entry.identity:
        os.close(fd)
        skipped(entry, "replaced since the walk")
        return None
    return fd


def _copy(fd: int, entry: Entry, write: Callable) -> None:
    """Write the entry's `size` bytes from `fd`: never more (a file that grew is cut at the
    walk's size); ArchiveFailed if it shrank (the header already promised the size)."""
    offset = 0
    while offset < entry.size:
        try:
            data = pread(fd, min(CHUNK, entry.size - offset), offset)
        except OSError as exc:
            raise ArchiveFailed(f"{entry.fs_path}: {exc.strerror}") from exc
        if not data:
            raise ArchiveFailed(f"{entry.fs_path} shrank while archived")
        write(data)
        offset += len(data)


def _zip_time(mtime: float) -> tuple:
    """A modification time as zip's local date and time (1980 to 2107, clamped)."""
    return min(ZIP_LATEST, max(ZIP_EPOCH, time.localtime(mtime)[:6]))


def _zip(entries: tuple, writer: ChunkWriter, skipped: SkipLog) -> None:
    """A stored zip of the entries, written to a stream that cannot seek."""
    with zipfile.ZipFile(cast(Any, writer), "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for entry in entries:
            if not entry.listed:
                skipped(entry, "folder may not be listed")
            info = zipfile.ZipInfo(entry.arcname + ("/" if entry.is_dir else ""),
                                   _zip_time(entry.mtime))
            info.external_attr = ((stat.S_IFDIR if entry.is_dir else stat.S_IFREG) |
                                  entry.mode) << 16
            if entry.is_dir:
                info.external_attr |= 0x10  # MS-DOS directory bit
                archive.writestr(info, b"")
                continue
            fd = _open(entry, skipped)
            if fd is None:
                continue
            try:
                info.file_size = entry.size  # decides ZIP64 before the first byte
                with archive.open(info, "w") as member:
                    _copy(fd, entry, member.write)
            finally:
                os.close(fd)


class _Exact:
    """A file object giving tarfile exactly the entry's size from `fd` (see _copy)."""

    def __init__(self, fd: int, entry: Entry):
        self.fd = fd
        self.entry = entry
        self.offset = 0

    def read(self, size: int) -> bytes:
        size = min(size, self.entry.size - self.offset)
        try:
            data = pread(self.fd, size, self.offset) if size > 0 else b""
        except OSError as exc:
            raise ArchiveFailed(f"{self.entry.fs_path}: {exc.strerror}") from exc
        if size > 0 and not data:
            raise ArchiveFailed(f"{self.entry.fs_path} shrank while archived")
        self.offset += len(data)
        return data


def _tar(entries: tuple, writer: ChunkWriter, skipped: SkipLog, gz: bool) -> None:
    """A POSIX (pax) tar of the entries in stream mode, gzip'ed at GZIP_LEVEL if `gz`."""
    gzipped = gzip.GzipFile(fileobj=cast(Any, writer), mode="wb", compresslevel=GZIP_LEVEL,
                            mtime=0) if gz else None
    target = cast(Any, gzipped or writer)
    with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            if not entry.listed:
                skipped(entry, "folder may not be listed")
            info = tarfile.TarInfo(entry.arcname)
            info.mtime = int(entry.mtime)
            info.mode = entry.mode
            if entry.is_dir:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
                continue
            fd = _open(entry, skipped)
            if fd is None:
                continue
            try:
                info.size = entry.size
                archive.addfile(info, cast(Any, _Exact(fd, entry)))
            finally:
                os.close(fd)
    if gzipped is not None:
        gzipped.close()  # the gzip trailer; the writer stays open


# ---- the reactor's side: a producer thread and its bounded feed ------------------------------

class Feed:
    """The bytes a producer thread made and the loop has not taken, at most FEED_MAX.

    Producer side: `put` (waits while the feed is full), `end`. Loop side, never waiting:
    `take`, `wait` (arm a wake-up for when there is something), `cancel`. `pending` is the
    loop's own: what it took and the socket has not accepted yet.
    """

    def __init__(self, limit: int = FEED_MAX):
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._waker: Callable[[], None] | None = None
        self._cancelled = False
        self.ended = False
        self.error: BaseException | None = None
        self.pending = memoryview(b"")

    def put(self, data: bytes) -> None:
        """Producer: queue `data`, waiting while the feed is full; Cancelled once cancelled."""
        with self._room:
            while self._size >= self._limit and not self._cancelled:
                self._room.wait()
            if self._cancelled:
                raise Cancelled
            self._chunks.append(data)
            self._size += len(data)
            waker, self._waker = self._waker, None
        if waker is not None:
            waker()

    def end(self, error: BaseException | None = None) -> None:
        """Producer: nothing more comes (`error`: it failed)."""
        with self._lock:
            self.ended = True
            self.error = error
            waker, self._waker = self._waker, None
        if waker is not None:
            waker()

    def take(self) -> bytes | None:
        """Loop: the oldest piece made; None if none waits yet; b"" once all is taken and the
        producer has ended (decided under the lock: a last piece put just before the end is
        never mistaken for the end)."""
        with self._lock:
            if not self._chunks:
                return b"" if self.ended else None
            data = self._chunks.popleft()
            self._size -= len(data)
            self._room.notify()
            return data

    def wait(self, waker: Callable[[], None]) -> bool:
        """Loop: True if nothing waits, and `waker` is called (on the producer's thread) once
        something does; False if something already waits (no wake-up armed)."""
        with self._lock:
            if self._chunks or self.ended or self.pending:
                return False
            self._waker = waker
            return True

    def cancel(self) -> None:
        """Loop: the exchange closed; the producer stops at its next write."""
        with self._lock:
            self._cancelled = True
            self._waker = None
            self._chunks.clear()
            self._room.notify_all()


class Slots:
    """How many archives are being made: a soft bound (checked when one is answered, counted
    while its producer runs)."""

    def __init__(self, limit: int = ARCHIVES_AT_ONCE):
        self.limit = limit
        self.running = 0
        self._lock = threading.Lock()

    def full(self) -> bool:
        return self.running >= self.limit

    def enter(self) -> None:
        with self._lock:
            self.running += 1

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


def start_feed(body, report: Callable[[str], None], slots: Slots | None) -> Feed:
    """Start the producer of a messages.ProducedBody on a thread of its own; its feed."""
    feed = Feed()
    thread = threading.Thread(target=_run_feed, args=(body, feed, report, slots),
                              name="archive", daemon=True)
    if slots is not None:
        slots.enter()
    thread.start()
    return feed


def _run_feed(body, feed: Feed, report: Callable[[str], None], slots: Slots | None) -> None:
    """The producer thread: make the archive into the feed, then end it."""
    try:
        produce(body, feed.put, report)
    except Cancelled:
        feed.end()
    except Exception as exc:  # a failed archive cuts its response; the server goes on
        feed.end(exc)
    else:
        feed.end()
    finally:
        if slots is not None:
            slots.leave()
