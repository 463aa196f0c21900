"""Watch the served folder for changes, off the serving thread: inotify on Linux, else a scan.

`start_watcher(root, publish)` runs a daemon thread that calls `publish(url_paths)` with the URL
paths of files created, modified, deleted or renamed under `root`. Bursts (an editor's save, a
build writing many files) are coalesced: the first change opens a window that closes after
QUIET seconds without a new change or at most BATCH_WINDOW after it opened, and each path is
announced once per window. Dotfiles (and anything in a dot-folder) and editor temporaries are
never announced.

Inotify is used through ctypes (no new dependency). It is not recursive by itself: every folder
is watched, and a folder created (or moved in) later is watched when it appears, its files
announced. Elsewhere (FACTS.watcher is "scan"), or when inotify is unavailable (its watch limit
reached), the fallback scans the tree every POLL_INTERVAL seconds, comparing each file's size,
mtime and inode.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import struct
import threading
import time

from .facilities import FACTS
from .livereload import url_path

log = logging.getLogger("reactor_http")

# A burst is announced at most this long (seconds) after its first change.
BATCH_WINDOW = 0.1
# ... or once no new change came for this long (seconds).
QUIET = 0.03
# Seconds between two scans of the polling fallback: with BATCH_WINDOW, changes are announced
# within about 0.35 s. A scan of a 10,000-file tree costs tens of milliseconds (see README).
POLL_INTERVAL = 0.25
# The polling fallback stretches its interval to at least this many times a scan's duration,
# so that a huge tree cannot make scanning eat the processor.
POLL_DUTY = 5
# How often (seconds) the inotify thread looks up to notice a stop.
STOP_CHECK = 0.5

# Editor temporaries: vim's swap files and its write test file "4913", Emacs lock (.#x) and
# backup (x~) files. Names starting with a dot (.#x among them) are dotfiles, never announced.
_TEMP_SUFFIXES = (".swp", ".swx", ".swo", "~")
_TEMP_NAMES = frozenset({"4913"})

# inotify(7) event bits.
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
              | IN_DELETE | IN_DELETE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)
# Bytes read from the inotify descriptor at once (many events).
READ_SIZE = 64 * 1024


def ignored(relative: str) -> bool:
    """True for a path (relative to the root) that is never announced."""
    for part in relative.split(os.sep):
        if part.startswith("."):
            return True
    name = relative.rsplit(os.sep, 1)[-1]
    return name in _TEMP_NAMES or name.endswith(_TEMP_SUFFIXES)


class Batcher:
    """Collects changed paths and says when the current burst is due (pure; caller's clock)."""

    __slots__ = ("paths", "opened", "last")

    def __init__(self):
        self.paths: dict[str, None] = {}
        self.opened = 0.0
        self.last = 0.0

    def add(self, relative: str, now: float) -> None:
        """Note a change of `relative` (ignored names are dropped)."""
        if ignored(relative):
            return
        if not self.paths:
            self.opened = now
        self.last = now
        self.paths[relative] = None

    def wait(self, now: float) -> float | None:
        """Seconds until the burst is due (0: now), or None when nothing is pending."""
        if not self.paths:
            return None
        return max(0.0, min(self.last + QUIET, self.opened + BATCH_WINDOW) - now)

    def take(self) -> list[str]:
        """The burst's URL paths, in the order first seen; the batcher is empty again."""
        paths = [url_path(relative) for relative in self.paths]
        self.paths = {}
        return paths


class Inotify:
    """A recursive inotify watch of one tree, through libc by ctypes.

    A folder moved away (out of the root, or elsewhere inside it) loses its watches and those
    of its subfolders; one moved in, or within the root, is watched (again) under its new path.
    """

    def __init__(self, root: str):
        # Loaded here, where inotify is used (Linux): ctypes.util imports subprocess, which
        # Windows' and macOS's servers never need.
        import ctypes
        import ctypes.util

        self._get_errno = ctypes.get_errno
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self.root = root
        self.dirs: dict[int, str] = {}  # watch descriptor -> folder relative to the root ("")
        try:
            self.add_tree("", None, 0.0)
        except OSError:
            os.close(fd)  # the watch limit: the caller falls back to scanning
            raise

    def add_tree(self, relative: str, batcher: Batcher | None, now: float) -> None:
        """Watch a folder and every folder below it; announce its files (a folder that appeared)."""
        for folder, names in self._walk(relative):
            self._watch(folder)
            if batcher is not None:
                for name in names:
                    batcher.add(os.path.join(folder, name), now)

    def forget_tree(self, relative: str) -> None:
        """Stop watching a folder that left the tree, and every folder below it.

        A watch follows the folder (an inode), not its path: one moved out of the root would
        otherwise go on reporting its changes under the path it had here.
        """
        below = relative + os.sep
        for wd, folder in list(self.dirs.items()):
            if folder == relative or folder.startswith(below):
                del self.dirs[wd]
                self._rm(self.fd, wd)  # its IN_IGNORED then names a watch we no longer know

    def rescan(self, batcher: Batcher, now: float) -> None:
        """After lost events (a queue overflow): watch the tree as it is, forget folders no
        longer in it (moved out meanwhile), announce every file."""
        before = self.dirs
        self.dirs = {}
        self.add_tree("", batcher, now)  # a folder still here keeps its watch descriptor
        for wd in before.keys() - self.dirs.keys():
            self._rm(self.fd, wd)

    def _walk(self, relative: str):
        """(folder, file names) for `relative` and each folder below it, dot-folders skipped."""
        pending = [relative]
        while pending:
            folder = pending.pop()
            names = []
            try:
                with os.scandir(os.path.join(self.root, folder)) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(os.path.join(folder, entry.name))
                        else:
                            names.append(entry.name)
            except OSError:
                continue
            yield folder, names

    def _watch(self, relative: str) -> None:
        """Add one folder's watch; an exhausted watch limit is an error the caller sees."""
        path = os.path.join(self.root, relative) if relative else self.root
        wd = self._add(self.fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            code = self._get_errno()
            if code == errno.ENOSPC:
                raise OSError(code, "inotify watch limit reached (fs.inotify.max_user_watches)")
            return  # gone already, or not a folder: nothing to watch
        self.dirs[wd] = relative

    def read(self, batcher: Batcher, now: float) -> bool:
        """Read what is ready into `batcher`; False if the queue overflowed (caller rescans)."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return True
        offset = 0
        ok = True
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                ok = False
                continue
            folder = self.dirs.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:
                del self.dirs[wd]
                continue
            if mask & IN_DELETE_SELF or not name:
                continue  # its parent reports the folder's removal
            relative = os.path.join(folder, os.fsdecode(name))
            if mask & IN_ISDIR:
                if mask & (IN_CREATE | IN_MOVED_TO):
                    if not ignored(relative):
                        self.add_tree(relative, batcher, now)
                elif mask & (IN_DELETE | IN_MOVED_FROM):
                    if mask & IN_MOVED_FROM:  # moved away (back in later, if moved within)
                        self.forget_tree(relative)
                    batcher.add(relative, now)  # a folder gone: its path is the change
                continue
            batcher.add(relative, now)
        return ok

    def close(self) -> None:
        """Release the inotify descriptor (and with it every watch)."""
        os.close(self.fd)


def scan(root: str) -> dict[str, tuple]:
    """{path relative to root: (size, mtime_ns, inode)} of every file and folder not ignored
    (a folder's size is -1: only its appearing or going is a change)."""
    found = {}
    pending = [""]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(os.path.join(root, folder)) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    relative = os.path.join(folder, entry.name)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            # The folder itself too, so that one created or removed empty
                            # (a change of its parent's listing) is seen, as inotify sees it.
                            found[relative] = (-1, 0, entry.inode())
                            pending.append(relative)
                            continue
                        st = entry.stat()
                    except OSError:
                        continue
                    found[relative] = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            continue
    return found


def changed(before: dict, after: dict) -> list[str]:
    """Paths created, deleted or modified between two scans."""
    paths = [path for path, identity in after.items() if before.get(path) != identity]
    paths.extend(path for path in before if path not in after)
    return paths


class Watcher:
    """The watching thread: inotify when it can, the scan otherwise."""

    def __init__(self, root: str, publish, use_inotify: bool | None = None):
        self.root = root
        self.publish = publish
        self._stop = threading.Event()
        self.inotify = None
        if use_inotify is None:
            use_inotify = FACTS.watcher == "inotify"
        if use_inotify:
            try:
                self.inotify = Inotify(root)
            except (OSError, AttributeError) as exc:
                log.warning("live reload: inotify unavailable (%s); scanning the folder every "
                            "%s s instead", exc, POLL_INTERVAL)
        self.method = "inotify" if self.inotify is not None else "polling"
        self._snapshot = scan(root) if self.inotify is None else None
        self._thread = threading.Thread(target=self._run, name="live-reload-watcher",
                                        daemon=True)

    def start(self) -> Watcher:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (it notices within STOP_CHECK) and release inotify."""
        self._stop.set()
        self._thread.join(STOP_CHECK * 2 + 1)
        if self.inotify is not None and not self._thread.is_alive():
            self.inotify.close()

    def _run(self) -> None:
        """The thread's body: collect changes, publish each burst once."""
        batcher = Batcher()
        try:
            if self.inotify is not None:
                self._run_inotify(self.inotify, batcher)
            else:
                self._run_polling(batcher)
        except Exception as exc:  # a watcher failure must not take the server down
            log.error("live reload: the watcher stopped: %r", exc)

    def _flush(self, batcher: Batcher) -> None:
        """Publish the pending burst, if any."""
        paths = batcher.take()
        if paths:
            self.publish(paths)

    def _run_inotify(self, inotify: Inotify, batcher: Batcher) -> None:
        """Wait on the inotify descriptor; publish each burst when its window closes."""
        poller = select.poll()
        poller.register(inotify.fd, select.POLLIN)
        while not self._stop.is_set():
            wait = batcher.wait(time.monotonic())
            ready = poller.poll((STOP_CHECK if wait is None else wait) * 1000)
            now = time.monotonic()
            if ready and not inotify.read(batcher, now):
                # The kernel dropped events: compare with a fresh walk of what exists (every
                # file is announced; a reload too many beats a missed one).
                inotify.rescan(batcher, now)
            if batcher.wait(now) == 0:
                self._flush(batcher)

    def _run_polling(self, batcher: Batcher) -> None:
        """Scan, compare, publish; sleep between scans."""
        assert self._snapshot is not None  # the first scan, made without inotify
        interval = POLL_INTERVAL
        while not self._stop.wait(interval):
            started = time.monotonic()
            snapshot = scan(self.root)
            took = time.monotonic() - started
            interval = max(POLL_INTERVAL, took * POLL_DUTY)
            now = time.monotonic()
            for relative in changed(self._snapshot, snapshot):
                batcher.add(relative, now)
            self._snapshot = snapshot
            self._flush(batcher)  # a scan sees a whole burst at once


def start_watcher(root: str, publish, use_inotify: bool | None = None) -> Watcher:
    """Watch `root` on a daemon thread, calling `publish(url_paths)` per burst."""
    return Watcher(root, publish, use_inotify).start()
