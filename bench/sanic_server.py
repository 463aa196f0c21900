"""sanic's static handler as a bench peer (one process, uvloop: what a sanic user would run).

Usage: python bench/sanic_server.py --root DIR --host 127.0.0.1 --port N
One process (`single_process=True`), no access log, the folder served by `app.static` with
index.html for `/`, Range support on and large files streamed (sanic's settings for serving
files). SIGTERM or SIGINT stops it (sanic handles both).
"""

import sys

from peer_args import peer_args  # a sibling script module (see peer_args.py)

#: Idle keep-alive seconds, as every bench server gets (sanic's default is 120).
KEEPALIVE_TIMEOUT_S = 300



def build_app(root):
    """The sanic app: the folder under `/`, index.html for folders."""
    from sanic import Sanic

    app = Sanic("reactor_http_bench")
    app.config.KEEP_ALIVE_TIMEOUT = KEEPALIVE_TIMEOUT_S
    app.config.MOTD = False
    app.config.USE_UVLOOP = True
    app.static("/", root, index="index.html", use_content_range=True, stream_large_files=True)
    return app


def main(argv=None):
    args = peer_args(__doc__.splitlines()[0], argv)
    app = build_app(args.root)
    app.run(host=args.host, port=args.port, single_process=True, access_log=False,
            backlog=4096, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
