"""Launch the servers under test, wait until they answer, stop exactly them.

Each competitor is a `ServerSpec`: a name, a test of whether it is installed,
and a function that returns its command line (writing a config file first
when the server needs one). `start_server` runs it on a free port, pinned to
the server CPU, and waits for a correct answer; `stop_server` signals only
the PID it started. `ServerPool` remembers every process it started and stops
them all in `close()`, which the CLI calls from `finally` and atexit.
"""

from __future__ import annotations

import atexit
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.scenarios import ACCESS_LOG_GROUP, GZIP_GROUP, KEEPALIVE_GROUP

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"

#: Keep-alive settings given to every server alike: benchmarks must never be
#: cut short by the per-connection request cap (reactor_http's default is 100)
#: and the idle probe's connections must outlive the probe (default 5 s idle).
MAX_REQUESTS_PER_CONNECTION = 1_000_000_000
KEEPALIVE_TIMEOUT_S = 300

#: Connection ceiling for servers that have one: above the idle probe's
#: 10,000 plus the load generator's connections, below the fd hard limit.
MAX_CONNECTIONS = 16_000

#: How long a server may take to start answering before we give up (seconds).
READY_TIMEOUT_S = 15.0
#: How long SIGTERM may take before SIGKILL (seconds).
STOP_TIMEOUT_S = 5.0

#: The URL probed for readiness, with the size it must return.
READY_PATH = "/1k.bin"


@dataclass(frozen=True)
class LaunchContext:
    """What a spec needs to build its command: the site and a scratch dir."""

    root: Path
    port: int
    workdir: Path  # private temp dir for configs, pid files, logs


@dataclass(frozen=True)
class ServerSpec:
    name: str
    available: Callable[[], bool]
    command: Callable[[LaunchContext], list]
    description: str
    #: Scenario groups this server runs (empty: every scenario that does not name its servers).
    groups: tuple = ()
    #: Send the server's stdout to /dev/null (a server logging there, as users run it).
    stdout_devnull: bool = False
    #: Fetch only READY_PATH before the run (the floor answers every path with that file).
    serves_site: bool = True


@dataclass
class RunningServer:
    name: str
    port: int
    proc: subprocess.Popen
    command: list
    log_path: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


# ---------------------------------------------------------------- competitors

def _reactor_http_available() -> bool:
    return (REPO_ROOT / "reactor_http" / "__main__.py").exists() or \
        importlib.util.find_spec("reactor_http") is not None


def _reactor_http_command(mode: str, workers: int = 1,
                          access_log: bool = False) -> Callable[[LaunchContext], list]:
    """reactor_http's command; workers > 1 adds `--workers N` (a supervisor and N reactors);
    access_log: access lines to a file in the work dir (and stdout) instead of `--quiet`."""
    def command(ctx: LaunchContext) -> list:
        logging = ["--access-log", str(ctx.workdir / "access.log")] if access_log else ["--quiet"]
        return [sys.executable, "-m", "reactor_http", "--root", str(ctx.root),
                "--host", HOST, "--port", str(ctx.port), "--mode", mode, *logging,
                "--keepalive-timeout", str(KEEPALIVE_TIMEOUT_S),
                "--max-requests", str(MAX_REQUESTS_PER_CONNECTION),
                "--max-connections", str(MAX_CONNECTIONS)] + \
            (["--workers", str(workers)] if workers != 1 else [])
    return command


def reactor_http_command(mode: str = "reactor", workers: int = 1) -> Callable[[LaunchContext], list]:
    """Public name of the reactor_http command builder (bench/scaling.py uses it)."""
    return _reactor_http_command(mode, workers)


def _script_command(script: str) -> Callable[[LaunchContext], list]:
    """A bench/ script taking --root, --host and --port."""
    return lambda ctx: [sys.executable, str(BENCH_DIR / script), "--root", str(ctx.root),
                        "--host", HOST, "--port", str(ctx.port)]


def _find_binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name)
         if p.exists()), None)


def nginx_config(ctx: LaunchContext, workers: int = 1, reuse_port: bool = False,
                 access_log: bool = False, gzip: bool = False) -> str:
    """One worker, sendfile on, access log off, everything under ctx.workdir.

    access_log: the access log on, in nginx's default (combined) format, written to
    ctx.workdir/access.log.
    gzip: `gzip on` for scripts, styles, JSON and SVG from 1 KiB, with Vary, at nginx's default
    level (1): each response is compressed anew, as nginx does.
    workers > 1: a master process (it serves nothing) and that many workers;
    as root the workers keep root's user, since the bench site lives in a
    private (0700) temporary directory. reuse_port: one listening socket per
    worker (SO_REUSEPORT) instead of one shared socket (nginx's default).
    """
    w = ctx.workdir
    mime = Path("/etc/nginx/mime.types")
    types = f"include {mime};" if mime.exists() else ""
    master = "off" if workers == 1 else "on"
    user = "user root;\n" if workers != 1 and hasattr(os, "geteuid") and os.geteuid() == 0 else ""
    listen_opts = " reuseport" if reuse_port else ""
    log = f"access_log {w}/access.log;" if access_log else "access_log off;"
    compress = ("gzip on;\n    gzip_vary on;\n    gzip_min_length 1024;\n    gzip_types "
                "text/css text/javascript application/javascript application/json "
                "image/svg+xml;") if gzip else ""
    return f"""# written by bench/servers.py
daemon off;
master_process {master};
{user}worker_processes {workers};
worker_rlimit_nofile {MAX_CONNECTIONS + 1000};
pid {w}/nginx.pid;
error_log {w}/nginx-error.log warn;
events {{
    worker_connections {MAX_CONNECTIONS};
    multi_accept on;
}}
http {{
    {types}
    default_type application/octet-stream;
    {log}
    {compress}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout {KEEPALIVE_TIMEOUT_S}s;
    keepalive_requests {MAX_REQUESTS_PER_CONNECTION};
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    server {{
        listen {HOST}:{ctx.port} backlog=4096{listen_opts};
        root {ctx.root};
        index index.html;
    }}
}}
"""


def _nginx_command(ctx: LaunchContext, workers: int = 1, reuse_port: bool = False,
                   access_log: bool = False, gzip: bool = False) -> list:
    conf = ctx.workdir / "nginx.conf"
    conf.write_text(nginx_config(ctx, workers, reuse_port, access_log, gzip))
    # -e: error log before the config is read (else /var/log/nginx is tried).
    return [_find_binary("nginx"), "-p", str(ctx.workdir), "-c", str(conf),
            "-e", str(ctx.workdir / "nginx-error.log")]


def nginx_command(workers: int = 1, reuse_port: bool = False) -> Callable[[LaunchContext], list]:
    """The nginx command builder for `workers` worker processes (bench/scaling.py)."""
    return lambda ctx: _nginx_command(ctx, workers, reuse_port)


def lighttpd_config(ctx: LaunchContext) -> str:
    """Single process (lighttpd's default), sendfile backend, no access log."""
    w = ctx.workdir
    return f"""# written by bench/servers.py
server.document-root = "{ctx.root}"
server.bind = "{HOST}"
server.port = {ctx.port}
server.errorlog = "{w}/lighttpd-error.log"
server.max-fds = {2 * MAX_CONNECTIONS + 1000}
server.max-connections = {MAX_CONNECTIONS}
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = {KEEPALIVE_TIMEOUT_S}
server.network-backend = "sendfile"
server.listen-backlog = 4096
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html", ".css" => "text/css",
                   ".js" => "text/javascript", ".svg" => "image/svg+xml",
                   ".jpg" => "image/jpeg", "" => "application/octet-stream")
"""


def _lighttpd_command(ctx: LaunchContext) -> list:
    conf = ctx.workdir / "lighttpd.conf"
    conf.write_text(lighttpd_config(ctx))
    return [_find_binary("lighttpd"), "-D", "-f", str(conf)]


def nginx_available() -> bool:
    return _find_binary("nginx") is not None


def _module_available(name: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(name) is not None


#: The group the floor runs: it serves only the 1 KiB file, on kept-alive connections.
FLOOR_GROUP = KEEPALIVE_GROUP

SPECS = {
    "reactor": ServerSpec("reactor", _reactor_http_available, _reactor_http_command("reactor"),
                          "reactor_http reactor (one event loop: epoll on Linux)"),
    "threaded": ServerSpec("threaded", _reactor_http_available, _reactor_http_command("threaded"),
                           "reactor_http, thread per connection"),
    "http.server": ServerSpec("http.server", lambda: True, _script_command("http11_server.py"),
                              "stdlib ThreadingHTTPServer, HTTP/1.1 handler"),
    "nginx": ServerSpec("nginx", lambda: _find_binary("nginx") is not None, _nginx_command,
                        "nginx, 1 worker, sendfile on"),
    "lighttpd": ServerSpec("lighttpd", lambda: _find_binary("lighttpd") is not None,
                           _lighttpd_command, "lighttpd, 1 process, sendfile backend"),
    "aiohttp": ServerSpec("aiohttp", _module_available("aiohttp"),
                          _script_command("aiohttp_server.py"), "aiohttp web.static (asyncio)"),
    "sanic": ServerSpec("sanic", _module_available("sanic"), _script_command("sanic_server.py"),
                        "sanic app.static, one process, uvloop"),
    "floor": ServerSpec("floor", lambda: True, _script_command("floor.py"),
                        "the floor: the least any Python server can do: not a server "
                        "(bench/floor.py: one pre-rendered 1 KiB response per request head)",
                        groups=(FLOOR_GROUP,), serves_site=False),
    "reactor-log": ServerSpec("reactor-log", _reactor_http_available,
                              _reactor_http_command("reactor", access_log=True),
                              "reactor_http reactor, access log to a file (--access-log), "
                              "stdout to /dev/null", groups=(ACCESS_LOG_GROUP,),
                              stdout_devnull=True),
    "nginx-log": ServerSpec("nginx-log", nginx_available,
                            lambda ctx: _nginx_command(ctx, access_log=True),
                            "nginx, 1 worker, sendfile on, access_log to a file",
                            groups=(ACCESS_LOG_GROUP,)),
    "nginx-gzip": ServerSpec("nginx-gzip", nginx_available,
                             lambda ctx: _nginx_command(ctx, gzip=True),
                             "nginx, 1 worker, sendfile on, gzip on (level 1, its default)",
                             groups=(GZIP_GROUP,)),
}

DEFAULT_ORDER = ("reactor", "threaded", "http.server", "nginx", "lighttpd", "aiohttp", "sanic",
                 "floor", "reactor-log", "nginx-log", "nginx-gzip")


# ---------------------------------------------------------------- mechanics

def free_port(host: str = HOST) -> int:
    """A port the kernel just had free (there is a small race; we retry on failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pinned(command: list, cpu: int | None) -> list:
    """Prefix command with `taskset -c CPU` (when pinning and taskset exist)."""
    if cpu is None:
        return list(command)
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *command] if taskset else list(command)


def fetch(url_host: str, port: int, path: str, timeout: float = 2.0,
          headers: dict | None = None) -> tuple[int, bytes]:
    """One GET; returns (status, body)."""
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_until_ready(server: RunningServer, expected_size: int | None,
                     timeout: float = READY_TIMEOUT_S) -> None:
    """Poll until the server answers READY_PATH correctly; raise if it dies or times out."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited with status {server.proc.returncode}; "
                               f"see {server.log_path}")
        try:
            status, body = fetch(HOST, server.port, READY_PATH, timeout=1.0)
            if status == 200 and (expected_size is None or len(body) == expected_size):
                return
            last_error = f"status {status}, {len(body)} bytes"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s ({last_error})")


def start_server(spec: ServerSpec, root: Path, workdir: Path, cpu: int | None = None,
                 expected_size: int | None = None, attempts: int = 3) -> RunningServer:
    """Start spec on a free port (pinned to cpu), wait until it answers, return it."""
    workdir = Path(workdir) / spec.name
    workdir.mkdir(parents=True, exist_ok=True)
    last_exc = None
    for _ in range(attempts):
        port = free_port()
        ctx = LaunchContext(root=Path(root), port=port, workdir=workdir)
        command = pinned(spec.command(ctx), cpu)
        log_path = workdir / "server.log"
        log = open(log_path, "ab")
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if spec.stdout_devnull else log,
                                stderr=log, cwd=str(REPO_ROOT),
                                # A Ctrl+C at the terminal reaches only the bench,
                                # which then stops each server itself, by PID.
                                start_new_session=True)
        log.close()
        server = RunningServer(spec.name, port, proc, command, log_path)
        try:
            wait_until_ready(server, expected_size)
            return server
        except RuntimeError as exc:
            last_exc = exc
            stop_server(server)
    raise last_exc


def stop_server(server: RunningServer, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the PID we started, then SIGKILL it if it lingers. Returns exit status."""
    if server.stopped:
        return server.proc.returncode
    server.stopped = True
    return stop_process(server.proc, timeout)


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM a process we started, then SIGKILL it if it lingers. Returns exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    return proc.returncode


@dataclass
class ServerPool:
    """Every server this bench started; close() stops each of them by PID."""

    servers: list = field(default_factory=list)

    def __post_init__(self):
        atexit.register(self.close)

    def start(self, spec: ServerSpec, root: Path, workdir: Path, cpu: int | None = None,
              expected_size: int | None = None) -> RunningServer:
        server = start_server(spec, root, workdir, cpu, expected_size)
        self.servers.append(server)
        return server

    def close(self) -> dict:
        statuses = {}
        for server in self.servers:
            statuses[server.name] = stop_server(server)
        return statuses
