"""Pre-forked workers: a parent that serves nothing supervises N reactor processes on one port.

Each worker is a whole single-process server (its own reactor). Two ways to share the port:

- SO_REUSEPORT: each worker listens on its own socket in the port's reuseport group and the
  kernel spreads new connections among them (no thundering herd, even spread). But each socket
  has its own accept queue, and when a worker closes its listener (SIGHUP replacement, a
  crash) the connections queued on it are reset, unless the kernel migrates them
  (`net.ipv4.tcp_migrate_req=1`, Linux >= 5.14; off by default). Our SIGHUP test saw those
  resets, so we use SO_REUSEPORT only where that sysctl is on.
- One inherited socket (otherwise, and where SO_REUSEPORT is missing): the parent listens once
  and every worker accepts from the same queue, so no worker's exit can drop a queued client.

The parent holds the port (a bound socket, listening only in the inherited case, so `--port 0`
means one port for everyone), restarts a worker that dies (with exponential back-off, so a crash
loop cannot spin), forwards SIGTERM/SIGINT for a graceful stop of all workers, and on SIGHUP
replaces workers one at a time: a new one has said it is listening before the old one is told
to stop. SIGUSR1 (log rotation) is forwarded to every worker, each of which reopens its logs.
With --status the parent maps the scoreboard (scoreboard.py) before its first fork: each worker
counts in a cell of its slot, so any worker's status answer is the whole server's.
With systemd socket activation the parent serves the inherited socket the shared way.
With --open the parent opens the browser, once, when the first worker says it listens.

Each worker has a pipe to the parent: one byte when it listens ("ready"), then one per heartbeat
(the reactor calls `heartbeat` about once a second while its loop turns). The parent reads the
pipes in its own select() loop; a worker silent for --worker-timeout is SIGKILLed and replaced.
Workers die with the parent: on Linux the kernel sends them SIGTERM (prctl PR_SET_PDEATHSIG);
everywhere, a heartbeat that finds a new parent pid (or a pipe nobody reads) stops the worker.
A slot whose workers die BOOT_FAILURE_LIMIT times in a row before saying they are ready stops
the supervisor with exit status 1: restarting cannot fix what kills them.

The supervisor says what it does, as nginx's error log does: one line per signal received and
per worker started or stopped (pid, slot, why: start-up, restart after a crash and how the
worker ended, SIGHUP replacement, graceful stop), on stderr (the `reactor_http` logger) and, with
--log-dir, in the dated connection log beside the workers' own lines. It writes that file
itself, one line per write: it runs no log-writer thread, since it forks.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from . import rulefiles
from .engine import Listener
from .facilities import FACTS
from .listeners import bind_listener, make_tls_context, raise_fd_limit, url_for
from .logs import write_connection_lines
from .reachable import banner_lines, bound_of, local_url, open_browser
from .scoreboard import Board
from .service import inherited_listener

# The supervisor's and the workers' notes: process messages (cli.configure_logging; a worker
# inherits the handler across fork).
log = logging.getLogger("reactor_http")

# A worker that dies sooner than this after starting counts as a crash for the back-off (s).
QUICK_DEATH = 1.0
# Back-off before restarting a crashing worker: doubles from FIRST up to MAX (seconds).
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
# How long a new worker may take to say it is listening during a SIGHUP replacement (s).
READY_TIMEOUT = 10.0
# After the drain bound, workers still alive this much later are killed (seconds).
KILL_GRACE = 3.0
# Deaths in a row, in one slot, of workers that never said they were ready: then the cause will
# not go away by itself (a log folder deleted, a port taken) and the supervisor stops with exit
# status 1 instead of restarting forever (gunicorn halts at the first such failure).
BOOT_FAILURE_LIMIT = 5
# Longest wait of the supervisor's select() (seconds): heartbeats, restarts and a SIGHUP
# replacement are looked at least this often.
LOOP_WAIT = 0.5
# prctl(2) option: the signal the kernel sends us when our parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1

# What a worker writes on its pipe: once when it is listening, then on every heartbeat.
READY_BYTE = b"R"
BEAT_BYTE = b"."

# The signals the supervisor handles (blocked across fork). Only where fork exists, which
# also has all of these: read when a worker is forked, never at import (Windows has none).
_SUPERVISOR_SIGNAL_NAMES = ("SIGTERM", "SIGINT", "SIGHUP", "SIGCHLD", "SIGUSR1")


def _supervisor_signals() -> set[signal.Signals]:
    return {getattr(signal, name) for name in _SUPERVISOR_SIGNAL_NAMES
            if FACTS.has_signal(name)}


@dataclasses.dataclass(eq=False)
class Worker:
    """One worker process as the parent sees it (compared by identity)."""

    slot: int
    pid: int
    started: float
    pipe: int  # read end: the ready byte, then heartbeats; EOF once the worker is gone
    last_beat: float  # when the parent last read a byte from `pipe` (time.monotonic())
    ready: bool = False
    retiring: bool = False  # told to stop (SIGHUP replacement): not restarted when it exits
    killed: bool = False  # SIGKILLed for a missed heartbeat (said once)
    watched: bool = True  # `pipe` is registered in the parent's selector
    cell: int | None = None  # its scoreboard cell (--status), written by it alone
    stop_why: str = ""  # why it was told to stop (said when it has exited)


class Supervisor:
    """Start, watch, restart, replace and stop the worker processes.

    `worker_body(config, listeners, ready=..., heartbeat=...)` is what each worker runs
    (server.run_engine): handed in, so that this module imports nothing of the start-up code
    that imports it. Signal handlers only set flags; the main loop acts on them.
    """

    def __init__(self, config, worker_body):
        self.config = config
        self.worker_body = worker_body
        self.tls = None
        # Only where SO_REUSEPORT spreads connections (Linux), and the kernel migrates them.
        self.reuse_port = FACTS.reuseport_balances and kernel_migrates_requests()
        self.workers: dict[int, Worker] = {}
        self.crashes: dict[int, int] = {}
        self.boot_failures: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.stop_requested = False
        self.reload_requested = False
        self.reopen_requested = False
        # The signals received since the loop last said so (the handlers only append).
        self.signals_received: list[int] = []
        # Why the next worker started in a slot starts: the exit of the one it replaces.
        self.restart_why: dict[int, str] = {}
        # --status: every worker's counters in shared memory (scoreboard.py), else None.
        self.board: Board | None = None
        # Why the supervisor gives up (a worker cannot start); None while all is well.
        self.halt: str | None = None
        # SIGHUP: pids of the workers still to replace, and the (old, new) pair in progress.
        self.replace_queue: list[int] = []
        self.replacing: tuple[Worker, Worker] | None = None
        self.holder: socket.socket | None = None
        self.selector: selectors.BaseSelector | None = None
        self.wake: tuple[socket.socket, socket.socket] | None = None
        self.port = config.port
        self.parent_pid = os.getpid()
        self.set_death_signal = None
        self.browser_opened = False  # --open: done when the first worker said it listens

    # ---- parent ------------------------------------------------------------------------------

    def run(self, banner=None) -> int:
        """Supervise until SIGTERM/SIGINT (exit status 0) or a worker cannot start (1)."""
        raise_fd_limit()
        self.parent_pid = os.getpid()
        self.set_death_signal = parent_death_signal()  # resolved once, before any fork
        self._hold_port()
        self._watch_signals()
        if self.config.status_path is not None:  # before any fork: every worker maps it
            self.board = Board(self.config.workers)
        for slot in range(self.config.workers):
            self._spawn(slot, "start-up")
        if banner is not None:
            self._announce(banner)
        try:
            while not self.stop_requested and self.halt is None:
                self._loop_once()
            self._say_signals()
            if self.halt is not None:
                self._note(f"{self.halt}; stopping", logging.ERROR)
                self._stop_all()
                return 1
            return self._stop_all()
        finally:
            self._release()

    def _hold_port(self) -> None:
        """The TLS context and the socket every worker serves (inherited, or bound here)."""
        config = self.config
        # Loaded once, here: a bad certificate stops us with one line before any worker starts.
        self.tls = make_tls_context(config.certfile, config.keyfile) if config.certfile else None
        # Socket activation: systemd's socket is already listening; every worker accepts from it.
        self.holder = inherited_listener()
        if self.holder is not None:
            self.reuse_port = False
        else:
            self.holder = bind_listener(config.host, config.port, config.backlog,
                                        reuse_port=self.reuse_port, listen=not self.reuse_port)
        self.port = self.holder.getsockname()[1]

    def _watch_signals(self) -> None:
        """Signals wake the select() through a socket pair; their handlers only set flags."""
        wake_r, wake_w = self.wake = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_reopen)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(wake_r, selectors.EVENT_READ)

    def _announce(self, banner) -> None:
        """The start-up line: root, URL, worker count."""
        config = self.config
        assert self.holder is not None  # _hold_port opened it
        root = os.path.realpath(config.root)
        scheme = "https" if self.tls is not None else "http"
        # Each worker watches; the kind is the platform's (facilities), as one process says it.
        # A worker that finds inotify unusable (its watch limit) says so and scans instead.
        kind = "inotify" if FACTS.watcher == "inotify" else "polling"
        live = f", live reload on ({kind})" if config.live_reload else ""
        banner("\n".join([f"Serving {root} at {url_for(self.holder, scheme)} (mode: reactor, "
                          f"{config.workers} workers){live}; press Ctrl+C to stop",
                          *banner_lines([bound_of(self.holder, scheme)])]))

    def _release(self) -> None:
        """After the stop: ignore late stop signals, then close the wake-up pair and the port."""
        # As in server.serve: once stopped, a late SIGTERM must not kill us during exit.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        # Before the socket closes: a later signal must not write to a closed descriptor.
        signal.set_wakeup_fd(-1)
        assert self.selector is not None and self.wake is not None and self.holder is not None
        self.selector.close()
        for sock in self.wake:
            sock.close()
        self.holder.close()
        if self.board is not None:
            self.board.close()

    def _note(self, message: str, level: int = logging.INFO) -> None:
        """One line of what the supervisor does: on stderr (the `reactor_http` logger) and in
        the dated connection log with --log-dir, as nginx's error log has them."""
        log.log(level, message)
        if self.config.log_dir is not None:
            write_connection_lines(self.config.log_dir, [(time.time(), message)])

    def _say_signals(self) -> None:
        """One line per signal received since the last call, saying what it does."""
        taken, self.signals_received = self.signals_received, []
        count = len(self.workers)
        for signum in map(signal.Signals, taken):
            what = {signal.SIGHUP: f"replacing {count} workers one at a time",
                    signal.SIGUSR1: f"{count} workers reopen their log files"}.get(
                signum, f"stopping {count} workers gracefully (at most "
                        f"{self.config.drain_timeout:g} s)")
            self._note(f"received {signum.name}: {what}")

    def _loop_once(self) -> None:
        """One select() (signals, ready bytes, heartbeats), then act on what changed."""
        assert self.selector is not None and self.wake is not None  # run() made them
        wake_r = self.wake[0]
        for key, _ in self.selector.select(LOOP_WAIT):
            if key.data is None:
                try:
                    while wake_r.recv(512):
                        pass
                except OSError:
                    pass
            else:
                self._read_pipe(key.data)
        self._say_signals()
        self._reap()
        if self.reopen_requested:  # logrotate: each worker reopens its own logs
            self.reopen_requested = False
            for worker in self.workers.values():
                _signal(worker.pid, signal.SIGUSR1)
        if self.reload_requested:
            self.reload_requested = False
            in_progress = self.replacing or ()
            self.replace_queue = [w.pid for w in self.workers.values()
                                  if not w.retiring and w not in in_progress]
        now = time.monotonic()
        # The rule files' last good rules, which a worker started next falls back on.
        rulefiles.look_again(now)
        self._step_replacement(now)
        self._check_heartbeats(now)
        self._restart_due()

    def _on_stop(self, signum, frame) -> None:
        self.signals_received.append(signum)
        self.stop_requested = True

    def _on_reload(self, signum, frame) -> None:
        self.signals_received.append(signum)
        self.reload_requested = True

    def _on_reopen(self, signum, frame) -> None:
        self.signals_received.append(signum)
        self.reopen_requested = True

    def _free_cell(self, slot: int) -> int | None:
        """A scoreboard cell of `slot` no live worker holds (None without --status or none)."""
        if self.board is None:
            return None
        held = {worker.cell for worker in self.workers.values()}
        return next((cell for cell in self.board.cells_of(slot) if cell not in held), None)

    def _spawn(self, slot: int, why: str) -> Worker:
        """Fork one worker for `slot`; its pipe says when it listens, then that it is alive."""
        cell = self._free_cell(slot)
        pipe_r, pipe_w = os.pipe()
        # Block our signals across fork: until the child has reset its handlers, a SIGTERM
        # would run the parent's handler in the child, and the child would never stop.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _supervisor_signals())
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            os.close(pipe_r)
            self._worker_main(pipe_w, old_mask, slot, cell)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(pipe_w)
        os.set_blocking(pipe_r, False)
        now = time.monotonic()
        worker = Worker(slot, pid, now, pipe_r, last_beat=now, cell=cell)
        self.workers[pid] = worker
        assert self.selector is not None  # run() made it
        self.selector.register(pipe_r, selectors.EVENT_READ, worker)
        self._note(f"worker {pid} (slot {slot}) started: {why}")
        return worker

    def _read_pipe(self, worker: Worker) -> None:
        """Take a worker's ready byte and heartbeats; at EOF (it is exiting) stop watching."""
        while worker.watched:
            try:
                data = os.read(worker.pipe, 512)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                assert self.selector is not None  # run() made it
                self.selector.unregister(worker.pipe)
                worker.watched = False
                return
            worker.last_beat = time.monotonic()
            if not worker.ready:
                worker.ready = True
                self.boot_failures[worker.slot] = 0
                self._open_browser_once()

    def _open_browser_once(self) -> None:
        """--open, when the first worker says it listens: once for the server, not per worker."""
        if not self.config.open_browser or self.browser_opened:
            return
        self.browser_opened = True
        assert self.holder is not None  # _hold_port opened it
        open_browser(local_url(bound_of(self.holder, "https" if self.tls is not None else "http")))

    def _forget(self, worker: Worker) -> None:
        """An exited worker: read what it wrote last, close its pipe."""
        self._read_pipe(worker)
        if worker.watched:
            assert self.selector is not None  # run() made it
            self.selector.unregister(worker.pipe)
            worker.watched = False
        os.close(worker.pipe)
        if self.board is not None and worker.cell is not None:
            self.board.retire(worker.cell)  # its gauges to zero; its counts stay in the totals

    def _reap(self) -> None:
        """Collect exited workers; restart the ones that were not retiring, or give up."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._forget(worker)
            self._exited(worker, status)

    def _exited(self, worker: Worker, status: int) -> None:
        """Say why a reaped worker stopped; restart it if it was not told to stop, or give up."""
        how = describe_exit(status)
        name = f"worker {worker.pid} (slot {worker.slot})"
        if worker.retiring or self.stop_requested or self.halt is not None:
            why = worker.stop_why or ("graceful stop" if self.halt is None else "halting")
            self._note(f"{name} stopped: {why}, {how}")
            return
        if self.replacing is not None and worker in self.replacing:
            old, new = self.replacing
            if worker is new:
                self.replacing = None
                self._note(f"the replacement for worker {old.pid} {how} before it was ready; "
                           f"keeping the old one", logging.WARNING)
                if old.pid not in self.workers:
                    self._restart_later(worker, 0.0, f"restart after worker {worker.pid} {how}")
            else:
                self._note(f"{name} {how}; its replacement is starting", logging.WARNING)
            return
        if not worker.ready:
            failures = self.boot_failures.get(worker.slot, 0) + 1
            self.boot_failures[worker.slot] = failures
            if failures >= BOOT_FAILURE_LIMIT:
                self.halt = (f"the worker in slot {worker.slot} failed to start {failures} "
                             f"times in a row (the last one {how})")
                return
        lived = time.monotonic() - worker.started
        crashes = self.crashes.get(worker.slot, 0) + 1 if lived < QUICK_DEATH else 0
        self.crashes[worker.slot] = crashes
        delay = 0.0 if crashes == 0 else min(BACKOFF_FIRST * 2 ** (crashes - 1), BACKOFF_MAX)
        when = "" if worker.ready else " before it was ready"
        self._note(f"{name} {how}{when}; restarting in {delay:.1f} s", logging.WARNING)
        self._restart_later(worker, delay, f"restart after worker {worker.pid} {how}{when}")

    def _restart_later(self, worker: Worker, delay: float, why: str) -> None:
        """Start a new worker in the slot of `worker` (exited) in `delay` seconds."""
        self.restart_at[worker.slot] = time.monotonic() + delay
        self.restart_why[worker.slot] = why

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[slot]
                self._spawn(slot, self.restart_why.pop(slot, "restart"))

    def _step_replacement(self, now: float) -> None:
        """SIGHUP, one step a loop turn: each new worker is ready before its old one stops."""
        if self.replacing is not None:
            old, new = self.replacing
            if new.ready:
                self.replacing = None
                if old.pid in self.workers:
                    old.retiring, old.stop_why = True, f"replaced by worker {new.pid} (SIGHUP)"
                    _signal(old.pid, signal.SIGTERM)
            elif now - new.started >= READY_TIMEOUT:
                self.replacing = None
                self._note(f"the replacement for worker {old.pid} did not start in "
                           f"{READY_TIMEOUT:g} s; keeping the old one", logging.WARNING)
                new.retiring, new.stop_why = True, "a replacement that did not start in time"
                _signal(new.pid, signal.SIGKILL)
                if old.pid not in self.workers:
                    self._restart_later(old, 0.0, f"restart after worker {old.pid} exited")
            else:
                return
        while self.replacing is None and self.replace_queue:
            queued = self.workers.get(self.replace_queue[0])
            if queued is not None and not queued.retiring:
                if self.board is not None and self._free_cell(queued.slot) is None:
                    return  # its slot's previous old worker is still draining: wait for it
                self.replacing = (queued, self._spawn(
                    queued.slot, f"replacing worker {queued.pid} (SIGHUP)"))
            self.replace_queue.pop(0)

    def _check_heartbeats(self, now: float) -> None:
        """SIGKILL a worker that has written nothing for --worker-timeout; _reap replaces it."""
        timeout = self.config.worker_timeout
        for worker in self.workers.values():
            if not worker.killed and now - worker.last_beat > timeout:
                worker.killed = True
                what = "sent no heartbeat" if worker.ready else "did not say it was ready"
                self._note(f"worker {worker.pid} (slot {worker.slot}) {what} for {timeout:g} s; "
                           f"killing it", logging.WARNING)
                _signal(worker.pid, signal.SIGKILL)

    def _stop_all(self) -> int:
        """Forward SIGTERM, wait for the drain bound, kill stragglers; exit status 0."""
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_timeout + KILL_GRACE
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for worker in list(self.workers.values()):
            self._note(f"worker {worker.pid} (slot {worker.slot}) did not stop in time; "
                       f"killing it", logging.WARNING)
            _signal(worker.pid, signal.SIGKILL)
        while self.workers:
            pid, status = os.waitpid(-1, 0)
            exited = self.workers.pop(pid, None)
            if exited is not None:
                self._forget(exited)
                self._exited(exited, status)
        return 0

    # ---- child -------------------------------------------------------------------------------

    def _worker_main(self, pipe_w: int, old_mask, slot: int, cell: int | None) -> None:
        """In the forked child: listen, say so, run one reactor, exit."""
        status = 1
        engines: list = []  # the engine, once it serves
        try:
            self._become_worker(pipe_w, old_mask)
            config = dataclasses.replace(self.config, port=self.port,
                                         worker=(slot, self.config.workers))
            ready, heartbeat = self._worker_hooks(pipe_w, slot, cell, engines)
            status = self.worker_body(config, [Listener(self._worker_listener(config), self.tls)],
                                      ready=ready, heartbeat=heartbeat)
        except BaseException as exc:  # never let a child fall back into the parent's loop
            _say_worker_failed(exc, slot, serving=bool(engines))
        finally:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os._exit(status)

    def _become_worker(self, pipe_w: int, old_mask) -> None:
        """In the child: its own signal handling, none of the parent's descriptors."""
        # Die with the parent: the kernel sends SIGTERM (pending while our signals are
        # blocked, then a graceful stop once the reactor's handlers are in).
        if self.set_death_signal is not None:
            self.set_death_signal()
        signal.set_wakeup_fd(-1)  # before the parent's wake-up socket is closed here
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent handles reloads
        # Until serve() installs the reopen handler (SIGUSR1's default would kill us). The
        # access log is opened by name after this, so a rotation now is not missed.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        self._close_parent_fds()
        if os.getppid() != self.parent_pid:
            os._exit(0)  # the parent died before the death signal was asked for
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.set_blocking(pipe_w, False)  # a busy parent must never stall our loop

    def _worker_listener(self, config) -> socket.socket:
        """In the child: its own SO_REUSEPORT socket, or the parent's shared one."""
        assert self.holder is not None  # run() opened it
        if not self.reuse_port:
            return self.holder
        self.holder.close()
        return bind_listener(config.host, self.port, config.backlog, reuse_port=True)

    def _worker_hooks(self, pipe_w: int, slot: int, cell: int | None, engines: list):
        """In the child: the worker body's ready() and heartbeat(), written to the parent's pipe;
        with --status they also put the engine's counters in its scoreboard cell."""

        def ready(engine) -> None:
            engines.append(engine)
            if self.board is not None and cell is not None:  # before the first request
                engine.stats.share(self.board, cell, slot)
            _write_byte(pipe_w, READY_BYTE)

        def heartbeat() -> None:
            # The portable half of dying with the parent: an orphan is adopted by another
            # process, and a write to a pipe whose reader is gone fails.
            alive = _write_byte(pipe_w, BEAT_BYTE) and os.getppid() == self.parent_pid
            if cell is not None and engines:
                engines[0].stats.publish()  # its gauges, for the other workers' answers
            if not alive and engines and not engines[0].stop_requested:
                log.warning("worker %d (slot %d): the supervisor is gone; stopping",
                            os.getpid(), slot)
                engines[0].request_stop()

        return ready, heartbeat

    def _close_parent_fds(self) -> None:
        """In the child: close what only the parent uses (other workers' pipes, its wake-up)."""
        for worker in self.workers.values():
            os.close(worker.pipe)
        self.workers.clear()
        assert self.selector is not None and self.wake is not None  # run() made them
        self.selector.close()
        for sock in self.wake:
            sock.close()


def parent_death_signal():
    """A function asking Linux to SIGTERM the calling process when its parent dies; or None."""
    if FACTS.name != "linux":
        return None
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def describe_exit(status: int) -> str:
    """How a process ended: "exited with status 1" or "killed by signal 9 (SIGKILL)"."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {number} ({name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def kernel_migrates_requests() -> bool:
    """True if Linux moves queued connections off a closing SO_REUSEPORT listener."""
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as file:
            return file.read().strip() == "1"
    except OSError:
        return False


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _write_byte(fd: int, byte: bytes) -> bool:
    """Write one byte to the parent's pipe; False if nobody reads it any more."""
    try:
        os.write(fd, byte)
    except BlockingIOError:
        pass  # the parent is behind on reading: it is alive
    except OSError:
        return False
    return True


def _say_worker_failed(exc: BaseException, slot: int, serving: bool) -> None:
    """A worker's last line: the traceback of a crash, or why it could not start."""
    if serving:
        log.error("worker %d (slot %d) crashed:\n%s", os.getpid(), slot, "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)))
    else:
        log.error("worker %d (slot %d) failed to start: %s", os.getpid(), slot,
                  exc or type(exc).__name__)
