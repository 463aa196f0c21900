"""The scoreboard: each worker's counters in one fixed-size cell of memory shared across fork.

With --workers N and --status, the supervisor maps one anonymous shared region (mmap,
MAP_SHARED) before its first fork, so every worker inherits the same pages. A worker writes
only its own cell; the worker that answers --status reads every cell and adds them up, so any
worker's answer is the whole server's (Apache httpd's scoreboard serves mod_status the same
way; nginx's stub_status counters live in shared memory too). Without workers a Stats keeps a
private cell of the same layout: one code path.

Writing costs no lock across processes. A cell has one writer, its worker's loop thread (the
supervisor writes a cell only once its worker is dead). Counters (responses by status, body
bytes, timeouts, evictions) are added in place as they happen, so another worker's totals are
exact at any read (a response counts just after its last byte went to the kernel). A counter is
one aligned 64-bit word, which CPython's memoryview reads and writes with one 8-byte load or
store: on a 64-bit CPU a reader never sees half of it, so a response costs two word additions
and no sequence steps. What takes several words is framed by the cell's sequence word (a
seqlock: odd while a write is under way; a reader copies the cell until it sees the same even
sequence before and after): a worker's identity, and the gauges (open connections by state)
and compression figures, which the worker publishes about once a second (its heartbeat) and,
when it answers, just before it reads. Another worker's gauges may be a second old.

Totals never go down. Each slot owns CELLS_PER_SLOT cells; a new worker (a restart after a
crash, a SIGHUP replacement) takes a cell of its slot that no live worker holds and goes on
adding to what its predecessors counted there (the compression counters are published on top of
the cell's value at take-over). The supervisor zeroes a dead worker's gauges and clears its pid.
A SIGHUP replacement runs beside the old worker, so two cells per slot: a slot's next
replacement waits until its old worker has exited.

Limits: the seqlock relies on stores becoming visible in program order (x86-64's TSO); on a
weakly ordered CPU (ARM) a reader could pair a half-published tally of gauges with an even
sequence, a glitch in a gauge for one read. Counters are never affected, but on a 32-bit CPU an
8-byte store is two stores and a counter read during its update could be torn for one read.
"""

from __future__ import annotations

import mmap
import os
import time

from .protocol import TIMEOUT_KINDS, ConnState

# The connection states counted as open (a closed connection is gone), in the order shown.
OPEN_STATES = tuple(state for state in ConnState if state is not ConnState.CLOSED)
# content_coding.Compressor.snapshot()'s keys, in the order the status page shows them: the
# first five are counters (published on top of the cell's value), the rest gauges.
COMPRESSION_COUNTERS = ("hits_total", "misses_total", "saved_bytes_total", "background_total",
                        "failures_total",
                        "cached_entries", "cached_bytes", "pending")
COMPRESSION_MONOTONIC = 5

# Cell layout, in 64-bit words. Responses are counted per status 100..599 (one word each:
# 4 KB a cell, and a status code needs no table), any other status in OTHER_STATUS.
SEQ, PID, SLOT, STARTED_US, BYTES, EVICTED = range(6)
TIMEOUTS = 6
STATES = TIMEOUTS + len(TIMEOUT_KINDS)
COMPRESSION = STATES + len(OPEN_STATES)
RESPONSES = COMPRESSION + len(COMPRESSION_COUNTERS)
FIRST_STATUS, LAST_STATUS = 100, 599
OTHER_STATUS = RESPONSES + LAST_STATUS - FIRST_STATUS + 1
# A status's word is status + STATUS_WORD.
STATUS_WORD = RESPONSES - FIRST_STATUS
# Whole cache lines (64 bytes) per cell: two workers' writes never share a line.
CELL_WORDS = (OTHER_STATUS + 1 + 7) // 8 * 8
# Header words: the server's start (wall clock and monotonic, microseconds), the worker count.
HEADER_WORDS = 8
H_STARTED_US, H_STARTED_MONO_US, H_WORKERS, H_SUPERVISOR = range(4)
# A SIGHUP replacement runs next to the worker it replaces: two cells per slot.
CELLS_PER_SLOT = 2
# Copies a reader tries before taking a cell whose writer is mid-write (it may have just died).
READ_ATTEMPTS = 1000


def private_cell() -> list[int]:
    """A cell of this process only (no shared board): the same layout, nobody else reads it.

    A list: adding to one of its items costs about half of adding to a shared word (measured:
    a response's two additions take about 0.1 us against 0.25 us), and nothing needs more.
    """
    return [0] * CELL_WORDS


def read_cell(words: memoryview) -> list[int]:
    """A consistent copy of a cell (seqlock: the same even sequence before and after)."""
    copy = words.tolist()
    for _ in range(READ_ATTEMPTS):
        before = words[SEQ]
        if not before & 1:
            copy = words.tolist()
            if words[SEQ] == before:
                return copy
        os.sched_yield()
    return copy  # a writer died mid-write: every word is whole, take them


class Board:
    """The shared region: a header and CELLS_PER_SLOT cells per worker slot."""

    def __init__(self, workers: int):
        self.workers = workers
        cells = workers * CELLS_PER_SLOT
        # Anonymous and MAP_SHARED (mmap's default on POSIX): inherited by every fork.
        self.memory = mmap.mmap(-1, (HEADER_WORDS + cells * CELL_WORDS) * 8)
        self.words = memoryview(self.memory).cast("Q")
        self.words[H_STARTED_US] = int(time.time() * 1e6)
        self.words[H_STARTED_MONO_US] = int(time.monotonic() * 1e6)
        self.words[H_WORKERS] = workers
        self.words[H_SUPERVISOR] = os.getpid()

    def cell(self, index: int) -> memoryview:
        """The words of cell `index`."""
        start = HEADER_WORDS + index * CELL_WORDS
        return self.words[start:start + CELL_WORDS]

    def cells_of(self, slot: int) -> range:
        """The cell indices slot `slot` may use."""
        return range(slot * CELLS_PER_SLOT, (slot + 1) * CELLS_PER_SLOT)

    def started(self) -> tuple[float, float]:
        """The server's start: (seconds since the epoch, time.monotonic() then)."""
        return self.words[H_STARTED_US] / 1e6, self.words[H_STARTED_MONO_US] / 1e6

    def read_all(self) -> list[list[int]]:
        """A consistent copy of every cell, by index."""
        return [read_cell(self.cell(index)) for index in range(self.workers * CELLS_PER_SLOT)]

    def retire(self, index: int) -> None:
        """In the supervisor, once the cell's worker has exited: its gauges to zero, no pid.

        Its counters stay: the next worker in the cell adds to them.
        """
        words = self.cell(index)
        if words[SEQ] & 1:  # killed mid-write: every word is whole, close the write
            words[SEQ] += 1
        words[SEQ] += 1
        words[PID] = 0
        for word in range(STATES, STATES + len(OPEN_STATES)):
            words[word] = 0
        for word in range(COMPRESSION + COMPRESSION_MONOTONIC, RESPONSES):
            words[word] = 0
        words[SEQ] += 1

    def close(self) -> None:
        """Unmap (the supervisor, at exit; a worker's copy goes with its process)."""
        try:
            self.words.release()
            self.memory.close()
        except BufferError:  # a cell's view is still held somewhere: the exit unmaps it
            pass
