"""Every setting of the server, declared once: flag, kind, default, unit, help and valid range.

The declaration is the frozen dataclass `Settings`: a field per option, with its type and default,
and the rest (flag, kind, help, --help group, range) in the field's metadata. OPTIONS is read from
those fields. `config.Config` is `Settings` plus validation, `cli` builds the argument parser from
OPTIONS, `configfile` the keys of a --config file (each flag without its dashes),
`parser.Limits` takes its defaults from `Settings`, and README.md's option table is
generated from OPTIONS (`python -m reactor_http.options --update README.md`; a test fails when it
is stale). `problem(option, value)` is the one range check: `Config.validate()` makes it for
programmatic users and the command line alike (argparse's type functions only parse the text), so
both get the same one-line message naming the --option.

Pure data and small pure functions: imports nothing of this package but the platform's facts (a
leaf module, for the defaults that depend on the platform) and nothing heavy, because the
request parser imports it for its limits.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from typing import Any, TypeVar

from .facilities import FACTS

# Kinds of value. A kind fixes the Python type, how a value is checked and how it is described.
SECONDS = "seconds"      # a finite float (int accepted): a duration in seconds
WHOLE_SECONDS = "whole seconds"  # an int: a duration sent to clients in whole seconds
BYTES = "bytes"          # an int: a size in bytes
COUNT = "count"          # an int: a number of things
PORT = "port"            # an int: a TCP port, 0 = pick a free one
CHOICE = "choice"        # one of `choices`
SWITCH = "switch"        # a bool set by a flag without a value
TEXT = "text"            # a string: a path, an address, a URL path
ADDRESSES = "addresses"  # a tuple of strings, one per repetition of the flag
REPEATED = "repeated"    # a tuple of strings, one per repetition of the flag (not addresses)

_TYPES = {SECONDS: "float", WHOLE_SECONDS: "int", BYTES: "int", COUNT: "int", PORT: "int",
          CHOICE: "str", SWITCH: "bool", TEXT: "str", ADDRESSES: "tuple[str, ...]",
          REPEATED: "tuple[str, ...]"}
# Kinds whose flag may be given many times, each adding one value.
REPEATABLE = (ADDRESSES, REPEATED)

# The longest duration any option accepts (seconds). Every timeout here bounds how long a
# descriptor, a thread or a stop may be held by one client; past a day that is a leak, not a
# policy, and such a value is almost always a unit mistake (minutes or milliseconds typed as
# seconds). inf and nan are refused: nan compares false with everything, so a nan deadline
# fires at once or never.
ONE_DAY = 86_400
# TCP port numbers (RFC 793: 16 bits).
PORT_MAX = 65_535
# Cache-Control max-age: RFC 9111 section 1.2.2 tells caches to read larger delta-seconds as
# 2^31 (about 68 years), so nothing larger means anything.
MAX_AGE_MAX = 2 ** 31

# --help sections, in the order they are printed (None: the main list).
GROUPS = (None, "TLS", "connections and limits", "what is served", "logging", "deployment")


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its `Settings` field, its command-line flag, and the values it takes."""

    name: str                      # the Settings (and so Config) field
    flag: str | None               # the command-line option; None: settable from code only
    kind: str                      # one of the kinds above
    default: object                # None: the feature is off unless given
    help: str                      # the --help text and README's description (no default)
    group: str | None = None       # the --help section
    metavar: str | None = None     # the value's name in --help
    low: int | float | None = None   # smallest valid number
    high: int | float | None = None  # largest valid number
    low_open: bool = False         # `low` itself is refused (a zero that means nothing)
    choices: tuple[str, ...] = ()
    shown_default: str | None = None  # the default as --help and README say it
    auto: bool = False             # `auto` is also accepted: one per CPU
    inverted: bool = False         # the flag turns the setting off (--no-listing)
    path: bool = False             # a file or folder: in a --config file, relative to its folder

    @property
    def annotation(self) -> str:
        """The field's type that the option's kind calls for (a test holds `Settings` to it)."""
        base = _TYPES[self.kind]
        return f"{base} | None" if self.default is None else base

    @property
    def label(self) -> str:
        """How messages name the setting: its flag, or the field for code-only settings."""
        return self.flag or self.name


_T = TypeVar("_T")


def option_field(default: _T, flag: str | None, kind: str, help: str, **details: Any) -> _T:
    """A `Settings` field declaring one option: `default` is the field's default; the flag, kind,
    help and `details` (the rest of `Option`'s attributes) go in its metadata, whence OPTIONS.

    Typed like `dataclasses.field` (which returns a Field, typed as the default's type), so that
    type checkers see each field with its declared type and a default."""
    return dataclasses.field(default=default, metadata={
        "option": {"flag": flag, "kind": kind, "help": help, **details}})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every option, declared once: one field each, with its type and default; flag, kind, help,
    group and valid range in the field's metadata (see `option_field`).

    `config.Config` is this plus `worker` and validation. Here rather than in config.py because the
    request parser takes its limits' defaults from these fields without loading config's imports.
    """

    root: str = option_field(
        ".", "--root", TEXT, "folder to serve", metavar="ROOT", shown_default="the current folder",
        path=True)
    host: str = option_field(
        "127.0.0.1", "--host", TEXT, "address to bind; `::` for IPv6 and IPv4", metavar="HOST")
    port: int = option_field(
        8000, "--port", PORT, "port to listen on, 0 picks a free one; a bare PORT works too, as "
        "in `python -m http.server 8080`", metavar="PORT", low=0, high=PORT_MAX)
    mode: str = option_field(
        "reactor", "--mode", CHOICE, "I/O engine: one event loop on one thread (epoll on "
        "Linux, selectors elsewhere), or one thread per connection to compare",
        choices=("reactor", "threaded"))
    # More reactor processes than this is a typo: each is a full copy of the server.
    workers: int = option_field(
        1, "--workers", COUNT, "reactor processes serving one port, supervised by a parent "
        "(restart with back-off, SIGHUP replaces them one by one); `auto` = one per CPU, 1 = no "
        "parent", metavar="N|auto", low=1, high=1024, auto=True)
    # Off by default: a server started by a service or a script must not start a browser.
    open_browser: bool = option_field(
        False, "--open", SWITCH, "open the served URL in the default browser once the server "
        "listens (bound to a wildcard: this machine's), not when stdout is not a terminal")
    certfile: str | None = option_field(
        None, "--certfile", TEXT, "serve HTTPS with this certificate chain (TLS 1.2+, the ssl "
        "module's recommended ciphers); it may hold the key too", group="TLS", metavar="PEM",
        path=True)
    keyfile: str | None = option_field(
        None, "--keyfile", TEXT, "the private key, if not in --certfile", group="TLS",
        metavar="PEM", path=True)
    tls_port: int | None = option_field(
        None, "--tls-port", PORT, "serve HTTPS on this port and plain HTTP on --port, side by "
        "side", group="TLS", metavar="PORT", low=0, high=PORT_MAX)
    # Keep-alive idle timeout: the seed design's 5 s (nginx: 75 s, Apache: 5 s); sent to clients
    # as `Keep-Alive: timeout=N`.
    keepalive_timeout: float = option_field(
        5.0, "--keepalive-timeout", SECONDS, "close idle keep-alive connections after this; "
        "announced in the Keep-Alive header", group="connections and limits", metavar="SECONDS",
        low=0, high=ONE_DAY, low_open=True, shown_default="5")
    # Requests per connection: the seed design's "max=100" (nginx: 1000). A billion is
    # unlimited in practice; the value is sent as `Keep-Alive: max=N`.
    max_requests: int = option_field(
        100, "--max-requests", COUNT, "requests per connection, then `Connection: close`",
        group="connections and limits", metavar="N", low=1, high=10 ** 9)
    # Slowloris guard: a request head must be complete this long after its first byte
    # (Apache mod_reqtimeout: 20-40 s; nginx client_header_timeout: 60 s).
    header_timeout: float = option_field(
        10.0, "--header-timeout", SECONDS, "slowloris guard: a request head must arrive within "
        "this, else 408", group="connections and limits", metavar="SECONDS", low=0, high=ONE_DAY,
        low_open=True, shown_default="10")
    # A client that accepts no bytes for this long is dropped (nginx send_timeout: 60 s).
    send_timeout: float = option_field(
        30.0, "--send-timeout", SECONDS, "drop a client that accepts no bytes for this long",
        group="connections and limits", metavar="SECONDS", low=0, high=ONE_DAY, low_open=True,
        shown_default="30")
    # Whole request head, request line included (nginx: 1 KiB + 4 x 8 KiB; h11: 16 KiB). At
    # least the shortest useful head (`GET / HTTP/1.1`, a Host field, the blank line); at most
    # 1 MiB, because a head is held whole in memory per connection.
    max_head_bytes: int = option_field(
        8192, "--max-head-bytes", BYTES, "largest request head; larger gets 431",
        group="connections and limits", metavar="BYTES", low=64, high=1 << 20)
    # Request-target length; longer -> 414 (RFC 9112 section 3 recommends supporting 8000
    # octets). The target is part of the head, so the head's bound applies.
    max_target_bytes: int = option_field(
        4096, "--max-target-bytes", BYTES, "longest request-target; longer gets 414",
        group="connections and limits", metavar="BYTES", low=1, high=1 << 20)
    # Header field lines per request (Apache LimitRequestFields: 100). HTTP/1.1 needs Host, so
    # at least 1; 10,000 fields would not fit in the largest head anyway.
    max_header_count: int = option_field(
        100, "--max-header-count", COUNT, "most header fields in a request; more gets 431",
        group="connections and limits", metavar="N", low=1, high=10_000)
    # Request bodies are read and discarded up to this size (nginx client_max_body_size:
    # 1 MiB). 0 refuses every body. Discarding costs bandwidth, not memory: capped at 1 GiB.
    max_body_bytes: int = option_field(
        1 << 20, "--max-body-bytes", BYTES, "largest request body read and discarded; larger gets "
        "413", group="connections and limits", metavar="BYTES", low=0, high=1 << 30,
        shown_default="1 MiB")
    # Reactor: stop accepting beyond this many open connections; the kernel backlog holds the
    # rest. Linux's default ceiling on descriptors per process (fs.nr_open) is 1,048,576. Where
    # select() is the only poller (Windows), what it can hold is both the default and the
    # ceiling (FACTS.connection_cap: 480 on Windows; facilities.py says how it is counted).
    max_connections: int = option_field(
        FACTS.connection_cap or 10_000, "--max-connections", COUNT, "reactor: open connections "
        "at most; at the cap the keep-alive connection (or event stream) quiet longest, for at "
        "least 1 s, makes room, and with none the kernel backlog holds newcomers",
        group="connections and limits", metavar="N", low=1, high=1 << 20,
        shown_default="10000; where only select() exists, its limit (480 on Windows)")
    # Threaded engine: at most this many connection threads. Each reserves a stack; past
    # 10,000 threads one process spends its time scheduling.
    max_threads: int = option_field(
        256, "--max-threads", COUNT, "threaded: connection threads at most; at the cap the "
        "keep-alive connection (or event stream) quiet longest, for at least 1 s, makes room, "
        "and with none newcomers wait in the backlog", group="connections and limits",
        metavar="N", low=1, high=10_000)
    # Graceful stop: in-flight responses get this long to finish; 0 stops at once.
    drain_timeout: float = option_field(
        5.0, "--drain-timeout", SECONDS, "on SIGTERM/SIGINT, let in-flight responses finish this "
        "long", group="connections and limits", metavar="SECONDS", low=0, high=ONE_DAY,
        shown_default="5")
    # nginx's `sendfile off`: some network and VM shared folders (vboxsf, 9p, some FUSE and
    # SMB mounts) serve stale or broken bytes through sendfile; reading and sending is slower
    # but goes through the ordinary read path (bench/RESULTS.md has the cost).
    sendfile: bool = option_field(
        True, "--no-sendfile", SWITCH, "read file bodies and send them in 256 KiB chunks instead "
        "of os.sendfile, for network and VM shared folders where sendfile misbehaves (nginx's "
        "`sendfile off`)", group="connections and limits", inverted=True)
    # Listen backlog (the kernel caps it at net.core.somaxconn, itself at most 65535 before
    # Linux 5.4). No flag: systemd's Backlog= or the default serves every deployment here.
    backlog: int = option_field(1024, None, COUNT, "listen backlog", low=1, high=PORT_MAX)
    listing: bool = option_field(
        True, "--no-listing", SWITCH, "answer 404 for folders without index.html instead of "
        "listing them", group="what is served", inverted=True)
    max_age: int | None = option_field(
        None, "--max-age", WHOLE_SECONDS, "send `Cache-Control: max-age=SECONDS` with files",
        group="what is served", metavar="SECONDS", low=0, high=MAX_AGE_MAX)
    immutable: bool = option_field(
        False, "--immutable", SWITCH, "with --max-age (required): add `immutable` to "
        "Cache-Control, for fingerprinted assets", group="what is served")
    # What a file's strong ETag is made of (validators.py): mtime and size as nginx does, so
    # copies with their times preserved agree; or a digest of the bytes, whatever the times.
    etag: str = option_field(
        "mtime", "--etag", CHOICE, "what a file's strong ETag is made of: its modification time "
        "and size (as nginx), the same on every copy made with times preserved (cp -a, rsync -t, "
        "tar); or a digest of its bytes, for copies whose times differ", group="what is served",
        choices=("mtime", "content"))
    cors: bool = option_field(
        False, "--cors", SWITCH, "send `Access-Control-Allow-Origin: *` and answer CORS "
        "preflights", group="what is served")
    spa: bool = option_field(
        False, "--spa", SWITCH, "single-page app: unknown paths without a file extension get "
        "X.html if it exists, else /index.html", group="what is served")
    # Read at the root, re-read when they change (rulefiles.py); never served themselves.
    site_rules: bool = option_field(
        True, "--no-site-rules", SWITCH, "ignore the root's `_redirects` and `_headers` files "
        "(Netlify's format: per-path redirects, rewrites and header fields) and serve them as "
        "ordinary files", group="what is served", inverted=True)
    clean_urls: bool = option_field(
        False, "--clean-urls", SWITCH, "serve /about from about.html when nothing named about "
        "exists, and redirect /about.html to /about and /docs/index.html to /docs/",
        group="what is served")
    dotfiles: str = option_field(
        "deny", "--dotfiles", CHOICE, "serve names starting with a dot? deny makes .git and .env "
        "404; `.well-known` is always public", group="what is served", choices=("deny", "allow"))
    # Off by default: without it no response changes and /__livereload is an ordinary path.
    live_reload: bool = option_field(
        False, "--live-reload", SWITCH, "development: put a script into HTML pages that reloads "
        "them when a file under the root changes (stylesheets are swapped in place); the event "
        "stream is /__livereload", group="what is served")
    follow_symlinks: bool = option_field(
        False, "--follow-symlinks", SWITCH, "follow symlinks that lead outside the root; by "
        "default only those resolving inside it are served", group="what is served")
    # Rendered once into every response head, errors included (see extras.header_fields).
    headers: tuple[str, ...] = option_field(
        (), "--header", REPEATED, "add this field to every response, errors included; repeatable. "
        "Server replaces ours; fields the server manages (framing, Date, Content-Type, "
        "validators...) are refused", group="what is served", metavar="NAME:VALUE",
        shown_default="none")
    mime: tuple[str, ...] = option_field(
        (), "--mime", REPEATED, "serve files ending in EXT as TYPE, over the built-in table; "
        "repeatable; text types get charset=utf-8", group="what is served", metavar="EXT=TYPE",
        shown_default="none")
    # From REACTOR_HTTP_AUTH too (the flag wins), so the password need not show in `ps`.
    auth: str | None = option_field(
        None, "--auth", TEXT, "require HTTP Basic credentials (RFC 7617) for everything but "
        "--status and CORS preflights; also read from REACTOR_HTTP_AUTH, which keeps the password "
        "out of the process list", group="what is served", metavar="USER:PASSWORD",
        shown_default="off")
    # On-the-fly gzip (and zstd where Python has compression.zstd) of text, scripts, JSON, SVG,
    # WebAssembly and uncompressed fonts from 1 KiB up (see content_coding.py).
    compress: bool = option_field(
        True, "--no-compress", SWITCH, "do not compress responses on the fly; prepared .br/.gz "
        "siblings are still served", group="what is served", inverted=True)
    # Larger files are sent as they are: a compressed body is held whole in memory. Caddy and
    # nginx have no cap (they stream); 16 MiB covers any script or stylesheet a page loads.
    compress_max_bytes: int = option_field(
        16 << 20, "--compress-max-bytes", BYTES, "compress files up to this size on the fly; "
        "larger ones are sent as they are", group="what is served", metavar="BYTES", low=1024,
        high=1 << 30, shown_default="16 MiB")
    # Memory for compressed bodies, least recently used out. At least 1 MiB: with less, most
    # bodies could not be kept and would be compressed again and again.
    compress_cache_bytes: int = option_field(
        64 << 20, "--compress-cache-bytes", BYTES, "memory for compressed bodies, least recently "
        "used out", group="what is served", metavar="BYTES", low=1 << 20, high=1 << 36,
        shown_default="64 MiB")
    # Off by default: an archive reads a whole folder tree for one request (archive.py).
    archives: bool = option_field(
        False, "--archives", SWITCH, "offer folders as archives: `?download=zip`, `tar` or "
        "`tar_gz` on a listed folder streams it with what its listing shows, recursively",
        group="what is served")
    # The total of the files an archive would hold, summed by a walk before the head goes out:
    # beyond it, 413. 1 GiB: a large photo folder, not a disk; the walk is also bounded in
    # entries (--archive-max-files).
    archive_max_bytes: int = option_field(
        1 << 30, "--archive-max-bytes", BYTES, "--archives: refuse (413) a folder whose files "
        "total more than this", group="what is served", metavar="BYTES", low=1,
        high=1 << 40, shown_default="1 GiB")
    # Entries (files and folders) an archive's walk may meet before it refuses with 413. The
    # walk stats each one on the engine's thread (the reactor's loop: about 4 us an entry on a
    # 2-CPU Xeon with the tree in the page cache), so 10,000 bounds it to some 40 ms.
    archive_max_files: int = option_field(
        10_000, "--archive-max-files", COUNT, "--archives: refuse (413) a folder tree with more "
        "files and folders than this", group="what is served", metavar="N", low=1,
        high=1_000_000)
    log_dir: str | None = option_field(
        None, "--log-dir", TEXT, "write the dated connection log DDMMYYconnectionLog.txt in DIR",
        group="logging", metavar="DIR", path=True)
    quiet: bool = option_field(
        False, "--quiet", SWITCH, "no access lines on stdout", group="logging")
    # O_APPEND, so workers can share it; reopened on SIGUSR1 for logrotate.
    access_log: str | None = option_field(
        None, "--access-log", TEXT, "also append access lines to FILE; SIGUSR1 reopens it, for "
        "logrotate", group="logging", metavar="FILE", path=True)
    # A worker whose loop sends no heartbeat for this long is stuck, not busy: a loop that is
    # serving, however loaded, turns many times a second and beats about once a second, so
    # less than 2 s would kill healthy workers (gunicorn's --timeout: 30 s).
    worker_timeout: float = option_field(
        30.0, "--worker-timeout", SECONDS, "--workers: kill and replace a worker whose loop has "
        "not turned for this long", group="deployment", metavar="SECONDS", low=2, high=ONE_DAY,
        shown_default="30")
    pid_file: str | None = option_field(
        None, "--pid-file", TEXT, "write the server's pid to FILE once it listens; removed at "
        "exit; a second start refuses while a server holds that pid (on Linux its command line "
        "is checked; elsewhere any live process counts), and replaces a stale file with a "
        "notice", group="deployment", metavar="FILE", path=True)
    # Proxies whose X-Forwarded-For we believe: the access log and --status-allow then judge
    # the client the proxy saw (its last entry) instead of the proxy.
    trust_proxy: tuple[str, ...] = option_field(
        (), "--trust-proxy", ADDRESSES, "a proxy, address or CIDR, repeatable, whose "
        "X-Forwarded-For is believed: logs and --status-allow see the client it reports",
        group="deployment", metavar="ADDR", shown_default="none")
    # Off by default, so a plain static server reveals nothing about itself.
    status_path: str | None = option_field(
        None, "--status", TEXT, "serve live counters at PATH: JSON, or Prometheus text when the "
        "client asks for text/plain; not /, and a warning if PATH names a file of the root",
        group="deployment", metavar="PATH", shown_default="off")
    status_allow: tuple[str, ...] = option_field(
        (), "--status-allow", ADDRESSES, "clients, address or CIDR, repeatable, that may read "
        "--status (required); others get 404", group="deployment", metavar="ADDR",
        shown_default="loopback only")


# Each field's declaration, in field order.
OPTIONS = tuple(
    Option(name=field.name, default=field.default, **field.metadata["option"])
    for field in dataclasses.fields(Settings))

BY_NAME = {option.name: option for option in OPTIONS}
# Every setting's default by Config field name.
DEFAULTS = {option.name: option.default for option in OPTIONS}


# Size units, case-insensitive: nginx's (k, m, g: powers of 1024) and the IEC names the option
# table writes (KiB, MiB, GiB). Nothing else: "16MB" could mean 10^6 or 2^20, so it is refused.
SIZE_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
              "g": 1 << 30, "gib": 1 << 30}
# A sign is taken, so that a negative size is refused by the range check like any number.
_SIZE = re.compile(r"\s*([+-]?\d+)\s*([a-z]*)\s*", re.I)


def cpus_for_auto() -> int:
    """What `auto` means (--workers auto): the CPUs this process may run on; 1 where there are
    no workers (no fork)."""
    return FACTS.cpus if FACTS.fork else 1


def parse_size(text: str) -> int:
    """A size as the table writes it: 8192, 64k, 16m, 16MiB, 1 GiB -> bytes; ValueError else."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(text)
    return int(match.group(1)) * SIZE_UNITS[unit]


def describe(option: Option) -> str:
    """What values `option` takes, as a message says it ("a whole number from 1 to 100")."""
    if option.kind == CHOICE:
        return "one of " + ", ".join(option.choices)
    if option.kind == SECONDS:
        what = "a finite number of seconds"
    elif option.kind == WHOLE_SECONDS:
        what = "a whole number of seconds"
    elif option.kind == BYTES:
        what = "a whole number of bytes (or with a unit: k, m, g, KiB, MiB, GiB)"
    else:
        what = "a whole number"
    bound = _size if option.kind == BYTES else _number
    low, high = bound(option.low), bound(option.high)
    if option.low_open:
        span = f"more than {low} and at most {high}"
    else:
        span = f"from {low} to {high}"
    if option.high == ONE_DAY:
        span += " (1 day)"
    if option.auto:
        span += ", or auto"
    return f"{what}, {span}"


def problem(option: Option, value) -> str | None:
    """Why `value` is not valid for `option` (a message naming it), or None if it is."""
    reason = value_problem(option, value)
    return None if reason is None else f"{option.label} {reason}"


def value_problem(option: Option, value) -> str | None:
    """Why `value` is not valid for `option` ("must be ..., not ..."), or None if it is."""
    if value is None and option.default is None:
        return None
    if option.kind == CHOICE:
        valid = value in option.choices
    elif option.kind == SECONDS:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value) and _in_range(option, value)
    elif option.kind in (WHOLE_SECONDS, BYTES, COUNT, PORT):
        valid = isinstance(value, int) and not isinstance(value, bool) and \
            _in_range(option, value)
    else:
        return None  # paths, addresses and switches are checked where their meaning is known
    if valid:
        return None
    return f"must be {describe(option)}, not {_shown(value)!r}"


def _in_range(option: Option, value) -> bool:
    """True if the number `value` lies in the option's bounds."""
    if option.low is not None and (value < option.low or option.low_open and value == option.low):
        return False
    return option.high is None or value <= option.high


def _number(value) -> str:
    """A bound as text: 86400, not 86400.0."""
    return str(int(value)) if value is not None and value == int(value) else str(value)


def _size(value) -> str:
    """A size bound as text, in the largest unit that divides it: 1024 -> 1 KiB, 100 -> 100."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value and value % factor == 0:
            return f"{value // factor} {unit}"
    return _number(value)


def _shown(value) -> str:
    """A refused value as the user typed it: -5, not -5.0; inf and nan as such."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_default(option: Option) -> str:
    """The default as --help and README show it."""
    if option.shown_default is not None:
        return option.shown_default
    if option.kind == SWITCH:
        return "off" if option.default is option.inverted else "on"
    if option.default is None:
        return "none"
    return str(option.default)


# ---- README.md's option table --------------------------------------------------------------------

README_START = "<!-- options: generated by `python -m reactor_http.options --update README.md` -->"
README_END = "<!-- end of options -->"


# The flag that reads settings from a file (configfile.py): not a setting itself, so not a
# `Settings` field and not a key of the file; in --help and first in the table.
CONFIG_FLAG = "--config"
CONFIG_METAVAR = "FILE"
CONFIG_HELP = ("read options from this TOML file: each key an option's long name without the "
               "dashes (`max-age = 3600`, `no-listing = true`, `header = [\"X-Frame-Options: "
               "DENY\"]`); the command line wins; relative paths in it are relative to its "
               "folder; needs Python 3.11+ (tomllib)")

# Flags that print something and exit (argparse's): in --help and the table beside the settings.
VERSION_HELP = "print the version and exit"
INFORMATION_FLAGS = (("--help", "list every option, with its default, and exit"),
                     ("--version", VERSION_HELP))


def usage_text(option: Option) -> str:
    """The option as a user types it: `--mode reactor|threaded`, `--port PORT`, `--cors`."""
    if option.kind == SWITCH:
        return option.label
    if option.kind == CHOICE:
        return f"{option.label} {'|'.join(option.choices)}"
    return f"{option.label} {option.metavar or option.name.upper()}"


def readme_table() -> str:
    """README.md's option table, one row per flag, with the markers around it."""
    rows = [README_START, "| option | default | what |", "| --- | --- | --- |",
            f"| `{CONFIG_FLAG} {CONFIG_METAVAR}` | none | {CONFIG_HELP} |"]
    for option in OPTIONS:
        if option.flag is None:
            continue
        usage = f"`{usage_text(option)}`"
        if option.name == "port":
            usage += " or `PORT`"
        if option.kind in REPEATABLE:
            usage += " ..."
        cells = (usage, shown_default(option), option.help)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    rows.extend(f"| `{flag}` | | {text} |" for flag, text in INFORMATION_FLAGS)
    rows.append(README_END)
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    """`text` (README.md) with the part between the markers replaced by `readme_table()`."""
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError("README.md has no option table markers")
    return pattern.sub(lambda match: readme_table(), text, count=1)


def main(argv: list[str]) -> int:
    """Print the option table, or with `--update FILE` rewrite it in FILE."""
    if len(argv) == 2 and argv[0] == "--update":
        with open(argv[1], encoding="utf-8") as file:
            text = file.read()
        updated = readme_with_table(text)
        if updated != text:
            with open(argv[1], "w", encoding="utf-8") as file:
                file.write(updated)
        return 0
    if argv:
        print("usage: python -m reactor_http.options [--update README.md]", file=sys.stderr)
        return 2
    print(readme_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
