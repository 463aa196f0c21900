"""The short route and the general route give the same answers: a differential test.

`HttpConnection.take_request` answers a repeated request head without running the responder,
within what the site declares replayable (`Site.replay_key`). It may exist only because this test
shows it equal to the general route (`receive` + `next_exchange`): random site configurations
and random request sequences are played on twin connections, each with its own Site over the
same folder, one trying the short route first (as the engines do) and one never. For every
request the short route either declines having changed nothing, or the twins answer with the
same bytes (the Date field aside), the same state moves and the same counters.

The fixed examples below pin the cases where an eligibility condition matters (credentials, the
status page shadowing a file, the last request --max-requests allows, a graceful stop): remove
one condition from `take_request` or `Site.replay_key` and one of them fails, and Hypothesis
finds it from the random cases too.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reactor_http import validators
from reactor_http.config import Config
from reactor_http.facilities import pread
from reactor_http.livereload import Hub
from reactor_http.archive import produce
from reactor_http.messages import FileRegion, ProducedBody
from reactor_http.parser import Limits
from reactor_http.protocol import ConnState, HeadParser, HttpConnection
from reactor_http.stats import Stats
from reactor_http.website import Site

PEER = "127.0.0.1"
RIGHT = "Basic " + base64.b64encode(b"ann:pw").decode()
WRONG = "Basic " + base64.b64encode(b"ann:nope").decode()
SCRIPT = b"function greet(name) { return 'hello ' + name; }\n" * 60  # compressible, < 16 KiB
PAGE = b"<!DOCTYPE html><html><head><title>t</title></head><body><p>page</p></body></html>\n"
FILES = {
    "a.txt": b"hello a\n",
    "index.html": PAGE,
    "app.js": SCRIPT,
    "app.js.gz": gzip.compress(SCRIPT, mtime=0),
    "status": b"a file the status page shadows\n",
    "big.bin": b"z" * 70_000,  # over the small-file cache: served from a descriptor
    "sub/b.txt": b"hello b\n",
    "about.html": PAGE.replace(b"page", b"about"),
}
# The site's rule files: None (absent) or one of these texts, switched by a "rules" step.
REDIRECTS = [None,
             "/old/* /:splat 301\n/app/* /index.html 200\n/gone /a.txt 410\n"
             "/a.txt /sub/b.txt 302\n/sub/ /about 302\n",
             "/a.txt /sub/b.txt 200!\n/old/* /app.js 200!\n/about /a.txt 301\n"]
HEADERS = [None,
           "/*\n  X-All: 1\n/*.txt\n  Cache-Control: no-store\n  ! X-Frame-Options\n",
           "/app.js\n  X-App: 1\n/*.html\n  Cache-Control: no-cache\n"]
# Spellings of one resource: the answer cache keys them alike (its key is the normalised path),
# which is where a rule that looks at the raw target (the --status page) must hold.
SPELLINGS = [["/a.txt", "/a.txt?v=2", "/./a.txt", "//a.txt"],
             ["/status", "//status", "/status?x=1", "/./status"],
             ["/", "/index.html", "//", "/?download=zip"],
             ["/sub/", "/sub", "/sub/./", "/sub/?download=zip", "/sub/?download=tar_gz",
              "/sub/?download=nope"],
             ["/app.js", "/app.js?v=1"], ["/missing"], ["/big.bin"], ["/__livereload"],
             ["/about", "/about?x=1", "/about.html"], ["/old/a.txt", "/old/sub/b.txt"],
             ["/app/x", "/app/x?y=1"], ["/gone"], ["/_headers", "/_redirects"]]
PATHS = [path for spellings in SPELLINGS for path in spellings]
FIELDS = {
    "accept-encoding": ["gzip", "br, gzip", "identity"],
    "accept": ["application/json", "text/html"],
    "x-forwarded-for": ["203.0.113.9"],
    "if-none-match": ["*", '"nope"'],
    "if-modified-since": ["Fri, 01 Jan 2100 00:00:00 GMT"],
    "range": ["bytes=0-3"],
    "connection": ["close", "keep-alive"],
    "origin": ["https://example.com"],
    "content-length": ["2"],  # its body is a later step ("body")
}
# Seconds between two steps: 0 keeps the instant (one loop turn), 1.5 outlives the answer cache.
STEPS = [0.0, 0.0, 0.001, 0.3, 1.5]
DATE = re.compile(rb"\r\nDate: [^\r]*")


def build_root(root, rules: tuple = (None, None)) -> None:
    """The site both twins serve, as it is at the start of every example (`rules`: the
    `_redirects` and `_headers` texts, None for no file)."""
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_rules(root, rules)


def write_rules(root, rules: tuple) -> None:
    """Put the site's rule files in place (None: no such file)."""
    for name, text in zip(("_redirects", "_headers"), rules, strict=True):
        if text is None:
            (root / name).unlink(missing_ok=True)
        else:
            (root / name).write_text(text)


@dataclass
class Setup:
    options: dict
    live: bool
    single_thread: bool
    rules: tuple = (None, None)  # the `_redirects` and `_headers` texts at the start


@pytest.fixture(autouse=True, scope="module")
def digests_made_inline():
    """--etag content hashes every file of this site during the request (big.bin too): the
    digester thread would finish at a moment the twins cannot agree on."""
    saved = validators.INLINE_MAX
    validators.INLINE_MAX = 1 << 20
    yield
    validators.INLINE_MAX = saved


class Twin:
    """One connection of its own server (Site, parser memo, counters) over the shared folder."""

    def __init__(self, root, setup: Setup, short: bool):
        config = Config(root=str(root), quiet=True, **setup.options).validate()
        self.site = Site(config, live=Hub() if setup.live else None,
                         single_thread=setup.single_thread)
        self.stats = Stats(config, "reactor", lambda: (), started=0.0,
                           compression=self.site.compression)
        self.stats.started_wall = 0.0  # the status page shows it: the twins must agree
        self.parser = HeadParser(Limits.from_config(config), self.site)
        self.reconnect()
        self.short = short
        self.took_short = 0

    def close(self) -> None:
        """Release what a server releases at its stop (the live-reload hub's pipe)."""
        if self.site.live is not None:
            self.site.live.close()

    def reconnect(self) -> None:
        """The client opens a new connection to the same server (caches and memo kept)."""
        self.conn = HttpConnection(self.site, parser=self.parser, stats=self.stats, peer=PEER)

    def snapshot(self) -> tuple:
        """Everything a declined short route must leave as it was."""
        conn = self.conn
        return (conn.state, conn.requests_served, bytes(conn.buffer), conn.close_reason,
                conn.draining, conn.persist_below, conn.stream_next, conn.idle_since,
                dict(self.stats.responses), self.stats.bytes_sent)

    def ask(self, data: bytes, now: float) -> list:
        """Answer `data` as an engine would: the short route first (if this twin tries it)."""
        conn = self.conn
        exchange = None
        if self.short and conn.state is ConnState.IDLE:
            before = self.snapshot()
            exchange = conn.take_request(data, now)
            if exchange is None:
                assert self.snapshot() == before, "the short route declined but changed things"
            else:
                self.took_short += 1
        if exchange is None:
            conn.receive(data)
            if conn.state is ConnState.CLOSED:
                return [conn.state]
            exchange = conn.next_exchange(now)
        answers = []
        while exchange is not None:
            answers.append(wire(exchange))
            if exchange.plan.first_region >= 0:
                conn.head_sent()
            exchange.close()
            state = conn.response_done(exchange.plan, now)
            answers.append((state, conn.close_reason, exchange.client))
            if state is not ConnState.READING_HEAD:
                break
            exchange = conn.next_exchange(now)
        return answers


def wire(exchange) -> bytes:
    """The bytes the exchange puts on the wire, its file regions read, the Date field dropped."""
    parts = []
    for segment in exchange.plan.segments:
        if type(segment) is FileRegion:
            parts.append(pread(segment.fd, segment.count, segment.offset))
        elif type(segment) is ProducedBody:  # --archives: made here, whole
            produce(segment, parts.append, lambda text: None)
        else:
            parts.append(segment)
    data = b"".join(parts)
    head, _, body = data.partition(b"\r\n\r\n")
    return DATE.sub(b"", head, count=1) + b"\r\n\r\n" + body


def request_bytes(method: str, path: str, version: str, fields: dict) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: t"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@st.composite
def setups(draw) -> Setup:
    options = {
        "auth": draw(st.sampled_from([None, "ann:pw"])),
        "status_path": draw(st.sampled_from([None, "/status"])),
        "trust_proxy": draw(st.sampled_from([(), (PEER,)])),
        "cors": draw(st.booleans()),
        "spa": draw(st.booleans()),
        "listing": draw(st.booleans()),
        "compress": draw(st.booleans()),
        "max_requests": draw(st.sampled_from([2, 5, 100, 100, 100, 100])),
        "max_age": draw(st.sampled_from([None, 60])),
        "headers": draw(st.sampled_from([(), ("X-Frame-Options: DENY",)])),
        "etag": draw(st.sampled_from(["mtime", "content"])),
        "clean_urls": draw(st.booleans()),
        "site_rules": draw(st.sampled_from([True, True, True, False])),
        "archives": draw(st.booleans()),
    }
    rules = (draw(st.sampled_from(REDIRECTS)), draw(st.sampled_from(HEADERS)))
    return Setup(options, live=draw(st.booleans()), single_thread=draw(st.booleans()),
                 rules=rules)


@st.composite
def scripts(draw) -> list:
    """Steps of (kind, head, seconds later) over a small pool of heads.

    The pool is one head and variants of it that differ in one part each (the path, the
    method, the credentials, one field...), because what the short route must get right is
    telling near-identical heads apart. Heads are mostly plain (each optional field absent
    seven times in eight), so the short route is often eligible.
    """
    def value(name: str):
        if name == "method":
            return draw(st.sampled_from(["GET", "GET", "HEAD"]))
        if name == "path":
            return draw(st.sampled_from(PATHS))
        if name == "spelling":  # the same resource spelled another way
            return draw(st.sampled_from(next(group for group in SPELLINGS if base["path"] in group)))
        if name == "version":
            return draw(st.sampled_from(["1.1"] * 9 + ["1.0"]))
        if name == "authorization":
            return draw(st.sampled_from([None, RIGHT, WRONG]))
        return draw(st.sampled_from([None] * 7 + FIELDS[name]))

    parts = ["method", "path", "version", "authorization", *FIELDS]
    base = {name: value(name) for name in parts}
    pool = [base]
    # Credentials, path and method are what near-identical heads differ in most often.
    changes = ["authorization"] * 4 + ["spelling"] * 3 + ["method"] * 2 + parts
    for _ in range(draw(st.sampled_from([1, 2, 3, 4, 0]))):
        changed = draw(st.sampled_from(changes))
        head = {**draw(st.sampled_from(pool))}
        if changed == "spelling":
            head["path"] = value("spelling")
        else:
            head[changed] = value(changed)
        pool.append(head)
    pool = [request_bytes(head["method"], head["path"], head["version"],
                          {name: head[name] for name in ["authorization", *FIELDS]})
            for head in pool]
    steps = []
    for _ in range(draw(st.integers(min_value=1, max_value=16))):
        kind = draw(st.sampled_from(["request"] * 16 + ["body"] * 2 +
                                    ["change", "stop", "rules"]))
        head = draw(st.sampled_from(pool))
        if kind == "rules":  # the rule files are edited: the step carries their new texts
            head = (draw(st.sampled_from(REDIRECTS)), draw(st.sampled_from(HEADERS)))
        # A client often sends the same head again at once (the short route's case).
        for _ in range(draw(st.sampled_from([1, 1, 2, 3])) if kind == "request" else 1):
            steps.append((kind, head, draw(st.sampled_from(STEPS))))
    return steps


def play(root, setup: Setup, script: list) -> int:
    """Run `script` on twin connections; assert they agree; return how often the short route
    answered."""
    build_root(root, setup.rules)
    short, general = Twin(root, setup, short=True), Twin(root, setup, short=False)
    try:
        return _play(root, short, general, script)
    finally:
        short.close()
        general.close()


def _play(root, short: Twin, general: Twin, script: list) -> int:
    now = 1000.0
    for number, (kind, data, later) in enumerate(script):
        now += later
        if kind == "change":  # a file changes on disk between two requests
            (root / "a.txt").write_bytes(b"changed %d\n" % number)
            continue
        if kind == "rules":  # the site's rule files are edited between two requests
            write_rules(root, data)
            continue
        if kind == "stop":  # a graceful stop begins (the connection's answers close from now on)
            assert short.conn.begin_stop(now) == general.conn.begin_stop(now)
            continue
        assert short.conn.state is general.conn.state
        if short.conn.state not in (ConnState.IDLE, ConnState.READING_HEAD,
                                    ConnState.READING_BODY):
            short.reconnect()  # closing, closed or streaming: the client opens another
            general.reconnect()
        if kind == "body":  # the body a Content-Length head announced, if one did
            if short.conn.state is not ConnState.READING_BODY:
                continue
            data = b"ab"
        expected = general.ask(data, now)
        assert short.ask(data, now) == expected, (number, data)
    assert short.stats.snapshot(now) == general.stats.snapshot(now)
    return short.took_short


AUTH = Setup({"auth": "ann:pw"}, live=False, single_thread=True)
STATUS = Setup({"status_path": "/status"}, live=False, single_thread=True)
LAST = Setup({"max_requests": 3}, live=False, single_thread=True)
PLAIN = Setup({}, live=False, single_thread=True)
ARCHIVES = Setup({"archives": True}, live=False, single_thread=True)
GET_A_RIGHT = request_bytes("GET", "/a.txt", "1.1", {"authorization": RIGHT})
GET_A_WRONG = request_bytes("GET", "/a.txt", "1.1", {"authorization": WRONG})
GET_A = request_bytes("GET", "/a.txt", "1.1", {})
GET_A_BODY = request_bytes("GET", "/a.txt", "1.1", {"content-length": "2"})  # then b"ab"
RULED = Setup({"clean_urls": True}, live=False, single_thread=True,
              rules=(REDIRECTS[1], HEADERS[1]))
FORCED = (REDIRECTS[2], HEADERS[2])
GET_ABOUT = request_bytes("GET", "/about", "1.1", {})


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(setup=setups(), script=scripts())
@example(setup=AUTH, script=[("request", GET_A_RIGHT, 0.0), ("request", GET_A_WRONG, 0.3),
                             ("request", GET_A_WRONG, 0.3)])
@example(setup=STATUS, script=[("request", request_bytes("GET", "//status", "1.1", {}), 0.0),
                               ("request", request_bytes("GET", "/status", "1.1", {}), 0.3),
                               ("request", request_bytes("GET", "/status", "1.1", {}), 0.3)])
@example(setup=LAST, script=[("request", GET_A, 0.0), ("request", GET_A, 0.3),
                             ("request", GET_A, 0.0)])
@example(setup=PLAIN, script=[("request", GET_A, 0.0), ("request", GET_A, 0.3),
                              ("stop", GET_A, 0.0), ("request", GET_A, 0.0)])
@example(setup=PLAIN, script=[("request", GET_A, 0.0), ("request", GET_A_BODY, 0.3),
                              ("body", GET_A, 0.0), ("request", GET_A_BODY, 0.3),
                              ("body", GET_A, 0.0)])
@example(setup=PLAIN, script=[("request", GET_A, 0.0), ("request", GET_A, 0.3),
                              ("rules", FORCED, 0.0), ("request", GET_A, 0.3)])
@example(setup=RULED, script=[("request", GET_ABOUT, 0.0), ("request", GET_ABOUT, 0.3),
                              ("rules", FORCED, 0.0), ("request", GET_ABOUT, 0.3)])
@example(setup=RULED, script=[("request", GET_A, 0.0), ("request", GET_A, 0.3),
                              ("rules", (None, HEADERS[2]), 0.0), ("request", GET_A, 0.3)])
def test_both_routes_give_the_same_answers(tmp_path_factory, setup, script):
    root = tmp_path_factory.mktemp("site")
    play(root, setup, script)


@pytest.mark.parametrize("setup, first, again", [
    (AUTH, GET_A_RIGHT, GET_A_RIGHT),
    (STATUS, GET_A, GET_A),
    (PLAIN, request_bytes("HEAD", "/app.js", "1.1", {"accept-encoding": "gzip"}),
     request_bytes("HEAD", "/app.js", "1.1", {"accept-encoding": "gzip"})),
    (Setup({"trust_proxy": (PEER,)}, live=False, single_thread=False),
     request_bytes("GET", "/a.txt", "1.1", {"x-forwarded-for": "203.0.113.9"}),
     request_bytes("GET", "/a.txt", "1.1", {"x-forwarded-for": "203.0.113.9"})),
    # Site rules: a file that shadows a rule, one under `_headers` blocks, a clean URL and a
    # forced rewrite are all answers the short route replays.
    (RULED, GET_A, GET_A),
    (RULED, GET_ABOUT, GET_ABOUT),
    (Setup({}, live=False, single_thread=True, rules=FORCED), GET_A, GET_A),
])
def test_the_short_route_serves_options_that_do_not_concern_the_request(tmp_path, setup, first,
                                                                         again):
    # The equality above would hold trivially if the short route never answered: with --auth
    # (right credentials), --status (another path) and --trust-proxy it must answer.
    script = [("request", first, 0.0), ("request", again, 0.3), ("request", again, 0.0)]
    assert play(tmp_path, setup, script) == 2


@pytest.mark.parametrize("setup, data", [
    (AUTH, GET_A_WRONG),
    (AUTH, GET_A),
    (STATUS, request_bytes("GET", "/status", "1.1", {})),
    (PLAIN, request_bytes("GET", "/a.txt", "1.1", {"range": "bytes=0-3"})),
    (PLAIN, request_bytes("GET", "/a.txt", "1.1", {"connection": "close"})),
])
def test_the_short_route_declines_what_the_site_does_not_declare_replayable(tmp_path, setup,
                                                                            data):
    assert play(tmp_path, setup, [("request", data, 0.0)] * 3) == 0


def test_a_download_is_never_replayed_from_the_answer_cache(tmp_path):
    # The answer cache keys "/" and "/?download=zip" alike (it ignores the query): once "/"
    # (index.html) is cached, the download head is still never replayed (Site.replay_key).
    home = request_bytes("GET", "/", "1.1", {})
    download = request_bytes("GET", "/?download=zip", "1.1", {})
    script = [("request", home, 0.0), ("request", download, 0.1), ("request", download, 0.1)]
    assert play(tmp_path, ARCHIVES, script) == 0


def test_the_short_route_declines_a_request_whose_body_is_still_to_come(tmp_path):
    script = [("request", GET_A_BODY, 0.0), ("body", GET_A, 0.0)] * 3
    assert play(tmp_path, PLAIN, script) == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_an_example_leaves_no_descriptor_open(tmp_path):
    # 600 examples once left 1,200 pipes open: a later test's select() then met descriptors
    # past its limit (1024).
    before = len(os.listdir("/proc/self/fd"))
    play(tmp_path, Setup({}, live=True, single_thread=True),
         [("request", GET_A, 0.0), ("request", GET_A, 0.3)])
    # At most as many as before (in a full run, the collector may close others' meanwhile).
    assert len(os.listdir("/proc/self/fd")) <= before
