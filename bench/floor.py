"""The floor: the least any Python server can do: not a server.

A reference point for the keep-alive scenarios, not a competitor: one thread, one `selectors`
loop, non-blocking sockets with TCP_NODELAY, and every request head (everything up to a blank
line, found with `find(b"\\r\\n\\r\\n")`) answered with the same pre-rendered HTTP/1.1 200
response carrying the bench's 1 KiB file, read once at start. No parsing, no file system, no
timers, no logging, no limits: whatever the path or method, the answer is that file. What a real
server spends above this is its own work; this is what the kernel and the interpreter charge
any Python server per request.

Usage: python bench/floor.py --root DIR --host 127.0.0.1 --port N
SIGTERM or SIGINT stops it.
"""

import argparse
import resource
import selectors
import signal
import socket
import sys
from pathlib import Path

#: The file every request is answered with (the bench's 1 KiB file).
BODY_NAME = "1k.bin"
#: Bytes read per recv: many pipelined or queued heads at once.
RECV_BYTES = 65536
#: Accepts per readiness event of the listening socket.
ACCEPT_BATCH = 64


def render_response(body: bytes) -> bytes:
    """The one response: status line, length, keep-alive, then the body."""
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
    return head + body


def serve(host: str, port: int, response: bytes) -> None:
    """Run the loop until SIGTERM/SIGINT."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    pending = {}  # socket -> bytes received that do not yet end a head
    unsent = {}   # socket -> response bytes the kernel did not take yet
    running = [True]

    def stop(signum, frame):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def close(sock):
        sel.unregister(sock)
        pending.pop(sock, None)
        unsent.pop(sock, None)
        sock.close()

    while running[0]:
        for key, events in sel.select(1.0):
            sock = key.fileobj
            if key.data is None:  # the listener
                for _ in range(ACCEPT_BATCH):
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    pending[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, True)
                continue
            if events & selectors.EVENT_WRITE:
                try:
                    sent = sock.send(unsent[sock])
                except BlockingIOError:
                    continue
                except OSError:
                    close(sock)
                    continue
                rest = unsent[sock][sent:]
                if rest:
                    unsent[sock] = rest
                else:
                    del unsent[sock]
                    sel.modify(sock, selectors.EVENT_READ, True)
                continue
            try:
                data = sock.recv(RECV_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                close(sock)
                continue
            if not data:
                close(sock)
                continue
            data = pending[sock] + data
            count = data.count(b"\r\n\r\n")
            if not count:
                pending[sock] = data
                continue
            pending[sock] = data[data.rfind(b"\r\n\r\n") + 4:]
            out = response * count
            if sock in unsent:
                unsent[sock] += out
                continue
            try:
                sent = sock.send(out)
            except BlockingIOError:
                sent = 0
            except OSError:
                close(sock)
                continue
            if sent < len(out):
                unsent[sock] = out[sent:]
                sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, True)
    for sock in list(pending):
        close(sock)
    listener.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help=f"folder holding {BODY_NAME}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    serve(args.host, args.port, render_response((Path(args.root) / BODY_NAME).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
