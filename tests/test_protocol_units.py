"""Drive reactor_http.protocol.HttpConnection with bytes and a fake clock only (no sockets).

Also reactor_http.deadlines.DeadlineQueue with a fake clock. Plans whose body is a file region are
closed by the tests, as an engine would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reactor_http.config import Config
from reactor_http.deadlines import DeadlineQueue
from reactor_http.messages import FileRegion
from reactor_http.livereload import OUTBOX_MAX, Hub
from reactor_http.protocol import (EVICT_MIN_IDLE, READ_STATES, STATES, STREAM_STATES,
                                   TIMEOUT_KINDS, TRANSITIONS, WRITE_STATES, CloseReason,
                                   ConnState, Event, HttpConnection, Interest,
                                   ProtocolViolation, Timer, evict_min_idle)
from reactor_http.website import Site

S, E = ConnState, Event
NOW = 1000.0


@pytest.fixture
def site(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello a\n")
    (tmp_path / "b.txt").write_bytes(b"hello b\n")
    (tmp_path / "big.bin").write_bytes(b"z" * 200_000)
    return Site(Config(root=str(tmp_path), quiet=True).validate())


def make_conn(site, **overrides) -> HttpConnection:
    if overrides:
        site = Site(Config(root=site.config.root, quiet=True, **overrides).validate())
    return HttpConnection(site)


def request(path="/a.txt", version="1.1", *fields: str) -> bytes:
    lines = [f"GET {path} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: t")
    lines.extend(fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(exchange) -> int:
    return exchange.plan.status


def head_bytes(exchange) -> bytes:
    first = exchange.plan.segments[0]
    assert isinstance(first, bytes)
    return first


def complete(conn: HttpConnection, exchange) -> ConnState:
    """Play the engine: 'send' the exchange, report the head if a file follows, finish it."""
    if any(isinstance(segment, FileRegion) for segment in exchange.plan.segments):
        conn.head_sent()
        assert conn.state is S.SENDING_BODY
    exchange.close()
    return conn.response_done(exchange.plan)


def serve_all(conn: HttpConnection, data: bytes, now: float = NOW) -> list:
    """Feed data and answer every complete request in it, in order; returns (status, head)s."""
    conn.receive(data)
    answers = []
    for _ in range(100):
        exchange = conn.next_exchange(now)
        if exchange is None:
            break
        answers.append((exchange.plan.status, head_bytes(exchange), exchange.plan.keep_alive))
        state = complete(conn, exchange)
        if state is not S.READING_HEAD:
            break
    return answers


# ---- the transition table -----------------------------------------------------------------------

# Each test states one rule of the design, written independently of the table in protocol.py, so
# an edit to the table that breaks a rule fails the test that names it.

LIVE_STATES = set(ConnState) - {S.CLOSED}
#: States waiting for the client's request bytes (a timeout there means a slow client).
REQUEST_STATES = {S.READING_HEAD, S.READING_BODY}


def rows(event: Event) -> dict:
    """The table's rows for one event, as {from state: to state}."""
    return {state: target for (state, ev), target in TRANSITIONS.items() if ev is event}


def test_every_live_state_can_be_aborted_to_closed():
    assert {state for state in LIVE_STATES if TRANSITIONS.get((state, E.ABORT)) is S.CLOSED} \
        == LIVE_STATES


def test_nothing_leaves_closed_and_only_abort_is_accepted_there():
    assert {event: target for (state, event), target in TRANSITIONS.items()
            if state is S.CLOSED} == {E.ABORT: S.CLOSED}


def test_every_state_is_reachable_from_idle_or_handshaking():
    reached, frontier = set(), {S.IDLE, S.HANDSHAKING}
    while frontier:
        reached |= frontier
        frontier = {target for (state, _), target in TRANSITIONS.items()
                    if state in frontier} - reached
    assert reached == set(ConnState)


def test_no_state_is_a_trap():
    # From every state some sequence of events ends the connection.
    ends = {S.CLOSED}
    while True:
        more = {state for (state, _), target in TRANSITIONS.items() if target in ends} - ends
        if not more:
            break
        ends |= more
    assert ends == set(ConnState)


def test_every_waiting_state_has_a_timeout():
    # A connection waiting to read, to write, or on its TLS handshake is bounded by a timer.
    # An event stream has no idle timer, but its send timer runs while a message is going out.
    assert READ_STATES | WRITE_STATES | STREAM_STATES | {S.HANDSHAKING} <= set(rows(E.TIMEOUT))


def test_a_timeout_mid_request_answers_408_and_elsewhere_closes():
    timeouts = rows(E.TIMEOUT)
    for state, target in timeouts.items():
        assert target is (S.WRITING_HEAD if state in REQUEST_STATES else S.CLOSED), state


def test_eof_is_read_only_while_reading_and_always_closes():
    # The engine notices the peer's close only when it reads (a stream reads for nothing else);
    # nothing can be sent after it.
    eof = rows(E.EOF)
    assert set(eof) == (READ_STATES | STREAM_STATES | {S.HANDSHAKING}) - {S.CLOSED}
    assert set(eof.values()) == {S.CLOSED}


def test_data_moves_only_an_idle_connection():
    # Bytes while reading extend the request, while writing wait in the buffer (pipelining),
    # while closing are drained: only the first byte after IDLE starts a request.
    data = rows(E.DATA)
    assert data == {**{state: state for state in data if state is not S.IDLE},
                    S.IDLE: S.READING_HEAD}
    assert WRITE_STATES | {S.READING_HEAD, S.READING_BODY, S.CLOSING} <= set(data)


def test_a_response_is_finished_only_from_a_writing_state():
    for event, target in ((E.DONE_IDLE, S.IDLE), (E.DONE_PIPELINED, S.READING_HEAD),
                          (E.DONE_CLOSE, S.CLOSING)):
        assert rows(event) == {state: target for state in WRITE_STATES}, event
    assert rows(E.HEAD_SENT) == {S.WRITING_HEAD: S.SENDING_BODY}
    # A response is ready once a request has been read, or in HANDSHAKING when the client
    # spoke plain HTTP to the HTTPS port (a 400 in clear text).
    assert rows(E.RESPONSE_READY) == {state: S.WRITING_HEAD
                                      for state in REQUEST_STATES | {S.HANDSHAKING}}
    # The compound move of a whole known request answered at once starts only from IDLE.
    assert rows(E.WHOLE_REQUEST) == {S.IDLE: S.WRITING_HEAD}
    assert rows(E.HEAD_COMPLETE) == {S.READING_HEAD: S.READING_BODY}


def test_the_handshake_happens_once_at_the_start():
    assert rows(E.HANDSHAKE_DONE) == {S.HANDSHAKING: S.IDLE}
    assert S.HANDSHAKING not in TRANSITIONS.values()


def test_interest_sets_partition_the_live_states():
    # HANDSHAKING waits on whatever the TLS library asks for (read or write), so the engine
    # decides its interest; every other live state has a fixed one.
    # A stream reads (for EOF) and, while a message is going out, writes too: its own set.
    # A produced body whose producer is behind (--archives) waits for the producer alone.
    assert READ_STATES | WRITE_STATES | STREAM_STATES | {S.AWAITING_BODY} == \
        set(ConnState) - {S.CLOSED, S.HANDSHAKING}
    assert not READ_STATES & WRITE_STATES
    assert not (READ_STATES | WRITE_STATES) & STREAM_STATES


def test_a_stream_opens_only_after_its_head_and_only_a_stream_is_notified():
    assert rows(E.STREAM_OPEN) == {S.WRITING_HEAD: S.STREAMING}
    assert rows(E.NOTIFY) == {S.STREAMING: S.STREAMING}
    # STREAMING is entered by STREAM_OPEN only, and left for CLOSED only.
    assert {(state, event) for (state, event), target in TRANSITIONS.items()
            if target is S.STREAMING and state is not S.STREAMING} == \
        {(S.WRITING_HEAD, E.STREAM_OPEN)}
    assert {target for (state, _), target in TRANSITIONS.items() if state is S.STREAMING} == \
        {S.STREAMING, S.CLOSED}


def test_a_tls_connection_starts_handshaking_then_serves(site):
    conn = HttpConnection(site, tls=True)
    assert conn.state is S.HANDSHAKING
    with pytest.raises(ProtocolViolation):
        conn.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.handshake_done()
    assert conn.state is S.IDLE
    conn.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.next_exchange(0.0).plan.status in (200, 404)


def test_a_handshake_timeout_closes_with_its_reason(site):
    conn = HttpConnection(site, tls=True)
    assert conn.timeout(10.0) is None
    assert conn.state is S.CLOSED
    assert conn.close_reason_text == "TLS handshake timeout"


@pytest.mark.parametrize("state, event", [
    (state, event) for state in ConnState for event in Event
    if (state, event) not in TRANSITIONS])
def test_every_move_missing_from_the_table_raises(site, state, event):
    conn = make_conn(site)
    conn.state = state
    with pytest.raises(ProtocolViolation):
        conn._move(event)
    assert conn.state is state


def test_illegal_calls_from_an_engine_raise(site):
    conn = make_conn(site)
    with pytest.raises(ProtocolViolation):
        conn.head_sent()                 # nothing is being written
    conn.receive(request())
    exchange = conn.next_exchange(NOW)
    exchange.close()
    conn.response_done(exchange.plan)
    assert conn.state is S.IDLE
    with pytest.raises(ProtocolViolation):
        conn.response_done(exchange.plan)         # the same plan cannot finish twice
    conn.abort("reset")
    with pytest.raises(ProtocolViolation):
        conn.receive(b"")                # EOF after CLOSED


# ---- one request, keep-alive decisions --------------------------------------------------------

def test_one_request_walks_idle_reading_writing_idle(site):
    conn = make_conn(site)
    assert conn.state is S.IDLE
    conn.receive(b"GET /a.txt HT")
    assert conn.state is S.READING_HEAD
    assert conn.next_exchange(NOW) is None
    conn.receive(b"TP/1.1\r\nHost: t\r\n\r\n")
    exchange = conn.next_exchange(NOW)
    assert conn.state is S.WRITING_HEAD
    assert exchange.plan.status == 200 and exchange.plan.keep_alive
    assert b"hello a\n" in b"".join(s for s in exchange.plan.segments if isinstance(s, bytes))
    assert complete(conn, exchange) is S.IDLE
    assert conn.requests_served == 1


def test_file_region_plan_goes_through_sending_body(site):
    conn = make_conn(site)
    conn.receive(request("/big.bin"))
    exchange = conn.next_exchange(NOW)
    assert any(isinstance(s, FileRegion) for s in exchange.plan.segments)
    conn.head_sent()
    assert conn.state is S.SENDING_BODY
    exchange.close()
    assert conn.response_done(exchange.plan) is S.IDLE


@pytest.mark.parametrize("version, fields, keep_alive", [
    ("1.1", [], True),
    ("1.1", ["Connection: close"], False),
    ("1.0", [], False),
    ("1.0", ["Connection: keep-alive"], True),
    ("1.0", ["Connection: keep-alive, close"], False),
])
def test_keep_alive_decision_is_written_into_the_head(site, version, fields, keep_alive):
    conn = make_conn(site)
    [(status, head, persisted)] = serve_all(conn, request("/a.txt", version, *fields))
    assert status == 200 and persisted is keep_alive
    if keep_alive:
        assert b"\r\nConnection: keep-alive\r\n" in head
        assert b"\r\nKeep-Alive: timeout=5, max=100\r\n" in head
        assert conn.state is S.IDLE
    else:
        assert b"\r\nConnection: close\r\n" in head
        assert b"Keep-Alive:" not in head
        assert conn.state is S.CLOSING
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


def test_max_requests_closes_after_the_last_one(site):
    conn = make_conn(site, max_requests=3)
    answers = serve_all(conn, request() * 5)
    assert [persisted for _, _, persisted in answers] == [True, True, False]
    assert b"Keep-Alive: timeout=5, max=3" in answers[0][1]
    assert b"Connection: close" in answers[2][1]
    assert conn.state is S.CLOSING
    assert conn.close_reason is CloseReason.MAX


def test_draining_connection_answers_then_closes(site):
    conn = make_conn(site)
    conn.draining = True
    [(status, head, persisted)] = serve_all(conn, request())
    assert status == 200 and not persisted
    assert conn.close_reason is CloseReason.STOP


def test_fractional_keepalive_timeout_in_header(site):
    # The Keep-Alive timeout parameter is whole seconds; rounded down (as Apache does), so a
    # client never believes a connection lives longer than it does.
    conn = make_conn(site, keepalive_timeout=2.5)
    [(_, head, _)] = serve_all(conn, request())
    assert b"Keep-Alive: timeout=2, max=100" in head


# ---- pipelining --------------------------------------------------------------------------------

def test_pipelined_requests_are_answered_in_order(site):
    conn = make_conn(site)
    data = request("/a.txt") + request("/missing") + request("/b.txt")
    answers = serve_all(conn, data)
    assert [status for status, _, _ in answers] == [200, 404, 200]
    conn2 = make_conn(site)
    conn2.receive(data)
    bodies = []
    for _ in range(3):
        exchange = conn2.next_exchange(NOW)
        bodies.append(b"".join(s for s in exchange.plan.segments if isinstance(s, bytes)))
        expected = S.READING_HEAD if len(bodies) < 3 else S.IDLE
        assert complete(conn2, exchange) is expected
    assert b"hello a" in bodies[0] and b"hello b" in bodies[2]


def test_no_second_plan_until_the_first_is_done(site):
    conn = make_conn(site)
    conn.receive(request() + request("/b.txt"))
    exchange = conn.next_exchange(NOW)
    assert conn.next_exchange(NOW) is None     # still WRITING_HEAD
    complete(conn, exchange)
    assert conn.state is S.READING_HEAD
    assert conn.next_exchange(NOW).plan.status == 200


def test_bytes_arriving_while_writing_are_kept_for_the_next_request(site):
    conn = make_conn(site)
    conn.receive(request())
    exchange = conn.next_exchange(NOW)
    conn.receive(request("/b.txt")[:10])
    assert conn.state is S.WRITING_HEAD
    assert complete(conn, exchange) is S.READING_HEAD
    assert conn.next_exchange(NOW) is None
    conn.receive(request("/b.txt")[10:])
    assert conn.next_exchange(NOW).plan.status == 200


@pytest.mark.parametrize("body_fields, body", [
    (["Content-Length: 11"], b"GET /x HTTP"),
    (["Transfer-Encoding: chunked"],
     b"b;ext=1\r\nGET /x HTTP\r\n3\r\n1.1\r\n0\r\nTrailer: GET /y\r\n\r\n"),
])
def test_request_body_is_discarded_so_the_next_request_is_parsed(site, body_fields, body):
    conn = make_conn(site)
    first = ("POST /a.txt HTTP/1.1\r\nHost: t\r\n" + "".join(f + "\r\n" for f in body_fields)
             + "\r\n").encode() + body
    for cut in (None, 1):
        conn = make_conn(site)
        data = first + request("/b.txt")
        answers = []
        pieces = [data] if cut is None else [data[i:i + 1] for i in range(len(data))]
        for piece in pieces:
            answers += serve_all(conn, piece)
        assert [status for status, _, _ in answers] == [405, 200]
        assert conn.state is S.IDLE


def test_body_over_the_limit_is_413_and_closes(site):
    conn = make_conn(site)
    data = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" \
           b"200000\r\n" + b"x" * 10
    [(status, head, persisted)] = serve_all(conn, data)
    assert status == 413 and not persisted
    assert conn.state is S.CLOSING


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
])
def test_protocol_errors_answer_then_close_and_drop_pipelined_bytes(site, data, status):
    conn = make_conn(site)
    answers = serve_all(conn, data + request())
    assert [(s, p) for s, _, p in answers] == [(status, False)]
    assert conn.state is S.CLOSING
    assert conn.close_reason is CloseReason.ERROR
    assert not conn.buffer
    conn.receive(request())          # the peer keeps talking while we linger: dropped
    assert conn.state is S.CLOSING and not conn.buffer
    conn.receive(b"")
    assert conn.state is S.CLOSED


def test_empty_lines_before_a_request_are_skipped(site):
    conn = make_conn(site)
    assert serve_all(conn, b"\r\n\r\n") == []
    assert not conn.buffer
    [(status, _, _)] = serve_all(conn, b"\n" + request())
    assert status == 200


# ---- timeouts and EOF ------------------------------------------------------------------------

def test_timeout_while_reading_head_is_408_then_close(site):
    conn = make_conn(site)
    conn.receive(b"GET / HTTP/1.1\r\nHost")
    assert conn.next_exchange(NOW) is None
    exchange = conn.timeout(NOW + 10)
    assert exchange.plan.status == 408 and not exchange.plan.keep_alive
    assert b"Connection: close" in head_bytes(exchange)
    assert conn.state is S.WRITING_HEAD
    assert conn.close_reason is CloseReason.TIMEOUT
    assert complete(conn, exchange) is S.CLOSING


def test_timeout_while_reading_body_is_408(site):
    conn = make_conn(site)
    conn.receive(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
    assert conn.next_exchange(NOW) is None
    assert conn.state is S.READING_BODY
    assert conn.timeout(NOW + 10).plan.status == 408


@pytest.mark.parametrize("reason_state, reason", [
    (S.IDLE, CloseReason.IDLE), (S.CLOSING, CloseReason.CLOSE), (S.WRITING_HEAD, CloseReason.SEND),
    (S.SENDING_BODY, CloseReason.SEND), (S.STREAMING, CloseReason.SEND)])
def test_timeout_elsewhere_closes_without_a_response(site, reason_state, reason):
    conn = make_conn(site)
    conn.state = reason_state
    assert conn.timeout(NOW) is None
    assert conn.state is S.CLOSED
    assert conn.close_reason is reason


def test_eof_when_idle_or_mid_head_closes_quietly(site):
    conn = make_conn(site)
    conn.receive(b"")
    assert conn.state is S.CLOSED and conn.close_reason is CloseReason.EOF
    conn = make_conn(site)
    conn.receive(b"GET / HT")
    conn.receive(b"")
    assert conn.state is S.CLOSED


def test_abort_from_any_live_state(site):
    for state in ConnState:
        conn = make_conn(site)
        conn.state = state
        conn.abort("reset")
        assert conn.state is S.CLOSED


def test_responder_bug_costs_one_500_not_the_connection_machinery(site, monkeypatch):
    import reactor_http.protocol as protocol

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(protocol, "respond", broken)
    conn = make_conn(site)
    conn.receive(request())
    exchange = conn.next_exchange(NOW)
    assert exchange.plan.status == 500 and not exchange.plan.keep_alive
    assert isinstance(conn.internal_error, RuntimeError)


def test_a_500_to_head_has_no_body(site, monkeypatch):
    from reactor_http import protocol

    def broken(request, site, now):
        raise RuntimeError("bug")

    monkeypatch.setattr(protocol, "respond", broken)
    conn = make_conn(site)
    conn.receive(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    exchange = conn.next_exchange(0.0)
    assert exchange.plan.status == 500
    wire = b"".join(s for s in exchange.plan.segments if isinstance(s, bytes))
    head, _, body = wire.partition(b"\r\n\r\n")
    assert body == b""
    assert b"Content-Length: " in head


def test_error_response_never_echoes_request_bytes(site):
    marker = "<script>alert(1)</script>"
    conn = make_conn(site)
    conn.receive(f"GET /{marker} HTTP/1.1\r\nHost: t\r\nX {marker}: v\r\n\r\n".encode())
    exchange = conn.next_exchange(NOW)
    assert exchange.plan.status == 400
    sent = b"".join(s for s in exchange.plan.segments if isinstance(s, bytes))
    assert b"script" not in sent


# ---- DeadlineQueue -------------------------------------------------------------------------------

def test_deadline_queue_arm_expire_in_order():
    queue = DeadlineQueue("idle", 5.0)
    assert queue.next_deadline() is None and len(queue) == 0
    queue.arm("a", 0.0)
    queue.arm("b", 1.0)
    queue.arm("c", 2.0)
    assert queue.next_deadline() == 5.0
    assert queue.pop_expired(4.999) == []
    assert queue.pop_expired(6.0) == ["a", "b"]
    assert "c" in queue and "a" not in queue
    assert queue.next_deadline() == 7.0
    assert queue.pop_expired(100.0) == ["c"]
    assert len(queue) == 0


def test_deadline_queue_rearm_moves_to_the_back():
    queue = DeadlineQueue("idle", 5.0)
    queue.arm("a", 0.0)
    queue.arm("b", 1.0)
    queue.arm("a", 3.0)               # activity on a: it now expires at 8
    assert queue.next_deadline() == 6.0
    assert queue.pop_expired(7.0) == ["b"]
    assert queue.pop_expired(8.0) == ["a"]


def test_deadline_queue_disarm_and_expiry_at_exactly_the_deadline():
    queue = DeadlineQueue("send", 1.0)
    queue.arm("a", 0.0)
    queue.arm("b", 0.0)
    queue.disarm("a")
    queue.disarm("never-armed")
    assert len(queue) == 1
    assert queue.pop_expired(1.0) == ["b"]


def test_deadline_queue_pop_stops_at_the_first_live_entry():
    queue = DeadlineQueue("idle", 10.0)
    for i in range(1000):
        queue.arm(i, float(i))
    assert queue.pop_expired(10.0 + 499) == list(range(500))
    assert len(queue) == 500
    assert queue.next_deadline() == 510.0


# ---- who makes room at the connection cap, who lingers ------------------------------------------

def test_only_a_connection_quiet_for_the_minimum_may_make_room_at_the_cap(site):
    # A keep-alive connection answered a moment ago is busy (its next request is likely on the
    # wire): it may be evicted only once quiet for EVICT_MIN_IDLE (half a short keep-alive).
    conn = make_conn(site)
    assert conn.evictable_at() is None  # fresh: its first request is on its way
    conn.receive(request())
    assert conn.evictable_at() is None  # mid-request
    exchange = conn.next_exchange(NOW)
    assert conn.evictable_at() is None  # mid-response
    exchange.close()
    assert conn.response_done(exchange.plan, NOW) is S.IDLE
    assert conn.evictable_at() == NOW + EVICT_MIN_IDLE
    conn.receive(b"GET /a")
    assert conn.evictable_at() is None  # its next request has begun
    short = make_conn(site, keepalive_timeout=0.5)
    serve_all(short, request())
    assert short.evictable_at() == 0.25  # (serve_all finishes at 0.0)
    assert evict_min_idle(5.0) == EVICT_MIN_IDLE


def test_a_stream_is_quiet_since_its_last_change_not_its_last_heartbeat(site):
    conn = live_conn(site)
    open_stream(conn)  # its head went out at 0.0 (complete's clock)
    assert conn.evictable_at() == EVICT_MIN_IDLE
    conn.notify(3)  # a heartbeat
    assert conn.evictable_at() == EVICT_MIN_IDLE
    conn.notify(100, NOW)  # a change
    assert conn.evictable_at() == NOW + EVICT_MIN_IDLE
    conn.evict()
    assert conn.state is S.CLOSED and conn.close_reason is CloseReason.EVICTED


@pytest.mark.parametrize("data, linger", [
    (request("/a.txt", "1.1", "Connection: close"), False),   # asked to close, nothing more
    (request("/a.txt", "1.0"), False),                        # HTTP/1.0 without keep-alive
    (request("/a.txt", "1.1", "Connection: close") + b"GET /", True),  # more of it buffered
    (request("/a.txt", "1.1", "Connection: close") + request(), True),  # a pipelined request
    (request("/a.txt", "1.1", "Connection: close", "Content-Length: 20") + b"x" * 10, False),
    (b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2000000\r\n\r\nxx",
     True),                                                   # a refused body: our 413 lingers
    (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", True),  # an error (no Host) lingers
])
def test_lingering_only_when_the_client_may_still_be_sending(site, data, linger):
    # nginx's lingering_close heuristic: a client that asked to close and has nothing more
    # buffered is closed at once; otherwise we half-close and drain, as before.
    conn = make_conn(site)
    conn.receive(data)
    for _ in range(3):
        exchange = conn.next_exchange(NOW)
        if exchange is not None:
            break
        conn.receive(b"x" * 10)  # the rest of a body the request announced
    exchange.close()
    assert conn.response_done(exchange.plan, NOW) is S.CLOSING
    assert conn.linger_wanted is linger
    if not linger:
        conn.close_at_once()
        assert conn.state is S.CLOSED and conn.close_reason is CloseReason.CLOSE


@pytest.mark.parametrize("fields, early", [
    ("Expect: 100-continue", True), ("Expect: 100-Continue", True),
    ("Connection: close\r\nExpect: 100-continue", True),
    ("Expect: something-else", False), ("", False)])
def test_a_client_waiting_for_100_continue_is_answered_from_the_head(site, fields, early):
    # RFC 9110 section 10.1.1: the refusal goes out before the body, the connection then
    # closes, lingering (a body sent anyway is dropped, not parsed); without the expectation
    # the body is awaited as before.
    conn = make_conn(site)
    extra = fields + "\r\n" if fields else ""
    conn.receive(f"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n{extra}\r\n".encode())
    exchange = conn.next_exchange(NOW)
    if not early:
        assert exchange is None and conn.state is S.READING_BODY
        return
    assert exchange is not None and status_of(exchange) == 405
    assert not exchange.plan.keep_alive and b"Connection: close\r\n" in head_bytes(exchange)
    exchange.close()
    assert conn.response_done(exchange.plan, NOW) is S.CLOSING
    assert conn.linger_wanted


def test_100_continue_with_the_body_buffered_or_in_http_1_0_waits_for_the_body(site):
    for data in (b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                 b"Expect: 100-continue\r\n\r\nbo",
                 b"POST /a.txt HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"):
        conn = make_conn(site)
        conn.receive(data)
        assert conn.next_exchange(NOW) is None and conn.state is S.READING_BODY


def test_100_continue_with_an_empty_body_keeps_the_connection(site):
    # Content-Length: 0 announces no content (RFC 9110 section 10.1.1: nothing to wait for), so
    # the request is answered as any other and the connection persists.
    conn = make_conn(site)
    conn.receive(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    exchange = conn.next_exchange(NOW)
    assert exchange is not None and status_of(exchange) == 200 and exchange.plan.keep_alive
    exchange.close()
    assert conn.response_done(exchange.plan, NOW) is S.IDLE


def test_a_connection_the_server_closes_for_its_own_reasons_lingers(site):
    # --max-requests: the client did not ask to close and may be sending its next request.
    conn = make_conn(site, max_requests=1)
    serve_all(conn, request())
    assert conn.state is S.CLOSING and conn.linger_wanted


# ---- --live-reload's event stream -------------------------------------------------------------


def live_conn(site) -> HttpConnection:
    """A connection of a site served with --live-reload (its hub set, as server.py does)."""
    live = Site(Config(root=site.config.root, quiet=True, live_reload=True).validate(),
                live=Hub())
    return HttpConnection(live)


def open_stream(conn: HttpConnection):
    """Request the stream and send its plan: the connection is then STREAMING."""
    conn.receive(request("/__livereload"))
    exchange = conn.next_exchange(NOW)
    assert complete(conn, exchange) is S.STREAMING
    return exchange


def test_the_stream_answers_its_head_and_retry_then_streams(site):
    conn = live_conn(site)
    exchange = open_stream(conn)
    wire = b"".join(exchange.plan.segments)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: text/event-stream\r\n" in head
    assert b"\r\nCache-Control: no-store\r\n" in head
    # Delimited by the connection's close (RFC 9112 section 6.3): no length, no keep-alive.
    assert b"Content-Length" not in head and b"\r\nConnection: close" in head
    assert body == b"retry: 1000\n\n"
    conn.notify(100)
    conn.receive(b"stray bytes")  # dropped, the stream stays
    assert conn.state is S.STREAMING and not conn.buffer
    conn.receive(b"")
    assert conn.state is S.CLOSED and conn.close_reason_text == "client closed"


def test_a_stream_ends_at_once_on_a_stop_and_is_never_opened_while_stopping(site):
    conn = live_conn(site)
    open_stream(conn)
    assert conn.begin_stop(NOW) == 0.0
    conn = live_conn(site)
    conn.draining = True
    conn.receive(request("/__livereload"))
    exchange = conn.next_exchange(NOW)
    assert complete(conn, exchange) is S.CLOSING  # head and retry out, then closed: it reconnects


def test_a_stream_piling_up_unsent_bytes_is_dropped(site):
    conn = live_conn(site)
    open_stream(conn)
    conn.notify(OUTBOX_MAX)
    assert conn.state is S.STREAMING
    conn.notify(OUTBOX_MAX + 1)
    assert conn.state is S.CLOSED and conn.close_reason_text == "event stream not read"


@pytest.mark.parametrize("raw, status, streaming", [
    (b"HEAD /__livereload HTTP/1.1\r\nHost: x\r\n\r\n", 200, False),
    (b"POST /__livereload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 405, False),
    (b"OPTIONS /__livereload HTTP/1.1\r\nHost: x\r\n\r\n", 204, False),
    # A body is read and dropped as for any GET; a Range is ignored (RFC 9110 section 14.2
    # lets a server ignore it; a stream has no ranges).
    (b"GET /__livereload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", 200, True),
    (b"GET /__livereload HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", 200, True),
])
def test_other_requests_to_the_stream_get_ordinary_answers(site, raw, status, streaming):
    conn = live_conn(site)
    conn.receive(raw)
    exchange = conn.next_exchange(NOW)
    assert status_of(exchange) == status
    state = complete(conn, exchange)
    assert (state is S.STREAMING) is streaming
    if not streaming:
        assert state is S.IDLE  # answered as any request, the connection kept


def test_without_the_flag_the_stream_path_is_an_ordinary_path(site):
    conn = make_conn(site)
    conn.receive(request("/__livereload"))
    exchange = conn.next_exchange(NOW)
    assert status_of(exchange) == 404
    assert complete(conn, exchange) is S.IDLE


@pytest.fixture
def looks(monkeypatch) -> list:
    """Every path the answer cache stats from now on (Site._current_identity), in order."""
    seen = []
    real = Site._current_identity
    monkeypatch.setattr(Site, "_current_identity",
                        staticmethod(lambda path: seen.append(path) or real(path)))
    return seen


def cached_conn(site) -> HttpConnection:
    """A connection that answered request() once by the usual route: its answer is cached."""
    conn = make_conn(site)
    conn.receive(request())
    complete(conn, conn.next_exchange(NOW))
    return conn


def test_requests_at_one_instant_share_one_stat_and_a_new_instant_looks_again(site, looks):
    # The reactor hands every request of one loop turn the same `now`: they may share one stat
    # (and the plan built from it); a later instant must see a file changed on disk.
    site = Site(site.config, single_thread=True)
    conn = cached_conn(site)
    looks.clear()
    first = conn.take_request(request(), NOW + 0.25)
    complete(conn, first)
    again = conn.take_request(request(), NOW + 0.25)
    complete(conn, again)
    assert len(looks) == 1 and again.plan is first.plan and conn.requests_served == 3
    (Path(site.config.root) / "a.txt").write_bytes(b"changed, and longer\n")
    later = conn.take_request(request(), NOW + 0.5)
    assert len(looks) == 2 and later is None  # the cached answer is stale: the usual route
    conn.receive(request())
    fresh = conn.next_exchange(NOW + 0.5)
    assert head_bytes(fresh).endswith(b"changed, and longer\n")


def test_without_shared_instants_every_request_looks_at_the_file(site, looks):
    # The threaded engine's requests never share an instant: each one stats the file.
    assert not site.stat_per_instant
    conn = cached_conn(site)
    looks.clear()
    for _ in range(3):
        complete(conn, conn.take_request(request(), NOW))
    assert len(looks) == 3


def test_a_compressed_answer_is_counted_for_every_request_of_an_instant(tmp_path):
    (tmp_path / "app.js").write_bytes(b"function f() { return 1; }\n" * 200)
    site = Site(Config(root=str(tmp_path), quiet=True).validate(), single_thread=True)
    conn = HttpConnection(site)
    raw = request("/app.js", "1.1", "Accept-Encoding: gzip")
    conn.receive(raw)
    complete(conn, conn.next_exchange(NOW))
    before = site.compression.hits
    for _ in range(3):
        exchange = conn.take_request(raw, NOW + 0.25)
        assert b"Content-Encoding: gzip" in head_bytes(exchange)
        complete(conn, exchange)
    assert site.compression.hits - before == 3


@pytest.mark.parametrize("fields, clients", [
    ((), ("127.0.0.1", "127.0.0.2")),                           # no header: each its own peer
    (("X-Forwarded-For: 203.0.113.7",), ("203.0.113.7", "203.0.113.7")),
    (("X-Forwarded-For: nonsense",), ("-", "-")),             # unusable: unknown, never the peer
])
def test_the_forwarded_client_is_resolved_once_per_head_and_the_peer_per_connection(
        site, fields, clients):
    # Two connections from two trusted proxies share one head memo (as an engine's do): the
    # head's resolved X-Forwarded-For is shared, the peer it falls back to is each connection's.
    trusted = Site(Config(root=site.config.root, quiet=True,
                          trust_proxy=("127.0.0.0/8",)).validate())
    first = HttpConnection(trusted, peer="127.0.0.1")
    second = HttpConnection(trusted, parser=first.parser, peer="127.0.0.2")
    seen = []
    for conn in (first, second, first, second):   # the 2nd round takes the short route
        exchange = conn.take_request(request("/a.txt", "1.1", *fields), NOW) or \
            conn.receive(request("/a.txt", "1.1", *fields)) or conn.next_exchange(NOW)
        seen.append(exchange.client)
        complete(conn, exchange)
    assert seen == [clients[0], clients[1]] * 2
