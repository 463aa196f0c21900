"""Read a server's memory and CPU from /proc, children included.

Servers may fork (a master and workers), so every figure is summed over the
process tree rooted at the PID we started. Linux only; elsewhere the functions
return None and the report says "n/a".
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")

#: Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    # fields[0] is state, fields[1] is ppid (field 4 of the full line).
    return int(fields[1]) if fields else None


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants (by scanning /proc for parent links)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [int(e.name) for e in PROC.iterdir() if e.name.isdigit()]
    except OSError:
        return [pid]
    for other in entries:
        parent = _parent_of(other)
        if parent is not None:
            children.setdefault(parent, []).append(other)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid: int, include_children: bool = True) -> float | None:
    """User + system CPU seconds used so far by pid (and its live children)."""
    pids = process_tree(pid) if include_children else [pid]
    total_ticks, seen = 0, False
    for p in pids:
        fields = _stat_fields(p)
        if fields is None:
            continue
        seen = True
        # utime and stime are fields 14 and 15 of the full line (1-based),
        # i.e. index 11 and 12 once pid and comm are stripped.
        total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS if seen else None


def user_cpu_seconds(pid: int) -> float | None:
    """User CPU seconds used so far by pid alone (its own code: a Python server's interpreter)."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLOCK_TICKS if fields is not None else None


def cpu_seconds_by_pid(pid: int) -> dict:
    """{pid: user + system CPU seconds} for pid and each of its live descendants."""
    out = {}
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            out[p] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def _vm_rss_kib(pid: int) -> int | None:
    try:
        with open(PROC / str(pid) / "status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])  # reported in kB (KiB)
    except OSError:
        return None
    return None


def rss_kib(pid: int, include_children: bool = True) -> int | None:
    """Resident set size in KiB of pid (plus its live children), from VmRSS."""
    pids = process_tree(pid) if include_children else [pid]
    values = [v for v in (_vm_rss_kib(p) for p in pids) if v is not None]
    return sum(values) if values else None


def thread_count(pid: int) -> int | None:
    """Number of threads of pid (Threads: in /proc/PID/status)."""
    try:
        with open(PROC / str(pid) / "status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
