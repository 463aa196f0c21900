"""reactor_http: a static-file HTTP/1.1 server on a single-threaded reactor (epoll, or selectors).

Public surface only: the version, the configuration and the entry point that runs an engine.
`Config` and `serve` are loaded on first use (PEP 562), so importing a pure module such as
`reactor_http.parser` loads no start-up or engine code.
"""

from ._version import __version__

__all__ = ["__version__", "Config", "serve"]


def __getattr__(name):
    """Load `Config` and `serve` lazily."""
    if name == "Config":
        from .config import Config
        return Config
    if name == "serve":
        from .server import serve
        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
