"""The standard library's http.server, in HTTP/1.1 mode, as a bench competitor.

`python -m http.server` speaks HTTP/1.0 and closes every connection, which
would make any keep-alive comparison unfair; this is the same server with the
one-line change a user would make (protocol_version = "HTTP/1.1").

Usage: python bench/http11_server.py --root DIR --host 127.0.0.1 --port N
SIGTERM or SIGINT stops it with exit status 0.
"""

import functools
import http.server
import signal
import sys
import threading

from peer_args import peer_args  # a sibling script module (see peer_args.py)

#: Listen backlog. socketserver's default of 5 would turn a burst of 1,000
#: connects into SYN retries and measure the backlog, not the server.
LISTEN_BACKLOG = 4096


class Http11Handler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with keep-alive (HTTP/1.1), TCP_NODELAY and no access log."""

    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes; with Nagle on, the body
    # waits for the client's delayed ACK (~40 ms) on every keep-alive
    # response, and the bench would measure that stall, not the server.
    # StreamRequestHandler's own switch sets TCP_NODELAY.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


class Http11Server(http.server.ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True



def main(argv=None):
    args = peer_args(__doc__.splitlines()[0], argv)
    handler = functools.partial(Http11Handler, directory=args.root)
    server = Http11Server((args.host, args.port), handler)

    def stop(signum, frame):
        # shutdown() blocks until serve_forever returns, so call it elsewhere.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"Serving {args.root} at http://{args.host}:{server.server_address[1]}/ "
          "(http.server, HTTP/1.1)", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
