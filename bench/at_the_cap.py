"""At the connection cap: busy clients are never evicted; a fresh client gets in among idle ones.

Two probes per server, each on a fresh server process (both engines of reactor_http, and nginx
when installed, its `worker_connections` set to the same cap plus its listener and a spare):

- busy: 500 clients connect at once and each sends 5 requests one after another on its
  keep-alive connection, against a cap of 256. Reported: answers received (of 2,500) and clients
  whose connection was closed or reset before their fifth answer. Evicting a connection whose
  next request is on the wire loses that client.
- idle: 200 keep-alive connections at a cap of 200, each answered once and then left quiet past
  the minimum (protocol.EVICT_MIN_IDLE), then 20 fresh clients one after another (each kept
  open, so the next must make room again): the latency from connect to the whole answer.

    python -m bench.at_the_cap                  # reactor, threaded, nginx if installed
    python -m bench.at_the_cap --servers reactor

One client thread drives every socket (selectors): the bench never starts a thread per client.
"""

from __future__ import annotations

import argparse
import errno
import re
import selectors
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import servers

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)
BUSY_CLIENTS, BUSY_REQUESTS, BUSY_CAP = 500, 5, 256
IDLE_HELD, IDLE_FRESH = 200, 20
# Seconds the idle connections are left quiet: past protocol.EVICT_MIN_IDLE (1 s).
QUIET_S = 1.5
REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class _Client:
    """One keep-alive client of a crowd: its socket, what it has read, answers so far."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        code = self.sock.connect_ex((servers.HOST, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, "connect failed")
        self.buffer = b""
        self.answers = 0

    def take_answers(self) -> int:
        """Whole 200 answers at the front of the buffer, removed from it."""
        count = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return count
            head = self.buffer[:end + 2]
            match = _LENGTH.search(head)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return count
            if not head.startswith(b"HTTP/1.1 200 "):
                raise AssertionError(head[:80])
            self.buffer = self.buffer[total:]
            count += 1


def sequential_keepalive(port: int, clients: int, requests: int, raw: bytes,
                         timeout: float = 120.0) -> tuple[int, list[str]]:
    """`clients` connect at once; each sends `raw` `requests` times on its one connection, the
    next once the last answer is in, then closes. Returns (answers received, one line per
    client whose connection ended early or that had not finished by `timeout`)."""
    selector = selectors.DefaultSelector()
    crowd = [_Client(port) for _ in range(clients)]
    for client in crowd:
        selector.register(client.sock, selectors.EVENT_WRITE, client)
    lost: list[str] = []
    open_count = clients
    deadline = time.monotonic() + timeout
    try:
        while open_count and time.monotonic() < deadline:
            for key, mask in selector.select(1.0):
                if _step(selector, key.data, mask, raw, requests, lost):
                    open_count -= 1
        lost.extend(f"unfinished after {client.answers} answers" for client in crowd
                    if client.sock.fileno() >= 0)
    finally:
        for client in crowd:
            client.sock.close()
        selector.close()
    return sum(client.answers for client in crowd), lost


def _step(selector, client: _Client, mask: int, raw: bytes, requests: int,
          lost: list[str]) -> bool:
    """Handle one readiness event of one client; True once it has ended (done or lost)."""
    sock = client.sock
    if mask & selectors.EVENT_WRITE:  # connected (or failed): send the first request
        try:
            sock.sendall(raw)
        except OSError as exc:
            return _lost(selector, client, lost, f"connect/send failed: {exc!r}")
        selector.modify(sock, selectors.EVENT_READ, client)
        return False
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError as exc:
        return _lost(selector, client, lost, f"after {client.answers} answers: {exc!r}")
    if not data:
        return _lost(selector, client, lost,
                     f"closed by the server after {client.answers} answers")
    client.buffer += data
    got = client.take_answers()
    client.answers += got
    if client.answers >= requests:
        selector.unregister(sock)
        sock.close()
        return True
    if got:
        sock.sendall(raw)  # the answer is in: the next request
    return False


def _lost(selector, client: _Client, lost: list[str], why: str) -> bool:
    lost.append(why)
    selector.unregister(client.sock)
    client.sock.close()
    return True


def fresh_client_latencies(port: int, held: int, fresh: int) -> list[float]:
    """Milliseconds from connect to whole answer for `fresh` clients, one after another, with
    `held` keep-alive connections answered once and left quiet for QUIET_S before."""
    kept = []
    try:
        for _ in range(held):
            kept.append(_answered(port))
        time.sleep(QUIET_S)
        latencies = []
        for _ in range(fresh):
            start = time.perf_counter()
            kept.append(_answered(port))
            latencies.append((time.perf_counter() - start) * 1000)
        return latencies
    finally:
        for sock in kept:
            sock.close()


def _answered(port: int) -> socket.socket:
    """A keep-alive connection that has had one whole answer."""
    sock = socket.create_connection((servers.HOST, port), timeout=30)
    sock.sendall(REQUEST)
    client = _Client.__new__(_Client)
    client.buffer = b""
    while not client.take_answers():
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the answer")
        client.buffer += data
    return sock


def spec_for(name: str, cap: int) -> servers.ServerSpec:
    """The server `name` (reactor, threaded, nginx) with its connection cap at `cap`."""
    if name == "nginx":
        def nginx(ctx):
            command = servers.nginx_command()(ctx)  # writes its nginx.conf
            conf = ctx.workdir / "nginx.conf"
            conf.write_text(re.sub(r"worker_connections \d+;",
                                   f"worker_connections {cap + 2};", conf.read_text()))
            return command
        return servers.ServerSpec("nginx", servers.nginx_available, nginx, "nginx")
    option = "--max-connections" if name == "reactor" else "--max-threads"

    def reactor_http(ctx):
        return [sys.executable, "-m", "reactor_http", "--root", str(ctx.root), "--host",
                servers.HOST, "--port", str(ctx.port), "--mode", name, "--quiet", option,
                str(cap), "--keepalive-timeout", "120"]
    return servers.ServerSpec(name, lambda: True, reactor_http, f"reactor_http {name}")


def probe(name: str, root: Path, workdir: Path) -> str:
    """Both probes against `name`, each on a fresh server; one line of figures."""
    line = [f"{name}:"]
    for cap, kind in ((BUSY_CAP, "busy"), (IDLE_HELD, "idle")):
        server = servers.start_server(spec_for(name, cap), root, workdir / kind,
                                      expected_size=1024)
        try:
            if kind == "busy":
                answered, lost = sequential_keepalive(server.port, BUSY_CLIENTS,
                                                      BUSY_REQUESTS, REQUEST)
                line.append(f"busy {BUSY_CLIENTS}x{BUSY_REQUESTS} at cap {cap}: {answered:,} "
                            f"answered, {len(lost)} clients lost their connection;")
            else:
                ms = fresh_client_latencies(server.port, IDLE_HELD, IDLE_FRESH)
                line.append(f"fresh client at a cap of {cap} quiet connections: median "
                            f"{statistics.median(ms):.2f} ms, worst {max(ms):.2f} ms")
        finally:
            servers.stop_server(server)
    return " ".join(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.at_the_cap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="reactor,threaded,nginx")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="at-the-cap-") as temp:
        root = Path(temp) / "www"
        root.mkdir()
        (root / "1k.bin").write_bytes(b"x" * 1024)
        for name in args.servers.split(","):
            if name == "nginx" and not servers.nginx_available():
                print("nginx: not installed, skipped")
                continue
            print(probe(name, root, Path(temp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
