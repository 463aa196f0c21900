"""Start-up: a small dispatcher from a validated Config to one engine, or to the supervisor.

`serve(config)` is the one entry point (the CLI and tests call it). One process: open the
listeners (listeners.py) and run the engine (`run_engine`). `--workers N`: the supervisor
(workers.py) is handed `run_engine` as the worker body, so it imports nothing of this module.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

from .facilities import FACTS, stop_signals
from .listeners import StartupError, browser_url, listeners_bound, listeners_url, \
    open_listeners, raise_fd_limit
from .logs import LogSink
from .protocol import record_transitions
from .reachable import banner_lines, open_browser
from .website import Site
from .workers import Supervisor

if TYPE_CHECKING:  # run_engine imports the one engine it runs, when it runs it
    from .reactor import Reactor
    from .threaded import ThreadedServer

__all__ = ["StartupError", "serve", "run_engine"]

log = logging.getLogger("reactor_http")


def serve(config, *, banner=None, ready=None) -> int:
    """Run the configured server until SIGINT/SIGTERM; return the exit status.

    `banner(text)` receives the start-up line; `ready(engine)` is called once listening (tests).
    """
    config.validate()
    if config.workers > 1:
        return Supervisor(config, run_engine).run(banner)
    limits = raise_fd_limit()
    listeners = open_listeners(config)
    if config.mode == "reactor" and limits is not None and \
            limits[0] < config.max_connections + 64:
        log.warning("the open-file limit is %d, below --max-connections %d; raise it with "
                    "`ulimit -n`", limits[0], config.max_connections)
    return run_engine(config, listeners, banner=banner, ready=ready)


# Names a file: every (state, event) move the protocol makes is written there at exit, for the
# test suite's transition coverage check (protocol.record_transitions). Unset: nothing is done.
TRACE_ENV = "REACTOR_HTTP_TRACE_TRANSITIONS"


def run_engine(config, listeners, *, banner=None, ready=None, heartbeat=None) -> int:
    """Serve `listeners` with the configured engine in this process until stopped.

    The body of a single-process server and of every --workers child alike; `heartbeat()` is
    called about once a second while the reactor's loop turns (the supervisor's liveness check).
    """
    trace_path = os.environ.get(TRACE_ENV)
    rows: set = set()
    if trace_path:
        record_transitions(rows)
    site, logs, engine = _make_engine(config, listeners, heartbeat)
    watcher = None
    if site.live is not None:
        from .watcher import start_watcher
        watcher = start_watcher(site.real_root, site.live.publish)
    main_thread = threading.current_thread() is threading.main_thread()
    # Handlers first: once the banner says we serve, a SIGTERM must mean a graceful stop.
    if main_thread:
        engine.install_signal_handlers()
        if FACTS.has_signal("SIGUSR1"):  # not on Windows (README, "Platforms")
            # logrotate's convention: SIGUSR1 reopens the log files (the log writer's next round).
            signal.signal(signal.SIGUSR1, lambda signum, frame: logs.request_reopen())
    _announce(config, site, logs, listeners, watcher, banner)
    if config.open_browser and config.worker is None:  # --workers: the supervisor opens it
        open_browser(browser_url(listeners))
    try:
        if ready is not None:
            ready(engine)
        status = engine.run()
    finally:
        if watcher is not None:
            watcher.stop()
        if trace_path:
            write_transitions(trace_path, rows)
        logs.event("Server stopped")
        logs.flush()
        if main_thread:
            _ignore_stop_signals()
    return status


def _make_engine(config, listeners, heartbeat) -> tuple[Site, LogSink, ThreadedServer | Reactor]:
    """The Site (with the live-reload hub), the log sink and the configured engine."""
    hub = None
    if config.live_reload:  # the hub first: engines subscribe to it as they are made
        from .livereload import Hub
        hub = Hub()
    # The reactor answers every request on one thread, one instant per loop turn.
    site = Site(config, live=hub, single_thread=config.mode == "reactor")
    logs = LogSink(access=not config.quiet, log_dir=config.log_dir, access_file=config.access_log)
    engine: ThreadedServer | Reactor
    if config.mode == "threaded":
        from .threaded import ThreadedServer
        engine = ThreadedServer(config, site, logs, listeners)
    else:
        from .reactor import Reactor
        engine = Reactor(config, site, logs, listeners, heartbeat=heartbeat)
    return site, logs, engine


def _announce(config, site: Site, logs: LogSink, listeners, watcher, banner) -> None:
    """The start-up banner (if asked for) and the "Server started" event line.

    The banner's first line names the bound URLs; bound to a wildcard, lines follow with the
    URLs of this machine and of its network addresses (reachable.py).
    """
    url = listeners_url(listeners)
    live = f", live reload on ({watcher.method})" if watcher is not None else ""
    if config.mode == "reactor" and FACTS.poller == "select":
        live += f", at most {config.max_connections} connections (select() limit)"
    if banner is not None:
        banner("\n".join([f"Serving {site.real_root} at {url} (mode: {config.mode}){live}; "
                          f"press Ctrl+C to stop", *banner_lines(listeners_bound(listeners))]))
    logs.event(f"Server started on {url} (mode: {config.mode}, root: {site.real_root}, "
               f"pid {os.getpid()})")


def _ignore_stop_signals() -> None:
    """After the stop, ignore further stop signals (SIGTERM, SIGINT...) until the process exits."""
    # At interpreter exit CPython resets Python-level handlers to the default action (but leaves
    # SIG_IGN alone), so a second SIGTERM (systemd, a test, an impatient user) would turn exit 0
    # into death by signal while the process is already on its way out.
    for signum in stop_signals():
        signal.signal(signum, signal.SIG_IGN)


def write_transitions(path: str, rows: set) -> None:
    """Append the recorded (state, event) moves to `path`, one `STATE EVENT` line each."""
    with open(path, "a", encoding="ascii") as file:
        file.writelines(f"{state.name} {event.name}\n" for state, event in sorted(
            rows, key=lambda row: (row[0].name, row[1].name)))
