"""--live-reload: the injected script, the event stream over real sockets, and the watcher.

Server tests run each engine; watcher tests use temporary folders with both the inotify watcher
and the polling fallback; injection rules are pure functions of bytes.
"""

from __future__ import annotations

import gzip
import os
import queue
import select
import signal
import socket
import sys
import threading
import time

import pytest

from tests.helpers.http import get
from tests.helpers.livereload import SMALL_RCVBUF, stall_stream
from tests.helpers.platforms import needs_fork
from tests.helpers.polling import wait_until
from tests.helpers.procfs import server_ports, tcp_entry, tcp_table
from tests.helpers.servers import BANNER, MODES
from reactor_http import livereload
from reactor_http.config import Config
from reactor_http.facilities import FACTS
from reactor_http.livereload import SCRIPT, STREAM_PATH, Hub, inject, page_etag
from reactor_http.server import serve
from reactor_http.watcher import Batcher, Inotify, Watcher, changed, ignored, scan

# Both watchers where the platform has inotify (FACTS); the scan alone elsewhere.
WATCHERS = [pytest.param("inotify", marks=pytest.mark.skipif(
    FACTS.watcher != "inotify", reason=f"no inotify on {FACTS.name}")), "polling"]

# Longest wait for a change to be announced in a test (seconds): the watcher promises 0.5 s;
# this is generous for a loaded shared machine and only bounds a failing test.
EVENT_WAIT = 10.0

PAGE = b"<!DOCTYPE html>\n<html><head><link rel=\"stylesheet\" href=\"style.css\"></head>" \
       b"<body><h1>Hello</h1></body></html>\n"


def make_root(root):
    """A served folder: a page, a page without </body>, a stylesheet, a gzipped page sibling."""
    root.mkdir()
    (root / "index.html").write_bytes(PAGE)
    (root / "bare.html").write_bytes(b"<p>no body end</p>")
    (root / "style.css").write_bytes(b"h1 { color: red }\n")
    (root / "app.js").write_bytes(b"console.log(1)\n")
    (root / "gz.html").write_bytes(PAGE)
    (root / "gz.html.gz").write_bytes(gzip.compress(PAGE))
    (root / "big.html").write_bytes(b"<html><body>" + b"x" * 200_000 + b"</body></html>")
    (root / "folder").mkdir()
    (root / "folder" / "a.txt").write_bytes(b"a\n")
    return root


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path / "root")


def open_stream(server) -> socket.socket:
    """A socket that has asked for the event stream (nothing read yet)."""
    sock = server.connect(timeout=EVENT_WAIT)
    sock.sendall(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """Read until `marker` is in what was received."""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


# ---- injection (pure) ------------------------------------------------------------------------

def test_the_script_goes_before_the_last_body_end_or_at_the_end():
    assert inject(b"<body>a</body></html>") == b"<body>a" + SCRIPT + b"</body></html>"
    assert inject(b"<BODY>a</Body >x</body>") == b"<BODY>a</Body >x" + SCRIPT + b"</body>"
    assert inject(b"<p>x") == b"<p>x" + SCRIPT


def test_an_injected_page_has_its_own_etag_keeping_weakness():
    assert page_etag('"abc"') == '"abc-lr"'
    assert page_etag('W/"abc"') == 'W/"abc-lr"'


def test_the_hub_numbers_messages_and_rings_its_bell():
    hub = Hub()
    woken = []
    hub.add_listener(lambda: woken.append(1))
    bell, seq = hub.bell()
    try:
        hub.publish(["/a.html", "/b c.css"])
        assert woken == [1]
        assert hub.since(seq) == (1, b"event: change\ndata: /a.html\n\nevent: change\n"
                                     b"data: /b c.css\n\n")
        assert hub.since(1) == (1, b"")
        assert select.select([bell], [], [], 0)[0] == [bell]
    finally:
        os.close(bell)
        hub.close()


# ---- the watcher -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".hidden", "dir/.git/x", "a.swp", "b.html~", ".#c.html",
                                  "4913", "sub/.x.swx"])
def test_dotfiles_and_editor_temporaries_are_ignored(name):
    assert ignored(name.replace("/", os.sep))


def test_ordinary_names_are_announced():
    assert not ignored("index.html") and not ignored("sub/4913.txt") and not ignored("a~b")


def test_a_burst_is_one_event_per_path_when_its_window_closes():
    batcher = Batcher()
    assert batcher.wait(0.0) is None
    for step in range(10):
        batcher.add("a.html", step * 0.001)
        batcher.add("b.css", step * 0.001)
    batcher.add(".swp", 0.01)
    assert 0 < batcher.wait(0.01) <= 0.1
    assert batcher.wait(0.2) == 0
    assert batcher.take() == ["/a.html", "/b.css"]
    assert batcher.wait(0.3) is None


def test_scans_see_creations_modifications_and_deletions(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("2")
    before = scan(str(tmp_path))
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "sub" / "b.txt").unlink()
    (tmp_path / "c.txt").write_text("3")
    (tmp_path / ".hidden").write_text("3")
    assert sorted(changed(before, scan(str(tmp_path)))) == ["a.txt", "c.txt", "sub/b.txt"]


@pytest.fixture(params=WATCHERS)
def watched(request, tmp_path):
    """A watched folder and the queue its bursts arrive on."""
    root = tmp_path / "w"
    root.mkdir()
    (root / "old.txt").write_text("old")
    bursts: queue.Queue = queue.Queue()
    watcher = Watcher(str(root), bursts.put, use_inotify=request.param == "inotify").start()
    assert watcher.method == request.param
    yield root, bursts
    watcher.stop()


def announced(bursts: queue.Queue, wanted: set[str]) -> set[str]:
    """Collect announced paths until every wanted one came (or the wait ends)."""
    seen: set[str] = set()
    deadline = time.monotonic() + EVENT_WAIT
    while not wanted <= seen and time.monotonic() < deadline:
        try:
            seen.update(bursts.get(timeout=0.1))
        except queue.Empty:
            pass
    return seen


def test_the_watcher_announces_each_kind_of_change(watched):
    root, bursts = watched
    (root / "new.html").write_text("new")
    (root / "old.txt").rename(root / "renamed.txt")
    (root / ".secret").write_text("x")
    (root / "page.html.swp").write_text("x")
    seen = announced(bursts, {"/new.html", "/old.txt", "/renamed.txt"})
    assert {"/new.html", "/old.txt", "/renamed.txt"} <= seen
    assert not {p for p in seen if ".secret" in p or p.endswith(".swp")}
    (root / "new.html").unlink()
    assert "/new.html" in announced(bursts, {"/new.html"})


def test_the_watcher_sees_files_in_folders_made_after_it_started(watched):
    root, bursts = watched
    (root / "made" / "deeper").mkdir(parents=True)
    (root / "made" / "deeper" / "x.css").write_text("x")
    assert "/made/deeper/x.css" in announced(bursts, {"/made/deeper/x.css"})
    (root / "made" / "deeper" / "x.css").write_text("again")
    assert "/made/deeper/x.css" in announced(bursts, {"/made/deeper/x.css"})


def announced_until(bursts: queue.Queue, root, sentinel: str) -> set[str]:
    """Paths announced until a file `sentinel` written now in `root` is: every change made
    before it has been announced by then (the watcher reports changes in order)."""
    (root / sentinel).write_text("x")
    seen = announced(bursts, {"/" + sentinel})
    assert "/" + sentinel in seen, seen
    return seen


def test_a_folder_moved_out_of_the_root_is_no_longer_watched_and_one_moved_in_is(watched,
                                                                                tmp_path):
    root, bursts = watched
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "deeper" / "b.txt").write_text("b")
    announced_until(bursts, root, "made.txt")
    (root / "sub").rename(root / "renamed")  # within the root: watched under its new name
    announced_until(bursts, root, "renamed.txt")
    (root / "renamed" / "deeper" / "b.txt").write_text("b2")
    seen = announced_until(bursts, root, "changed.txt")
    assert "/renamed/deeper/b.txt" in seen and not any(p.startswith("/sub") for p in seen)
    outside = tmp_path / "outside"
    (root / "renamed").rename(outside)  # out of the root: its changes are no longer ours
    announced_until(bursts, root, "moved-out.txt")
    (outside / "a.txt").write_text("a3")
    (outside / "deeper" / "b.txt").write_text("b3")
    (outside / "deeper" / "new.txt").write_text("n")
    seen = announced_until(bursts, root, "after.txt")
    assert not any(p.startswith(("/renamed", "/sub")) for p in seen), seen
    outside.rename(root / "back")  # moved in: watched, folders below it too
    announced_until(bursts, root, "moved-in.txt")
    (root / "back" / "deeper" / "b.txt").write_text("b4")
    assert "/back/deeper/b.txt" in announced(bursts, {"/back/deeper/b.txt"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_the_rescan_after_lost_events_forgets_folders_that_left_the_root(tmp_path):
    # When the kernel's queue overflows, the events of a move are lost: the rescan that
    # follows must drop the watch of a folder that is no longer in the tree.
    root = tmp_path / "w"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "b.txt").write_text("b")
    inotify = Inotify(str(root))
    try:
        (root / "sub").rename(tmp_path / "outside")
        while True:  # the events are lost, as in an overflow
            try:
                os.read(inotify.fd, 65536)
            except BlockingIOError:
                break
        batcher = Batcher()
        inotify.rescan(batcher, 0.0)
        (tmp_path / "outside" / "deeper" / "b.txt").write_text("b2")
        (root / "after.txt").write_text("x")
        inotify.read(batcher, 0.0)
        assert batcher.take() == ["/after.txt"]
    finally:
        inotify.close()


@pytest.mark.parametrize("method", WATCHERS)
def test_removing_an_empty_folder_is_announced(tmp_path, method):
    """The parent's listing changes: both watchers announce the folder's path (the scan used
    to compare files only, so a folder holding none changed nothing it saw)."""
    (tmp_path / "empty").mkdir()
    bursts: queue.Queue = queue.Queue()
    watcher = Watcher(str(tmp_path), bursts.put, use_inotify=method == "inotify").start()
    try:
        assert watcher.method == method
        (tmp_path / "empty").rmdir()
        assert "/empty" in announced(bursts, {"/empty"})
    finally:
        watcher.stop()


def test_a_burst_of_writes_to_one_file_is_announced_once(watched):
    root, bursts = watched
    with open(root / "many.js", "w") as file:
        for _ in range(50):
            file.write("x" * 100)
            file.flush()
    seen = []
    deadline = time.monotonic() + EVENT_WAIT
    while "/many.js" not in seen and time.monotonic() < deadline:
        try:
            seen.extend(bursts.get(timeout=0.1))
        except queue.Empty:
            pass
    assert seen.count("/many.js") == 1


# ---- over sockets, each engine ---------------------------------------------------------------

def test_off_by_default_nothing_changes(root, make_server, mode):
    server = make_server(root, mode, "--quiet")
    assert "live reload" not in server.banner
    assert get(server, STREAM_PATH).status == 404
    page = get(server, "/index.html")
    assert page.body == PAGE
    (root / "__livereload").write_bytes(b"just a file\n")
    assert get(server, STREAM_PATH).body == b"just a file\n"


def test_a_change_is_announced_on_the_stream(root, make_server, mode):
    server = make_server(root, mode, "--quiet", "--live-reload")
    assert "live reload on" in server.banner
    with open_stream(server) as sock:
        data = read_until(sock, b"retry: 1000\n\n")
        head = data.split(b"\r\n\r\n")[0].decode().lower()
        assert head.startswith("http/1.1 200")
        assert "content-type: text/event-stream" in head
        assert "cache-control: no-store" in head
        (root / "style.css").write_bytes(b"h1 { color: blue }\n")
        data = read_until(sock, b"data: /style.css\n\n", data)
        assert b"event: change\ndata: /style.css\n\n" in data
        (root / ".hidden.html").write_bytes(b"x")
        (root / "folder" / "b c.html").write_bytes(b"x")
        data = read_until(sock, b"data: /folder/b%20c.html\n\n", data)
        assert b".hidden" not in data


def test_html_pages_carry_the_script_consistently(root, make_server, mode):
    server = make_server(root, mode, "--quiet", "--live-reload")
    for path in ("/", "/index.html", "/gz.html", "/bare.html", "/big.html"):
        # big.html's gzip coding is made off the loop (tested below): identity asked here.
        accept = {"Accept-Encoding": "gzip" if path != "/big.html" else "identity"}
        page = get(server, path, accept)
        assert page.status == 200, path
        assert SCRIPT in page.body, path
        assert int(page.headers["content-length"]) == len(page.body), path
        assert "content-encoding" not in page.headers, path  # the .gz sibling is not the page
        assert page.headers["etag"].endswith('-lr"'), path
        head = get(server, path, accept, method="HEAD")
        assert head.headers["content-length"] == page.headers["content-length"], path
        assert head.headers["etag"] == page.headers["etag"], path
        again = get(server, path, {"If-None-Match": page.headers["etag"]})
        assert again.status == 304 and again.headers["etag"] == page.headers["etag"], path
        stale = page.headers["etag"].replace('-lr"', '"')  # the file's own tag: not this page
        assert get(server, path, {"If-None-Match": stale}).status == 200, path
        part = get(server, path, {"Range": "bytes=0-9"})
        assert part.status == 206 and part.body == page.body[:10], path
    assert get(server, "/bare.html").body == b"<p>no body end</p>" + SCRIPT
    listing = get(server, "/folder/")
    assert SCRIPT in listing.body and listing.headers["etag"].endswith('-lr"')
    assert get(server, "/folder/", {"If-None-Match": listing.headers["etag"]}).status == 304
    for path, body in (("/style.css", b"h1 { color: red }\n"), ("/app.js", b"console.log(1)\n")):
        assert get(server, path).body == body  # other types are never touched


def test_other_requests_to_the_stream_path_get_ordinary_answers(root, make_server, mode):
    server = make_server(root, mode, "--quiet", "--live-reload")
    assert get(server, STREAM_PATH, method="POST").status == 405
    assert get(server, STREAM_PATH, method="DELETE").status == 405
    assert get(server, STREAM_PATH, method="BREW").status == 501
    head = get(server, STREAM_PATH, method="HEAD")
    assert head.status == 200 and head.headers["content-type"] == "text/event-stream"
    with server.connect(timeout=EVENT_WAIT) as sock:  # a Range is ignored: still the stream
        sock.sendall(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n"
                     .encode())
        assert b"200 OK" in read_until(sock, b"retry: 1000\n\n")


def test_sigterm_with_open_streams_exits_promptly_with_status_0(root, make_server, mode):
    server = make_server(root, mode, "--quiet", "--live-reload", "--drain-timeout", "30")
    streams = [open_stream(server) for _ in range(5)]
    for sock in streams:
        read_until(sock, b"retry: 1000\n\n")
    started = time.monotonic()
    status, _, err = server.stop(signal.SIGTERM)
    # Well under the drain bound: streams are closed at once, not drained.
    assert status == 0 and time.monotonic() - started < 15, err
    for sock in streams:
        sock.settimeout(EVENT_WAIT)
        assert sock.recv(100) == b""
        sock.close()


def test_a_client_closing_its_stream_frees_it_and_others_go_on(root, make_server, mode):
    server = make_server(root, mode, "--quiet", "--live-reload", "--max-threads", "4")
    first = open_stream(server)
    read_until(first, b"retry: 1000\n\n")
    first.close()
    # The threaded engine holds a thread per stream: with 4 threads, streams that were closed
    # must have given theirs back for these to be served.
    socks = []
    for _ in range(3):
        sock = open_stream(server)
        read_until(sock, b"retry: 1000\n\n")
        socks.append(sock)
    socks.pop().close()
    assert wait_until(lambda: get(server, "/app.js").status == 200, EVENT_WAIT)
    (root / "app.js").write_bytes(b"console.log(2)\n")
    for sock in socks:
        assert b"data: /app.js\n" in read_until(sock, b"data: /app.js\n")
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["reactor", "threaded"])
def test_the_stream_bench_holds_streams_and_fans_a_change_out(engine):
    pytest.importorskip("resource", reason="the bench harness is POSIX-only")
    from bench import streams
    result = streams.probe(engine, 20)
    assert result["held"] == 20 and result["delivered"] == 20, result
    assert result["fanout_seconds"] is not None and result["rss_per_stream_kib"] is not None


@pytest.mark.parametrize("engine", MODES)
@pytest.mark.slow  # over ~1 s: left out of the quick subset
def test_an_idle_stream_gets_heartbeat_comments(engine, root, monkeypatch):
    # In-process, with the heartbeat every 0.2 s instead of 15 s.
    monkeypatch.setattr(livereload, "HEARTBEAT_INTERVAL", 0.2)
    config = Config(root=str(root), port=0, mode=engine, quiet=True, live_reload=True)
    banners: list = []
    engines: list = []
    thread = threading.Thread(target=serve, args=(config,), daemon=True,
                              kwargs={"banner": banners.append, "ready": engines.append})
    thread.start()
    try:
        assert wait_until(lambda: engines, EVENT_WAIT)
        port = int(BANNER.search(banners[0].encode()).group(2))
        with socket.create_connection(("127.0.0.1", port), timeout=EVENT_WAIT) as sock:
            sock.sendall(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = read_until(sock, b"retry: 1000\n\n")
            data = read_until(sock, b"\n\n:\n\n:\n\n", data)  # two heartbeats
            assert b"event:" not in data
    finally:
        if engines:
            engines[0].request_stop()
        thread.join(EVENT_WAIT)
    assert not thread.is_alive()


@pytest.mark.slow
def test_a_stream_never_read_holds_a_capped_buffer_and_is_dropped_by_the_send_timer(
        root, make_server, mode, tmp_path):
    # The kernel's send buffer of an event stream is capped (livereload.STREAM_SNDBUF): a client
    # that never reads stalls the server's sends after kilobytes, not after the megabytes an
    # autotuned buffer takes, and the send timer (--send-timeout 1) then drops it.
    logs = tmp_path / "logs"
    server = make_server(root, mode, "--quiet", "--live-reload", "--send-timeout", "1",
                         "--log-dir", str(logs))
    good = open_stream(server)
    read_until(good, b"retry: 1000\n\n")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    stalled.settimeout(EVENT_WAIT)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(f"GET {STREAM_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    read_until(stalled, b"retry: 1000\n\n")
    ports = server_ports(stalled)
    queued = []  # bytes the server's kernel holds for the stalled client, after each round

    def each_round(last: bytes) -> None:
        read_until(good, last)  # the reading stream gets every round
        queued.append((tcp_entry(tcp_table(), *ports) or (0,) * 6)[3])

    def dropped() -> bool:
        return (tcp_entry(tcp_table(), *ports) or (0,) * 6)[5] == 0

    try:
        stall_stream(root, stalled, each_round)
        # Linux doubles SO_SNDBUF for its own bookkeeping: the data it holds stays below that.
        assert max(queued) <= 2 * livereload.STREAM_SNDBUF, queued
        assert wait_until(dropped, EVENT_WAIT), "the server kept a stream whose client never reads"
        (root / "after.txt").write_bytes(b"x")
        assert b"data: /after.txt\n" in read_until(good, b"data: /after.txt\n")
    finally:
        good.close()
        stalled.close()
    status, _, err = server.stop()
    assert status == 0, err
    text = "".join(path.read_text() for path in logs.iterdir())
    assert "send timeout" in text and "event stream not read" not in text, text


@pytest.mark.slow
@needs_fork()
def test_each_worker_watches_and_streams(root, make_server):
    server = make_server(root, "reactor", "--quiet", "--live-reload", "--workers", "2")
    method = "inotify" if FACTS.watcher == "inotify" else "polling"
    assert f"2 workers), live reload on ({method})" in server.banner  # as one process says it
    with open_stream(server) as sock:
        read_until(sock, b"retry: 1000\n\n")
        (root / "index.html").write_bytes(PAGE + b"<!-- changed -->")
        assert b"data: /index.html\n" in read_until(sock, b"data: /index.html\n")
    status, _, err = server.stop()
    assert status == 0, err


def test_an_injected_page_is_compressed_on_the_fly_when_the_client_accepts_gzip(
        root, make_server, mode):
    # On-the-fly compression applies to the injected page (never a prepared .gz sibling).
    page = b"<html><head><title>t</title></head><body>" + b"<p>hello</p>\n" * 300 + \
        b"</body></html>\n"
    (root / "mid.html").write_bytes(page)
    (root / "mid.html.gz").write_bytes(gzip.compress(page))  # the uninjected file: never sent
    server = make_server(root, mode, "--quiet", "--live-reload")
    plain = get(server, "/mid.html")
    assert "content-encoding" not in plain.headers and SCRIPT in plain.body
    packed = get(server, "/mid.html", {"Accept-Encoding": "gzip"})
    assert packed.status == 200 and packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body  # the injected page, compressed
    assert "Accept-Encoding" in packed.headers["vary"] and "Accept-Encoding" in plain.headers["vary"]
    assert packed.headers["etag"] != plain.headers["etag"]
    head = get(server, "/mid.html", {"Accept-Encoding": "gzip"}, method="HEAD")
    assert head.headers["content-length"] == str(len(packed.body))
    assert head.headers["etag"] == packed.headers["etag"]
    again = get(server, "/mid.html", {"Accept-Encoding": "gzip",
                                      "If-None-Match": packed.headers["etag"]})
    assert again.status == 304
    part = get(server, "/mid.html", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert part.status == 206 and part.body == packed.body[:10]


def test_an_injected_page_over_16_kib_is_compressed_off_the_loop(root, make_server, mode):
    # Larger than content_coding.INLINE_MAX: the background worker makes the coding of the
    # injected page (the identity page answers meanwhile), as for any other large file.
    (root / "large.html").write_bytes(b"<html><body>" + os.urandom(15_000).hex().encode() +
                                      b"<p>end</p>" * 1000 + b"</body></html>\n")  # 40 KiB
    server = make_server(root, mode, "--quiet", "--live-reload")
    for path in ("/large.html", "/big.html"):  # in the small-file cache, and read from disk
        plain = get(server, path)
        assert SCRIPT in plain.body and "content-encoding" not in plain.headers, path

        def packed():
            answer = get(server, path, {"Accept-Encoding": "gzip"})
            assert answer.status == 200 and "Accept-Encoding" in answer.headers["vary"], path
            return answer if answer.headers.get("content-encoding") == "gzip" else None

        assert wait_until(packed, EVENT_WAIT), path
        answer = packed()
        assert answer is not None and gzip.decompress(answer.body) == plain.body, path
        assert answer.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"', path
        head = get(server, path, {"Accept-Encoding": "gzip"}, method="HEAD")
        assert head.headers["content-length"] == str(len(answer.body)), path
        again = get(server, path, {"Accept-Encoding": "gzip",
                                   "If-None-Match": answer.headers["etag"]})
        assert again.status == 304, path
        part = get(server, path, {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
        assert part.status == 206 and part.body == answer.body[:10], path
