"""aiohttp's web.static as a bench competitor (what an asyncio user would run).

Usage: python bench/aiohttp_server.py --root DIR --host 127.0.0.1 --port N
`/` serves index.html (web.static alone has no index file). SIGTERM or
SIGINT stops it (aiohttp's run_app handles both).
"""

import argparse
import resource
import sys
from pathlib import Path


def _raise_nofile_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_app(root):
    from aiohttp import web

    index = Path(root) / "index.html"

    async def index_page(request):
        return web.FileResponse(index)

    app = web.Application()
    app.router.add_get("/", index_page)
    app.router.add_static("/", root)
    return app


def main(argv=None):
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    _raise_nofile_limit()
    # keepalive_timeout: aiohttp's default (75 s) would not close our idle
    # probe either, but say it explicitly, as for every other server.
    web.run_app(build_app(args.root), host=args.host, port=args.port,
                access_log=None, print=lambda *a: None, keepalive_timeout=300,
                shutdown_timeout=1,
                backlog=4096)
    return 0


if __name__ == "__main__":
    sys.exit(main())
