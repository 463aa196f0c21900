"""A graceful stop (SIGTERM/SIGINT) over real sockets, in both engines.

What has arrived is answered (with Connection: close); a keep-alive connection answered just
before the stop gets a moment for the request already on its way; a truly idle one is closed at
once; the process exits 0 without waiting out the drain bound for idle connections.
"""

from __future__ import annotations

import signal
import threading
import time

from conftest import read_response

REQUEST = b"GET /abc.txt HTTP/1.1\r\nHost: x\r\n\r\n"


def test_requests_already_received_are_answered_with_close(make_server, site_copy, mode):
    # The server is stopped (SIGSTOP) while the requests land in its socket buffers, so the
    # stop begins with every one of them unread: each must still get its answer.
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "20")
    socks = []
    try:
        for _ in range(8):
            sock = server.connect(timeout=10)
            sock.sendall(REQUEST)
            assert read_response(sock, bytearray()).status == 200
            socks.append(sock)
        server.proc.send_signal(signal.SIGSTOP)
        for sock in socks:
            sock.sendall(REQUEST)
        server.proc.send_signal(signal.SIGTERM)
        server.proc.send_signal(signal.SIGCONT)
        for sock in socks:
            # Answered (with Connection: close if the stop had begun when it was read), then
            # closed: nothing that had arrived is dropped.
            assert read_response(sock, bytearray()).status == 200
            assert sock.recv(1) == b""
        assert server.proc.wait(timeout=20) == 0
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_back_to_back_clients_lose_no_request_at_stop(make_server, site_copy, mode):
    # Clients that send their next request the moment a response arrives: at SIGTERM, every
    # request sent is answered; a connection ends only after a Connection: close response.
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "20",
                         "--max-requests", "100000")
    lost = []
    answered = []
    started = threading.Barrier(17)

    def client() -> None:
        count = 0
        with server.connect(timeout=20) as sock:
            buffer = bytearray()
            started.wait(20)
            for _ in range(5000):  # bounded; the stop comes long before
                sock.sendall(REQUEST)
                try:
                    response = read_response(sock, buffer)
                except (ConnectionError, OSError) as exc:
                    lost.append(repr(exc))
                    break
                count += 1
                if response.headers.get("connection") == "close":
                    break
        answered.append(count)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        started.wait(20)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        assert not lost, lost
        assert len(answered) == 16 and all(answered), answered
        assert server.proc.wait(timeout=20) == 0
    finally:
        server.stop()


def test_an_idle_connection_is_closed_at_once_at_stop(make_server, site_copy, mode):
    # Idle keep-alive connections do not hold the stop for the drain bound (60 s here).
    server = make_server(site_copy, mode, "--quiet", "--drain-timeout", "60",
                         "--keepalive-timeout", "60")
    sock = server.connect(timeout=10)
    try:
        sock.sendall(REQUEST)
        assert read_response(sock, bytearray()).status == 200
        time.sleep(0.5)  # idle for longer than the stop's grace for a request on its way
        server.proc.send_signal(signal.SIGTERM)
        sock.settimeout(20)
        assert sock.recv(1) == b""
        assert server.proc.wait(timeout=20) == 0
    finally:
        sock.close()
        server.stop()
