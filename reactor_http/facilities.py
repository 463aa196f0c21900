"""What this platform offers, decided once at import: the one module that asks the OS.

Every other module reads `FACTS` instead of testing `sys.platform`, `hasattr(os, ...)` or
`hasattr(select, ...)` itself, so a fallback is chosen in one place and can be exercised on
Linux: with `REACTOR_HTTP_SIMULATE=windows` (or `macos`) in the environment, `FACTS` reports only
what that platform offers (CI runs the engine and socket tests that way, `.ci/run`). A
simulation can only take facilities away, never add ones the host lacks.

Facts, and who uses them:
- `sendfile`: `os.sendfile` exists (Linux, macOS, BSD; not Windows). Without it file bodies are
  read and sent in bounded chunks (sending.py).
- `msg_more`: the `MSG_MORE` send flag (Linux only), 0 where missing.
- `signals`: the names of the signals this platform delivers (`SIGUSR1` log reopening, `SIGHUP`
  worker replacement, `SIGBREAK` Ctrl+Break on Windows).
- `fork`: `os.fork` (the supervisor of `--workers`).
- `file_read`: how a file is read at an offset when it is read and sent (sending.py): "preadv"
  (into a reused buffer: Linux, BSD, recent macOS), "pread" (a new bytes object per read; other
  Unix), or "seek" (lseek then read on the exchange's own descriptor: Windows, where CPython has
  neither os.pread nor os.preadv in any version).
- `rlimit`: the `resource` module (raising the descriptor limit).
- `o_nonblock`, `o_cloexec`: the `os.open` flags, 0 where missing (Windows: no FIFOs to block on,
  and its descriptors are not inherited by default).
- `o_binary`: the `os.open` flag without which Windows opens a file in text mode (CRLF and
  Ctrl+Z translated by `os.read`/`os.write`); 0 elsewhere.
- `cpus`: the processors this process may run on (`--workers auto`).
- `thread_nice`: `os.setpriority(PRIO_PROCESS, native thread id)` renices that one thread
  (Linux). Elsewhere a thread id is no pid: the compressor thread keeps the loop's priority.
- `kill_zero_probes`: `os.kill(pid, 0)` only asks whether a process exists (POSIX). On Windows
  it sends Ctrl+C to a console process group, so the pid file asks Windows' API instead. Kept by
  a simulation: Linux has no Windows API to lend.
- `poller`: "epoll" (the project's own poller over `select.epoll`), "selectors" (kqueue/poll via
  `selectors.DefaultSelector`) or "select" (only `select()`, as on Windows).
- `select_limit`: how many sockets that poller can hold at once, None if no fixed limit
  (CPython's Windows build: FD_SETSIZE 512; on Unix, select() takes descriptors below 1024).
- `connection_cap`: the most connections the reactor can hold with that poller (the default and
  the ceiling of `--max-connections`), None if no fixed limit; see `connection_cap()`.
- `watcher`: "inotify" (Linux, through libc) or "scan" (a periodic scan).
- `reuse_address`: SO_REUSEADDR means "rebind over TIME_WAIT" (POSIX). On Windows it lets a
  second process bind a port in use, so it is not set there.
- `reuseport_balances`: SO_REUSEPORT spreads connections among the listeners of a port (Linux);
  on macOS and BSD the option exists but the last listener takes them all.
- `interface_list`: where the banner finds this machine's addresses (reachable.py): "procfs"
  (/proc/net/fib_trie and /proc/net/if_inet6, Linux) or "resolver" (this host's name resolved).
- `case_insensitive_names`: the default filesystem compares names without case (Windows NTFS,
  macOS APFS as formatted by default).
- `windows_names`: NTFS name rules (trailing dot or space ignored, `:` streams, device names).

An unknown `REACTOR_HTTP_SIMULATE` value never raises at import: `FACTS` is then the real
platform's and `SIMULATE_PROBLEM` says what was wrong (the command line refuses to start with
that one line, exit status 2).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import signal
import socket
import sys
from typing import Final

SIMULATE_ENV: Final = "REACTOR_HTTP_SIMULATE"
SIMULATIONS: Final = ("windows", "macos")

# Sockets select() can watch: CPython's Windows build sets FD_SETSIZE to 512; on Unix select()
# takes descriptor numbers below FD_SETSIZE (1024), so the count is bounded by that too.
_WINDOWS_SELECT_LIMIT: Final = 512
_UNIX_SELECT_LIMIT: Final = 1024
# What select()'s limit must leave free besides connections: up to two listeners (--port and
# --tls-port), the reactor's wake-up socket pair, and on Unix, where the limit is on descriptor
# numbers rather than on a count of sockets, stdin/stdout/stderr, the log files, the live-reload
# hub's pipe and the watcher; 32 leaves room for those with a margin.
SELECT_RESERVE: Final = 32


@dataclasses.dataclass(frozen=True)
class Facilities:
    """What the running platform offers (see the module's docstring for each fact)."""

    name: str  # "linux", "macos", "windows" or sys.platform for others
    simulated: bool
    sendfile: bool
    msg_more: int
    signals: frozenset[str]
    fork: bool
    file_read: str
    rlimit: bool
    o_nonblock: int
    o_cloexec: int
    o_binary: int
    cpus: int
    thread_nice: bool
    kill_zero_probes: bool
    poller: str
    select_limit: int | None
    connection_cap: int | None
    watcher: str
    reuse_address: bool
    reuseport: bool
    reuseport_balances: bool
    interface_list: str
    case_insensitive_names: bool
    windows_names: bool

    def has_signal(self, name: str) -> bool:
        return name in self.signals


def _platform_name() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    return sys.platform


def _file_read() -> str:
    if hasattr(os, "preadv"):
        return "preadv"
    return "pread" if hasattr(os, "pread") else "seek"


def _rlimit() -> bool:
    try:
        import resource  # noqa: F401  (Unix only)
    except ImportError:
        return False
    return True


def _cpus() -> int:
    """The processors this process may run on (its affinity on Linux), at least 1."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1


def connection_cap(select_limit: int | None, windows: bool) -> int | None:
    """The most connections the reactor can hold when select() is its only poller.

    Windows counts sockets per set (FD_SETSIZE 512 in CPython's build): the limit less
    SELECT_RESERVE. Unix select() takes descriptor numbers below 1024, and a connection sending
    a file holds two (socket and file): half of what the reserve leaves.
    """
    if select_limit is None:
        return None
    if windows:
        return select_limit - SELECT_RESERVE
    return (select_limit - SELECT_RESERVE) // 2


def _signals() -> frozenset[str]:
    names = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP", "SIGCHLD", "SIGBREAK")
    return frozenset(name for name in names if hasattr(signal, name))


def detect() -> Facilities:
    """The facts of the platform this interpreter runs on."""
    name = _platform_name()
    if hasattr(select, "epoll"):
        poller, limit = "epoll", None
    elif hasattr(select, "kqueue") or hasattr(select, "poll"):
        poller, limit = "selectors", None
    else:
        poller = "select"
        limit = _WINDOWS_SELECT_LIMIT if name == "windows" else _UNIX_SELECT_LIMIT
    reuseport = hasattr(socket, "SO_REUSEPORT")
    return Facilities(
        name=name,
        simulated=False,
        sendfile=hasattr(os, "sendfile"),
        msg_more=int(getattr(socket, "MSG_MORE", 0)),
        signals=_signals(),
        fork=hasattr(os, "fork"),
        file_read=_file_read(),
        rlimit=_rlimit(),
        o_nonblock=getattr(os, "O_NONBLOCK", 0),
        o_cloexec=getattr(os, "O_CLOEXEC", 0),
        o_binary=getattr(os, "O_BINARY", 0),
        cpus=_cpus(),
        thread_nice=name == "linux" and hasattr(os, "setpriority"),
        kill_zero_probes=name != "windows",
        poller=poller,
        select_limit=limit,
        connection_cap=connection_cap(limit, name == "windows"),
        watcher="inotify" if name == "linux" else "scan",
        reuse_address=name != "windows",
        reuseport=reuseport,
        reuseport_balances=reuseport and name == "linux",
        interface_list="procfs" if name == "linux" else "resolver",
        case_insensitive_names=name in ("windows", "macos"),
        windows_names=name == "windows",
    )


def simulate(real: Facilities, platform: str) -> Facilities:
    """`real` with only what `platform` ("windows" or "macos") offers; never adds a facility."""
    # Windows has neither os.pread nor os.preadv: a file is read there after a seek.
    if platform == "windows":
        return dataclasses.replace(
            real, name="windows", simulated=True, sendfile=False, msg_more=0, file_read="seek",
            signals=real.signals & {"SIGTERM", "SIGINT", "SIGBREAK"}, fork=False,
            rlimit=False, o_nonblock=0, o_cloexec=0, thread_nice=False, poller="select",
            select_limit=_WINDOWS_SELECT_LIMIT,
            connection_cap=connection_cap(_WINDOWS_SELECT_LIMIT, True), watcher="scan",
            reuse_address=False, reuseport=False, reuseport_balances=False,
            interface_list="resolver", case_insensitive_names=True, windows_names=True)
    if platform == "macos":
        return dataclasses.replace(
            real, name="macos", simulated=True, msg_more=0, thread_nice=False,
            poller="selectors" if real.poller == "epoll" else real.poller, watcher="scan",
            reuseport_balances=False, interface_list="resolver", case_insensitive_names=True,
            windows_names=False)
    raise ValueError(f"{SIMULATE_ENV} must be one of {', '.join(SIMULATIONS)}, not {platform!r}")


def _facts() -> tuple[Facilities, str | None]:
    """The facts (simulated if asked), and what was wrong with the simulation asked, if anything."""
    real = detect()
    wanted = os.environ.get(SIMULATE_ENV, "").strip().lower()
    if not wanted:
        return real, None
    try:
        return simulate(real, wanted), None
    except ValueError as exc:
        return real, str(exc)


FACTS, SIMULATE_PROBLEM = _facts()


def stop_signals() -> tuple[int, ...]:
    """The signals that ask for a graceful stop here: SIGINT (Ctrl+C), SIGTERM, and on Windows
    SIGBREAK (Ctrl+Break)."""
    return tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK")
                 if FACTS.has_signal(name))


def _seek_read(fd: int, size: int, offset: int) -> bytes:
    """os.pread where it is missing: seek, then read (the descriptor's own offset moves; every
    caller owns its descriptor, so nothing else reads through it meanwhile)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


#: `pread(fd, size, offset)`: up to `size` bytes of `fd` from `offset` (b"" at end of file),
#: by os.pread where FACTS.file_read says it exists, else after a seek (Windows).
pread = _seek_read if FACTS.file_read == "seek" else os.pread


def errno_codes(*names: str) -> frozenset[int]:
    """The codes of the errno `names` this platform defines (ENONET is Linux's alone)."""
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))
