"""sanic's static handler as a bench peer (one process, uvloop: what a sanic user would run).

Usage: python bench/sanic_server.py --root DIR --host 127.0.0.1 --port N
One process (`single_process=True`), no access log, the folder served by `app.static` with
index.html for `/`, Range support on and large files streamed (sanic's settings for serving
files). SIGTERM or SIGINT stops it (sanic handles both).
"""

import argparse
import resource
import sys

#: Idle keep-alive seconds, as every bench server gets (sanic's default is 120).
KEEPALIVE_TIMEOUT_S = 300


def _raise_nofile_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    _raise_nofile_limit()
    app = build_app(args.root)
    app.run(host=args.host, port=args.port, single_process=True, access_log=False,
            backlog=4096, debug=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
