"""reactor_http: a static-file HTTP/1.1 server on a single-threaded selectors reactor.

Public surface only: the version, the configuration and the entry point that runs an engine.
"""

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .server import serve  # noqa: E402

__all__ = ["__version__", "Config", "serve"]
