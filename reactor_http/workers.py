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
With systemd socket activation the parent serves the inherited socket the shared way.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import socket
import sys
import time

from .engine import Listener
from .listeners import bind_listener, make_tls_context, raise_fd_limit, url_for
from .service import inherited_listener

# A worker that dies sooner than this after starting counts as a crash for the back-off (s).
QUICK_DEATH = 1.0
# Back-off before restarting a crashing worker: doubles from FIRST up to MAX (seconds).
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
# How long a new worker may take to say it is listening during a SIGHUP replacement (s).
READY_TIMEOUT = 10.0
# After the drain bound, workers still alive this much later are killed (seconds).
KILL_GRACE = 3.0


_SUPERVISOR_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD,
                       signal.SIGUSR1}


@dataclasses.dataclass
class Worker:
    """One worker process as the parent sees it."""

    slot: int
    pid: int
    started: float
    ready_fd: int
    ready: bool = False
    retiring: bool = False


class Supervisor:
    """Start, watch, restart, replace and stop the worker processes.

    `worker_body(config, listeners, ready=...)` is what each worker runs (server.run_engine):
    handed in, so that this module imports nothing of the start-up code that imports it.
    """

    def __init__(self, config, worker_body):
        self.config = config
        self.worker_body = worker_body
        self.tls = None
        self.reuse_port = hasattr(socket, "SO_REUSEPORT") and kernel_migrates_requests()
        self.workers: dict[int, Worker] = {}
        self.crashes: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.stop_requested = False
        self.reload_requested = False
        self.reopen_requested = False
        self.holder: socket.socket | None = None
        self.port = config.port

    # ---- parent ------------------------------------------------------------------------------

    def run(self, banner=None) -> int:
        """Supervise until SIGTERM/SIGINT; return the exit status."""
        raise_fd_limit()
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
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGUSR1, self._on_reopen)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ)
        for slot in range(config.workers):
            self._spawn(slot)
        if banner is not None:
            root = os.path.realpath(config.root)
            scheme = "https" if self.tls is not None else "http"
            banner(f"Serving {root} at {url_for(self.holder, scheme)} (mode: reactor, "
                   f"{config.workers} workers); press Ctrl+C to stop")
        try:
            while not self.stop_requested:
                selector.select(0.5)
                try:
                    while wake_r.recv(512):
                        pass
                except OSError:
                    pass
                self._reap()
                if self.reopen_requested:  # logrotate: each worker reopens its own logs
                    self.reopen_requested = False
                    for worker in self.workers.values():
                        _signal(worker.pid, signal.SIGUSR1)
                if self.reload_requested:
                    self.reload_requested = False
                    self._replace_all()
                self._restart_due()
            return self._stop_all()
        finally:
            # As in server.serve: once stopped, a late SIGTERM must not kill us during exit.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
            signal.set_wakeup_fd(-1)
            selector.close()
            wake_r.close()
            wake_w.close()
            self.holder.close()

    def _on_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def _on_reload(self, signum, frame) -> None:
        self.reload_requested = True

    def _on_reopen(self, signum, frame) -> None:
        self.reopen_requested = True

    def _spawn(self, slot: int) -> Worker:
        """Fork one worker for `slot`; the pipe tells us when it is listening."""
        ready_r, ready_w = os.pipe()
        # Block our signals across fork: until the child has reset its handlers, a SIGTERM
        # would run the parent's handler in the child, and the child would never stop.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISOR_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            os.close(ready_r)
            self._worker_main(ready_w, old_mask, slot)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        worker = Worker(slot, pid, time.monotonic(), ready_r)
        self.workers[pid] = worker
        return worker

    def _reap(self) -> None:
        """Collect exited workers; schedule restarts for the ones that were not retiring."""
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
            os.close(worker.ready_fd)
            if worker.retiring or self.stop_requested:
                continue
            lived = time.monotonic() - worker.started
            crashes = self.crashes.get(worker.slot, 0) + 1 if lived < QUICK_DEATH else 0
            self.crashes[worker.slot] = crashes
            delay = 0.0 if crashes == 0 else min(BACKOFF_FIRST * 2 ** (crashes - 1), BACKOFF_MAX)
            code = os.waitstatus_to_exitcode(status)
            print(f"reactor_http: worker {pid} (slot {worker.slot}) exited with status {code}; "
                  f"restarting in {delay:.1f} s", file=sys.stderr, flush=True)
            self.restart_at[worker.slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[slot]
                self._spawn(slot)

    def _wait_ready(self, worker: Worker, timeout: float) -> bool:
        """Wait until a worker writes its ready byte (or exits, or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.read(worker.ready_fd, 1):
                    worker.ready = True
                    return True
                return False  # EOF: the worker died before it was ready
            except BlockingIOError:
                time.sleep(0.01)
        return False

    def _replace_all(self) -> None:
        """SIGHUP: replace workers one by one, each new one ready before its old one stops."""
        for old in [w for w in self.workers.values() if not w.retiring]:
            new = self._spawn(old.slot)
            if not self._wait_ready(new, READY_TIMEOUT):
                print(f"reactor_http: replacement for worker {old.pid} did not start; keeping it",
                      file=sys.stderr, flush=True)
                new.retiring = True
                _signal(new.pid, signal.SIGKILL)
                continue
            old.retiring = True
            _signal(old.pid, signal.SIGTERM)

    def _stop_all(self) -> int:
        """Forward SIGTERM, wait for the drain bound, kill stragglers; exit status 0."""
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_timeout + KILL_GRACE
        while self.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for worker in list(self.workers.values()):
            print(f"reactor_http: worker {worker.pid} did not stop in time; killing it",
                  file=sys.stderr, flush=True)
            _signal(worker.pid, signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            worker = self.workers.pop(pid, None)
            if worker is not None:
                os.close(worker.ready_fd)
        return 0

    # ---- child -------------------------------------------------------------------------------

    def _worker_main(self, ready_w: int, old_mask, slot: int) -> None:
        """In the forked child: listen, say so, run one reactor, exit."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent handles reloads
            # Until serve() installs the reopen handler (SIGUSR1's default would kill us). The
            # access log is opened by name after this, so a rotation now is not missed.
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            config = dataclasses.replace(self.config, port=self.port,
                                         worker=(slot, self.config.workers))
            if self.reuse_port:
                self.holder.close()
                sock = bind_listener(config.host, self.port, config.backlog, reuse_port=True)
            else:
                sock = self.holder

            def ready(engine) -> None:
                os.write(ready_w, b"1")
                os.close(ready_w)

            status = self.worker_body(config, [Listener(sock, self.tls)], ready=ready)
        except BaseException as exc:  # never let a child fall back into the parent's loop
            print(f"reactor_http: worker failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            sys.stdout.flush()
            os._exit(status)


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
