"""The scale-out soak: the soak's Entra traffic through the multi-host shape, on one machine.

    .venv/bin/python bench/soak.py --scale-out --minutes 5       (or: make soak-scale MINUTES=5)

The shape (all on loopback; on real hosts each box is a machine)::

    Entra tenants ─▶ HAProxy ─┬─▶ gunicorn group web-a (N sync workers)
                              └─▶ gunicorn group web-b (N sync workers)
    web-a, web-b, Celery worker scale-a@, worker scale-b@, beat
        ─▶ PgBouncer (pool_mode = transaction) ─▶ PostgreSQL (DATABASE_URL's server)
        ─▶ a private redis-server (broker db 0, cache db 1; port 6390 unless told)

Every Beem process reaches PostgreSQL only through PgBouncer, with
``DATABASE_PREPARED_STATEMENTS=false`` (PgBouncer cannot carry SQL-prepared statements from one
server connection to the next in transaction mode). HAProxy health-checks ``/healthz`` and
retries a refused connection on the other group. The workers run ``bench.scaleout_worker``
(Beem's Celery app with every drain recorded: node, organization, start, end).

While the tenants run, the chaos SIGKILLs one worker and one web group (the whole process
group, as a container kill does) and a supervisor starts them again after a second, as
systemd's ``Restart=always`` would. A request in flight on a killed web group gets HAProxy's
502; the tenant then behaves as Entra does (retries the request; re-looks a lost create up
before creating again) — tolerated only within seconds of a web kill. Afterwards, on top of the
soak's checks (every event applied, records equal members, no duplicates, the server's
directory equal to Entra's):

* no two drains of one organization overlapped in time, and both workers drained;
* nothing session-level leaked through PgBouncer: no advisory lock is held once idle, and
  every pooled server connection has no setting, prepared statement, cursor or LISTEN of a
  former client (PgBouncer's own tracked parameters aside).

``tests/scaleout/test_scaleout_soak.py`` runs a short version in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak import (
    BIN,
    Process,
    SoakReport,
    free_port,
    soak_environment,
    wait_for_port,
)

# PgBouncer restores these on every server connection a client's transaction lands on
# (1.18's tracked parameters): they are not a leak. Django also sets TimeZone itself.
PGBOUNCER_TRACKED = {
    "client_encoding",
    "datestyle",
    "timezone",
    "standard_conforming_strings",
    "application_name",
}
WEB_GROUPS = ("web-a", "web-b")
WORKERS = ("scale-a", "scale-b")


def tool(name: str) -> str | None:
    """A Debian tool: on PATH, or in /usr/sbin (not on a normal user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def tools_missing() -> list[str]:
    return [name for name in ("haproxy", "pgbouncer", "redis-server") if tool(name) is None]


@dataclass
class ScaleOptions:
    duration: float = 60.0
    tenants: int = 3
    # gunicorn sync workers per web group, Celery concurrency per worker.
    web_workers: int = 2
    worker_concurrency: int = 2
    # PgBouncer's default_pool_size: server connections per database/user pair.
    pool_size: int = 20
    redis_port: int = 6390
    # Seconds between kills (worker, then web group, in turn); None: one of each, at a third
    # and at two thirds of the load.
    kill_interval: float | None = None
    # How long the supervisor waits before starting a killed process again (RestartSec).
    restart_delay: float = 1.0
    converge_timeout: float = 180.0
    prepared_statements: bool = False
    seed: int = 7
    verbose: bool = True


@dataclass
class ScaleReport(SoakReport):
    # (process name, wall-clock time of the SIGKILL)
    kills: list[tuple[str, float]] = field(default_factory=list)
    drains: dict[str, int] = field(default_factory=dict)
    drains_unfinished: int = 0
    overlaps: list[str] = field(default_factory=list)
    session_leaks: list[str] = field(default_factory=list)
    server_connections_checked: int = 0
    load_seconds: float = 0.0
    pool: dict[str, int] = field(default_factory=dict)
    # Highest values sampled every second during the load (pool_sample).
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        found = super().problems
        if self.overlaps:
            found.append(f"{len(self.overlaps)} overlapping drains of one organization")
        if len([n for n, c in self.drains.items() if c]) < len(WORKERS):
            found.append(f"not every worker drained: {self.drains}")
        if self.session_leaks:
            found.append(f"{len(self.session_leaks)} session-level leaks through PgBouncer")
        if not self.server_connections_checked:
            found.append("no pooled server connection was checked")
        for tier, names in (("worker", WORKERS), ("web group", WEB_GROUPS)):
            if not any(name in names for name, _t in self.kills):
                found.append(f"no {tier} was killed")
        return found

    def lines(self) -> list[str]:
        out = super().lines()
        result = out.pop()
        total = sum(self.requests.values())
        out.append(
            f"load: {self.load_seconds:.0f}s, {total / max(self.load_seconds, 1):.1f} SCIM "
            "requests/s through HAProxy"
        )
        out.append("latency (ms) p50 / p99 by request kind: " + latency_summary(self.latencies))
        out.append(
            "peaks during the run: " + ", ".join(f"{k} {v:g}" for k, v in self.peaks.items())
        )
        out.append("kills: " + ", ".join(f"{n} at +{t:.1f}s" for n, t in self.kills))
        out.append(
            "drains per worker: "
            + ", ".join(f"{n} {c}" for n, c in sorted(self.drains.items()))
            + f" (cut short by a kill: {self.drains_unfinished})"
        )
        out.append(f"overlapping drains of one organization: {len(self.overlaps)}")
        out += [f"  {o}" for o in self.overlaps[:20]]
        out.append(f"PgBouncer pool at the end: {self.pool}")
        out.append(
            f"pooled server connections checked: {self.server_connections_checked}; "
            f"session-level leaks: {len(self.session_leaks)}"
        )
        out += [f"  {leak}" for leak in self.session_leaks[:20]]
        out.append(result if self.ok else "RESULT: FAILED — " + "; ".join(self.problems))
        return out


def latency_summary(latencies: dict[str, list[float]]) -> str:
    def percentile(values: list[float], share: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    parts = []
    every = [v for values in latencies.values() for v in values]
    for kind, values in sorted(latencies.items()) + [("all", every)]:
        if values:
            parts.append(f"{kind} {percentile(values, 0.5):.0f}/{percentile(values, 0.99):.0f}")
    return ", ".join(parts)


# --- the tiers ---------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _world_readable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


def pgbouncer_argv(database: dict, *, port: int, pool_size: int, directory: Path) -> list[str]:
    """PgBouncer in transaction mode on ``127.0.0.1:port`` in front of ``database``'s server
    (a dj-database-url dict), trust auth for its user; configuration files in ``directory``
    (readable by ``nobody``: PgBouncer refuses to run as root and is told to become nobody)."""
    directory.chmod(0o755)
    user = database["USER"]
    userlist = _world_readable(directory / "userlist.txt", f'"{user}" ""\n')
    server = f"host={database['HOST'] or '127.0.0.1'} port={database['PORT'] or 5432}"
    config = _world_readable(
        directory / "pgbouncer.ini",
        "\n".join(
            [
                "[databases]",
                f"{database['NAME']} = {server} dbname={database['NAME']}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {userlist}",
                f"admin_users = {user}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 500",
                "ignore_startup_parameters = extra_float_digits",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        ),
    )
    argv = [tool("pgbouncer") or "pgbouncer"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    return [*argv, str(config)]


class ScaleStack:
    """redis-server, PgBouncer, two gunicorn groups behind HAProxy, two workers, beat."""

    def __init__(self, *, database_url: str, options: ScaleOptions, logdir: Path):
        from dj_database_url import parse

        self.options = options
        self.logdir = logdir
        self.database = parse(database_url)
        self.bouncer_port = free_port()
        self.lb_port = free_port()
        self.web_ports = {name: free_port() for name in WEB_GROUPS}
        self.redis_port = options.redis_port
        if not _port_free(self.redis_port):
            raise RuntimeError(f"port {self.redis_port} is taken: pass another redis port")
        self.base_url = f"http://127.0.0.1:{self.lb_port}"
        self.drain_log = logdir / "drains"
        self.drain_log.mkdir()
        db = self.database
        self.bouncer_url = f"postgres://{db['USER']}@127.0.0.1:{self.bouncer_port}/{db['NAME']}"
        env = soak_environment(
            database_url=self.bouncer_url, redis_port=self.redis_port, base_url=self.base_url
        )
        env.update(
            DATABASE_PREPARED_STATEMENTS="true" if options.prepared_statements else "false",
            BENCH_DRAIN_LOG=str(self.drain_log),
        )
        self.env = env
        self.processes: dict[str, Process] = {}
        self._add("redis", self._redis_argv())
        self._add("pgbouncer", self._pgbouncer_argv())
        for name, port in self.web_ports.items():
            self._add(name, self._gunicorn_argv(port))
        self._add("haproxy", self._haproxy_argv())
        for name in WORKERS:
            self._add(name, self._worker_argv(name))
        self._add(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "beem_admin",
                "beat",
                "-l",
                "WARNING",
                "-s",
                str(logdir / "beat-schedule"),
            ],
        )
        self.lock = threading.Lock()
        # Names the chaos killed and the supervisor has not started again yet.
        self.killed: set[str] = set()

    def _add(self, name: str, argv: list[str]) -> None:
        # Each process shows its name in pg_stat_activity (libpq reads PGAPPNAME).
        env = dict(self.env, PGAPPNAME=name)
        self.processes[name] = Process(name, argv, env=env, logdir=self.logdir)

    # argv ---------------------------------------------------------------------------------

    def _redis_argv(self) -> list[str]:
        return [
            tool("redis-server") or "redis-server",
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.logdir),
        ]

    def _pgbouncer_argv(self) -> list[str]:
        return pgbouncer_argv(
            self.database,
            port=self.bouncer_port,
            pool_size=self.options.pool_size,
            directory=self.logdir,
        )

    def _gunicorn_argv(self, port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            "beem_admin.wsgi",
            "-w",
            str(self.options.web_workers),
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
        ]

    def _haproxy_argv(self) -> list[str]:
        servers = [
            f"    server {name} 127.0.0.1:{port} check" for name, port in self.web_ports.items()
        ]
        config = _world_readable(
            self.logdir / "haproxy.cfg",
            "\n".join(
                [
                    "global",
                    "    maxconn 1000",
                    "    log stderr format raw local0 notice",
                    "defaults",
                    "    mode http",
                    "    log global",
                    "    option httplog",
                    "    timeout connect 2s",
                    "    timeout client 60s",
                    "    timeout server 60s",
                    "    timeout queue 30s",
                    # A sync gunicorn worker answers the check only between requests.
                    "    timeout check 5s",
                    # A refused or reset connection (a group being killed or restarting) is
                    # tried again on the other group; a request the server already had is not.
                    "    retries 3",
                    "    option redispatch 1",
                    "frontend scim",
                    f"    bind 127.0.0.1:{self.lb_port}",
                    "    default_backend web",
                    "backend web",
                    "    balance roundrobin",
                    "    option httpchk GET /healthz",
                    "    http-check expect status 200",
                    # At most one request per sync worker at a group; the rest wait in
                    # HAProxy's queue for whichever group frees a worker first.
                    f"    default-server inter 1s fall 2 rise 2 maxconn {self.options.web_workers}",
                    *servers,
                    "",
                ]
            ),
        )
        return [tool("haproxy") or "haproxy", "-db", "-f", str(config)]

    def _worker_argv(self, name: str) -> list[str]:
        return [
            str(BIN / "celery"),
            "-A",
            "bench.scaleout_worker",
            "worker",
            "-l",
            "INFO",
            "-c",
            str(self.options.worker_concurrency),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]

    # life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        p = self.processes
        p["redis"].start()
        p["pgbouncer"].start()
        wait_for_port(self.redis_port)
        wait_for_port(self.bouncer_port)
        for name in (*WEB_GROUPS, *WORKERS, "beat"):
            p[name].start()
        for port in self.web_ports.values():
            self.wait_for_web(port)
        p["haproxy"].start()
        wait_for_port(self.lb_port)
        self.wait_for_web(self.lb_port)

    def wait_for_web(self, port: int, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"127.0.0.1:{port} did not answer within {timeout}s")

    def kill(self, name: str) -> None:
        with self.lock:
            self.killed.add(name)
            self.processes[name].kill()

    def supervise(self) -> list[str]:
        """Start again every Beem process that is not running (the chaos' kills after the
        restart delay, and any that exited on its own). Returns the names started."""
        started = []
        with self.lock:
            for name in (*WEB_GROUPS, *WORKERS, "beat"):
                process = self.processes[name]
                if not process.running:
                    process.start()
                    self.killed.discard(name)
                    started.append(name)
        return started

    def stop_beem(self) -> None:
        """Stop the web groups, workers and beat (PgBouncer keeps its server connections)."""
        with self.lock:
            for name in ("haproxy", "beat", *WORKERS, *WEB_GROUPS):
                try:
                    self.processes[name].stop(timeout=15)
                except Exception:  # best effort on the way out
                    self.processes[name].kill()

    def stop(self) -> None:
        self.stop_beem()
        for name in ("pgbouncer", "redis"):
            try:
                self.processes[name].stop(timeout=10)
            except Exception:  # best effort on the way out
                self.processes[name].kill()

    def diagnosed(self) -> tuple[list[Process], list[Process]]:
        """Every process, and the ones whose log tails a diagnosis shows (stack_diagnose)."""
        return list(self.processes.values()), [self.processes[n] for n in (*WORKERS, "beat")]

    def bouncer_admin(self, command: str) -> list[dict]:
        """A command of PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, ...)."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(
            host="127.0.0.1",
            port=self.bouncer_port,
            user=self.database["USER"],
            dbname="pgbouncer",
            autocommit=True,
            row_factory=dict_row,
        ) as admin:
            # The console speaks the simple query protocol only.
            return list(admin.execute(command.encode(), prepare=False).fetchall())


# --- the checks ----------------------------------------------------------------------------


def drain_intervals(stack: ScaleStack, report: ScaleReport, t0: float) -> list[dict]:
    """The drains the workers recorded; a drain cut short by a kill ends at that kill."""
    drains: dict[str, dict] = {}
    for path in sorted(stack.drain_log.glob("drains-*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            drain = drains.setdefault(row["id"], {"node": row["node"], "org": row["org"]})
            drain[row["phase"]] = row["t"]
            if row["phase"] == "end":
                drain["finished"] = row.get("finished")
    kills = [(name, t0 + at) for name, at in report.kills]
    for drain in drains.values():
        if "end" in drain:
            continue
        worker = drain["node"].split("@")[0]
        after = [t for name, t in kills if name == worker and t >= drain["start"]]
        drain["end"] = min(after) if after else float("inf")
        drain["cut"] = True
    return sorted(drains.values(), key=lambda d: d["start"])


def drains_check(stack: ScaleStack, report: ScaleReport, t0: float) -> None:
    drains = drain_intervals(stack, report, t0)
    report.drains = {name: 0 for name in WORKERS}
    by_org: dict[int, list[dict]] = {}
    for drain in drains:
        worker = drain["node"].split("@")[0]
        report.drains[worker] = report.drains.get(worker, 0) + 1
        report.drains_unfinished += bool(drain.get("cut"))
        if drain["end"] == float("inf"):
            report.overlaps.append(f"drain of org {drain['org']} on {drain['node']} never ended")
        by_org.setdefault(drain["org"], []).append(drain)
    for org, rows in by_org.items():
        holder = None
        for drain in rows:  # by start
            if holder is not None and drain["start"] < holder["end"]:
                report.overlaps.append(
                    f"org {org}: {drain['node']} started at +{drain['start'] - t0:.3f}s while "
                    f"{holder['node']} drained (+{holder['start'] - t0:.3f}s to "
                    f"+{holder['end'] - t0:.3f}s)"
                )
            if holder is None or drain["end"] > holder["end"]:
                holder = drain


def session_leaks_check(stack: ScaleStack, report: ScaleReport) -> None:
    """Once every Beem process is stopped: no advisory lock is held in the database, and no
    pooled server connection carries a former client's session state."""
    import psycopg

    db = stack.database
    direct = dict(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    )
    with psycopg.connect(**direct, autocommit=True) as conn:
        for pid, app_name, state, objid in conn.execute(
            "SELECT l.pid, a.application_name, a.state, l.objid FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND a.datname = current_database() AND l.pid <> pg_backend_pid()"
        ):
            report.session_leaks.append(
                f"advisory lock (key {objid}) held by idle server connection {pid} "
                f"({app_name}, {state})"
            )
    report.pool = {
        key: row[key]
        for row in stack.bouncer_admin("SHOW POOLS")
        if row["database"] == db["NAME"]
        for key in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used")
    }
    servers = len([r for r in stack.bouncer_admin("SHOW SERVERS") if r["database"] == db["NAME"]])
    # One client per pooled server connection, each inside a transaction so that PgBouncer
    # cannot hand the same server connection to two of them: together they see every one.
    tracked = ", ".join(f"'{name}'" for name in sorted(PGBOUNCER_TRACKED))
    clients = []
    try:
        for _ in range(max(servers, 1)):
            conn = psycopg.connect(
                host="127.0.0.1", port=stack.bouncer_port, user=db["USER"], dbname=db["NAME"]
            )
            clients.append(conn)
            pid, settings, prepared, cursors, channels = conn.execute(
                "SELECT pg_backend_pid(), "
                "(SELECT coalesce(string_agg(name || '=' || setting, ', '), '') FROM pg_settings "
                f"  WHERE source = 'session' AND lower(name) NOT IN ({tracked})), "
                "(SELECT count(*) FROM pg_prepared_statements), "
                "(SELECT count(*) FROM pg_cursors), "
                "(SELECT count(*) FROM pg_listening_channels())",
                prepare=False,
            ).fetchone()
            report.server_connections_checked += 1
            if settings:
                report.session_leaks.append(f"server connection {pid}: session settings {settings}")
            if prepared:
                report.session_leaks.append(
                    f"server connection {pid}: {prepared} prepared statements"
                )
            if cursors or channels:
                report.session_leaks.append(
                    f"server connection {pid}: {cursors} open cursors, {channels} LISTENs"
                )
    finally:
        for conn in clients:
            conn.close()


# --- the run ---------------------------------------------------------------------------------


def pool_sample(stack: ScaleStack, report: ScaleReport, stop) -> None:
    """Every second: PgBouncer's clients and server connections, PostgreSQL's backends on the
    database, Redis' memory; the highest of each goes to ``report.peaks``."""
    import psycopg
    import redis as redis_lib

    db = stack.database
    client = redis_lib.Redis(port=stack.redis_port, socket_timeout=2)
    direct = None
    while not stop.wait(1.0):
        sample: dict[str, float] = {}
        try:
            rows = [r for r in stack.bouncer_admin("SHOW POOLS") if r["database"] == db["NAME"]]
            sample["PgBouncer clients"] = sum(r["cl_active"] + r["cl_waiting"] for r in rows)
            sample["clients waiting for a server connection"] = sum(r["cl_waiting"] for r in rows)
            sample["server connections"] = sum(
                r["sv_active"] + r["sv_idle"] + r["sv_used"] + r["sv_tested"] + r["sv_login"]
                for r in rows
            )
            sample["server connections in a transaction"] = sum(r["sv_active"] for r in rows)
        except Exception:  # PgBouncer restarting or busy: next second
            pass
        try:
            if direct is None or direct.closed:
                direct = psycopg.connect(
                    host=db["HOST"] or "127.0.0.1",
                    port=db["PORT"] or 5432,
                    user=db["USER"],
                    dbname=db["NAME"],
                    autocommit=True,
                )
            sample["PostgreSQL backends on the database"] = direct.execute(
                "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()[0]
        except Exception:
            pass
        try:
            sample["Redis used_memory MiB"] = round(
                client.info("memory")["used_memory"] / 1048576, 1
            )
        except Exception:  # Redis is never stopped here, but a sample must not end the run
            pass
        for key, value in sample.items():
            report.peaks[key] = max(report.peaks.get(key, 0), value)
    if direct is not None:
        direct.close()


def chaos_loop(stack: ScaleStack, options: ScaleOptions, report: ScaleReport, t0: float, stop):
    """Kill a worker, then a web group, in turn (which one of each alternates)."""
    if options.kill_interval:
        times = [options.kill_interval * (i + 1) for i in range(10_000)]
    else:
        times = [options.duration / 3, options.duration * 2 / 3]
    order = [WORKERS[1], WEB_GROUPS[1], WORKERS[0], WEB_GROUPS[0]]
    for turn, at in enumerate(times):
        if at >= options.duration or stop.wait(max(0.0, t0 + at - time.time())):
            return
        name = order[turn % len(order)]
        report.kills.append((name, time.time() - t0))
        report.chaos[f"SIGKILL {name}"] += 1
        stack.kill(name)
        if options.verbose:
            print(f"[scale] chaos: SIGKILL {name} at +{time.time() - t0:.1f}s", flush=True)


def supervisor_loop(stack: ScaleStack, options: ScaleOptions, report: ScaleReport, stop):
    while not stop.wait(options.restart_delay):
        for name in stack.supervise():
            if name not in {n for n, _t in report.kills}:
                report.supervisor_restarts += 1
            if options.verbose:
                print(f"[scale] supervisor: started {name} again", flush=True)


def web_kill_window(report: ScaleReport, t0: float):
    """Whether a request answered at ``when`` may have been in flight on a killed web group:
    from a second before a kill (the answer arrives after it) to five seconds after."""

    def in_window(when: float) -> bool:
        return any(
            name in WEB_GROUPS and t0 + at - 1.0 <= when <= t0 + at + 5.0
            for name, at in report.kills
        )

    return in_window


def run_scale_soak(options: ScaleOptions, *, database_url: str | None = None) -> ScaleReport:
    """Run the soak in the scale-out shape against Django's database; returns the report."""
    import logging
    import secrets
    import tempfile

    from django.db import connection

    from bench.soak import (
        EntraTenant,
        database_url_of_default_connection,
        stack_diagnose,
        tenants_provision,
        verify,
        wait_converged,
    )

    if connection.vendor != "postgresql":
        raise RuntimeError("the scale-out soak needs PostgreSQL")
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"the scale-out soak needs {', '.join(missing)} (Debian packages)")
    database_url = database_url or database_url_of_default_connection()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = ScaleReport()
    logdir = Path(tempfile.mkdtemp(prefix="beem-scale-"))
    stack = ScaleStack(database_url=database_url, options=options, logdir=logdir)
    say = print if options.verbose else (lambda *a, **k: None)
    say(
        f"[scale] logs in {logdir}; HAProxy {stack.base_url}, web groups {stack.web_ports}, "
        f"PgBouncer :{stack.bouncer_port}, redis :{stack.redis_port}",
        flush=True,
    )
    credentials = tenants_provision(options.tenants, secrets.token_hex(3))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        stack.start()
        t0 = time.time()
        tenants = [
            EntraTenant(
                index=i,
                stack=stack,
                credentials=c,
                report=report,
                seed=options.seed,
                lost_answer_expected=web_kill_window(report, t0),
            )
            for i, c in enumerate(credentials)
        ]
        deadline = time.monotonic() + options.duration
        threads = [
            threading.Thread(target=chaos_loop, args=(stack, options, report, t0, stop)),
            threading.Thread(target=supervisor_loop, args=(stack, options, report, stop)),
            threading.Thread(target=pool_sample, args=(stack, report, stop)),
        ]
        load = [threading.Thread(target=t.run, args=(deadline,)) for t in tenants]
        for thread in threads + load:
            thread.start()
        for thread in load:
            thread.join()
        report.load_seconds = time.time() - t0
        say(f"[scale] load done: {sum(report.requests.values())} requests", flush=True)
        organization_ids = [t.organization_id for t in tenants]
        report.converged, report.converge_seconds = wait_converged(
            organization_ids, options.converge_timeout, options.verbose
        )
        stop.set()
        for thread in threads:
            thread.join()
        if not report.converged:
            report.diagnostics = stack_diagnose(stack, organization_ids)
        verify(report, tenants)
        stack.stop_beem()
        drains_check(stack, report, t0)
        session_leaks_check(stack, report)
        report.watchdog_reconnects = sum(
            stack.processes[name]
            .log_path.read_text(errors="replace")
            .count("worker consumer stalled")
            for name in WORKERS
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        stack.stop()
    for line in report.lines():
        say(line, flush=True)
    if report.ok:
        shutil.rmtree(logdir, ignore_errors=True)
    else:
        say(f"[scale] process logs kept in {logdir}", flush=True)
    return report
