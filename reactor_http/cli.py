"""Command line: an argument parser built from options.OPTIONS -> Config, then `serve()`.

With `--config FILE` the file's settings (configfile.py) come first and whatever the command line
(or, for --auth, the environment) gives replaces them; an error about a setting the file made is
prefixed with the file's line.

Before serving, the files the options name are tried (TLS pair, log folder, access log, pid file)
so that each mistake is one line; once the sockets are held, the pid file is written and the
start-up line printed. No HTTP logic here. Errors a user can fix print one line and exit with
status 2; argparse's own errors add a short usage line and a pointer to --help.

Process messages (the start-up line, warnings, errors, the supervisor's and the workers' notes,
the log writer's and the file watcher's troubles) all go through the `reactor_http` logger;
`configure_logging()` gives it its one handler here: stderr, every line starting with PREFIX,
and a warning or an error naming its level (`reactor-http: error: ...`). stdout carries the
access log only.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any

from ._version import __version__
from . import configfile, pathrules
from .config import Config, status_shadow
from .extras import is_loopback
from .facilities import FACTS, SIMULATE_PROBLEM
from .logs import open_access_file
from .options import BY_NAME, BYTES, CHOICE, CONFIG_FLAG, CONFIG_HELP, CONFIG_METAVAR, GROUPS, \
    OPTIONS, REPEATABLE, SECONDS, SWITCH, TEXT, VERSION_HELP, cpus_for_auto, describe, \
    parse_size, shown_default
from .server import StartupError, serve
from .rulefiles import RuleFiles
from .siterules import RulesError
from .service import PidFile

PROG = "reactor-http"
#: The start of every line of every process message (stderr).
PREFIX = f"{PROG}: "
log = logging.getLogger("reactor_http")
# Environment variable holding --auth's USER:PASSWORD, so the password stays out of `ps`.
AUTH_ENV = "REACTOR_HTTP_AUTH"
# What an argument error prints after its one line, instead of argparse's whole usage.
SHORT_USAGE = f"usage: {PROG} [PORT] [--root ROOT] [--port PORT] [option ...]"
SEE_HELP = f"see `{PROG} --help` for every option"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with short errors: one line naming the option, one usage line, --help."""

    def error(self, message: str):
        """Print the error in at most three lines and exit with status 2."""
        configure_logging()
        log.error("%s\n%s\n%s", _plain(message), SHORT_USAGE, SEE_HELP)
        self.exit(2)


def _plain(message: str) -> str:
    """argparse's "argument --x: --x must be ..." as "--x must be ..." (else "--x: ...")."""
    match = re.fullmatch(r"argument ([^:]+): (.*)", message, re.S)
    if not match:
        return message
    name, rest = match.groups()
    return rest if rest.startswith(name) else f"{name}: {rest}"


class MessageFormatter(logging.Formatter):
    """Every line of a message starts with PREFIX; the first names the level of a warning or
    worse (`reactor-http: warning: ...`), not of information (`reactor-http: Serving ...`).
    The lines after the first (a usage line, a traceback) carry PREFIX alone."""

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).rstrip("\n").split("\n")
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return "\n".join([PREFIX + level + first, *(PREFIX + line for line in rest)])


class MessageHandler(logging.StreamHandler):
    """The one handler of process messages: writes to sys.stderr as it is at each message (a
    test's capture, a replaced stream), and drops a line stderr cannot take instead of
    printing a traceback about it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(MessageFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock (Handler.handle holds it)
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], (OSError, ValueError)):
            return  # stderr closed or gone: the server must not stop or spew for it
        super().handleError(record)


def configure_logging() -> None:
    """Give the `reactor_http` logger its one handler (once per process) and let information
    through; workers inherit it across fork. Records still propagate (the root logger has no
    handler of ours, so nothing is written twice; a test's log capture sees them)."""
    logger = logging.getLogger("reactor_http")
    if not any(isinstance(handler, MessageHandler) for handler in logger.handlers):
        logger.addHandler(MessageHandler())
    logger.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, built from options.OPTIONS (given options only, no defaults)."""
    p = ArgumentParser(
        prog=PROG, argument_default=argparse.SUPPRESS,
        description="Serve a folder over HTTP/1.1 from a single-threaded event loop (epoll on "
                    "Linux, selectors elsewhere) or, to compare, one thread per connection.")
    p.add_argument("port_positional", nargs="?", default=None, metavar="PORT",
                   type=_number_type(BY_NAME["port"], "PORT"),
                   help="port to listen on, as in `python -m http.server 8080`")
    p.add_argument(CONFIG_FLAG, dest="config_file", metavar=CONFIG_METAVAR,
                   help=CONFIG_HELP.replace("%", "%%"))
    # add_argument's owners: the parser itself for the main list, a group per section.
    sections: dict[str | None, argparse._ActionsContainer] = {None: p}
    for group in GROUPS[1:]:
        sections[group] = p.add_argument_group(group)
    for option in OPTIONS:
        if option.flag is not None:
            sections[option.group].add_argument(option.flag, dest=option.name,
                                                **_argparse_settings(option))
    p.add_argument("--version", action="version", version=f"reactor_http {__version__}",
                   help=VERSION_HELP)
    p.epilog = ("systemd socket activation: started with LISTEN_PID=<our pid> and LISTEN_FDS>=1 "
                "(sd_listen_fds(3)), the server serves the listening socket on fd 3 instead of "
                "binding --host/--port; further sockets are closed with a warning. "
                + _signals_help())
    return p


def _signals_help() -> str:
    """What the signals this platform delivers do (--help's last words)."""
    stops = "/".join(name for name in ("SIGTERM", "SIGINT", "SIGBREAK") if FACTS.has_signal(name))
    text = f"{stops} stop gracefully"
    if FACTS.has_signal("SIGUSR1"):
        text += "; SIGUSR1 reopens the log files"
    return text + "."


def _argparse_settings(option) -> dict:
    """add_argument's keywords for one declared option."""
    text = option.help
    if option.kind != SWITCH and (option.default not in (None, ()) or option.shown_default):
        text += f" (default: {shown_default(option)})"
    settings = {"help": text.replace("%", "%%")}
    if option.kind == SWITCH:
        settings["action"] = "store_false" if option.inverted else "store_true"
        return settings
    if option.kind == CHOICE:
        settings["choices"] = option.choices
        return settings
    settings["metavar"] = option.metavar
    if option.kind in REPEATABLE:
        settings["action"] = "append"
    elif option.kind != TEXT:
        settings["type"] = _number_type(option)
    return settings


def _number_type(option, label: str | None = None):
    """argparse type for a numeric option: parses the text; ranges are Config.validate()'s."""
    label = label or option.flag

    def parse(text: str):
        if option.auto and text == "auto":
            return cpus_for_auto()
        try:
            if option.kind == BYTES:
                return parse_size(text)
            return float(text) if option.kind == SECONDS else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{label} must be {describe(option)}, not {text!r}") from None
    parse.__name__ = option.kind
    return parse


def given_values(args: argparse.Namespace) -> dict:
    """The Config field values the command line gives, and --auth's from the environment when
    the flag is absent (the flag wins over the environment): all of them win over a --config
    file (a repeatable option given on the command line replaces the file's values)."""
    values = dict(vars(args))
    values.pop("config_file", None)
    positional = values.pop("port_positional", None)
    if positional is not None:
        values.setdefault("port", positional)
    for option in OPTIONS:
        if option.kind in REPEATABLE and option.name in values:
            values[option.name] = tuple(values[option.name])
    if "auth" not in values and os.environ.get(AUTH_ENV):
        values["auth"] = os.environ[AUTH_ENV]
    return values


def config_from_args(args: argparse.Namespace,
                     file: configfile.FileSettings | None = None) -> Config:
    """Turn parsed arguments, over a --config file's settings, into a Config (not yet
    validated); options given nowhere keep their declared defaults."""
    values: dict[str, Any] = dict(file.values) if file is not None else {}
    values.update(given_values(args))
    return Config(**values)


def auth_warning(config: Config) -> str | None:
    """The start-up warning for --auth sent in clear beyond this machine, or None."""
    if config.auth is None or is_loopback(config.host):
        return None
    if config.certfile and config.tls_port is None:
        return None
    return (f"--auth without TLS on {config.host}: the password crosses the network "
            f"readable by anyone on the path (Basic is base64, not encryption); add --certfile")


# More workers than this many per CPU draws a warning (nginx says nothing, but its docs advise
# one per core, `worker_processes auto`): a few more than the CPUs may be deliberate, hundreds is
# a typo or a misunderstanding.
WORKERS_PER_CPU_WARNED = 2


def workers_warning(config: Config, cpus: int | None = None) -> str | None:
    """The start-up warning for many more --workers than CPUs, or None."""
    cpus = cpus or cpus_for_auto()
    if config.workers <= WORKERS_PER_CPU_WARNED * cpus:
        return None
    return (f"--workers {config.workers} on {cpus} CPU{'s' if cpus != 1 else ''}: each worker "
            f"is a whole server process, and beyond one per CPU they add memory and switching, "
            f"not throughput; --workers auto starts one per CPU")


def prepare_log_dir(path: str) -> None:
    """Create the connection-log folder now, so an unusable one is a one-line error, not a trace."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--log-dir {path!r} is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--log-dir {path!r}: cannot create the folder: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--log-dir {path!r} is not writable")


def prepare_access_log(path: str) -> None:
    """Open the access log once now, so an unusable path is a one-line error, not a trace."""
    try:
        os.close(open_access_file(path))
    except OSError as exc:
        raise ValueError(f"cannot write access log {path!r} (--access-log): "
                         f"{exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m reactor_http` and the `reactor-http` script."""
    configure_logging()
    if SIMULATE_PROBLEM is not None:
        log.error("%s", SIMULATE_PROBLEM)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    positional = getattr(args, "port_positional", None)
    if positional is not None and getattr(args, "port", positional) != positional:
        parser.error("give the port once: either PORT or --port")
    file = None
    try:
        if getattr(args, "config_file", None) is not None:
            file = configfile.load(args.config_file)
        return run(config_from_args(args, file).validate())
    except (ValueError, StartupError) as exc:
        # A mistake about a setting the file made names the file's line (configfile.py); a rule
        # file's mistake names its own line, whatever option its message mentions.
        message = str(exc) if file is None or isinstance(exc, RulesError) else \
            file.locate(str(exc), given_values(args))
        log.error("%s", message)
        return 2
    except KeyboardInterrupt:
        return 0


def run(config: Config) -> int:
    """Try the files `config` names, print its warnings, then serve until stopped; ValueError
    or StartupError (one line) if it cannot start."""
    if config.log_dir is not None:
        prepare_log_dir(config.log_dir)
    if config.access_log is not None:
        prepare_access_log(config.access_log)
    if config.site_rules:  # a malformed _redirects or _headers: refused before listening
        real_root = os.path.realpath(config.root)
        # (read as the site reads them: its workers fall back on these rules, rulefiles.py)
        RuleFiles(real_root, ignore_case=pathrules.for_root(real_root).case_insensitive)
    for warning in (auth_warning(config), status_shadow(config), workers_warning(config)):
        if warning:
            log.warning("%s", warning)
    pid_file = None
    if config.pid_file is not None:
        pid_file = PidFile(config.pid_file)
        pid_file.check()  # a live server in it, or an unwritable folder: refuse now

    def announce(text: str) -> None:
        """Called once the sockets are held: write the pid file, log the start-up line."""
        if pid_file is not None:
            try:
                pid_file.write()
            except ValueError as exc:  # checked above, so only a race: keep serving
                log.warning("%s", exc)
        log.info("%s", text)

    try:
        return serve(config, banner=announce)
    finally:
        if pid_file is not None:
            pid_file.remove()  # only if this process wrote it and it still holds our pid
