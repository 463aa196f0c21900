"""A standard library that looks like Windows' or macOS's, for a server process on Linux.

`shim_command(platform, args)` is a `python -c` command that first takes out of `os`, `socket`,
`signal` and `select` what that platform's CPython lacks, makes the Unix-only modules fail to
import, and only then runs `python -m reactor_http ARGS`. The package must import and serve
anyway: nothing may touch a missing facility at import time, and every fallback runs for real.
Combined with REACTOR_HTTP_SIMULATE (the platform's facts), it is the nearest thing to the real
platform this machine can run. What stays Linux: sys.platform, the path rules of the file
system, and the ability to send the process signals from the test.
"""

from __future__ import annotations

import sys

import pytest

# What CPython on Windows does not have (names looked up in the 3.10-3.13 docs' "Availability").
WINDOWS_MISSING = {
    "os": ["sendfile", "fork", "forkpty", "pread", "pwrite", "preadv", "pwritev", "O_NONBLOCK",
           "O_CLOEXEC",
           "sched_getaffinity", "register_at_fork", "getuid", "geteuid", "setsid", "killpg",
           "WNOHANG", "WIFSIGNALED", "getpgid", "pipe2"],
    # (AF_UNIX stays: Linux's socketpair() needs it, and Windows' builds its own from TCP.)
    "socket": ["MSG_MORE", "SO_REUSEPORT", "TCP_CORK", "sendmsg_afalg"],
    "signal": ["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGCHLD", "SIGKILL", "SIGALRM", "SIGPIPE",
               "SIGQUIT", "pthread_sigmask", "pthread_kill", "siginterrupt", "alarm",
               "setitimer", "getitimer", "sigwait", "SIG_BLOCK", "SIG_SETMASK"],
    "select": ["epoll", "poll", "kqueue", "devpoll", "POLLIN", "POLLOUT", "POLLPRI", "POLLHUP",
               "POLLERR", "EPOLLIN", "EPOLLOUT"],
    "errno": ["ENONET", "ECOMM", "EREMOTEIO"],  # Linux's own
}
# Unix-only modules: importing one must fail, as it does on Windows.
WINDOWS_UNIMPORTABLE = ["resource", "fcntl", "termios", "pwd", "grp", "posix_ipc"]
# What macOS lacks that Linux has (it has kqueue, which Linux cannot lend: poll stands in).
MACOS_MISSING = {
    "os": ["sched_getaffinity", "pipe2", "O_DIRECT", "memfd_create"],
    "socket": ["MSG_MORE", "TCP_CORK", "SO_REUSEPORT_LB"],
    "select": ["epoll", "EPOLLIN", "EPOLLOUT"],
    "errno": ["ENONET", "ECOMM", "EREMOTEIO", "ENOKEY", "EKEYEXPIRED"],  # Linux's own
}

# Takes away what the platform lacks; the two programs below start with it.
_TRIM = """
for _module, _names in {missing!r}.items():
    _module = __import__(_module)
    for _name in _names:
        if hasattr(_module, _name):
            delattr(_module, _name)
for _name in {unimportable!r}:
    sys.modules[_name] = None  # `import resource` now raises ImportError
sys.modules.pop("selectors", None)  # if loaded at start-up: chosen again from what is left
"""

_PRELUDE = "import sys\n" + _TRIM + """
import runpy
sys.argv = ["reactor_http", *{args!r}]
runpy.run_module("reactor_http", run_name="__main__", alter_sys=True)
"""

# Linux's own stdlib code paths (subprocess, pytest) need what is taken away, so they come first.
_COLLECT = "import sys, subprocess, pytest\n" + _TRIM + """
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"]))
"""


def collect_command(platform: str) -> list[str]:
    """`python -c`: collect the test suite on a stdlib trimmed to `platform`'s (no module may
    need what that platform lacks just to be imported: it must skip instead)."""
    if platform == "windows":
        missing, unimportable = WINDOWS_MISSING, [*WINDOWS_UNIMPORTABLE, "pty", "tty"]
    else:
        missing, unimportable = MACOS_MISSING, []
    return [sys.executable, "-c", _COLLECT.format(missing=missing, unimportable=unimportable)]


def shim_command(platform: str, args: list[str]) -> list[str]:
    """`python -c PRELUDE`: the server with `args`, on a stdlib trimmed to `platform`'s."""
    if platform == "windows":
        missing, unimportable = WINDOWS_MISSING, WINDOWS_UNIMPORTABLE
    else:
        missing, unimportable = MACOS_MISSING, []
    code = _PRELUDE.format(missing=missing, unimportable=unimportable, args=list(args))
    return [sys.executable, "-c", code]


# ---- skipping what the platform (or the simulated one) lacks -----------------------------------

def _facts():
    from reactor_http.facilities import FACTS  # the package's own verdict, simulation included
    return FACTS


def needs_fork():
    """Skip a test of --workers where there is no fork() (Windows, simulated or real)."""
    facts = _facts()
    return pytest.mark.skipif(not facts.fork, reason=f"--workers needs fork(); {facts.name} "
                                                     f"has none")


def require_fork() -> None:
    """In a fixture: skip its tests where there is no fork() (needs_fork's reason)."""
    facts = _facts()
    if not facts.fork:
        pytest.skip(f"--workers needs fork(); {facts.name} has none")


def needs_signal(name: str):
    """Skip a test that sends `name` (SIGUSR1, SIGHUP...) where the platform has no such signal."""
    facts = _facts()
    return pytest.mark.skipif(not facts.has_signal(name),
                              reason=f"{name} does not exist on {facts.name}")


def needs_connections(count: int):
    """Skip a test holding `count` connections where select()'s limit allows fewer."""
    cap = _facts().connection_cap
    return pytest.mark.skipif(cap is not None and cap < count,
                              reason=f"select() holds at most {cap} connections here")


# ---- which tests the simulated passes run (the `sockets` marker, set by conftest.py) ----------

#: Fixtures (and the `mode` parameter) that mean a test runs a real server over sockets.
SERVER_FIXTURES = frozenset({"server", "make_server", "mode"})
#: Names whose import makes a whole test module one that starts real servers.
SERVER_STARTERS = ("ServerProcess", "run_cli")


def runs_a_server(item) -> bool:
    """True if a collected test starts a real server: by fixture, or in a module that does."""
    module = getattr(item, "module", None)
    return bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))) or \
        any(hasattr(module, name) for name in SERVER_STARTERS)


def harness_skip():
    """Where the server harness (tests/helpers/servers.py) cannot run, a skip mark saying why:
    on Windows it waits on pipes with select() and stops servers with POSIX signals. There,
    tests/test_platform_smoke.py starts, uses and stops the server in Windows' own way."""
    facts = _facts()
    if facts.name == "windows" and not facts.simulated:
        return pytest.mark.skip(reason="the server harness needs select() on pipes and POSIX "
                                       "signals; test_platform_smoke.py covers Windows")
    return None
