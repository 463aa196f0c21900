"""What to measure: the scenarios, the three profiles, and the interleaved plan.

A plan is a flat list of `Step`s (scenario, server, run number). Servers are
interleaved within each scenario (A B C, A B C, ...), so slow drift on a
shared machine hits every server alike and the ratios stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.sitegen import LARGE_PATH, MEDIUM_PATH, SCRIPT_PATH, SMALL_PATH, MIB, LARGE_SIZE

WRK, IDLE, LOCUST = "wrk", "idle", "locust"

#: The 1 KiB keep-alive scenarios (the floor runs only these).
KEEPALIVE_GROUP = "small-keepalive"
#: The access-log scenarios: the reactor with --access-log FILE against nginx with access_log
#: FILE, as users run them (bench/servers.py defines both).
ACCESS_LOG_GROUP = "small-keepalive-log"
ACCESS_LOG_PAIR = ("reactor-log", "nginx-log")
#: The compression scenario: a 30 KiB script asked for with Accept-Encoding: gzip, served by
#: both engines (compressed once, then from memory) and by nginx with `gzip on` (which
#: compresses every response anew, at its default level 1).
GZIP_GROUP = "script-gzip"
GZIP_SERVERS = ("reactor", "threaded", "nginx-gzip")
GZIP_HEADERS = (("Accept-Encoding", "gzip"),)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str                # WRK, IDLE or LOCUST
    path: str = SMALL_PATH
    connections: int = 0     # wrk connections, idle connections, or locust users
    close: bool = False      # wrk: "Connection: close" (a new connection per request)
    group: str = ""          # scenarios plotted together (e.g. keep-alive vs connections)
    servers: tuple = ()      # only these servers run it (empty: every server whose groups allow)
    reference: str = ""      # the server every ratio divides by (empty: the reactor)
    headers: tuple = ()      # wrk: extra request fields, (name, value) pairs


@dataclass(frozen=True)
class Profile:
    """Sizes and durations of one kind of run (quick, full, smoke)."""

    name: str
    runs: int                     # repeats of each wrk/locust figure (median taken)
    wrk_duration_s: int           # seconds per wrk run
    keepalive_connections: tuple  # 1 KiB keep-alive scenario, one per count
    idle_connections: tuple       # idle-capacity sizes
    locust_users: int
    locust_duration_s: int        # seconds per locust run
    locust_runs: int
    large_size: int = LARGE_SIZE  # bytes of the large file
    wrk_request_cap: int = 0      # per wrk thread; 0 = bounded by time only
    extra_scenarios: bool = True  # close / 64 KiB / large file scenarios
    access_log_connections: tuple = ()  # 1 KiB keep-alive with access logs to a file
    notes: list = field(default_factory=list)


#: The full run: every scenario, 3 runs of 4 s each (~19 min with seven
#: servers, the floor and the access-log pair). 4 s is long enough for wrk's
#: percentiles to settle at tens of thousands of requests per second, short
#: enough to interleave.
FULL = Profile(name="full", runs=3, wrk_duration_s=4,
               keepalive_connections=(1, 64, 256, 1024),
               idle_connections=(1000, 5000, 10000),
               locust_users=200, locust_duration_s=10, locust_runs=3,
               access_log_connections=(64, 256))

#: About two minutes: the same scenarios at fewer sizes, 1 s runs, locust once.
QUICK = Profile(name="quick", runs=3, wrk_duration_s=1,
                keepalive_connections=(1, 64),
                idle_connections=(1000,),
                locust_users=50, locust_duration_s=3, locust_runs=1,
                access_log_connections=(64,),
                notes=["quick profile: 1 s runs; locust figures are a single run"])

#: Plumbing check for tests: tiny site, one short run of one scenario per
#: server, requests capped, plus a 20-connection idle probe.
SMOKE = Profile(name="smoke", runs=1, wrk_duration_s=1,
                keepalive_connections=(4,),
                idle_connections=(20,),
                locust_users=5, locust_duration_s=2, locust_runs=0,
                large_size=1 * MIB, wrk_request_cap=300, extra_scenarios=False,
                notes=["smoke profile: checks the bench runs; figures mean nothing"])

PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


def build_scenarios(profile: Profile, with_locust: bool = True) -> list:
    """The scenarios of a profile, in the order they run (idle last: it leaves
    the most state behind in a thread-per-connection server)."""
    out = [Scenario(f"small-keepalive-c{c}", f"1 KiB file, keep-alive, {c} connection"
                    + ("s" if c != 1 else ""), WRK, SMALL_PATH, c, group=KEEPALIVE_GROUP)
           for c in profile.keepalive_connections]
    if profile.extra_scenarios:
        out += [
            Scenario("small-close-c64", "1 KiB file, new connection per request, 64 connections",
                     WRK, SMALL_PATH, 64, close=True, group="small-close"),
            Scenario("medium-keepalive-c64", "64 KiB file, keep-alive, 64 connections",
                     WRK, MEDIUM_PATH, 64, group="medium"),
            Scenario("large-c4", f"{profile.large_size // MIB} MiB file, 4 connections (MB/s)",
                     WRK, LARGE_PATH, 4, group="large"),
            Scenario("script-gzip-c64", "30 KiB script, Accept-Encoding: gzip, keep-alive, "
                     "64 connections", WRK, SCRIPT_PATH, 64, group=GZIP_GROUP,
                     servers=GZIP_SERVERS, headers=GZIP_HEADERS),
        ]
    out += [Scenario(f"small-keepalive-log-c{c}",
                     f"1 KiB file, keep-alive, {c} connections, access log to a file",
                     WRK, SMALL_PATH, c, group=ACCESS_LOG_GROUP, servers=ACCESS_LOG_PAIR,
                     reference=ACCESS_LOG_PAIR[0])
            for c in profile.access_log_connections]
    if with_locust and profile.locust_runs:
        out.append(Scenario("locust", f"locust visitor, {profile.locust_users} users",
                            LOCUST, "/", profile.locust_users, group="locust"))
    out += [Scenario(f"idle-{n}", f"{n:,} idle keep-alive connections", IDLE, SMALL_PATH, n,
                     group="idle") for n in profile.idle_connections]
    return out


@dataclass(frozen=True)
class Step:
    scenario: Scenario
    server: str
    run: int      # 1-based
    runs: int     # runs of this scenario per server


def runs_for(scenario: Scenario, profile: Profile) -> int:
    if scenario.kind == IDLE:
        return 1  # each idle figure is itself a median of several fresh requests
    if scenario.kind == LOCUST:
        return profile.locust_runs
    return profile.runs


def takes_part(scenario: Scenario, server: str, groups: tuple = ()) -> bool:
    """Does `server` (limited to scenario `groups` when it has any) run `scenario`?"""
    if scenario.servers:
        return server in scenario.servers
    return not groups or scenario.group in groups


def build_plan(scenarios: list, servers: list, profile: Profile,
               groups: dict | None = None) -> list:
    """Steps in run order: per scenario, per run, every server taking part in turn.

    `groups` maps a server name to the scenario groups it is limited to (the floor)."""
    groups = groups or {}
    steps = []
    for scenario in scenarios:
        n = runs_for(scenario, profile)
        taking_part = [s for s in servers if takes_part(scenario, s, groups.get(s, ()))]
        for run in range(1, n + 1):
            steps.extend(Step(scenario, server, run, n) for server in taking_part)
    return steps


def estimate_seconds(step: Step, profile: Profile) -> float:
    """Rough wall time of one step, for the progress line's time-left figure."""
    if step.scenario.kind == WRK:
        return profile.wrk_duration_s + 0.3
    if step.scenario.kind == LOCUST:
        return profile.locust_duration_s + 2.5
    return 1.5 + step.scenario.connections / 1500
