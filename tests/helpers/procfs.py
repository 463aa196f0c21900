"""What /proc says about a server: its CPU time, its workers, its sockets (/proc/net/tcp).

/proc is Linux's: elsewhere (macOS, Windows) each reader skips the calling test, saying so.
"""

from __future__ import annotations

import os
import socket

import pytest

#: Whether this host has Linux's /proc (a simulated platform on Linux still has it).
HAS_PROCFS = os.path.isdir("/proc/self/fd")


def require_procfs() -> None:
    """Skip the calling test where there is no /proc."""
    if not HAS_PROCFS:
        pytest.skip("reads /proc, which only Linux has")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat."""
    require_procfs()
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pids(parent_pid: int) -> set[int]:
    """The children of a process (a --workers supervisor's workers), from /proc."""
    require_procfs()
    children = set()
    for task in os.listdir(f"/proc/{parent_pid}/task"):
        try:
            with open(f"/proc/{parent_pid}/task/{task}/children") as file:
                children.update(int(pid) for pid in file.read().split())
        except FileNotFoundError:
            pass
    return children


# ---- a server's side of a connection, from /proc/net/tcp --------------------------------------

def tcp_table() -> list[tuple[int, int, int, int, int, int]]:
    """(local port, remote port, state, send queue, receive queue, inode) of every IPv4 socket."""
    require_procfs()
    table = []
    with open("/proc/net/tcp") as file:
        next(file)
        for line in file:
            fields = line.split()
            send_queue, receive_queue = (int(part, 16) for part in fields[4].split(":"))
            table.append((int(fields[1].rsplit(":", 1)[1], 16),
                          int(fields[2].rsplit(":", 1)[1], 16), int(fields[3], 16),
                          send_queue, receive_queue, int(fields[9])))
    return table


def tcp_entry(table, local_port: int, remote_port: int):
    """One connection's row in `table`, or None; a row still owned by a process comes first."""
    rows = [row for row in table if row[0] == local_port and row[1] == remote_port]
    rows.sort(key=lambda row: row[5] == 0)
    return rows[0] if rows else None


def server_ports(sock: socket.socket) -> tuple[int, int]:
    """(server port, client port) of a connected socket, to watch it after it is closed."""
    return sock.getpeername()[1], sock.getsockname()[1]
