"""--live-reload: the script put into HTML pages, the event stream's answer, and the change hub.

Pure rendering plus one small thread-safe hub; no sockets. The watcher (watcher.py) calls
`Hub.publish(paths)` from its thread; the hub renders one Server-Sent Events message for the
batch and tells the engines: the reactor through a callback that writes to its wake-up socket,
the threaded engine's stream threads through a "bell" socket that becomes readable.

The event stream (HTML Living Standard, section 9.2 "Server-sent events"): `retry:` sets the
client's reconnection delay, a line starting with `:` is a comment (our heartbeat), and each
change is `event: change` + `data: <URL path>` + a blank line.
"""

from __future__ import annotations

import collections
import os
import re
import socket
import threading
from urllib.parse import quote

from .facilities import pread
from .messages import Response, StreamResponse

# The URL path of the event stream. Off by default; with --live-reload this path is the stream
# whether or not a file of that name exists.
STREAM_PATH = "/__livereload"
# The reconnection delay (milliseconds) the stream asks of EventSource: after a server restart
# the page reconnects about this soon.
RETRY_MS = 1000
# Seconds between two heartbeat comments: keeps proxies and NAT tables from dropping an idle
# stream, and lets the server notice a client that has gone away.
HEARTBEAT_INTERVAL = 15.0
# The heartbeat comment.
HEARTBEAT = b":\n\n"
# Messages the hub remembers (batches), for a stream thread that was busy while several came.
HISTORY = 64
# Bytes a stream may have queued and unsent before it is dropped at once (a client that does not
# read its stream is otherwise dropped by the send timeout): bounds what one slow reader costs.
OUTBOX_MAX = 256 * 1024
# SO_SNDBUF of an event stream's socket (bytes; Linux doubles it for its bookkeeping). An
# autotuned buffer grows to net.ipv4.tcp_wmem's maximum (4 MiB by default) before a client that
# never reads stalls our sends and starts the send timer; a stream's messages are small (a
# change is about 50 bytes), so 64 KiB holds a large burst and a stalled client costs that much.
STREAM_SNDBUF = 64 * 1024

# The stream response's fields (its answer says it is a stream: Response.stream).
STREAM_FIELDS = (("Content-Type", "text/event-stream"), ("Cache-Control", "no-store"))
# The body the stream starts with: the reconnection delay.
STREAM_START = f"retry: {RETRY_MS}\n\n".encode("ascii")

# The script put into every HTML page. A change to a stylesheet the page links is swapped in
# place (a new link element loads, then the old one goes, so nothing flashes); any other change
# reloads the page. EventSource reconnects by itself when the server restarts.
SCRIPT = ("""<script>/* reactor_http live reload */(function () {
  if (!window.EventSource || window.__reactorLiveReload) return;
  window.__reactorLiveReload = true;
  var source = new EventSource("%s");
  function swap(path) {
    var found = false;
    var links = document.querySelectorAll('link[rel~="stylesheet"]');
    for (var i = 0; i < links.length; i++) {
      var link = links[i];
      var url = new URL(link.href, location.href);
      if (url.origin !== location.origin || decodeURI(url.pathname) !== decodeURI(path)) continue;
      found = true;
      var fresh = link.cloneNode();
      url.searchParams.set("livereload", Date.now());
      fresh.href = url.href;
      fresh.onload = fresh.onerror = function (old) {
        return function () { if (old.parentNode) old.parentNode.removeChild(old); };
      }(link);
      link.parentNode.insertBefore(fresh, link.nextSibling);
    }
    return found;
  }
  source.addEventListener("change", function (event) {
    var path = event.data;
    if (/\\.css$/i.test(path) && swap(path)) return;
    location.reload();
  });
})();</script>
""" % STREAM_PATH).encode("ascii")

_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
# Added inside an ETag's quotes: an injected page is a different representation from the file.
ETAG_SUFFIX = "-lr"


def is_html(content_type: str) -> bool:
    """True for the media types the script is put into."""
    return content_type.startswith("text/html")


def inject(body: bytes) -> bytes:
    """`body` with the script before its last `</body>`, or appended when there is none."""
    last = None
    # The loop only leaves `last` at the last match (bugbear thinks it unused).
    for last in _BODY_END.finditer(body):  # noqa: B007
        pass
    if last is None:
        return body + SCRIPT
    return body[:last.start()] + SCRIPT + body[last.start():]


def page_etag(etag: str) -> str:
    """The ETag of an injected page: the file's, changed inside its quotes (weakness kept);
    none if the file has none yet (validators.Digests)."""
    return etag[:-1] + ETAG_SUFFIX + '"' if etag else ""


def injected_page(data: bytes | None, fd: int | None, size: int, etag: str):
    """(page bytes, their length, their ETag) of an HTML file held as `data` or open as `fd`.

    A page larger than the small-file cache is read whole here: pages are small, and the
    script's place depends on the end of the page.
    """
    if data is None:
        assert fd is not None  # the file is held in memory or open
        data = pread(fd, size, 0)
    page = inject(data)
    return page, len(page), page_etag(etag)


def stream_response(head_only: bool) -> Response:
    """The answer to GET (an event stream: STREAM_FIELDS, the retry line) or HEAD (its head)."""
    if head_only:
        return Response(200, STREAM_FIELDS)
    # close: the stream's body ends only when the connection does (RFC 9112 section 6.3).
    return StreamResponse(200, STREAM_FIELDS, [STREAM_START], len(STREAM_START), close=True)


def url_path(relative: str) -> str:
    """The URL path of a file given by its path relative to the root (OS separators)."""
    return "/" + quote(relative.replace(os.sep, "/"))


def change_message(paths) -> bytes:
    """One SSE message per changed URL path, concatenated."""
    return b"".join(b"event: change\ndata: " + path.encode("ascii") + b"\n\n" for path in paths)


class Hub:
    """Where changes meet streams: numbered messages, listeners to wake, and a bell.

    `publish` runs on the watcher's thread. A reactor registers a listener (a callable taking
    no argument, which must not block) and reads new messages with `since(seq)` on its own
    thread. A stream thread of the threaded engine takes `bell()`: its own copy of the read end
    of a socket pair, which becomes readable at the next publish (each publish rings the current
    pair and starts a fresh one; copies keep a rung pair readable until their owners close
    them). A socket pair, not a pipe: Windows' select() waits on sockets only.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.seq = 0
        self._history: collections.deque = collections.deque(maxlen=HISTORY)
        self._listeners: list = []
        self._bell_r, self._bell_w = socket.socketpair()

    def add_listener(self, callback) -> None:
        """Call `callback()` after every publish (from the publishing thread)."""
        self._listeners.append(callback)

    def publish(self, paths) -> None:
        """Announce changed URL paths to every stream."""
        message = change_message(paths)
        if not message:
            return
        with self._lock:
            self.seq += 1
            self._history.append((self.seq, message))
            old_r, old_w = self._bell_r, self._bell_w
            self._bell_r, self._bell_w = socket.socketpair()
            old_w.send(b"\0")
            old_w.close()
            old_r.close()  # copies held by waiting threads keep the rung pair readable
        for callback in self._listeners:
            callback()

    def since(self, seq: int) -> tuple[int, bytes]:
        """(latest sequence number, the messages published after `seq` concatenated)."""
        with self._lock:
            latest = self.seq
            if latest == seq:
                return latest, b""
            return latest, b"".join(message for number, message in self._history
                                    if number > seq)

    def bell(self) -> tuple[int, int]:
        """(a new socket descriptor readable at the next publish, the sequence number now).

        The caller owns the descriptor and closes it with `socket.close(fd)`.
        """
        with self._lock:
            return self._bell_r.dup().detach(), self.seq

    def close(self) -> None:
        """Release the bell."""
        with self._lock:
            self._bell_r.close()
            self._bell_w.close()
