"""What a service manager hands us and expects back: systemd socket activation and a pid file.

Socket activation follows sd_listen_fds(3): when LISTEN_PID is our pid and LISTEN_FDS is N >= 1,
descriptors 3 .. 3+N-1 are listening sockets already bound by systemd (the .socket unit), and we
serve on them instead of binding. The variables are removed from our environment whether or not
they were meant for us, so no child process can mistake them for its own. The first socket is
the HTTP listener; further ones are closed with a warning (one listener per server is the model
here; run one service per address instead). --host and --port are then ignored.

The pid file (`PidFile`) is written only once the server holds its sockets and removed only by
the process that wrote it, so a failed second start leaves a running server's file alone.

Start-up code only: nothing here runs per request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

from .facilities import FACTS

# sd_listen_fds(3): the first passed descriptor is always 3 (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3

log = logging.getLogger("reactor_http")


def take_listen_fds(environ=None, pid: int | None = None) -> list[int]:
    """The descriptors systemd passed to this process, removing LISTEN_* from `environ`."""
    environ = os.environ if environ is None else environ
    listen_pid = environ.pop("LISTEN_PID", None)
    listen_fds = environ.pop("LISTEN_FDS", None)
    environ.pop("LISTEN_FDNAMES", None)
    if listen_pid is None or listen_fds is None:
        return []
    try:
        meant_for_us = int(listen_pid) == (os.getpid() if pid is None else pid)
        count = int(listen_fds)
    except ValueError:
        return []
    if not meant_for_us or count < 1:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def inherited_listener(environ=None) -> socket.socket | None:
    """The listening socket systemd passed us, or None when not socket-activated.

    Raises ValueError (a one-line start-up error) if descriptor 3 is not a listening stream socket.
    """
    fds = take_listen_fds(environ)
    if not fds:
        return None
    first, extra = fds[0], fds[1:]
    for fd in extra:
        log.warning("ignoring inherited socket fd %d (LISTEN_FDS=%d); only fd %d is served",
                    fd, len(fds), first)
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        sock = socket.socket(fileno=first)
    except OSError as exc:
        raise ValueError(f"inherited fd {first} (LISTEN_FDS) is not a socket: "
                         f"{exc.strerror}") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.close()
        raise ValueError(f"inherited fd {first} (LISTEN_FDS) is not a listening TCP socket")
    sock.set_inheritable(False)  # sd_listen_fds sets FD_CLOEXEC too
    return sock


class PidFile:
    """The --pid-file: checked before start-up, written once the server holds its sockets,
    removed at exit only by the process that wrote it and only while it still names us.

    `check()` early (refuses while the pid in the file is a live process; touches nothing),
    `write()` right after binding (atomically: a temporary file renamed over the name, so a
    reader never sees a half-written file), `remove()` at exit. A start that fails in between
    leaves the file as it found it, so it cannot take a running server's pid file away.
    """

    def __init__(self, path: str):
        self.path = path
        self.written_by: int | None = None  # our pid once we wrote the file

    def check(self) -> None:
        """Raise ValueError if a live server's pid is in the file or the file cannot be written.

        A stale file (its process gone, or on Linux a process whose command line is not a
        reactor_http server: the pid was reused after a reboot or a container restart) is
        replaced when the server listens, with one line of notice saying which.
        """
        pid = self.read()
        if pid is not None and pid != os.getpid():
            holder = pid_holder(pid)
            if holder is None:
                raise ValueError(f"--pid-file {self.path}: a server is already running as "
                                 f"pid {pid}")
            if holder == "":
                log.warning("--pid-file %s: no process %d runs (a server that stopped without "
                            "removing it?); replacing the file", self.path, pid)
            else:
                log.warning("--pid-file %s: pid %d is not a reactor_http server (%s); replacing "
                            "the file", self.path, pid, holder)
        probe = self._temporary()
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(probe)
        except OSError as exc:
            raise ValueError(f"cannot write the pid file {self.path!r} (--pid-file): "
                             f"{exc.strerror}") from None

    def read(self) -> int | None:
        """The pid in the file; None if there is no file or it is empty. ValueError if the
        file holds something else (it is not ours to overwrite)."""
        try:
            with open(self.path, "rb") as file:
                text = file.read(64).strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"cannot read the pid file {self.path!r} (--pid-file): "
                             f"{exc.strerror}") from None
        if not text:
            return None
        if not text.isdigit() or int(text) == 0:  # kill(0, ...) would mean our process group
            raise ValueError(f"--pid-file {self.path}: the file exists and holds no pid; "
                             f"remove it or name another file")
        return int(text)

    def write(self) -> None:
        """Write our pid (temporary file, then rename); ValueError if that fails."""
        pid = os.getpid()
        temporary = self._temporary()
        try:
            with open(temporary, "w", encoding="ascii") as file:
                file.write(f"{pid}\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise ValueError(f"cannot write the pid file {self.path!r} (--pid-file): "
                             f"{exc.strerror}") from None
        self.written_by = pid

    def remove(self) -> None:
        """Remove the file if this process wrote it and it still holds our pid (a forked child,
        or a server started later with the same file, keeps it)."""
        if self.written_by is None or self.written_by != os.getpid():
            return
        with contextlib.suppress(OSError, ValueError):
            if self.read() == self.written_by:
                os.unlink(self.path)
        self.written_by = None

    def _temporary(self) -> str:
        """A name beside the pid file, unique to this process (same folder: rename is atomic)."""
        return f"{self.path}.{os.getpid()}.tmp"


# Program names a reactor_http server runs as: the console script, and `python -m reactor_http`.
SERVER_NAMES = frozenset({"reactor-http", "reactor_http"})


def pid_holder(pid: int) -> str | None:
    """Who holds `pid`: None for a reactor_http server (or, where no command line can be read,
    any live process, as a server is assumed), "" for no process, else the program's name."""
    if not process_running(pid):
        return ""
    if FACTS.name != "linux":
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            argv = file.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return None  # gone meanwhile, or hidden (hidepid): assume the worst, refuse
    if not argv[0] or is_server_command(argv):
        return None  # a kernel thread or an exiting process shows no command line: refuse
    return os.path.basename(argv[0])


def is_server_command(argv: list[str]) -> bool:
    """Is this command line a reactor_http server's (the script, `-m reactor_http`)?"""
    for arg in argv:
        if arg.startswith("-m") and arg[2:] in SERVER_NAMES:
            return True
        if os.path.basename(arg.rstrip("/")) in SERVER_NAMES:
            return True
    return False


def process_running(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie (exited, not yet reaped)."""
    if not FACTS.kill_zero_probes:
        return _windows_process_running(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OverflowError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rsplit(b")", 1)[1].split()[0]  # proc(5): the field after (comm)
    except (OSError, IndexError):
        return True
    return state != b"Z"


# Windows API values (processthreadsapi.h, winerror.h, minwinbase.h).
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_ERROR_ACCESS_DENIED = 5
_STILL_ACTIVE = 259


def _windows_process_running(pid: int) -> bool:
    """Windows: True if process `pid` is still running (OpenProcess and its exit code)."""
    import ctypes  # only where os.kill(pid, 0) cannot probe

    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False  # not Windows after all: nothing to ask
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return ctypes.get_last_error() == _ERROR_ACCESS_DENIED  # type: ignore[attr-defined]
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
