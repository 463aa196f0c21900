"""Every knob of the server in one frozen dataclass: the declarations in options.py, validated.

`Config`'s fields, types and defaults are those of `options.Settings` (their units, ranges and the
reasons for them are written there), plus `worker`, which the supervisor sets in each worker.
This module owns validation of a whole configuration: each value's range (the same check the
command line makes), the settings that depend on each other, and the files and folders named.
It knows nothing about sockets, argparse or HTTP parsing.
"""

from __future__ import annotations

import dataclasses
import os

from .addresses import parse_networks
from .extras import BasicAuth, header_fields, mime_table
from .facilities import FACTS
from .options import OPTIONS, Settings, problem


@dataclasses.dataclass(frozen=True)
class Config(Settings):
    """The server's settings (see options.Settings). Times are seconds, sizes bytes."""

    # Set by the supervisor in each worker: (slot, of N). None in a single process.
    worker: tuple[int, int] | None = None

    def validate(self) -> Config:
        """Raise ValueError naming the first bad setting (with its --flag); return self."""
        for option in OPTIONS:
            message = problem(option, getattr(self, option.name))
            if message:
                raise ValueError(message)
        self._check_processes()
        if (self.keyfile or self.tls_port is not None) and not self.certfile:
            raise ValueError("--keyfile and --tls-port need --certfile")
        if self.tls_port is not None and self.workers > 1:
            raise ValueError("--tls-port is not supported with --workers; serve HTTPS on --port")
        if self.tls_port is not None and self.tls_port == self.port != 0:
            raise ValueError(f"--tls-port and --port must differ (both are {self.port}): one port "
                             f"serves either HTTP or HTTPS")
        if self.certfile and not os.path.isfile(self.certfile):
            raise ValueError(f"--certfile {self.certfile!r} does not exist or is not a file")
        if self.keyfile and not os.path.isfile(self.keyfile):
            raise ValueError(f"--keyfile {self.keyfile!r} does not exist or is not a file")
        if self.status_path is not None and not self.status_path.startswith("/"):
            raise ValueError(f"--status path must start with '/', not {self.status_path!r}")
        if self.status_path is not None and not status_segments(self.status_path):
            raise ValueError(f"--status {self.status_path} would replace the site's home page "
                             f"with the counters; choose a path such as /status")
        if self.status_allow and self.status_path is None:
            raise ValueError("--status-allow does nothing without --status PATH")
        if self.immutable and self.max_age is None:
            # RFC 8246: immutable qualifies a freshness lifetime; alone it used to mean a year
            # for every file, index.html included. nginx and Caddy have no such shortcut.
            raise ValueError("--immutable needs --max-age SECONDS (for fingerprinted assets: "
                             "--max-age 31536000 --immutable)")
        for name in ("trust_proxy", "status_allow"):
            try:
                parse_networks(tuple(getattr(self, name)))
            except ValueError as exc:
                raise ValueError(f"--{name.replace('_', '-')}: {exc}") from None
        header_fields(self.headers)
        if self.cors and any(text.partition(":")[0].strip().lower() ==
                             "access-control-allow-origin" for text in self.headers):
            # Two Access-Control-Allow-Origin fields fail every CORS check (Fetch standard).
            raise ValueError("--header Access-Control-Allow-Origin and --cors both set that field; "
                             "give one")
        mime_table(self.mime)
        if self.auth is not None:
            BasicAuth(self.auth)
        if not os.path.isdir(self.root):
            raise ValueError(f"--root {self.root!r} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise ValueError(f"--root {self.root!r} is not readable")
        return self

    def _check_processes(self) -> None:
        """--workers and --max-connections: what the engine and this platform allow (README,
        "Platforms"), refused in one line."""
        if self.workers > 1 and self.mode != "reactor":
            raise ValueError("--workers needs --mode reactor")
        if self.workers > 1 and not FACTS.fork:
            raise ValueError(f"--workers {self.workers}: worker processes need fork(), which "
                             f"{FACTS.name} lacks; serve with one process (--workers 1)")
        cap = FACTS.connection_cap
        if self.mode == "reactor" and cap is not None and self.max_connections > cap:
            raise ValueError(f"--max-connections {self.max_connections}: select(), the only "
                             f"poller on {FACTS.name}, holds at most {cap} connections here; "
                             f"give at most {cap}")


def status_segments(path: str) -> list[str]:
    """The segments of a --status path as it would name a file of the root (`.` dropped)."""
    return [segment for segment in path.split("/") if segment not in ("", ".")]


def status_shadow(config: Config) -> str | None:
    """The start-up warning for a --status path that names a file or folder of the root (whose
    answer the counters replace), or None. A warning, not a refusal: the root's content
    changes under a configuration, and a deploy that adds such a file must not stop a restart."""
    if config.status_path is None:
        return None
    segments = status_segments(config.status_path)
    if not os.path.lexists(os.path.join(config.root, *segments)):
        return None
    return (f"--status {config.status_path} shadows {'/'.join(segments)} in --root: it "
            f"answers with the counters instead")
