"""The per-connection state machine shared by both engines: events in, exchanges out.

Pure: no sockets, no clocks of its own, no threads. The engine feeds received bytes, asks for the
next exchange (an immutable response plan and the record the engine owns while sending it),
reports when the head and the body have gone out, and reports timeouts. Every state change is
looked up in the transition table (`TRANSITIONS`, by state in `_MOVES`); a move missing from the
table is a bug and raises (as in h11's _state.py). Every other fact about a state (what the
engine waits for, which timer runs, why a timeout closes, how --status counts it) is one row of
`STATES`.

Two routes reach an answer, and they share every decision: the usual one (`receive`,
`next_exchange`: buffer, parse, `responder.respond`, `_finish`) and the short one for a repeated
request head (`take_request`), which the site's declaration (`Site.replay_key`) and the
persistence predicate (`persist_below`) admit, and which ends in the same `_replay` and `_record`
steps. tests/test_routes.py proves them equal.

This module is also the one owner of every lifecycle decision (h11's rule): keep-alive (RFC 9112
section 9.3), written into the response head (Connection / Keep-Alive) and into the plan and
changed nowhere else; the lingering close (bytes drained in CLOSING, its byte budget, its end); who
is closed at once and who finishes first on a graceful stop; which connection may be closed to
admit a new one at the connection cap; and what a plain-HTTP client on the HTTPS port is told.
Engines only carry these decisions out.
"""

from __future__ import annotations

import enum
from . import errors
from .addresses import address_in, forwarded_client
from .headers import expects_continue
from typing import Final

from .livereload import OUTBOX_MAX
from .messages import NO_BODY, Exchange, Request, Response, ResponsePlan, status_line
from .parser import BodyDiscarder, Limits, parse_head, skip_empty_lines
from .responder import error_response, respond
from .website import Site, plain_key


class ConnState(enum.Enum):
    """Where a connection is in its request/response cycle."""

    # Members are singletons: identity hashing is correct and, unlike Enum's, runs in C.
    __hash__ = object.__hash__

    HANDSHAKING = "handshaking"    # TLS only: the handshake is in progress
    IDLE = "idle"                  # between requests: waiting for a first byte
    READING_HEAD = "reading_head"  # some of a request head has arrived
    READING_BODY = "reading_body"  # head parsed; its body is being read and discarded
    WRITING_HEAD = "writing_head"  # an answer is ready; its head (and in-memory body) goes out
    SENDING_BODY = "sending_body"  # the head is out; file regions are going out
    # --archives: a produced body's producer is behind the socket; the engine waits for its
    # wake-up, not for the socket (the send timer runs on from the last byte sent).
    AWAITING_BODY = "awaiting_body"
    CLOSING = "closing"            # last response out; half-closed, draining the peer
    # --live-reload: an event stream's head is out; it waits for changes to send (no idle or
    # header timer; the send timer runs while a message is going out). Reads only to see EOF.
    STREAMING = "streaming"
    CLOSED = "closed"              # terminal


class Event(enum.Enum):
    """What can happen to a connection."""

    __hash__ = object.__hash__

    HANDSHAKE_DONE = "handshake_done"  # TLS: the handshake completed
    DATA = "data"                    # bytes arrived
    # Compound: bytes arrived that are exactly one whole request, and its response is ready
    # (DATA + RESPONSE_READY in one move: HttpConnection.take_request).
    WHOLE_REQUEST = "whole_request"
    HEAD_COMPLETE = "head_complete"  # a request head parsed and its body must be discarded
    RESPONSE_READY = "response_ready"  # an exchange (its response plan) was produced
    HEAD_SENT = "head_sent"          # the head went out and file regions follow
    DONE_IDLE = "done_idle"          # response sent, persistent, nothing buffered
    DONE_PIPELINED = "done_pipelined"  # response sent, persistent, more request bytes buffered
    DONE_CLOSE = "done_close"        # response sent, the connection must not persist
    EOF = "eof"                      # the peer closed its side
    TIMEOUT = "timeout"              # the state's timer expired
    ABORT = "abort"                  # I/O error or shutdown: drop at once
    STREAM_OPEN = "stream_open"      # an event stream's head (and retry line) went out
    NOTIFY = "notify"                # a change (or a heartbeat) is to go out on a stream
    STARVED = "starved"              # a produced body has nothing made to send yet
    PRODUCED = "produced"            # its producer made more (or ended)
    # CLOSING: the client asked to close and nothing more of it is buffered, here or in the
    # kernel: closed without lingering (nginx's lingering_close heuristic, see linger_wanted).
    NO_LINGER = "no_linger"


S, E = ConnState, Event
TRANSITIONS: dict[tuple[ConnState, Event], ConnState] = {
    (S.HANDSHAKING, E.HANDSHAKE_DONE): S.IDLE,
    (S.HANDSHAKING, E.EOF): S.CLOSED,
    (S.HANDSHAKING, E.TIMEOUT): S.CLOSED,
    (S.HANDSHAKING, E.RESPONSE_READY): S.WRITING_HEAD,  # plain HTTP on the HTTPS port: a 400
    (S.IDLE, E.DATA): S.READING_HEAD,
    (S.IDLE, E.WHOLE_REQUEST): S.WRITING_HEAD,
    (S.IDLE, E.EOF): S.CLOSED,
    (S.IDLE, E.TIMEOUT): S.CLOSED,
    (S.READING_HEAD, E.DATA): S.READING_HEAD,
    (S.READING_HEAD, E.HEAD_COMPLETE): S.READING_BODY,
    (S.READING_HEAD, E.RESPONSE_READY): S.WRITING_HEAD,
    (S.READING_HEAD, E.EOF): S.CLOSED,
    (S.READING_HEAD, E.TIMEOUT): S.WRITING_HEAD,   # a 408 goes out, then we close
    (S.READING_BODY, E.DATA): S.READING_BODY,
    (S.READING_BODY, E.RESPONSE_READY): S.WRITING_HEAD,
    (S.READING_BODY, E.EOF): S.CLOSED,
    (S.READING_BODY, E.TIMEOUT): S.WRITING_HEAD,
    # Neither engine reads while a response is going out (pipelined bytes wait in the kernel:
    # backpressure); a sans-I/O driver that does may feed them, and they wait in the buffer.
    (S.WRITING_HEAD, E.DATA): S.WRITING_HEAD,
    (S.WRITING_HEAD, E.HEAD_SENT): S.SENDING_BODY,
    (S.WRITING_HEAD, E.DONE_IDLE): S.IDLE,
    (S.WRITING_HEAD, E.DONE_PIPELINED): S.READING_HEAD,
    (S.WRITING_HEAD, E.DONE_CLOSE): S.CLOSING,
    (S.WRITING_HEAD, E.TIMEOUT): S.CLOSED,
    (S.SENDING_BODY, E.DATA): S.SENDING_BODY,
    (S.SENDING_BODY, E.DONE_IDLE): S.IDLE,
    (S.SENDING_BODY, E.DONE_PIPELINED): S.READING_HEAD,
    (S.SENDING_BODY, E.DONE_CLOSE): S.CLOSING,
    (S.SENDING_BODY, E.TIMEOUT): S.CLOSED,
    # --archives' produced bodies (archive.py), in an engine that waits for their producer.
    (S.SENDING_BODY, E.STARVED): S.AWAITING_BODY,
    (S.AWAITING_BODY, E.PRODUCED): S.SENDING_BODY,
    (S.AWAITING_BODY, E.TIMEOUT): S.CLOSED,  # nothing went out for the send timeout
    (S.CLOSING, E.DATA): S.CLOSING,
    (S.CLOSING, E.EOF): S.CLOSED,
    (S.CLOSING, E.TIMEOUT): S.CLOSED,
    (S.CLOSING, E.NO_LINGER): S.CLOSED,
    # --live-reload's event stream (livereload.py). Bytes a client sends are dropped (an
    # EventSource sends none), within the lingering budget.
    (S.WRITING_HEAD, E.STREAM_OPEN): S.STREAMING,
    (S.STREAMING, E.NOTIFY): S.STREAMING,
    (S.STREAMING, E.DATA): S.STREAMING,
    (S.STREAMING, E.EOF): S.CLOSED,
    (S.STREAMING, E.TIMEOUT): S.CLOSED,  # the send timer: a client not reading its stream
}
# Any live state may be aborted (peer reset, server stop, unexpected error).
for _state in ConnState:
    if _state is not ConnState.CLOSED:
        TRANSITIONS[(_state, Event.ABORT)] = ConnState.CLOSED
    TRANSITIONS.setdefault((ConnState.CLOSED, Event.ABORT), ConnState.CLOSED)
del _state
# The same table by state, for _move: two identity-hashed lookups instead of building and
# hashing a (state, event) tuple on every move (a few moves per request).
_MOVES: dict[ConnState, dict[Event, ConnState]] = {state: {} for state in ConnState}
for (_state, _event), _target in TRANSITIONS.items():
    _MOVES[_state][_event] = _target
del _state, _event, _target

# The members the per-request paths use, as module names: an Enum member looked up on its
# class costs several times a global (Python 3.11 measured 77 ns against 15 ns).
IDLE, READING_HEAD, READING_BODY = S.IDLE, S.READING_HEAD, S.READING_BODY
CLOSING, STREAMING = S.CLOSING, S.STREAMING
WHOLE_REQUEST, DATA, RESPONSE_READY = E.WHOLE_REQUEST, E.DATA, E.RESPONSE_READY
DONE_IDLE, DONE_PIPELINED, DONE_CLOSE = E.DONE_IDLE, E.DONE_PIPELINED, E.DONE_CLOSE


CLOSE_FIELDS = b"Connection: close\r\n"
# Bodies up to this size (bytes) are rendered together with their head into one bytes object
# (replayed per head, see Replay), so an answer is one send of one object; larger ones are sent
# as head + body with sendmsg and are not copied (a 64 KiB copy per response adds up).
WIRE_CACHE_MAX_BODY = 16 * 1024

class CloseReason(enum.Enum):
    """Why a connection ended; the value is what the connection log says."""

    __hash__ = object.__hash__

    IDLE = "idle timeout"
    EOF = "client closed"
    MAX = "max requests"
    CLOSE = "connection: close"
    ERROR = "error"
    TIMEOUT = "request timeout"
    HANDSHAKE = "TLS handshake timeout"
    TLS = "TLS error"
    SEND = "send timeout"
    RESET = "connection reset"
    STOP = "server stopping"
    EVICTED = "longest idle, closed to admit a new connection at the connection cap"
    PLAINTEXT = "plain HTTP on the HTTPS port"
    DRAIN = "drain timeout"
    OVERFLOW = "event stream not read"


class Interest(enum.Enum):
    """What an engine waits for on a connection's socket in a state."""

    READ = "read"
    WRITE = "write"
    HANDSHAKE = "what the TLS handshake asks"   # read or write, as the last step said
    STREAM = "read, and write while a message is going out"
    NONE = "nothing"


class Timer(enum.Enum):
    """A kind of timeout: every connection waiting on one kind waits the same duration."""

    IDLE = "idle"      # --keepalive-timeout
    HEADER = "header"  # --header-timeout: a request head (and its body) or a TLS handshake
    SEND = "send"      # --send-timeout: the peer takes no bytes
    LINGER = "linger"  # LINGER_TIMEOUT: waiting for the peer's close after our last answer

    def seconds(self, config) -> float:
        """How long this kind waits under `config`."""
        if self is Timer.IDLE:
            return config.keepalive_timeout
        if self is Timer.HEADER:
            return config.header_timeout
        if self is Timer.SEND:
            return config.send_timeout
        return LINGER_TIMEOUT


class StateFacts:
    """One row of STATES: what an engine does while a connection is in a state."""

    __slots__ = ("interest", "timer", "timeout_reason", "timeout_kind")

    def __init__(self, interest: Interest, timer: Timer | None,
                 timeout_reason: CloseReason | None, timeout_kind: str | None):
        self.interest: Final = interest
        # The timer that runs in this state (None: none); when it fires, the connection ends
        # for `timeout_reason` (TIMEOUT: a 408 goes out first) and --status counts one timeout
        # of `timeout_kind`.
        self.timer: Final = timer
        self.timeout_reason: Final = timeout_reason
        self.timeout_kind: Final = timeout_kind


_R, _T, _I = CloseReason, Timer, Interest
# Every fact about each state, in one table: the reactor's interest and timer queues, the
# timeout's close reason and the --status timeout kind all derive from it.
STATES: dict[ConnState, StateFacts] = {
    S.HANDSHAKING: StateFacts(_I.HANDSHAKE, _T.HEADER, _R.HANDSHAKE, "handshake"),
    S.IDLE: StateFacts(_I.READ, _T.IDLE, _R.IDLE, "idle"),
    S.READING_HEAD: StateFacts(_I.READ, _T.HEADER, _R.TIMEOUT, "header"),
    S.READING_BODY: StateFacts(_I.READ, _T.HEADER, _R.TIMEOUT, "header"),
    S.WRITING_HEAD: StateFacts(_I.WRITE, _T.SEND, _R.SEND, "send"),
    S.SENDING_BODY: StateFacts(_I.WRITE, _T.SEND, _R.SEND, "send"),
    S.AWAITING_BODY: StateFacts(_I.NONE, _T.SEND, _R.SEND, "send"),
    S.CLOSING: StateFacts(_I.READ, _T.LINGER, _R.CLOSE, "linger"),
    # The send timer runs only while a message is going out on the stream.
    S.STREAMING: StateFacts(_I.STREAM, _T.SEND, _R.SEND, "send"),
    S.CLOSED: StateFacts(_I.NONE, None, None, None),
}
# The --status timeout kinds, in the order the status page lists them.
TIMEOUT_KINDS = ("idle", "header", "send", "linger", "handshake")
# States in which the engine waits to read, and in which it waits to write (from STATES).
READ_STATES = frozenset(state for state, facts in STATES.items() if facts.interest is _I.READ)
WRITE_STATES = frozenset(state for state, facts in STATES.items() if facts.interest is _I.WRITE)
# States in which the send timer runs: it restarts whenever bytes went out (the reactor's
# _settle), also while a produced body waits for its producer (AWAITING_BODY).
SEND_TIMER_STATES = frozenset(state for state, facts in STATES.items() if facts.timer is _T.SEND)
# A stream waits to read (for EOF) and, while a message is going out, to write as well.
STREAM_STATES = frozenset(state for state, facts in STATES.items()
                          if facts.interest is _I.STREAM)

# After our last response, wait this long (seconds) for the peer to close before we do, so it
# reads our answer instead of a reset (the "lingering close" of Apache and nginx; nginx's
# lingering_time is 30 s, lingering_timeout 5 s: we keep it short, the answer is already out).
LINGER_TIMEOUT = 2.0
# Bytes we read and drop while lingering before giving up on a chatty peer (nginx reads on for
# lingering_time; a budget bounds the work a peer can make us do).
LINGER_MAX_BYTES = 256 * 1024
# On a graceful stop, a keep-alive connection answered less than this long ago (seconds) may
# have its next request already on the wire: it gets this long to arrive (and be answered with
# Connection: close) before the connection is closed. One idle for longer is closed at once.
STOP_GRACE = 0.25
# At the connection cap, a keep-alive connection (or an event stream) quiet for at least this
# long (seconds) may be closed to admit a newcomer; until one is, newcomers wait in the backlog.
# A client between two requests of one task (a page's resources, an API sequence, a benchmark)
# sends the next within milliseconds of the last answer, so on a busy server the longest-idle
# connection has been idle for microseconds and its next request is on the wire: closing it
# loses that request (nginx, which evicts at any age, lost 270 of 500 such clients in our
# probe). One second is far above any such gap, yet a newcomer at a cap full of idle
# connections waits at most this long, a fifth of the default --keepalive-timeout; with a short
# --keepalive-timeout, half of it (an idle connection closes by itself soon anyway).
EVICT_MIN_IDLE = 1.0
# Body of the 400 for a plain-HTTP request on the HTTPS port (nginx answers its 497 so too).
PLAINTEXT_BODY = (b"400 Bad Request: this port speaks HTTPS. Use an https:// URL.\n")
PLAINTEXT_RESPONSE = Response(400, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(PLAINTEXT_BODY)))],
                              [PLAINTEXT_BODY], len(PLAINTEXT_BODY))


# Heads up to this many bytes are memoised by HeadParser (clients repeat the same heads).
MEMO_MAX_HEAD = 2048
# Distinct heads remembered before the memo starts over (entries; about 1 MiB at most).
MEMO_ENTRIES = 512


_KEEP_ALIVE_FIELDS: dict[tuple, bytes] = {}


def evict_min_idle(keepalive_timeout: float) -> float:
    """How long (seconds) a connection must be quiet before it may make room at the cap."""
    return min(EVICT_MIN_IDLE, keepalive_timeout / 2)


def keep_alive_fields(timeout: float, max_requests: int) -> bytes:
    """The seed design's `Connection: keep-alive` + `Keep-Alive: timeout=5, max=100` lines.

    One bytes object per configuration, shared by every connection (so rendered responses can
    be reused by identity). The timeout is whole seconds, rounded down: a client told less
    than we wait never reuses a connection we have already closed.
    """
    key = (timeout, max_requests)
    fields = _KEEP_ALIVE_FIELDS.get(key)
    if fields is None:
        fields = (f"Connection: keep-alive\r\nKeep-Alive: timeout={int(timeout)}, "
                  f"max={max_requests}\r\n").encode("ascii")
        _KEEP_ALIVE_FIELDS[key] = fields
    return fields


class Replay:
    """An answer rendered for one request head, replayed while it still stands (immutable).

    `response` and `date` (the Date field object) are what `plan` was rendered from;
    `exchange` is the shared exchange it starts from for a client that is the peer itself
    (see messages.Exchange), or None for a plan holding a descriptor (never shared).
    """

    __slots__ = ("response", "date", "plan", "exchange")

    def __init__(self, response: Response, date: bytes, plan: ResponsePlan):
        self.response: Final = response
        self.date: Final = date
        self.plan: Final = plan
        self.exchange: Final = Exchange(plan, shared=True) if plan.fd is None else None


class ParsedHead:
    """What is memoised for one exact request head: the parse, its answer-cache keys, and the
    last answer rendered for it (see HttpConnection.take_request)."""

    __slots__ = ("parsed", "request", "plain_key", "replay_key", "keep_alive", "forwarded",
                 "user", "last", "instant")

    def __init__(self, parsed: tuple, site: Site | None):
        self.parsed: Final = parsed  # (Request, consumed bytes), as parse_head returns it
        request = self.request = parsed[0]
        # The responder's answer-cache key (website.plain_key, a pure function of the request):
        # given to respond() on the usual route, which would otherwise compute it.
        self.plain_key: Final = plain_key(request, site.path_rules) if site is not None \
            else plain_key(request)
        # The key under which the site lets an answer to this head be replayed (its
        # declaration, Site.replay_key), for a head that carries no body; else None.
        self.replay_key: Final = site.replay_key(request, self.plain_key) \
            if site is not None and request.body_length == NO_BODY else None
        self.keep_alive: Final = request.keep_alive
        # The client a trusted proxy reports in this head (addresses.forwarded_client), resolved
        # once per distinct head: "" when the head has no X-Forwarded-For (the client is then
        # the peer, which only the connection knows). Resolved only with --trust-proxy.
        self.forwarded: Final = forwarded_client(request.fields.get("x-forwarded-for"), "") \
            if site is None or site.config.trust_proxy else ""
        # The access log's authenticated user (Site.access_user): the credentials are in the head.
        self.user: Final = site.access_user(request) if site is not None else ""
        # The last answer rendered for this head (a Replay), replaced whole, so threads never
        # see a mixed record; None until one without a descriptor is rendered.
        self.last: Replay | None = None
        # The engine instant at which `last` came from the answer cache, so that requests of the
        # same instant may replay it without asking again (see HttpConnection._replay); None
        # otherwise. Only a single-thread site sets it, so no thread sees it beside another
        # thread's `last`.
        self.instant: float | None = None


class HeadParser:
    """`parse_head` with its results memoised by the exact head bytes.

    parse_head is a pure function of the bytes up to the end of the head, so when a buffer starts
    with bytes that parsed before (same head, same limits), the answer is the same Request. Load
    generators and browsers repeat identical heads, so most requests skip parsing entirely.
    Requests are immutable values, so sharing them between connections is safe.
    """

    __slots__ = ("limits", "site", "_memo")

    def __init__(self, limits: Limits, site: Site | None = None):
        self.limits = limits
        # The site whose replay declaration each memoised head records (None: no replay).
        self.site = site
        self._memo: dict[bytes, ParsedHead] = {}

    def parse(self, buf):
        """Same contract as parser.parse_head."""
        head = self.parse_head(buf)
        return head.parsed if head is not None else None

    def parse_head(self, buf) -> ParsedHead | None:
        """parse() with what is known of the head: its ParsedHead (memoised when it can be)."""
        end = buf.find(b"\r\n\r\n", 0, MEMO_MAX_HEAD)
        if end > 0:
            # The whole buffer when it is one head (the usual case): one copy, not two.
            key = bytes(buf) if len(buf) == end + 4 else bytes(buf[:end + 4])
            hit = self._memo.get(key)
            if hit is not None:
                return hit
        parsed = parse_head(buf, self.limits)
        if parsed is None:
            return None
        head = ParsedHead(parsed, self.site)
        if end > 0 and parsed[1] == end + 4:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = head
        return head


def record_transitions(rows: set) -> None:
    """From now on, add every (state, event) move any connection makes to `rows`.

    A diagnostic for the test suite's check that every row of TRANSITIONS is reached over real
    sockets (server.py turns it on when REACTOR_HTTP_TRACE_TRANSITIONS names a file). It wraps
    the table every move looks up (_MOVES); without it, nothing is recorded and nothing is paid.
    """
    for state, moves in list(_MOVES.items()):
        _MOVES[state] = _RecordingMoves(state, moves, rows)


class _RecordingMoves(dict):
    """One state's row of _MOVES that notes every (state, event) looked up in it."""

    def __init__(self, state: ConnState, moves: dict, rows: set):
        super().__init__(moves)
        self.state = state
        self.rows = rows

    def __getitem__(self, event):
        self.rows.add((self.state, event))
        return super().__getitem__(event)


class ProtocolViolation(RuntimeError):
    """A state move that the transition table does not allow: a bug in an engine."""


class HttpConnection:
    """One client connection's protocol state. Engines own the socket; this owns the meaning."""

    __slots__ = ("state", "site", "limits", "parser", "memo", "buffer", "requests_served",
                 "max_requests",
                 "keep_alive_fields", "close_reason", "_discarder",
                 "_pending_request", "internal_error", "stats", "peer", "trust_forwarded",
                 "lingered", "idle_since", "_draining", "persist_below", "stream_next",
                 "peer_closing")

    def __init__(self, site: Site, limits: Limits | None = None,
                 parser: HeadParser | None = None, tls: bool = False, stats=None,
                 peer: str = ""):
        config = site.config
        self.state = ConnState.HANDSHAKING if tls else ConnState.IDLE
        self.site = site
        if parser is None:
            parser = HeadParser(limits or Limits.from_config(config), site)
        elif parser.site is not site:
            raise ValueError("the head parser must declare replays for this connection's site")
        self.parser = parser
        self.limits = parser.limits
        # The parser's memo of whole heads (read by take_request without a method call).
        self.memo = parser._memo
        self.buffer = bytearray()
        self.requests_served = 0
        self.max_requests = config.max_requests
        self.keep_alive_fields = keep_alive_fields(config.keepalive_timeout, config.max_requests)
        self._draining = False
        # RFC 9112 section 9.3: the connection persists after a request the client (and the
        # answer) let persist while requests_served is below this: the last request
        # --max-requests allows closes, and once a graceful stop begins every one does (-1).
        # The one predicate both routes decide persistence with (take_request, _finish).
        self.persist_below = self.max_requests - 1
        # True once an event stream's plan is made: its completion opens STREAMING.
        self.stream_next = False
        # Why the connection ended (or will end once its last answer is out); None until known.
        self.close_reason: CloseReason | None = None
        self._discarder: BodyDiscarder | None = None
        self._pending_request: Request | None = None
        # An exception the responder raised, for the engine to log with its traceback.
        self.internal_error: Exception | None = None
        # The engine's counters (stats.Stats: responses, timeouts, the --status page), or None.
        self.stats = stats
        # The direct peer's address as accept() gave it, and whether it is a --trust-proxy.
        self.peer = peer
        self.trust_forwarded = bool(config.trust_proxy) and address_in(peer, config.trust_proxy)
        # Bytes drained while lingering in CLOSING (bounded by LINGER_MAX_BYTES).
        self.lingered = 0
        # When the last response went out (engine clock); None until one has. On an event
        # stream: when its last change went out (heartbeats do not count).
        self.idle_since: float | None = None
        # True once the client asked to close (Connection: close, or HTTP/1.0 without
        # keep-alive) in the request answered last: see linger_wanted.
        self.peer_closing = False

    @property
    def draining(self) -> bool:
        """True once a graceful stop began: every response from then on closes."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self.persist_below = -1 if value else self.max_requests - 1

    def _move(self, event: Event) -> ConnState:
        """Apply one event through the transition table."""
        try:
            self.state = _MOVES[self.state][event]
        except KeyError:
            raise ProtocolViolation(f"{event.name} is not allowed in {self.state.name}") from None
        return self.state

    # ---- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Take bytes the peer sent (b"" means the peer closed its side)."""
        if not data:
            if self.close_reason is None:
                self.close_reason = CloseReason.EOF
            self._move(Event.EOF)
            return
        # Raises in a state that must not be fed (a TLS handshake in progress, a closed one).
        state = self._move(DATA)
        if state is CLOSING or state is STREAMING:
            # Lingering (or a stream's client talking): dropped, up to a budget.
            self.lingered += len(data)
            if self.lingered > LINGER_MAX_BYTES:
                self._move(Event.ABORT)
            return
        self.buffer += data

    def take_request(self, data: bytes, now: float) -> Exchange | None:
        """IDLE with nothing buffered, `data` just arrived: its exchange, if it is the common case.

        The short route through the same decisions as receive() + next_exchange(), for bytes
        that are exactly one request head parsed before whose answer the site lets be replayed
        (ParsedHead.replay_key: the site's declaration) and that leaves the connection open
        (persist_below, the predicate _finish uses). The answer is what respond() would give, the
        site's cached answer (validated by stat, as always); _replay renders (or replays) it and
        _record records it, the steps _finish ends in for any request. In every other case it
        returns None having changed nothing, and the caller takes the usual route.
        tests/test_routes.py proves the two routes equal.
        """
        head = self.memo.get(data)
        if head is None or head.replay_key is None or self.state is not IDLE or \
                not head.keep_alive or self.requests_served >= self.persist_below:
            return None
        replay = head.last
        # (head.instant is set only by this route, whose replays all keep the connection.)
        if replay is None or head.instant != now:
            response = self.site.cached_response(head.replay_key, head.request.method, now)
            if response is None:
                return None
            replay = self._replay(head, response, True, now, True)
        # else: this instant already asked the answer cache for this head; its answer stands.
        return self._record(replay.plan, WHOLE_REQUEST,
                            (head.forwarded or self.peer) if self.trust_forwarded else "",
                            replay.exchange)

    def next_exchange(self, now: float) -> Exchange | None:
        """The next exchange to carry out, if a whole request (and its body) is buffered."""
        state = self.state
        if state is READING_BODY:
            return self._continue_body(now)
        if state is not READING_HEAD:
            return None
        try:
            head = self.parser.parse_head(self.buffer)
        except errors.HttpError as exc:
            return self._error_exchange(exc.status, now, self._first_line())
        if head is None:
            skipped = skip_empty_lines(self.buffer)
            if skipped:
                del self.buffer[:skipped]  # blank lines before a request line carry nothing
            return None
        request, consumed = head.parsed
        del self.buffer[:consumed]
        if request.body_length != NO_BODY:
            waiting = not self.buffer and \
                expects_continue(request.version, request.fields.get("expect"))
            self._pending_request = request
            self._discarder = BodyDiscarder(request.body_length, self.limits)
            self._move(Event.HEAD_COMPLETE)
            if waiting:
                return self._answer_before_body(request, now)
            return self._continue_body(now)
        return self._answer(request, now, head)

    def _answer_before_body(self, request: Request, now: float) -> Exchange:
        """Answer a request whose client waits for a 100 (Continue) before it sends its body.

        RFC 9110 section 10.1.1: the answer is known from the head (a static server refuses
        every body), so it goes out at once rather than after a body that never comes until
        the client tires of waiting (curl: 1 s). The connection then closes (section 10.1.1:
        say so when answering before the body), lingering so that a body sent anyway is
        dropped, never parsed as a request.
        """
        self._pending_request = None
        self._discarder = None
        exchange = self._answer(request, now, persist=False)
        self.peer_closing = False  # the body may still come: linger, as after an error
        return exchange

    def _continue_body(self, now: float) -> Exchange | None:
        """Discard buffered body bytes; answer the request once its body has been read."""
        request = self._pending_request
        discarder = self._discarder
        assert request is not None and discarder is not None  # set together on HEAD_COMPLETE
        try:
            used = discarder.feed(self.buffer)
        except errors.HttpError as exc:
            return self._error_exchange(exc.status, now, request.request_line)
        if used:
            del self.buffer[:used]
        if not discarder.done:
            return None
        self._pending_request = None
        self._discarder = None
        return self._answer(request, now)

    def _first_line(self) -> str:
        """The start of what the client sent, for the log of a request we could not parse."""
        start = skip_empty_lines(self.buffer)
        end = self.buffer.find(b"\n", start, start + 512)
        line = bytes(self.buffer[start:end if end >= 0 else start + 512]).rstrip(b"\r")
        return line.decode("latin-1")

    # ---- output ------------------------------------------------------------------------------

    def _answer(self, request: Request, now: float, head: ParsedHead | None = None,
                persist: bool = True) -> Exchange:
        """Run the responder for a parsed request (`head`: its memo entry, if it has one;
        `persist` False: close after it, whatever the request asked)."""
        try:
            response = None
            if self.stats is not None and self.stats.status_path is not None:
                response = self.stats.answer(request, self.peer, now)
            if response is None:
                response = respond(request, self.site, now,
                                   head.plain_key if head is not None else None)
        except Exception as exc:  # a bug in the semantics costs this request a 500, not the loop
            self.internal_error = exc
            return self._error_exchange(500, now, request.request_line,
                                        head_only=request.method == "HEAD")
        if response.stream:  # --live-reload: an event stream's 200
            self.stream_next = True
        return self._finish(response, request.keep_alive and persist, request, now,
                            RESPONSE_READY, head)

    def _client(self, request: Request, head: ParsedHead | None) -> str:
        """The client a trusted proxy reports (callers ask only with --trust-proxy: else the
        exchange's client is "", the peer); from the memoised head when there is one."""
        if head is not None:
            return head.forwarded or self.peer
        return forwarded_client(request.fields.get("x-forwarded-for"), self.peer)

    def _error_exchange(self, status: int, now: float, request_line: str,
                        event: Event = Event.RESPONSE_READY,
                        head_only: bool = False) -> Exchange:
        """A protocol error: answer with `status`, then close (framing can no longer be trusted)."""
        if self.close_reason is None:
            self.close_reason = CloseReason.ERROR
        self.peer_closing = False  # an error always lingers: more of the request may follow
        self.buffer.clear()
        self._discarder = None
        self._pending_request = None
        plan = self._render(error_response(status, head_only=head_only), False, request_line)
        return self._record(plan, event, "", None)

    def _finish(self, response: Response, wanted: bool, request: Request, now: float,
                event: Event, head: ParsedHead | None) -> Exchange:
        """Decide persistence (persist_below, which the short route checks first), render the
        answer or replay the head's, and record the exchange."""
        keep_alive = wanted and not response.close and self.requests_served < self.persist_below
        self.peer_closing = not wanted
        if not keep_alive and self.close_reason is None:
            if not wanted or response.close:
                self.close_reason = CloseReason.CLOSE
            else:
                self.close_reason = CloseReason.STOP if self._draining else CloseReason.MAX
        client = self._client(request, head) if self.trust_forwarded else ""
        if head is not None and head.replay_key is not None and response.cached:
            # The answer cache's own answer to a replayable head: kept for the next request
            # with this head, on either route. Any other answer is rendered for this one only.
            replay = self._replay(head, response, keep_alive, now, False)
            return self._record(replay.plan, event, client, replay.exchange)
        user = head.user if head is not None else self.site.access_user(request)
        return self._record(self._render(response, keep_alive, request.request_line, None, user),
                            event, client, None)

    def _replay(self, head: ParsedHead, response: Response, keep_alive: bool, now: float,
                short: bool) -> Replay:
        """The head's last answer if it was rendered from this response, Date and persistence;
        else `response` rendered now (and kept as the head's last answer if it holds no file).

        `short`: the short route asked the answer cache for `response` just now. Requests an
        engine handles at one instant (the reactor: one loop turn, each turn a later `now`) may
        then share one stat (Site's single_thread), so while `now` is the same the same answer
        stands without asking the cache again; a compressed answer is counted per hit, so it
        always asks. Within one turn this is what the freshness rule allows, and no more: a
        request of the same turn that took the usual route may already have seen a file changed
        meanwhile, and the Date field may lag by the second the turn crossed; the next turn
        looks again.
        """
        site = self.site
        date = site.dates.field()
        replay = head.last
        if replay is None or replay.response is not response or replay.date is not date or \
                replay.plan.keep_alive is not keep_alive:
            plan = self._render(response, keep_alive, head.request.request_line, date, head.user)
            replay = Replay(response, date, plan)
            if replay.plan.fd is not None:  # a plan holding a descriptor is never shared
                return replay
            head.last = replay
        head.instant = now if short and site.stat_per_instant and response.saved is None \
            else None
        return replay

    def _render(self, response: Response, keep_alive: bool, request_line: str,
                date: bytes | None = None, user: str = "") -> ResponsePlan:
        """The plan for `response`: its head rendered, the body segments after it (`user`: the
        authenticated user the access log names)."""
        site = self.site
        if date is None:
            date = site.dates.field()
        site_fields = response.site_fields
        head = b"".join((status_line(response.status), site.server_field, date, response.fields,
                         site.extra_fields if site_fields is None else site_fields,
                         self.keep_alive_fields if keep_alive else CLOSE_FIELDS, b"\r\n"))
        segments = response.segments
        if response.fd is None and len(segments) <= 1 and \
                (not segments or (type(segments[0]) is bytes and
                                  len(segments[0]) <= WIRE_CACHE_MAX_BODY)):
            # Head and in-memory body as one bytes object: one send.
            segments = (head + segments[0],) if segments else (head,)
        else:
            segments = (head, *segments)  # a larger body goes out with the head in one sendmsg
        return ResponsePlan(response.status, segments, response.body_length, keep_alive,
                            response.fd, request_line, user)

    def _record(self, plan: ResponsePlan, event: Event, client: str,
                shared: Exchange | None) -> Exchange:
        """The bookkeeping every answer shares: move the state, count it, start its exchange
        (`shared`, the plan's shared exchange if it has one, serves a client that is the peer).
        """
        try:  # _move's work, written out on the per-request path (a call costs 50 ns)
            self.state = _MOVES[self.state][event]
        except KeyError:
            self._move(event)  # raises ProtocolViolation
        self.requests_served += 1
        if shared is not None and not client:
            return shared
        return Exchange(plan, client)

    def timeout(self, now: float) -> Exchange | None:
        """The state's timer expired: a 408 exchange for a half-read request, else nothing."""
        facts = STATES[self.state]
        if self.stats is not None:
            self.stats.timed_out(facts.timeout_kind)
        reason = facts.timeout_reason
        if reason is CloseReason.TIMEOUT:  # a request was on its way: tell the client why
            self.close_reason = reason
            pending = self._pending_request
            return self._error_exchange(408, now, pending.request_line if pending else "-",
                                        Event.TIMEOUT)
        if self.close_reason is None:
            if self._draining and self.state is ConnState.IDLE:
                reason = CloseReason.STOP
            self.close_reason = reason
        self._move(Event.TIMEOUT)
        return None

    def body_starved(self) -> None:
        """The engine found nothing made of a produced body: it waits for its producer."""
        self._move(Event.STARVED)

    def body_produced(self) -> None:
        """The producer of the body being sent made more: the engine sends again."""
        self._move(Event.PRODUCED)

    def handshake_done(self) -> None:
        """The engine completed the TLS handshake: wait for a request."""
        self._move(Event.HANDSHAKE_DONE)

    def head_sent(self) -> None:
        """The engine has sent the head; file regions follow."""
        self._move(Event.HEAD_SENT)

    def plaintext_on_tls(self, now: float) -> Exchange:
        """The TLS handshake met a plain-HTTP request: a 400 saying so, sent in clear, then close.

        The engine sends this exchange on the TCP socket under the failed TLS one.
        """
        self.close_reason = CloseReason.PLAINTEXT
        return self._record(self._render(PLAINTEXT_RESPONSE, False, "-"), Event.RESPONSE_READY,
                            "", None)

    def begin_stop(self, now: float) -> float | None:
        """A graceful stop began: how long this connection may still wait idle for a request.

        Every response from now on says Connection: close. Returns None when the connection
        keeps its usual timers within the drain bound: it has something buffered, is mid-request
        or mid-response, or is fresh (its first request is on its way). Otherwise it is idle
        between requests: 0 if it should be closed now, or STOP_GRACE if it was answered less
        than that long ago, since its next request may already be on the wire. The engine reads
        what the kernel holds before it closes anything. An event stream (STREAMING) has no end
        of its own: 0, closed at once (the page's EventSource reconnects to the next server).
        """
        self.draining = True
        if self.state is ConnState.STREAMING:
            return 0.0  # a stream has no end of its own: closed at once (the page reconnects)
        if self.state is not ConnState.IDLE or self.buffer or self.idle_since is None:
            return None
        if now - self.idle_since < STOP_GRACE:
            return STOP_GRACE
        return 0.0

    def evictable_at(self) -> float | None:
        """From when closing this connection for a newcomer loses nothing; None: never.

        At the connection cap (as nginx does at worker_connections) the connection idle longest
        makes room, once idle for evict_min_idle(): one between requests with nothing held, or
        an event stream, idle since its last change (its EventSource reconnects by itself, as
        after a restart). A fresh connection that has not sent its first request, and one
        mid-request or mid-response, never are. The engine adds what only it can see: nothing
        of the next request waits in the kernel, and nothing is going out on a stream.
        """
        since = self.idle_since
        if since is None or (self.state is not ConnState.STREAMING and
                             (self.state is not ConnState.IDLE or self.buffer)):
            return None
        return since + evict_min_idle(self.site.config.keepalive_timeout)

    def evict(self) -> None:
        """Close this idle connection to admit a new one at the connection cap."""
        if self.stats is not None:
            self.stats.evicted_one()
        self.close_reason = CloseReason.EVICTED
        self._move(Event.ABORT)

    def response_done(self, plan: ResponsePlan, now: float = 0.0, sent: int = 0) -> ConnState:
        """The engine has sent the whole plan (`sent` bytes of it, head included): persist, serve
        the next buffered request, or close."""
        if self.stats is not None:
            # A produced body's length is known only once sent (its plan's body_length is 0).
            self.stats.response_done(plan.status, plan.body_length or plan.body_sent(sent))
        self.idle_since = now
        if not plan.keep_alive:
            if self.stream_next and not self.draining:
                self.stream_next = False
                self.close_reason = None  # set again by whatever ends the stream
                return self._move(Event.STREAM_OPEN)
            return self._move(DONE_CLOSE)
        if self.buffer:
            return self._move(DONE_PIPELINED)
        try:  # _move's work, written out on the per-request path (a call costs 50 ns)
            state = self.state = _MOVES[self.state][DONE_IDLE]
        except KeyError:
            state = self._move(DONE_IDLE)  # raises ProtocolViolation
        return state

    @property
    def linger_wanted(self) -> bool:
        """CLOSING: whether to linger (half-close, then read and drop until the peer closes).

        nginx's heuristic, as its lingering_close directive documents it (default "on": wait
        for and process additional data from the client "only if heuristics suggests that the
        client may be sending more data"; ngx_http_finalize_connection lingers when a request
        body was not read whole, bytes past the request are buffered, the socket is readable
        or requests were pipelined). So no lingering when the client itself asked to close and
        nothing more of it is buffered here (no unread body: a refused one answered with an
        error always lingers, so the client reads our error). The engine checks the rest,
        that nothing waits in the kernel, before it calls close_at_once().
        """
        return not self.peer_closing or bool(self.buffer) or self._discarder is not None

    def close_at_once(self) -> None:
        """CLOSING, with no lingering wanted (linger_wanted) nor anything unread: closed."""
        self._move(Event.NO_LINGER)

    def notify(self, pending: int, now: float | None = None) -> None:
        """A message is to go out on this stream; `pending`: bytes still unsent, this included;
        `now`: given for a change (not for a heartbeat), which restarts the stream's idle time.

        A client that lets more than OUTBOX_MAX bytes pile up is dropped at once; one that
        reads nothing at all is dropped by the send timer before that.
        """
        self._move(Event.NOTIFY)
        if now is not None:
            self.idle_since = now
        if pending > OUTBOX_MAX:
            self.abort(CloseReason.OVERFLOW)

    def abort(self, reason: CloseReason) -> None:
        """Drop the connection at once (I/O error, reset, server stop)."""
        if self.close_reason is None or reason is CloseReason.RESET or \
                reason is CloseReason.ERROR:
            self.close_reason = reason
        self._move(Event.ABORT)

    @property
    def close_reason_text(self) -> str:
        """The reason the connection ended, in words."""
        return self.close_reason.value if self.close_reason is not None else "closed"
