"""What a service manager hands us and expects back: systemd socket activation and a pid file.

Socket activation follows sd_listen_fds(3): when LISTEN_PID is our pid and LISTEN_FDS is N >= 1,
descriptors 3 .. 3+N-1 are listening sockets already bound by systemd (the .socket unit), and we
serve on them instead of binding. The variables are removed from our environment whether or not
they were meant for us, so no child process can mistake them for its own. The first socket is
the HTTP listener; further ones are closed with a warning (one listener per server is the model
here; run one service per address instead). --host and --port are then ignored.

Start-up code only: nothing here runs per request.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

# sd_listen_fds(3): the first passed descriptor is always 3 (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3


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
        print(f"reactor_http: warning: ignoring inherited socket fd {fd} (LISTEN_FDS="
              f"{len(fds)}); only fd {first} is served", file=sys.stderr, flush=True)
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


@contextlib.contextmanager
def pid_file(path: str | None):
    """Write our pid to `path` for the duration of the block, then remove it if still ours."""
    if path is None:
        yield
        return
    pid = os.getpid()
    temporary = f"{path}.{pid}.tmp"
    try:
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{pid}\n")
        os.replace(temporary, path)  # readers never see a half-written file
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ValueError(f"cannot write pid file {path!r}: {exc.strerror}") from None
    try:
        yield
    finally:
        if os.getpid() == pid:  # a forked child leaving by an exception must not remove it
            with contextlib.suppress(OSError, ValueError):
                with open(path, encoding="ascii") as file:
                    still_ours = int(file.read().strip() or 0) == pid
                if still_ours:
                    os.unlink(path)
