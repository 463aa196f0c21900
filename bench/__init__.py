"""Benchmark harness for reactor_http.

`python -m bench` builds a generated site, starts each server under test on a
free port (reactor and threaded always; http.server, nginx, lighttpd, aiohttp
and sanic when installed; the floor, bench/floor.py, as a reference), drives
them with wrk (plus locust as a realistic visitor, plus an idle-connection
probe), and writes JSON, Markdown and PNG results under bench/out/ (git-ignored;
bench/results/ and bench/RESULTS.md only with --publish).

The pieces are importable on their own so tests can run them at tiny scale:

- `bench.sitegen.build_site`      generate the bench site
- `bench.procfs.rss_kib`, `cpu_seconds`   read a process tree's memory and CPU
- `bench.loadgen.parse_wrk_output`        parse wrk's output (with our Lua report)
- `bench.idle.probe_idle_capacity`        hold N idle keep-alive connections
- `bench.servers.start_server`            launch one server and wait for it
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
