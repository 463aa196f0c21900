"""What every bench peer script does first: read --root/--host/--port, raise the open-files limit.

The peer servers (http11_server.py, aiohttp_server.py, sanic_server.py) run as scripts from this
folder (`python bench/NAME.py`), so they import this module by its plain name.
"""

from __future__ import annotations

import argparse
import resource


def peer_args(description: str, argv=None) -> argparse.Namespace:
    """Parse the options the bench passes every peer; raise RLIMIT_NOFILE to its hard limit."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # idle-capacity scenarios hold thousands of connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return args
