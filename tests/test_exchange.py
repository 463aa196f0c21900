"""The per-exchange record: what one connection owns of one request, and its one optimisation.

A replayed answer starts from a shared exchange (messages.Exchange, protocol.Replay), which no
engine may write to: the first progress it must remember goes into a copy of its own. These
tests pin that a shared exchange is never written to, whatever the send does, and that the
protocol hands the shared one out only where nothing of the exchange can differ.
"""

from __future__ import annotations

import pytest

from reactor_http import sending
from reactor_http.config import Config
from reactor_http.messages import Exchange, FileRegion, ResponsePlan
from reactor_http.parser import Limits
from reactor_http.protocol import HeadParser, HttpConnection
from reactor_http.website import Site

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
GET = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"


class TrickleSocket:
    """A socket that takes at most `take` bytes per send (0: it would block)."""

    def __init__(self, take: int):
        self.take = take
        self.sent = b""

    def send(self, data, flags=0):
        if not self.take:
            raise BlockingIOError
        taken = bytes(data[:self.take])
        self.sent += taken
        return len(taken)

    def fileno(self):
        return -1


def pristine(exchange: Exchange) -> bool:
    return (exchange.sent, exchange.index, exchange.offset) == (0, 0, 0)


def shared_exchange() -> Exchange:
    return Exchange(ResponsePlan(200, (ANSWER,), 5, True), shared=True)


def test_a_whole_send_leaves_a_shared_exchange_as_it_was():
    exchange = shared_exchange()
    sock = TrickleSocket(len(ANSWER))
    assert sending.send_available(sock, exchange) is None
    assert sock.sent == ANSWER and pristine(exchange)


def test_a_partial_send_goes_on_in_a_copy_of_the_connections_own():
    exchange = shared_exchange()
    sock = TrickleSocket(7)
    left = sending.send_available(sock, exchange)
    assert left is not None and left is not exchange and not left.shared
    assert left.sent == 7 and pristine(exchange)
    sock.take = 1000
    assert sending.send_available(sock, left) is None
    assert sock.sent == ANSWER and pristine(exchange)


def test_a_send_that_would_block_remembers_nothing():
    exchange = shared_exchange()
    assert sending.send_available(TrickleSocket(0), exchange) is exchange
    assert pristine(exchange)


def test_an_exchange_of_its_own_is_its_own_cursor():
    exchange = Exchange(ResponsePlan(200, (ANSWER,), 5, True))
    assert exchange.own() is exchange
    assert sending.send_available(TrickleSocket(3), exchange) is exchange
    assert exchange.sent == 3


@pytest.mark.parametrize("plan, client", [
    (ResponsePlan(200, (b"head", FileRegion(3, 0, 10)), 10, True, fd=3), ""),
    (ResponsePlan(200, (ANSWER,), 5, True), "203.0.113.9"),
])
def test_only_a_plan_without_a_descriptor_for_the_peer_is_shared(plan, client):
    with pytest.raises(ValueError):
        Exchange(plan, client, shared=True)


def test_the_protocol_shares_a_replayed_exchange_only_with_the_peer_as_client(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    config = Config(root=str(tmp_path), quiet=True).validate()
    site = Site(config, single_thread=True)
    parser = HeadParser(Limits.from_config(config), site)  # an engine's, shared
    first = HttpConnection(site, parser=parser, peer="127.0.0.1")
    second = HttpConnection(site, parser=parser, peer="::1")
    answers = []
    for conn in (first, second, first):
        exchange = conn.take_request(GET, 5.0)
        if exchange is None:
            conn.receive(GET)
            exchange = conn.next_exchange(5.0)
        answers.append(exchange)
        conn.response_done(exchange.plan, 5.0)
    assert answers[1].shared and answers[2] is answers[1]  # one record for the same answer
    proxied = Site(Config(root=str(tmp_path), quiet=True, trust_proxy=("127.0.0.1",)).validate())
    conn = HttpConnection(proxied, peer="127.0.0.1")
    forwarded = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"
    for _ in range(2):
        exchange = conn.take_request(forwarded, 6.0)
        if exchange is None:
            conn.receive(forwarded)
            exchange = conn.next_exchange(6.0)
        assert not exchange.shared and exchange.client == "203.0.113.9"
        conn.response_done(exchange.plan, 6.0)


class ResettingSocket(TrickleSocket):
    """Takes `take` bytes once, then the peer resets."""

    def send(self, data, flags=0):
        if self.sent:
            raise ConnectionResetError
        return super().send(data, flags)

    sendmsg = None  # not offered: each segment goes out with send()


def test_progress_of_a_send_cut_short_is_kept_for_the_log():
    # A replayed two-piece answer (head, then a 16-64 KiB body): the first piece goes out, the
    # peer resets on the second. What the connection holds must still say what went out.
    plan = ResponsePlan(200, (b"HEAD\r\n\r\n", b"x" * 20_000), 20_000, True)
    shared = Exchange(plan, shared=True)
    sock = ResettingSocket(8)
    own = shared.own()
    with pytest.raises(ConnectionResetError):
        sending.send_available(sock, own, tls=True)  # tls: one send() per segment
    assert own.sent == 8 and pristine(shared)


def test_the_loop_refuses_to_write_a_shared_exchange():
    plan = ResponsePlan(200, (b"HEAD\r\n\r\n", b"x" * 20_000), 20_000, True)
    with pytest.raises(ValueError):
        sending.send_available(TrickleSocket(8), Exchange(plan, shared=True))


def test_only_answers_from_the_answer_cache_are_kept_for_replay(tmp_path):
    # A listing (never in the answer cache) is rendered per request and kept nowhere: keeping
    # it as a replay would only hold memory (and the access log's tail cache would keep it).
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.txt").write_text("f\n")
    (tmp_path / "a.txt").write_text("hello\n")
    config = Config(root=str(tmp_path), quiet=True).validate()
    site = Site(config, single_thread=True)
    parser = HeadParser(Limits.from_config(config), site)
    conn = HttpConnection(site, parser=parser, peer="127.0.0.1")
    for raw in (b"GET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n", GET, GET):
        conn.receive(raw)
        exchange = conn.next_exchange(5.0)
        conn.response_done(exchange.plan, 5.0)
    listing, answer = parser.parse_head(b"GET /dir/ HTTP/1.1\r\nHost: t\r\n\r\n"), \
        parser.parse_head(GET)
    assert listing.last is None
    assert answer.last is not None and answer.last.exchange is exchange and exchange.shared
