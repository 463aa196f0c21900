"""--live-reload: a stream whose client never reads, stalled on purpose."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers.polling import wait_until
from tests.helpers.procfs import server_ports, tcp_entry, tcp_table

# A path component as long as names may be (bytes): a change to a file under a chain of such
# folders is announced with a data line of about 4 KB, so a few hundred fill a socket.
LONG_NAME = 250
# Receive buffer (bytes) of a client that stops reading: small, so the server stalls soon.
SMALL_RCVBUF = 4096


def stall_stream(root: Path, stalled: socket.socket, each_round=None) -> None:
    """Change files with long paths under `root` until the server's send to `stalled` stalls.

    `stalled` is an open --live-reload stream whose client reads nothing more. Rounds of 32
    changes (about 120 KB of events) go on while the kernel takes each whole; once it takes
    less than half a round, the rest waits in the server (under its byte budget even after
    one more round) and its send timer runs. `each_round(data_marker)` is called after each
    round with the data line of its last change (for a stream that does read).
    """
    deep = root
    for index in range(14):
        deep = deep / (chr(ord("a") + index) * LONG_NAME)
    deep.mkdir(parents=True)
    names = [f"{index:02d}" * (LONG_NAME // 2) for index in range(32)]
    paths = [(deep / name).relative_to(root).as_posix() for name in names]
    round_bytes = sum(len(f"event: change\ndata: /{path}\n\n") for path in paths)
    last = f"data: /{paths[-1]}\n".encode()
    ports = server_ports(stalled)
    for rounds in range(64):
        before = tcp_entry(tcp_table(), *ports)[3]

        def round_taken() -> bool:
            row = tcp_entry(tcp_table(), *ports)
            return row is None or row[5] == 0 or row[3] - before >= round_bytes

        for name in names:
            (deep / name).write_bytes(str(rounds).encode())
        if each_round is not None:
            each_round(last)
        else:
            # A round's changes are announced within 0.3 s: wait that long at most, and no
            # longer than until the kernel holds the whole round (or the stream is gone).
            wait_until(round_taken, timeout=0.3)
        after = tcp_entry(tcp_table(), *ports)
        # The client's small buffer takes a few KB of the first round.
        if after is None or after[5] == 0 or after[3] - before < round_bytes // 2:
            return
    pytest.fail("the server's send to a stream that is not read never stalled")
