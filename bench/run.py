#!/usr/bin/env python
"""The Entra-scale benchmark: one command, one table.

    .venv/bin/python bench/run.py --users 10000        (or: make bench USERS=10000)

It creates a dedicated PostgreSQL database (``beem_bench_<users>``), migrates it, seeds an
organization with N directory users + members by COPY, starts the production shape on this
machine (gunicorn, a private redis-server, a Celery worker, DEBUG off), fetches real OAuth
tokens from ``/o/token/``, and drives Entra's request mix with wrk (a separate process, 16
connections, loopback), one phase per request type. Then it times an initial sync (POST N
users into an empty organization until every change event is applied), measures how fast a
stopped sync and a revoked token are refused, measures the token endpoint (tokens issued per
second; SCIM lookup p99 while /o/token/ is flooded with wrong secrets), and prints the
table. Results are also written to ``bench/out/`` (JSON per user count, the table, process
logs, profiles).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
OUT = BENCH / "out"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

# The ceilings first: "minimal" is bench/minimal.py (Django, no middleware) on its own gunicorn
# of the same shape, "ping" the same view under /scim/ in the full stack. "ping_ui" (not run by
# default) is that view outside /scim/, through the admin UI's middleware.
CEILINGS = ["minimal", "ping"]
READ_PHASES = [*CEILINGS, "probe", "username", "externalid", "get", "list"]
WRITE_PHASES = ["post", "patch", "group"]
DEFAULT_PHASES = READ_PHASES + WRITE_PHASES
ALL_PHASES = [*DEFAULT_PHASES, "ping_ui"]
PING_PATHS = {"minimal": "/scim/bench/ping", "ping": "/scim/bench/ping", "ping_ui": "/bench/ping"}
LABELS = {
    "minimal": "minimal Django, no middleware (ceiling)",
    "ping": "bare endpoint, full stack, /scim/ (ceiling)",
    "ping_ui": "bare endpoint, admin UI middleware",
    "probe": "probe userName eq <random GUID>",
    "username": "userName eq (existing)",
    "externalid": "externalId eq (existing)",
    "get": "GET /Users/<id>",
    "list": "list page of 100",
    "post": "POST /Users",
    "patch": "PATCH /Users (attrs, 1/10 disable)",
    "group": "PATCH /Groups members add/remove",
    "initial_sync": "initial sync POSTs (fresh org)",
}
# Issue 16, at 100,000 directory users: (minimum requests/second, maximum p99 in ms, or else
# the minimum share of the minimal-Django ceiling measured in the same run).
TARGETS = {
    "ping": (None, None, 0.8),
    "probe": (2500, 15, 0.40),
    "username": (2500, 15, 0.40),
    "externalid": (2500, 15, 0.40),
    "get": (2500, 15, 0.40),
    "list": (1000, None, None),
    "post": (800, None, 0.13),
    "patch": (800, None, 0.13),
    "group": (800, None, 0.13),
}
APPLY_TARGET_SECONDS = 60  # issue 16: every change applied within 60 s of the last POST
REFUSAL_TARGET_SECONDS = 1.0
# SCIM lookups while one client floods /o/token/ with wrong secrets (issue 13): their p99 may
# grow at most this much over the unloaded p99. The flood uses this many connections (as seen
# in the report), the lookups LOOKUP_CONNECTIONS.
FLOOD_TARGET_RATIO = 2.0
FLOOD_CONNECTIONS = 6
LOOKUP_CONNECTIONS = 2


def script_of(phase: str) -> str:
    """The wrk script (bench/lua/<name>.lua) of a phase: the ceilings share ping.lua."""
    return "ping" if phase in PING_PATHS else phase


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes and memory ------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(p) for p in text.split())
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime + stime of each process (clock ticks), from /proc/<pid>/stat."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def machine_busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    return sum(fields) - fields[3] - fields[4]


def children_ticks() -> int:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((usage.ru_utime + usage.ru_stime) * CLOCK_TICKS)


class CpuMeter:
    """CPU seconds spent by the web processes, the worker and our PostgreSQL backends.

    Requests per second depend on what else the machine runs; CPU per request much less so,
    which keeps figures comparable on a shared machine. Backends are found through
    pg_stat_activity (only those of the benchmark database).
    """

    def __init__(self, *, web_pid: int, worker_pid: int, admin_url: str, db_name: str):
        self.web_pid, self.worker_pid = web_pid, worker_pid
        self.admin_url, self.db_name = admin_url, db_name

    def _db_pids(self) -> list[int]:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.db_name]
            ).fetchall()
        return [r[0] for r in rows]

    def snapshot(self) -> dict[str, dict[int, int]]:
        return {
            "web": cpu_ticks(process_tree(self.web_pid)),
            "worker": cpu_ticks(process_tree(self.worker_pid)),
            "db": cpu_ticks(self._db_pids()),
            # Whole machine: busy ticks over all CPUs (pid 0 is a placeholder key).
            "machine": {0: machine_busy_ticks()},
            # wrk and other reaped children of this process.
            "children": {0: children_ticks()},
        }

    def since(self, before: dict[str, dict[int, int]]) -> dict[str, float]:
        after = self.snapshot()
        out = {}
        for group, ticks in after.items():
            old = before.get(group, {})
            # A process born during the phase counts whole; one that died is lost (rare).
            delta = sum(t - old.get(pid, 0) for pid, t in ticks.items())
            out[group] = max(0, delta) / CLOCK_TICKS
        return out


class RssSampler(threading.Thread):
    """Samples the resident memory of the web and worker process trees twice a second."""

    def __init__(self, groups: dict[str, int]):
        super().__init__(daemon=True)
        self.groups = groups
        self.samples: list[tuple[float, str, dict[str, tuple[int, int]]]] = []
        self.label = "start"
        self._stop_event = threading.Event()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Per group: (total KiB of the tree, largest single process KiB)."""
        out = {}
        for name, root in self.groups.items():
            sizes = [rss_kib(p) for p in process_tree(root)]
            out[name] = (sum(sizes), max(sizes, default=0))
        return out

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            self.samples.append((time.time(), self.label, self.snapshot()))

    def stop(self) -> None:
        self._stop_event.set()

    def peak(self, group: str, label: str | None = None) -> tuple[int, int]:
        rows = [s[2][group] for s in self.samples if label is None or s[1] == label]
        if not rows:
            return (0, 0)
        return (max(r[0] for r in rows), max(r[1] for r in rows))

    def series(self, group: str, label: str) -> list[int]:
        return [s[2][group][1] for s in self.samples if s[1] == label]


@dataclass
class Stack:
    """The processes the harness started (and only those are ever stopped)."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict, logfile: Path) -> subprocess.Popen:
        handle = open(logfile, "ab")
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                # The process group is the one start_new_session created for this child.
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
            log(f"stopped {name}")


# --- database ------------------------------------------------------------------------------


def database_recreate(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_exists(admin_url: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def database_drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def database_url(admin_url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


# --- HTTP helpers --------------------------------------------------------------------------


def http_request(
    port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    """One request on a fresh connection (so the kernel may hand it to any web process)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        all_headers = {"X-Forwarded-Proto": "https", "Connection": "close", **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def token_fetch(port: int, client_id: str, client_secret: str) -> str:
    body = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
    ).encode()
    status, payload = http_request(
        port,
        "POST",
        "/o/token/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body,
    )
    if status != 200:
        raise RuntimeError(f"/o/token/ answered {status}: {payload[:300]!r}")
    return json.loads(payload)["access_token"]


def wait_http(port: int, path: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the web server exited with {proc.returncode}; see bench/out/")
        try:
            status, _ = http_request(port, "GET", path)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the web server did not answer {path} within {timeout}s")


# --- load phases ---------------------------------------------------------------------------


def wrk_run(
    *,
    script: str,
    port: int,
    env: dict,
    duration: float,
    connections: int,
    threads: int,
    until=None,
) -> dict:
    """Run one wrk phase; ``until()`` (polled) may end it early with SIGINT, as Ctrl-C would."""
    argv = [
        shutil.which("wrk") or "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, math.ceil(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / f"{script}.lua"),
        f"http://127.0.0.1:{port}",
    ]
    started = time.time()
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if until is not None:
        while proc.poll() is None:
            if until():
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=duration + 120)
    finished = time.time()
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
            break
    else:
        raise RuntimeError(f"wrk gave no summary: {stdout[-500:]} {stderr[-500:]}")
    seconds = result["duration_us"] / 1e6
    socket_errors = result["connect"] + result["read"] + result["write"] + result["timeout"]
    result.update(
        rps=result["requests"] / seconds if seconds else 0.0,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=result["non2xx"] + socket_errors,
        started=started,
        finished=finished,
    )
    return result


def events_pending(organization_id: int) -> int:
    from directory_sync.models import ChangeEvent

    return ChangeEvent.objects.filter(
        organization_id=organization_id, status=ChangeEvent.Status.PENDING
    ).count()


def records_settle(records, *, quiet_seconds: float, timeout: float) -> int:
    """Wait until ``records.count()`` has not changed for ``quiet_seconds``; return it."""
    started = time.monotonic()
    count, since = records.count(), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.2)
        now_count = records.count()
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            break
    return count


def wait_applied(organization_id: int, timeout: float) -> float | None:
    """Seconds until no change event of the organization is pending (None: timed out)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if events_pending(organization_id) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


# --- security: a stopped sync / revoked token must be refused within a second ---------------


def refusal_latency(*, port: int, path: str, token: str, trigger, batch: int) -> dict:
    """Fire ``trigger`` and hammer ``path`` over fresh connections for two seconds.

    Each round sends ``batch`` concurrent requests (several per web process, each on a new
    connection so any process may take it). Returns when the last 2xx was seen after the
    trigger: a per-process cache that outlived the change would show up as late 2xx answers.
    """
    headers = {"Authorization": f"Bearer {token}"}
    before = http_request(port, "GET", path, headers)[0]
    t0 = time.monotonic()
    trigger()
    last_ok, statuses = None, {}
    with ThreadPoolExecutor(max_workers=batch) as pool:
        while time.monotonic() - t0 < 2.0:
            sent_at = time.monotonic() - t0
            for status in pool.map(
                lambda _: http_request(port, "GET", path, headers)[0], range(batch)
            ):
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    last_ok = sent_at
    return {
        "status_before": before,
        "last_success_after_s": last_ok,
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "refused_within_target": before == 200
        and (last_ok is None or last_ok < REFUSAL_TARGET_SECONDS)
        and set(statuses) == {401} | ({200} if last_ok is not None else set()),
    }


# --- profiling -----------------------------------------------------------------------------


def profile_start(pid: int, phase: str, duration: float) -> tuple[subprocess.Popen, Path] | None:
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        log("py-spy is not installed; skipping the profile")
        return None
    raw = OUT / f"profile-{phase}.raw"
    proc = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "200",
            "--duration",
            str(max(1, int(duration))),
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, raw


def profile_summary(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_count: dict[str, int] = {}
    incl_count: dict[str, int] = {}
    total = 0
    if not raw.exists():
        return "(no profile recorded)"
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + count
        for frame in set(frames):
            incl_count[frame] = incl_count.get(frame, 0) + count
    if not total:
        return "(no samples)"
    lines = [f"samples: {total}", "", "self %  function"]
    for frame, count in sorted(self_count.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:6.1f}  {frame}")
    lines += ["", "incl %  function (inclusive, project and library code)"]
    for frame, count in sorted(incl_count.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"{100 * count / total:6.1f}  {frame}")
    return "\n".join(lines)


# --- the table -----------------------------------------------------------------------------


def verdict(phase: str, result: dict, minimal_rps: float) -> str:
    target = TARGETS.get(phase)
    if not target:
        return ""
    rps, p99, share = target
    goals, met = [], False
    if rps is not None:
        goals.append(f"≥{rps:,}/s" + (f", p99≤{p99}ms" if p99 else ""))
        met = result["rps"] >= rps and (p99 is None or result["p99_ms"] <= p99)
    if share is not None and minimal_rps:
        goals.append(f"≥{share:.2f} of minimal")
        met = met or result["rps"] / minimal_rps >= share
    return f"{' or '.join(goals)}: {'met' if met else 'NOT met'}"


def table(report: dict) -> str:
    phases = report["phases"]
    minimal = phases.get("minimal", {}).get("rps") or 0
    bare = phases.get("ping", {}).get("rps") or 0
    lines = [
        f"Beem SCIM benchmark — {report['users']:,} directory users, {report['machine']}",
        f"gunicorn {report['gunicorn']}, celery worker -c {report['celery_concurrency']}, "
        f"wrk -t{report['threads']} -c{report['connections']}, {report['duration']}s per phase",
        "CPU taken by other programs during each phase (% of the machine): "
        + ", ".join(
            f"{p} {r['others_cpu_pct']:.0f}%" for p, r in phases.items() if "others_cpu_pct" in r
        ),
        "",
        "| request type | req/s | p50 ms | p99 ms | errors | vs minimal | vs bare "
        "| CPU ms/req web+db | target (100k users) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for phase in [*CEILINGS, "ping_ui", *DEFAULT_PHASES[len(CEILINGS) :], "initial_sync"]:
        result = phases.get(phase)
        if not result:
            continue
        ratios = [f"{result['rps'] / c:.2f}" if c else "-" for c in (minimal, bare)]
        cpu = (
            f"{result['cpu_web_ms']:.2f}+{result['cpu_db_ms']:.2f}"
            if "cpu_web_ms" in result
            else "-"
        )
        lines.append(
            f"| {LABELS[phase]} | {result['rps']:,.0f} | {result['p50_ms']:.1f} | "
            f"{result['p99_ms']:.1f} | {result['errors']} | {ratios[0]} | {ratios[1]} | {cpu} | "
            f"{verdict(phase, result, minimal)} |"
        )
    lines.append("")
    for phase, result in phases.items():
        if result.get("errors") and result.get("sample"):
            lines.append(f"first error in {phase}: {result['sample'][:200]}")
    for phase, seconds in report.get("drain_s", {}).items():
        shown = "did not finish" if seconds is None else f"{seconds:.1f} s"
        lines.append(f"apply backlog after {phase}: drained {shown} after the phase")
    sync = report.get("initial_sync")
    if sync:
        applied = sync["apply_after_last_request_s"]
        shown = "NOT finished" if applied is None else f"{applied:.1f} s"
        ok = applied is not None and applied <= APPLY_TARGET_SECONDS
        verdict_text = ("met" if ok else "NOT met") if sync["records"] >= 100_000 else "n/a here"
        lines.append(
            f"initial sync: {sync['records']:,} users POSTed in {sync['post_seconds']:.1f} s; "
            f"every change applied {shown} after the last request "
            f"(target ≤{APPLY_TARGET_SECONDS} s at 100k: {verdict_text}); "
            f"members {sync['members']:,}, events failed {sync['failed']}, "
            f"worker largest process RSS {sync['worker_rss_start_mib']:.0f} → "
            f"{sync['worker_rss_end_mib']:.0f} MiB (peak {sync['worker_rss_peak_mib']:.0f})"
        )
        if sync.get("cpu_s") and sync["records"]:
            per_user = {k: 1000 * v / sync["records"] for k, v in sync["cpu_s"].items()}
            lines.append(
                f"initial sync CPU per user (POST + apply): web {per_user['web']:.1f} ms, "
                f"worker {per_user['worker']:.1f} ms, PostgreSQL {per_user['db']:.1f} ms"
            )
    rss = report.get("rss")
    if rss:
        lines.append(
            f"peak RSS: web {rss['web_total_mib']:.0f} MiB total over {rss['web_processes']} "
            f"processes (largest {rss['web_max_mib']:.0f} MiB); worker "
            f"{rss['worker_total_mib']:.0f} MiB total (largest {rss['worker_max_mib']:.0f} MiB)"
        )
        if rss.get("web_list_max_mib") is not None:
            lines.append(
                f"largest web process RSS: {rss['web_before_list_mib']:.0f} MiB before the "
                f"list phase, {rss['web_list_max_mib']:.0f} MiB during it"
            )
    for name, check in report.get("security", {}).items():
        last = check["last_success_after_s"]
        shown = "no request succeeded after it" if last is None else f"last 2xx at {last:.2f} s"
        lines.append(
            f"{name}: {shown}; answers {check['answers']} "
            f"(refused within {REFUSAL_TARGET_SECONDS:.0f} s on every process: "
            f"{'met' if check['refused_within_target'] else 'NOT met'})"
        )
    token = report.get("token")
    if token:
        issued = token["issued"]
        lines.append(
            f"token endpoint: {issued['rps']:,.0f} tokens issued/s (p50 {issued['p50_ms']:.1f} ms, "
            f"p99 {issued['p99_ms']:.1f} ms, errors {issued['errors']}); a wrong secret answers "
            f"in p50 {token['wrong_known']['p50_ms']:.1f} ms for a known Client Identifier vs "
            f"{token['wrong_unknown']['p50_ms']:.1f} ms for an unknown one"
        )
        flood = token["flood"]
        lines.append(
            f"SCIM userName lookups ({LOOKUP_CONNECTIONS} connections) while {FLOOD_CONNECTIONS} "
            f"connections send wrong secrets to /o/token/ ({flood['rps']:,.0f} req/s): p99 "
            f"{token['unloaded']['p99_ms']:.1f} ms unloaded → {token['loaded']['p99_ms']:.1f} ms "
            f"loaded = {token['ratio']:.2f}× (target ≤{FLOOD_TARGET_RATIO:.0f}×: "
            f"{'met' if token['ratio'] <= FLOOD_TARGET_RATIO else 'NOT met'})"
        )
    scale = report.get("scale")
    if scale:
        lines.append(
            f"scale: userName lookup p50 {scale['p50_ms']:.2f} ms at {report['users']:,} vs "
            f"{scale['base_p50_ms']:.2f} ms at {scale['base_users']:,} users = "
            f"{scale['ratio']:.2f}× (target ≤1.25×)"
        )
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 1048576:.0f} GiB RAM"


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cores = os.cpu_count() or 2
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=10_000, help="directory users to seed")
    p.add_argument("--duration", type=float, default=10, help="seconds per wrk phase")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--warmup", type=float, default=1, help="unmeasured seconds of each phase first (0: none)"
    )
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--phases",
        default=",".join(DEFAULT_PHASES),
        help=f"comma-separated phases, of {','.join(ALL_PHASES)}",
    )
    p.add_argument(
        "--initial-sync",
        type=int,
        default=None,
        help="users POSTed into an empty organization for the apply timing (default: --users; "
        "0 skips)",
    )
    p.add_argument("--web-workers", type=int, default=2 * cores)
    p.add_argument("--web-class", default="sync", choices=["sync", "gthread"])
    p.add_argument("--web-threads", type=int, default=1, help="threads per worker (gthread)")
    p.add_argument("--celery-concurrency", type=int, default=cores)
    p.add_argument("--no-security", action="store_true", help="skip the stop/revoke checks")
    p.add_argument(
        "--no-token",
        action="store_true",
        help="skip the token endpoint figures (tokens issued per second; SCIM lookup p99 "
        "while /o/token/ is flooded with wrong secrets)",
    )
    p.add_argument(
        "--profile",
        default="",
        help="comma-separated phases to profile with py-spy, or 'all' (each in a window of its "
        "own after the measured one, so profiling does not lower the figures)",
    )
    p.add_argument(
        "--profile-duration", type=float, default=5, help="seconds of each profile window"
    )
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (maintenance database) where beem_bench_* are created",
    )
    p.add_argument("--db-name", default=None, help="database name (default beem_bench_<users>)")
    p.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    p.add_argument(
        "--reuse-db",
        action="store_true",
        help="reuse (and keep) an already seeded database of the same size: fast iterations",
    )
    p.add_argument("--out", default=str(OUT), help="directory for results, logs and profiles")
    p.add_argument("--settle", type=float, default=300, help="max seconds to wait for applies")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global OUT
    args = parse_args(argv)
    OUT = Path(args.out).resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(ALL_PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {sorted(unknown)}; known: {ALL_PHASES}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    initial_sync = args.users if args.initial_sync is None else args.initial_sync
    args.initial_sync_users = initial_sync
    db_name = args.db_name or f"beem_bench_{args.users}"
    db_url = database_url(args.pg_url, db_name)
    redis_port, web_port, minimal_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        "BEEM_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "BEEM_BENCH_ENDPOINT": "1",
        # The token endpoint's own cost is measured (tokens per second, a flood of wrong
        # secrets as from many addresses), not its rate limit, which would answer 429 sooner.
        "BEEM_TOKEN_RATE_LIMIT": "0",
        "BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    report: dict = {
        "users": args.users,
        "machine": machine(),
        "gunicorn": f"{args.web_class} ×{args.web_workers}"
        + (f" ×{args.web_threads} threads" if args.web_class == "gthread" else ""),
        "celery_concurrency": args.celery_concurrency,
        "threads": args.threads,
        "connections": args.connections,
        "duration": args.duration,
        "phases": {},
        "drain_s": {},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stack = Stack()
    sampler: RssSampler | None = None
    try:
        stack.start(
            "redis",
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            env,
            OUT / "redis.log",
        )
        data_dir = OUT / f"data-{args.users}"
        reuse = args.reuse_db and database_exists(args.pg_url, db_name) and data_dir.exists()
        if not reuse:
            log(f"creating database {db_name}")
            database_recreate(args.pg_url, db_name)
        t = time.monotonic()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            env=env,
            cwd=ROOT,
            check=True,
        )
        log(f"migrated in {time.monotonic() - t:.1f} s")

        os.environ.update(env)
        import django

        django.setup()
        from bench import seed

        t = time.monotonic()
        main_org, main_id, main_secret = seed.organization_prepare(slug="bench", name="Bench")
        if reuse:
            log(f"reusing {db_name} (seeded earlier; write phases may have changed it)")
        else:
            samples = seed.users_seed(organization_id=main_org, users=args.users)
            seed.samples_write(data_dir, samples)
        # A new, empty organization for every initial sync (reused databases keep old ones).
        sync_org, sync_id, sync_secret = seed.organization_prepare(
            slug=f"bench-initial-sync-{int(time.time())}", name="Bench initial sync"
        )
        report["seed_seconds"] = round(time.monotonic() - t, 1)
        log(f"seeded {args.users:,} users in {report['seed_seconds']} s")
        from django.db import connection

        connection.close()

        gunicorn = [
            str(BIN / "gunicorn"),
            "beem_admin.wsgi",
            "--bind",
            f"127.0.0.1:{web_port}",
            "--workers",
            str(args.web_workers),
            "--worker-class",
            args.web_class,
            "--threads",
            str(args.web_threads),
            "--backlog",
            "2048",
            "--no-control-socket",
            "--error-logfile",
            str(OUT / "gunicorn.log"),
        ]
        web = stack.start("gunicorn", gunicorn, env, OUT / "gunicorn.out")
        worker = stack.start(
            "celery",
            [str(BIN / "celery"), "-A", "beem_admin", "worker", "--loglevel=WARNING"]
            + [f"--concurrency={args.celery_concurrency}", "--without-gossip", "--without-mingle"],
            env,
            OUT / "celery.log",
        )
        minimal = None
        if "minimal" in phases:
            minimal_env = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
            argv = [*gunicorn]
            argv[1] = "bench.minimal:application"
            argv[argv.index(f"127.0.0.1:{web_port}")] = f"127.0.0.1:{minimal_port}"
            argv[argv.index(str(OUT / "gunicorn.log"))] = str(OUT / "gunicorn-minimal.log")
            minimal = stack.start("gunicorn-minimal", argv, minimal_env, OUT / "gunicorn.out")
        wait_http(web_port, PING_PATHS["ping"], 240, web)
        if minimal is not None:
            wait_http(minimal_port, PING_PATHS["minimal"], 60, minimal)
        sampler = RssSampler({"web": web.pid, "worker": worker.pid})
        meter = CpuMeter(
            web_pid=web.pid, worker_pid=worker.pid, admin_url=args.pg_url, db_name=db_name
        )

        def target(phase: str) -> tuple[int, int, CpuMeter]:
            """(port, web process id, CPU meter) of the server a phase loads."""
            if phase != "minimal":
                return web_port, web.pid, meter
            minimal_meter = CpuMeter(
                web_pid=minimal.pid, worker_pid=worker.pid, admin_url=args.pg_url, db_name=db_name
            )
            return minimal_port, minimal.pid, minimal_meter

        sampler.start()
        main_token = token_fetch(web_port, main_id, main_secret)
        sync_token = token_fetch(web_port, sync_id, sync_secret)
        main_base = f"/scim/v2/{main_org}"
        status, body = http_request(
            web_port,
            "GET",
            f"{main_base}/Users?count=1",
            {"Authorization": f"Bearer {main_token}"},
        )
        log(f"sanity: GET {main_base}/Users?count=1 -> {status} {body[:160]!r}")

        wrk_env = {
            "BENCH_LUA_DIR": str(LUA),
            "BENCH_DATA": str(data_dir),
            "BENCH_TOKEN": main_token,
            "BENCH_SCIM_BASE": main_base,
            "BENCH_USERS": str(args.users),
            "BENCH_NONCE": str(int(time.time()) % 100000),
        }

        def drive(phase: str, duration: float, nonce_offset: int = 0) -> dict:
            """wrk on the phase's script (a nonce offset keeps a window's new names apart)."""
            env = {**wrk_env, "BENCH_PING_PATH": PING_PATHS.get(phase, "")}
            if nonce_offset:
                env["BENCH_NONCE"] = str(int(time.time()) % 100000 + nonce_offset)
            return wrk_run(
                script=script_of(phase),
                port=target(phase)[0],
                env=env,
                duration=duration,
                connections=args.connections,
                threads=args.threads,
            )

        profiled = {p for p in args.profile.split(",") if p}
        if "all" in profiled:
            profiled = set(phases)  # the initial sync is profiled only when named
        if args.warmup > 0:
            # Each web process imports and connects lazily on its first requests of a kind;
            # that one-time cost is not what the phases measure.
            sampler.label = "warmup"
            for phase in phases:
                drive(phase, args.warmup, nonce_offset=50037)
            for phase in WRITE_PHASES:
                if phase in phases:
                    wait_applied(main_org, args.settle)
            log("warmed up")
        for phase in phases:
            sampler.label = phase
            _port, pid, phase_meter = target(phase)
            cpu_before = phase_meter.snapshot()
            result = drive(phase, args.duration)
            cpu = phase_meter.since(cpu_before)
            result["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
            ours = cpu["web"] + cpu["worker"] + cpu["db"] + cpu["children"]
            seconds = max(result["duration_us"] / 1e6, 1e-6)
            cores = os.cpu_count() or 1
            # Share of the machine's CPU other programs used during the phase.
            result["others_cpu_pct"] = max(0.0, 100 * (cpu["machine"] - ours) / seconds / cores)
            answered = max(1, result["requests"])
            result.update({f"cpu_{k}_ms": 1000 * v / answered for k, v in cpu.items()})
            report["phases"][phase] = result
            log(
                f"{phase}: {result['rps']:,.0f} req/s p50 {result['p50_ms']:.1f} ms "
                f"p99 {result['p99_ms']:.1f} ms errors {result['errors']} CPU/request: web "
                f"{result['cpu_web_ms']:.2f} ms, db {result['cpu_db_ms']:.2f} ms"
            )
            if phase in profiled:
                # A window of its own after the measured one: py-spy sampling four processes
                # takes a large share of two cores, which would lower the phase's figures.
                profile = profile_start(pid, phase, args.profile_duration)
                drive(phase, args.profile_duration, nonce_offset=70001)
                if profile:
                    profile[0].wait(timeout=args.profile_duration + 60)
                    summary = profile_summary(profile[1])
                    (OUT / f"profile-{phase}-{args.users}.txt").write_text(summary)
                    log(f"profile of {phase} in {OUT}/profile-{phase}-{args.users}.txt")
            if phase in WRITE_PHASES:
                sampler.label = f"drain-{phase}"
                report["drain_s"][phase] = wait_applied(main_org, args.settle)

        if initial_sync:
            sampler.label = "initial_sync"
            report["initial_sync"] = initial_sync_run(
                args,
                web_port,
                sync_org,
                sync_token,
                data_dir,
                sampler,
                meter,
                worker.pid if "initial_sync" in profiled else None,
            )
            report["phases"]["initial_sync"] = report["initial_sync"]["wrk"]

        sampler.label = "end"
        web_peak = sampler.peak("web")
        worker_peak = sampler.peak("worker")
        before_list = [
            s[2]["web"][1] for s in sampler.samples if s[1] in ("ping", "probe", "username")
        ]
        list_rows = sampler.series("web", "list")
        report["rss"] = {
            "web_total_mib": web_peak[0] / 1024,
            "web_max_mib": web_peak[1] / 1024,
            "web_processes": len(process_tree(web.pid)),
            "worker_total_mib": worker_peak[0] / 1024,
            "worker_max_mib": worker_peak[1] / 1024,
            "web_before_list_mib": max(before_list, default=0) / 1024,
            "web_list_max_mib": (max(list_rows) / 1024) if list_rows else None,
        }

        if not args.no_security:
            report["security"] = security_checks(
                web_port, main_org, main_base, main_id, main_secret, args.web_workers
            )

        if not args.no_token:
            sampler.label = "token"
            report["token"] = token_checks(
                args, web_port, wrk_env, client_id=main_id, client_secret=main_secret
            )

        base_file = OUT / "results-10000.json"
        if args.users != 10_000 and base_file.exists() and "username" in report["phases"]:
            base = json.loads(base_file.read_text())
            if "username" in base.get("phases", {}):
                report["scale"] = {
                    "base_users": base["users"],
                    "base_p50_ms": base["phases"]["username"]["p50_ms"],
                    "p50_ms": report["phases"]["username"]["p50_ms"],
                }
                report["scale"]["ratio"] = report["scale"]["p50_ms"] / max(
                    report["scale"]["base_p50_ms"], 1e-9
                )
    finally:
        if sampler:
            sampler.stop()
        stack.stop_all()
        from django.db import connections

        connections.close_all()
        if not (args.keep_db or args.reuse_db):
            try:
                database_drop(args.pg_url, db_name)
            except Exception as exc:  # cleanup must not hide the real error
                log(f"could not drop {db_name}: {exc}")

    text = table(report)
    (OUT / f"results-{args.users}.json").write_text(json.dumps(report, indent=2, default=str))
    (OUT / f"table-{args.users}.md").write_text(text + "\n")
    print()
    print(text)
    return 0


def initial_sync_run(
    args, port, organization_id, token, data_dir, sampler, meter, profile_pid
) -> dict:
    """POST N users into an empty organization, then time the apply after the last request.

    wrk's threads stop themselves after their share of POSTs; the harness ends wrk as soon as
    the records are all there (or stop growing, when requests fail). The apply time is taken
    from the database clock: last event finished minus last record created.
    """
    from django.db.models import Max

    from directory_sync.models import ChangeEvent, DirectoryRecord
    from members.models import Member

    wanted = args.initial_sync_users
    per_thread = math.ceil(wanted / args.threads)
    env = {
        "BENCH_LUA_DIR": str(LUA),
        "BENCH_DATA": str(data_dir),
        "BENCH_TOKEN": token,
        "BENCH_SCIM_BASE": f"/scim/v2/{organization_id}",
        "BENCH_POST_LIMIT": str(per_thread),
        "BENCH_NONCE": str(int(time.time()) % 100000),
    }
    records = DirectoryRecord.objects.filter(organization_id=organization_id, resource_type="User")
    progress = {"count": -1, "since": time.monotonic()}

    def finished() -> bool:
        count = records.count()
        if count >= per_thread * args.threads:
            return True
        if count != progress["count"]:
            progress.update(count=count, since=time.monotonic())
        # Requests are failing (or the server is wedged): stop after a long silence.
        return time.monotonic() - progress["since"] > 30

    start_rss = sampler.snapshot()["worker"][1]
    cpu_before = meter.snapshot()
    profile = None
    if profile_pid:
        # The worker during the POSTs and the apply that follows (bounded by --settle).
        profile = profile_start(profile_pid, "initial_sync", 60 + wanted / 5 + args.settle)
    log(f"initial sync: POSTing {wanted:,} users into an empty organization")
    result = wrk_run(
        script="post",
        port=port,
        env=env,
        duration=60 + wanted / 5,
        connections=args.connections,
        threads=args.threads,
        until=finished,
    )
    # Stopping wrk does not stop the POSTs gunicorn is still serving: let them commit before
    # waiting for the apply, or their records would be counted without their events.
    records_settle(records, quiet_seconds=1.0, timeout=30.0)
    observed_last = time.monotonic()
    sampler.label = "initial_sync_apply"
    pending_at_end = events_pending(organization_id)
    waited = wait_applied(organization_id, max(args.settle, 4 * APPLY_TARGET_SECONDS))
    cpu = meter.since(cpu_before)
    if profile:
        profile[0].send_signal(signal.SIGINT)
        profile[0].wait(timeout=60)
        summary_text = profile_summary(profile[1])
        (OUT / f"profile-initial_sync-worker-{args.users}.txt").write_text(summary_text)
    end_rss = sampler.snapshot()["worker"][1]
    last_created = records.aggregate(m=Max("created_at"))["m"]
    last_finished = ChangeEvent.objects.filter(organization_id=organization_id).aggregate(
        m=Max("finished_at")
    )["m"]
    if waited is None:
        applied = None
    elif last_created and last_finished:
        applied = max(0.0, (last_finished - last_created).total_seconds())
    else:
        applied = time.monotonic() - observed_last
    rows = sampler.series("worker", "initial_sync") + sampler.series("worker", "initial_sync_apply")
    summary = {
        "wrk": result,
        "records": records.count(),
        "post_seconds": result["finished"] - result["started"],
        "pending_at_last_request": pending_at_end,
        "apply_after_last_request_s": applied,
        "members": Member.objects.filter(organization_id=organization_id).count(),
        "failed": ChangeEvent.objects.filter(
            organization_id=organization_id, status=ChangeEvent.Status.FAILED
        ).count(),
        "worker_rss_start_mib": start_rss / 1024,
        "worker_rss_end_mib": end_rss / 1024,
        "worker_rss_peak_mib": max(rows, default=end_rss) / 1024,
        "worker_rss_series_mib": [round(r / 1024) for r in rows[:: max(1, len(rows) // 20)]],
        "cpu_s": cpu,
    }
    log(
        f"initial sync: {summary['records']:,} records, {pending_at_end:,} events pending at the "
        f"last request, all applied {applied} s after it"
    )
    return summary


def security_checks(port, organization_id, base, client_id, client_secret, workers) -> dict:
    """Stop the sync, then revoke the token: both must be refused on every web process."""
    from oauth2_provider.models import AccessToken

    from directory_sync import services as sync_services
    from members.models import Organization

    organization = Organization.objects.get(pk=organization_id)
    path = f"{base}/Users?filter=userName+eq+%22{secrets.token_hex(8)}%22"
    batch = max(8, 2 * workers)
    checks = {}
    token = token_fetch(port, client_id, client_secret)
    checks["stopped sync"] = refusal_latency(
        port=port,
        path=path,
        token=token,
        trigger=lambda: sync_services.sync_stop(organization=organization, actor_label="bench"),
        batch=batch,
    )
    sync_services.sync_activate(organization=organization, actor_label="bench")
    token = token_fetch(port, client_id, client_secret)

    def revoke() -> None:
        for access_token in AccessToken.objects.filter(application__client_id=client_id):
            access_token.revoke()

    checks["revoked token"] = refusal_latency(
        port=port, path=path, token=token, trigger=revoke, batch=batch
    )
    for name, check in checks.items():
        log(f"{name}: {check}")
    return checks


def token_checks(args, port, wrk_env, *, client_id: str, client_secret: str) -> dict:
    """Tokens issued per second, what a wrong secret costs for a known and an unknown Client
    Identifier, and the p99 of SCIM userName lookups with and without a flood of wrong secrets
    on /o/token/ running at the same time."""

    def run(script: str, connections: int, secret: str, ident: str = client_id) -> dict:
        env = {**wrk_env, "BENCH_CLIENT_ID": ident, "BENCH_CLIENT_SECRET": secret}
        return wrk_run(
            script=script,
            port=port,
            env=env,
            duration=args.duration,
            connections=connections,
            threads=1,
        )

    # The security checks revoked the phases' token: the lookups get a fresh one.
    wrk_env = {**wrk_env, "BENCH_TOKEN": token_fetch(port, client_id, client_secret)}
    wrong = "wrong-" + secrets.token_urlsafe(32)
    checks = {
        "issued": run("token", LOOKUP_CONNECTIONS, client_secret),
        "wrong_known": run("token", 1, wrong),
        "wrong_unknown": run("token", 1, wrong, ident="unknown-" + secrets.token_hex(8)),
        "unloaded": run("username", LOOKUP_CONNECTIONS, ""),
    }
    with ThreadPoolExecutor(max_workers=1) as pool:
        flood = pool.submit(
            wrk_run,
            script="token",
            port=port,
            env={**wrk_env, "BENCH_CLIENT_ID": client_id, "BENCH_CLIENT_SECRET": wrong},
            duration=args.duration + 2,
            connections=FLOOD_CONNECTIONS,
            threads=1,
        )
        time.sleep(1)  # the flood is in full swing before the lookups start
        checks["loaded"] = run("username", LOOKUP_CONNECTIONS, "")
        checks["flood"] = flood.result()
    checks["ratio"] = checks["loaded"]["p99_ms"] / max(checks["unloaded"]["p99_ms"], 1e-9)
    for name in ("issued", "wrong_known", "wrong_unknown", "unloaded", "loaded", "flood"):
        result = checks[name]
        log(
            f"token {name}: {result['rps']:,.0f} req/s p50 {result['p50_ms']:.1f} ms "
            f"p99 {result['p99_ms']:.1f} ms non-2xx {result['non2xx']}"
        )
    return checks


if __name__ == "__main__":
    sys.exit(main())
