"""aiohttp's web.static as a bench competitor (what an asyncio user would run).

Usage: python bench/aiohttp_server.py --root DIR --host 127.0.0.1 --port N
`/` serves index.html (web.static alone has no index file). SIGTERM or
SIGINT stops it (aiohttp's run_app handles both).
"""

import sys
from pathlib import Path

from peer_args import peer_args  # a sibling script module (see peer_args.py)


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

    args = peer_args(__doc__.splitlines()[0], argv)
    # keepalive_timeout: aiohttp's default (75 s) would not close our idle
    # probe either, but say it explicitly, as for every other server.
    web.run_app(build_app(args.root), host=args.host, port=args.port,
                access_log=None, print=lambda *a: None, keepalive_timeout=300,
                shutdown_timeout=1,
                backlog=4096)
    return 0


if __name__ == "__main__":
    sys.exit(main())
