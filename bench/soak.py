#!/usr/bin/env python
"""Soak: Entra-like cycles for several tenants while the worker and the broker are abused.

    .venv/bin/python bench/soak.py --duration 120 --tenants 4

Loopback only, bounded in time. It starts the production shape on this machine — gunicorn,
a private ``redis-server`` on a free port (never the shared one), a Celery worker and Celery
beat — against PostgreSQL (``DATABASE_URL``, default the ``beem_soak`` database, created and
migrated when missing). Several tenants then run Entra ID provisioning cycles over HTTP with
tokens from ``/o/token/``: probe, look-ups by userName, creates, attribute patches, manager
links, disables (``active: "False"``), re-enables, hard deletes, groups with member
add/remove. Meanwhile a chaos loop, in turn, restarts the worker (warm shutdown), kills it
with SIGKILL (its whole process group, as a container kill does) and stops Redis for a while
before starting it again (without persistence: queued jobs are lost on purpose).

When the time is up the chaos stops, Redis and a worker are left running, and the soak waits
for the system to converge by itself (beat's sweep re-dispatches what was lost). Then it checks:

* every change event is applied or skipped, or failed with a recorded reason (none pending);
* every directory record matches its member or group
  (``directory_sync.engine.record_member_differences``), except records whose latest event
  failed with a recorded reason;
* no duplicate member (same phone or same email in one organization) and no directory-managed
  member without its directory record;
* the server's directory records are exactly the users and groups the simulated Entra holds;
* no SCIM request failed with a 5xx or a connection error, even while Redis was down.

It prints the counts and exits non-zero when a check fails. ``tests/hardening/test_soak.py``
runs a short version (``run_soak`` with the test database) in CI.

``--scale-out`` runs the same tenants in the multi-host shape instead (bench/scaleout.py: two
gunicorn groups behind HAProxy, two workers, PgBouncer in transaction mode, a worker and a web
group SIGKILLed), with its own checks on top; ``make soak-scale MINUTES=5``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
# Saudi mobile prefixes (+966 5X); one per tenant keeps numbers unique across tenants too.
MOBILE_PREFIXES = "0345689"
DEPARTMENTS = ["Engineering", "Sales", "Finance", "HR", "Support"]
# Each tenant's new token from /o/token/ (real client credentials): 6 a minute, under
# BEEM_TOKEN_RATE_LIMIT's 30, and several per run so tokens change across the kills.
TOKEN_REFRESH_SECONDS = 10.0


# --- configuration and report ------------------------------------------------------------


@dataclass
class SoakOptions:
    duration: float = 60.0
    tenants: int = 3
    # Seconds between chaos actions (worker restart, worker SIGKILL, Redis stop/start).
    chaos_interval: float = 6.0
    # How long Redis stays down each time it is stopped.
    redis_down_seconds: float = 3.0
    # Time allowed, after the load, for everything pending to be applied.
    converge_timeout: float = 180.0
    worker_concurrency: int = 2
    web_workers: int = 2
    seed: int = 7
    verbose: bool = True


@dataclass
class SoakReport:
    requests: Counter = field(default_factory=Counter)
    # Seconds per answered SCIM request, by kind ("lookup", "create", "patch", ...).
    latencies: dict[str, list[float]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    chaos: Counter = field(default_factory=Counter)
    events: dict[str, int] = field(default_factory=dict)
    failed_without_reason: int = 0
    records_checked: int = 0
    records_failed_recorded: int = 0
    differences: list[str] = field(default_factory=list)
    duplicate_members: list[str] = field(default_factory=list)
    orphan_members: int = 0
    directory_mismatches: list[str] = field(default_factory=list)
    members: int = 0
    groups: int = 0
    converge_seconds: float = 0.0
    converged: bool = False
    # When the soak did not converge: the state of every part at that moment (stack_diagnose).
    diagnostics: list[str] = field(default_factory=list)
    # Workers that exited on their own and were started again (worker_supervise).
    supervisor_restarts: int = 0
    # Times a worker's watchdog found its consumer stalled and reconnected it (worker logs).
    watchdog_reconnects: int = 0

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.requests.items() if key.endswith((" 5xx", " error")))

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.converged:
            found.append(f"{self.events.get('pending', 0)} change events still pending")
        if self.failed_without_reason:
            found.append(f"{self.failed_without_reason} failed events without a reason")
        if self.differences:
            found.append(f"{len(self.differences)} records differ from their member/group")
        if self.duplicate_members:
            found.append(f"{len(self.duplicate_members)} duplicate members")
        if self.orphan_members:
            found.append(f"{self.orphan_members} directory-managed members without a record")
        if self.directory_mismatches:
            found.append(f"{len(self.directory_mismatches)} directory records differ from Entra")
        if self.server_errors:
            found.append(f"{self.server_errors} SCIM requests failed (5xx or connection)")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} unexpected SCIM answers")
        if not self.requests.get("create 201"):
            found.append("no user was created: the load did not run")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        total = sum(self.requests.values())
        out = [f"SCIM requests: {total}"]
        out += [f"  {key}: {n}" for key, n in sorted(self.requests.items())]
        out.append("chaos: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.chaos.items())))
        out.append(
            "change events: " + ", ".join(f"{k} {n}" for k, n in sorted(self.events.items()))
        )
        out.append(
            f"stalled consumers reconnected by the worker watchdog: {self.watchdog_reconnects}; "
            f"workers that exited on their own, started again: {self.supervisor_restarts}"
        )
        out.append(f"converged in {self.converge_seconds:.1f}s: {self.converged}")
        out.append(
            f"records checked: {self.records_checked} "
            f"(latest change failed with a recorded reason: {self.records_failed_recorded})"
        )
        out.append(f"members: {self.members}, groups: {self.groups}")
        out.append(f"records differing from their member/group: {len(self.differences)}")
        out += [f"  {d}" for d in self.differences[:20]]
        out.append(f"duplicate members: {len(self.duplicate_members)}")
        out += [f"  {d}" for d in self.duplicate_members[:20]]
        out.append(f"directory-managed members without a record: {self.orphan_members}")
        out.append(f"directory records differing from Entra: {len(self.directory_mismatches)}")
        out += [f"  {d}" for d in self.directory_mismatches[:20]]
        out += [f"unexpected: {u}" for u in self.unexpected[:20]]
        if self.diagnostics:
            out.append("diagnostics (the state when the wait for convergence gave up):")
            out += [f"  {line}" for line in self.diagnostics]
        out.append("RESULT: " + ("OK" if self.ok else "FAILED — " + "; ".join(self.problems)))
        return out


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def environment_without_project_settings() -> dict[str, str]:
    """This process's environment minus everything that configures Beem (Django, Beem, Celery,
    Redis, database): a child gets exactly the settings its caller adds."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "BEEM_", "CELERY_", "REDIS_URL", "DATABASE_URL"))
    }


def soak_environment(*, database_url: str, redis_port: int, base_url: str) -> dict[str, str]:
    """The production shape's environment for the soak's servers and workers."""
    from django.conf import settings as django_settings

    env = environment_without_project_settings()
    env.update(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/1",
        DJANGO_DEBUG="false",
        # The tenants' client secrets are stored keyed with SECRET_KEY by this process
        # (tenants_provision): the servers must share the key to verify them.
        DJANGO_SECRET_KEY=django_settings.SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="false",
        BEEM_PUBLIC_URL=base_url,
        # Short sweeps so lost jobs come back within the soak, not after minutes.
        BEEM_REDISPATCH_AFTER_SECONDS="4",
        BEEM_REDISPATCH_INTERVAL_SECONDS="2",
        BEEM_BROKER_VISIBILITY_TIMEOUT="20",
        # A consumer that stops receiving is noticed within seconds, not half a minute.
        BEEM_WORKER_WATCHDOG_SECONDS="5",
        BEEM_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


class Process:
    """A child process in its own session (so a SIGKILL takes its children with it)."""

    def __init__(self, name: str, argv: list[str], *, env: dict, logdir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # handed to the child
        log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM: Celery's warm shutdown), SIGKILL after ``timeout``."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Children left behind by the group leader.
        self.signal_group(signal.SIGKILL)

    def kill(self) -> None:
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        self.proc.wait(timeout=10)


class Stack:
    """gunicorn + private redis-server + Celery worker + beat, sharing one environment."""

    def __init__(self, *, database_url: str, options: SoakOptions, logdir: Path):
        self.options = options
        self.logdir = logdir
        self.web_port = free_port()
        self.redis_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        env = soak_environment(
            database_url=database_url, redis_port=self.redis_port, base_url=self.base_url
        )
        self.env = env
        self.redis = Process(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(logdir),
            ],
            env=env,
            logdir=logdir,
        )
        self.web = Process(
            "web",
            [
                str(BIN / "gunicorn"),
                "beem_admin.wsgi",
                "-w",
                str(options.web_workers),
                "-b",
                f"127.0.0.1:{self.web_port}",
                "--timeout",
                "60",
            ],
            env=env,
            logdir=logdir,
        )
        self.worker_starts = 0
        self.worker_lock = threading.Lock()
        self.worker = self._worker()
        self.beat = Process(
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
            env=env,
            logdir=logdir,
        )

    def _worker(self) -> Process:
        self.worker_starts += 1
        return Process(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "beem_admin",
                "worker",
                "-l",
                "INFO",
                "-c",
                str(self.options.worker_concurrency),
                "-n",
                f"soak{self.worker_starts}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            env=self.env,
            logdir=self.logdir,
        )

    def start(self) -> None:
        self.redis.start()
        wait_for_port(self.redis_port)
        self.web.start()
        self.worker.start()
        self.beat.start()
        wait_for_port(self.web_port, timeout=120)
        self.wait_for_web()

    def wait_for_web(self, timeout: float = 180.0) -> None:
        """gunicorn binds before its workers have imported Django: wait for a real answer."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base_url + "/healthz", timeout=5.0)
                return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"{self.base_url} did not answer within {timeout}s")

    def worker_restart(self) -> None:
        with self.worker_lock:
            self.worker.stop()
            self.worker = self._worker()
            self.worker.start()

    def worker_kill(self) -> None:
        with self.worker_lock:
            self.worker.kill()
            time.sleep(0.5)
            self.worker = self._worker()
            self.worker.start()

    def worker_supervise(self) -> bool:
        """Start a worker that exited on its own again (as systemd's Restart=always would: the
        worker watchdog exits a worker whose consumer stays stalled). True when it did."""
        with self.worker_lock:
            if self.worker.running:
                return False
            self.worker = self._worker()
            self.worker.start()
            return True

    def redis_stop(self) -> None:
        self.redis.stop()

    def redis_start(self) -> None:
        if not self.redis.running:
            self.redis.start()
            wait_for_port(self.redis_port)

    def diagnosed(self) -> tuple[list[Process], list[Process]]:
        """Every process, and the ones whose log tails a diagnosis shows (stack_diagnose)."""
        return [self.web, self.worker, self.beat, self.redis], [self.worker, self.beat]

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.web, self.redis):
            try:
                process.stop(timeout=10)
            except Exception:  # best effort on the way out
                process.kill()


def supervisor_loop(stack: Stack, report: SoakReport, stop: threading.Event, verbose: bool):
    """The process manager of a deployment: a worker that exits on its own is started again."""
    while not stop.wait(1.0):
        if stack.worker_supervise():
            report.supervisor_restarts += 1
            if verbose:
                print("[soak] worker exited on its own; started again", flush=True)


def chaos_loop(stack: Stack, options: SoakOptions, report: SoakReport, stop: threading.Event):
    """Worker restart, worker SIGKILL, Redis down/up — in turn, until ``stop``."""
    actions = ["worker_kill", "redis_bounce", "worker_restart"]
    turn = 0
    while not stop.wait(options.chaos_interval):
        action = actions[turn % len(actions)]
        turn += 1
        if action == "worker_kill":
            stack.worker_kill()
        elif action == "worker_restart":
            stack.worker_restart()
        else:
            stack.redis_stop()
            stop.wait(options.redis_down_seconds)
            stack.redis_start()
        report.chaos[action] += 1
        if options.verbose:
            print(f"[soak] chaos: {action}", flush=True)


# --- the simulated Entra ID ------------------------------------------------------------------


@dataclass
class EntraUser:
    upn: str
    object_id: str
    phone: str
    scim_id: str | None = None
    active: bool = True
    department: str = "Engineering"
    manager: str | None = None  # upn


@dataclass
class EntraGroup:
    name: str
    object_id: str
    scim_id: str | None = None
    members: set[str] = field(default_factory=set)  # upns


class EntraTenant:
    """One organization's Entra ID provisioning job, driving our SCIM endpoint over HTTP."""

    def __init__(
        self,
        *,
        index: int,
        stack,
        credentials,
        report: SoakReport,
        seed: int,
        lost_answer_expected=None,
    ):
        import httpx

        # The scale-out soak kills web groups behind a load balancer: a request in flight
        # there gets the balancer's 502 and no answer from Beem. ``lost_answer_expected(t)``
        # says whether that may be the case at time t; the tenant then does what Entra does
        # (send it again; look a create up before creating again). None: an answer is never
        # lost, every 5xx is a failure.
        self.lost_answer_expected = lost_answer_expected
        self.answer_lost = False
        self.index = index
        self.organization_id = credentials.organization.pk
        self.client_id = credentials.client_id
        self.client_secret = credentials.client_secret
        self.report = report
        self.rng = random.Random(seed * 1000 + index)
        self.http = httpx.Client(base_url=stack.base_url, timeout=30.0)
        self.scim = f"/scim/v2/{self.organization_id}"
        self.token: str | None = None
        self.token_fetched = 0.0  # time.monotonic() of the last token
        self.users: dict[str, EntraUser] = {}
        self.groups: dict[str, EntraGroup] = {}
        self.deleted_users = 0
        self.phone_counter = 0

    # HTTP ---------------------------------------------------------------------------

    def _lost(self, kind: str, response) -> bool:
        """A balancer's 5xx (not a SCIM body) or no answer, when one may be lost: counted
        apart, and the caller sends the request again."""
        if self.lost_answer_expected is None or not self.lost_answer_expected(time.time()):
            return False
        if response is not None and (
            response.status_code < 500 or "scim+json" in response.headers.get("content-type", "")
        ):
            return False
        self.report.requests[f"{kind} lost at a web kill"] += 1
        self.answer_lost = True
        time.sleep(0.5)
        return True

    def _call(self, kind: str, method: str, path: str, *, expect: tuple[int, ...], **kwargs):
        """One SCIM request. An answer lost at a web kill: a POST returns None with
        ``answer_lost`` set (the caller looks it up first, as Entra does), anything else is
        sent again; a DELETE's 404 then means the lost one was applied."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if "json" in kwargs:
            kwargs["content"] = json.dumps(kwargs.pop("json"))
            headers["Content-Type"] = "application/scim+json"
        retried, response = False, None
        for _attempt in range(10):
            try:
                started = time.monotonic()
                response = self.http.request(method, self.scim + path, headers=headers, **kwargs)
                self.report.latencies.setdefault(kind, []).append(time.monotonic() - started)
            except Exception as exc:  # counted, never raised
                if self._lost(kind, None):
                    if method == "POST":
                        return None
                    retried = True
                    continue
                self.report.requests[f"{kind} error"] += 1
                self.report.unexpected.append(f"{method} {path}: {exc.__class__.__name__}: {exc}")
                return None
            if not self._lost(kind, response):
                break
            if method == "POST":
                return None
            retried = True
        if response is None:  # no answer ten times in a row
            self.report.requests[f"{kind} error"] += 1
            self.report.unexpected.append(f"{method} {path}: no answer after retries")
            return None
        if retried and method == "DELETE" and response.status_code == 404:
            expect = (*expect, 404)
        bucket = "5xx" if response.status_code >= 500 else str(response.status_code)
        self.report.requests[f"{kind} {bucket}"] += 1
        if response.status_code not in expect:
            self.report.unexpected.append(
                f"{method} {path} -> {response.status_code}: {response.text[:300]}"
            )
            return None
        return response

    def token_fetch(self) -> None:
        response = None
        for _attempt in range(10):
            try:
                response = self.http.post(
                    "/o/token/",
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self.client_secret),
                )
            except Exception:
                if self._lost("token", None):
                    continue
                raise
            if not self._lost("token", response):
                break
        if response is None:
            raise RuntimeError("no answer from /o/token/ after retries")
        self.report.requests[f"token {response.status_code}"] += 1
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.token_fetched = time.monotonic()

    # Entra's steps ------------------------------------------------------------------

    def probe(self) -> None:
        guid = uuid.uuid4()
        self._call(
            "probe", "GET", "/Users", expect=(200,), params={"filter": f'userName eq "{guid}"'}
        )
        self._call(
            "probe", "GET", "/Groups", expect=(200,), params={"filter": f'displayName eq "{guid}"'}
        )

    def _new_phone(self) -> str:
        self.phone_counter += 1
        return f"+9665{MOBILE_PREFIXES[self.index % 7]}{self.phone_counter:07d}"

    def _user_body(self, user: EntraUser) -> dict:
        body = {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": user.object_id,
            "userName": user.upn,
            "active": "True" if user.active else "False",
            "displayName": user.upn.split("@")[0].replace(".", " ").title(),
            "emails": [{"primary": True, "type": "work", "value": user.upn}],
            "name": {"givenName": "Soak", "familyName": user.upn.split("@")[0]},
            "phoneNumbers": [{"type": "mobile", "value": user.phone}],
            "title": "Engineer",
            "addresses": [{"type": "work", "country": "SA"}],
            ENTERPRISE: {"employeeNumber": user.object_id[:8], "department": user.department},
        }
        return body

    def user_create(self) -> None:
        n = len(self.users) + self.deleted_users + 1
        user = EntraUser(
            upn=f"user{n}.t{self.index}@tenant{self.index}.example.com",
            object_id=str(uuid.uuid4()),
            phone=self._new_phone(),
            department=self.rng.choice(DEPARTMENTS),
        )
        self.answer_lost = False
        for _attempt in range(5):
            found = self._call(
                "lookup",
                "GET",
                "/Users",
                expect=(200,),
                params={"filter": f'userName eq "{user.upn}"'},
            )
            if found is None:
                return
            if found.json()["totalResults"]:
                if self.answer_lost:  # the create whose answer was lost was applied
                    user.scim_id = found.json()["Resources"][0]["id"]
                    self.users[user.upn] = user
                    self.report.requests["create found after a lost answer"] += 1
                return
            self._call(
                "lookup",
                "GET",
                "/Users",
                expect=(200,),
                params={"filter": f'externalId eq "{user.object_id}"'},
            )
            created = self._call(
                "create", "POST", "/Users", expect=(201,), json=self._user_body(user)
            )
            if created is not None:
                user.scim_id = created.json()["id"]
                self.users[user.upn] = user
                return
            if not self.answer_lost:
                return

    def _patch_user(self, user: EntraUser, operations: list[dict]) -> bool:
        self._call("read", "GET", f"/Users/{user.scim_id}", expect=(200,))
        response = self._call(
            "patch",
            "PATCH",
            f"/Users/{user.scim_id}",
            expect=(200, 204),
            json={"schemas": [PATCH_SCHEMA], "Operations": operations},
        )
        return response is not None

    def user_update(self, user: EntraUser) -> None:
        choice = self.rng.choice(["department", "phone", "title", "name"])
        if choice == "department":
            department = self.rng.choice(DEPARTMENTS)
            ops = [{"op": "Replace", "path": f"{ENTERPRISE}:department", "value": department}]
            if self._patch_user(user, ops):
                user.department = department
        elif choice == "phone":
            phone = self._new_phone()
            ops = [
                {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": phone}
            ]
            if self._patch_user(user, ops):
                user.phone = phone
        elif choice == "title":
            self._patch_user(user, [{"op": "Replace", "path": "title", "value": "Lead"}])
        else:
            self._patch_user(
                user,
                [{"op": "Replace", "path": "name.familyName", "value": f"F{self.rng.random()}"}],
            )

    def user_manager(self, user: EntraUser) -> None:
        candidates = [u for u in self.users.values() if u.upn != user.upn and u.scim_id]
        if not candidates:
            return
        manager = self.rng.choice(candidates)
        ops = [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager.scim_id}]
        if self._patch_user(user, ops):
            user.manager = manager.upn

    def user_set_active(self, user: EntraUser, active: bool) -> None:
        ops = [{"op": "Replace", "path": "active", "value": "True" if active else "False"}]
        if self._patch_user(user, ops):
            user.active = active

    def user_delete(self, user: EntraUser) -> None:
        if self._call("delete", "DELETE", f"/Users/{user.scim_id}", expect=(204,)) is not None:
            del self.users[user.upn]
            self.deleted_users += 1
            for group in self.groups.values():
                group.members.discard(user.upn)
            for other in self.users.values():
                if other.manager == user.upn:
                    other.manager = None

    def group_create(self) -> None:
        group = EntraGroup(name=f"Soak group {len(self.groups) + 1}", object_id=str(uuid.uuid4()))
        self.answer_lost = False
        for _attempt in range(5):
            found = self._call(
                "lookup",
                "GET",
                "/Groups",
                expect=(200,),
                params={
                    "excludedAttributes": "members",
                    "filter": f'displayName eq "{group.name}"',
                },
            )
            if found is not None and found.json()["totalResults"] and self.answer_lost:
                group.scim_id = found.json()["Resources"][0]["id"]
                self.groups[group.name] = group
                self.report.requests["create found after a lost answer"] += 1
                return
            body = {
                "schemas": [GROUP_SCHEMA],
                "displayName": group.name,
                "externalId": group.object_id,
            }
            created = self._call("create", "POST", "/Groups", expect=(201,), json=body)
            if created is not None:
                group.scim_id = created.json()["id"]
                self.groups[group.name] = group
                return
            if not self.answer_lost:
                return

    def group_members_change(self, group: EntraGroup) -> None:
        outside = [u for u in self.users.values() if u.upn not in group.members]
        inside = [self.users[upn] for upn in group.members if upn in self.users]
        if inside and (not outside or self.rng.random() < 0.35):
            removed = self.rng.sample(inside, k=min(len(inside), self.rng.randint(1, 2)))
            op = {
                "op": "Remove",
                "path": "members",
                "value": [{"value": u.scim_id} for u in removed],
            }
            change = (set(), {u.upn for u in removed})
        elif outside:
            added = self.rng.sample(outside, k=min(len(outside), self.rng.randint(1, 3)))
            op = {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": u.scim_id} for u in added],
            }
            change = ({u.upn for u in added}, set())
        else:
            return
        response = self._call(
            "group_patch",
            "PATCH",
            f"/Groups/{group.scim_id}",
            expect=(204, 200),
            json={"schemas": [PATCH_SCHEMA], "Operations": [op]},
        )
        if response is not None:
            group.members |= change[0]
            group.members -= change[1]

    # one provisioning cycle -----------------------------------------------------------

    def cycle(self, deadline: float) -> None:
        # By time, as Entra does (a token about once an hour, here every TOKEN_REFRESH_SECONDS):
        # per cycle, a fast host would ask /o/token/ past its 30-a-minute limit (429).
        if self.token is None or time.monotonic() - self.token_fetched >= TOKEN_REFRESH_SECONDS:
            self.token_fetch()
        self.probe()
        steps = ["create"] * 3 + ["update"] * 3 + ["manager", "disable", "enable", "group"] * 1
        steps += ["members"] * 2
        if self.rng.random() < 0.3:
            steps.append("delete")
        self.rng.shuffle(steps)
        for step in steps:
            if time.monotonic() > deadline:
                return
            users = [u for u in self.users.values() if u.scim_id]
            active = [u for u in users if u.active]
            inactive = [u for u in users if not u.active]
            if step == "create" or not users:
                self.user_create()
            elif step == "update" and active:
                self.user_update(self.rng.choice(active))
            elif step == "manager" and active:
                self.user_manager(self.rng.choice(active))
            elif step == "disable" and len(active) > 2:
                self.user_set_active(self.rng.choice(active), False)
            elif step == "enable" and inactive:
                self.user_set_active(self.rng.choice(inactive), True)
            elif step == "delete" and inactive:
                self.user_delete(self.rng.choice(inactive))
            elif step == "group" and len(self.groups) < 3:
                self.group_create()
            elif step == "members" and self.groups:
                self.group_members_change(self.rng.choice(list(self.groups.values())))

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.cycle(deadline)
            except Exception as exc:  # one tenant's crash must not hide others
                self.report.unexpected.append(f"tenant {self.index}: {exc!r}")
                self.report.requests["cycle error"] += 1
                time.sleep(0.5)


# --- checks ------------------------------------------------------------------------------------


def event_counts(organization_ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from directory_sync.models import ChangeEvent

    rows = (
        ChangeEvent.objects.filter(organization_id__in=organization_ids)
        .values("status")
        .annotate(n=Count("id"))
    )
    counts = {status: 0 for status in ChangeEvent.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def wait_converged(
    organization_ids: list[int], timeout: float, verbose: bool
) -> tuple[bool, float]:
    """Wait until no event is pending (beat's sweep re-dispatches whatever was lost)."""
    started = time.monotonic()
    last_print = 0.0
    while True:
        counts = event_counts(organization_ids)
        elapsed = time.monotonic() - started
        if counts["pending"] == 0:
            return True, elapsed
        if elapsed > timeout:
            return False, elapsed
        if verbose and elapsed - last_print > 5:
            last_print = elapsed
            print(f"[soak] waiting: {counts['pending']} events pending", flush=True)
        time.sleep(1.0)


def _log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"({exc})"


def _log_tail(path: Path, lines: int) -> list[str]:
    return [line[:300] for line in _log_text(path).splitlines()[-lines:]]


def stack_diagnose(stack: Stack, organization_ids: list[int]) -> list[str]:
    """What each part looks like when events stay pending: enough to tell a dead beat, a worker
    that stopped consuming, a lost or misrouted message, a held lock or a stuck query apart."""
    import redis as redis_lib
    from django.db import connection
    from django.db.models import Count, Max, Min

    from directory_sync.models import ChangeEvent

    processes, logged = stack.diagnosed()
    out = [
        "processes: "
        + ", ".join(
            f"{p.name} {'running' if p.running else 'exited ' + str(p.proc and p.proc.returncode)}"
            for p in processes
        )
    ]
    pending = (
        ChangeEvent.objects.filter(
            organization_id__in=organization_ids, status=ChangeEvent.Status.PENDING
        )
        .values("organization_id")
        .annotate(
            n=Count("id"),
            first=Min("created_at"),
            last=Max("created_at"),
            sent=Max("dispatched_at"),
            tries=Max("attempts"),
        )
    )
    for row in pending:
        sent = row["sent"].strftime("%H:%M:%S") if row["sent"] else "never"
        out.append(
            f"pending org {row['organization_id']}: {row['n']} events created "
            f"{row['first']:%H:%M:%S}–{row['last']:%H:%M:%S}, last sent {sent}, "
            f"attempts {row['tries']}"
        )
    try:
        for db in (0, 1):
            client = redis_lib.Redis(port=stack.redis_port, db=db, socket_timeout=2)
            for key in sorted(client.keys("*"))[:40]:
                kind = client.type(key).decode()
                size = {
                    "list": client.llen,
                    "hash": client.hlen,
                    "zset": client.zcard,
                    "set": client.scard,
                }.get(kind, lambda k: "")(key)
                out.append(f"redis db{db} {key!r} {kind} {size}")
    except Exception as exc:  # a diagnosis must not fail the report
        out.append(f"redis: {exc!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, "
            "left(query, 120) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
        )
        for row in cursor.fetchall():
            out.append(f"postgres session {row}")
        cursor.execute(
            "SELECT pid, classid, objid, granted FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        for row in cursor.fetchall():
            out.append(f"advisory lock {row}")
    for what in ("active", "reserved"):
        try:
            inspect = subprocess.run(
                [str(BIN / "celery"), "-A", "beem_admin", "inspect", what, "--timeout", "3"],
                cwd=ROOT,
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            answer = (inspect.stdout + inspect.stderr).splitlines()
            out += [f"celery inspect {what}: {line}" for line in answer[-15:]]
        except Exception as exc:  # a diagnosis must not fail the report
            out.append(f"celery inspect {what}: {exc!r}")
    for process in logged:
        lines = 15 if process.name == "beat" else 40
        out += [f"{process.name}.log: " + line for line in _log_tail(process.log_path, lines)]
    return out


def verify(report: SoakReport, tenants: list[EntraTenant]) -> None:
    from django.db.models import Count
    from django.db.models.functions import Lower

    from directory_sync.engine import record_member_differences
    from directory_sync.models import ChangeEvent, DirectoryMembership, DirectoryRecord
    from members.models import Group, Member

    organization_ids = [t.organization_id for t in tenants]
    report.events = event_counts(organization_ids)
    failed = ChangeEvent.objects.filter(
        organization_id__in=organization_ids, status=ChangeEvent.Status.FAILED
    )
    report.failed_without_reason = failed.filter(reason="").count()
    for record in DirectoryRecord.objects.filter(organization_id__in=organization_ids):
        report.records_checked += 1
        latest = ChangeEvent.objects.filter(record=record).order_by("-id").first()
        if (
            latest is not None
            and latest.status == ChangeEvent.Status.FAILED
            and latest.reason
            and latest.record_version == record.version
        ):
            report.records_failed_recorded += 1
            continue
        for difference in record_member_differences(record):
            report.differences.append(f"{record}: {difference}")
    for organization_id in organization_ids:
        members = Member.objects.filter(organization_id=organization_id)
        for row in (
            members.exclude(phone=None).values("phone").annotate(n=Count("id")).filter(n__gt=1)
        ):
            report.duplicate_members.append(
                f"org {organization_id} phone {row['phone']} x{row['n']}"
            )
        for row in (
            members.exclude(email=None)
            .annotate(e=Lower("email"))
            .values("e")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        ):
            report.duplicate_members.append(f"org {organization_id} email {row['e']} x{row['n']}")
        report.orphan_members += members.filter(
            directory_managed=True, directory_record__isnull=True
        ).count()
        report.members += members.count()
        report.groups += Group.objects.filter(organization_id=organization_id).count()
    # The server's directory must be exactly what Entra holds: no write lost or duplicated.
    for tenant in tenants:
        live = DirectoryRecord.objects.filter(
            organization_id=tenant.organization_id, deleted_at__isnull=True
        )
        users = {r.user_name: r for r in live.filter(resource_type="User")}
        expected = {u.upn: u for u in tenant.users.values() if u.scim_id}
        for upn in sorted(set(users) ^ set(expected)):
            where = "server only" if upn in users else "Entra only"
            report.directory_mismatches.append(f"tenant {tenant.index}: user {upn} ({where})")
        for upn, user in expected.items():
            record = users.get(upn)
            if record is not None and record.active != user.active:
                report.directory_mismatches.append(
                    f"tenant {tenant.index}: {upn} active={record.active}, Entra {user.active}"
                )
        expected_groups = {g.scim_id for g in tenant.groups.values()}
        for scim_id, name in live.filter(resource_type="Group").values_list(
            "scim_id", "display_name"
        ):
            if str(scim_id) not in expected_groups:
                report.directory_mismatches.append(
                    f"tenant {tenant.index}: group {name} (server only)"
                )
        for group in tenant.groups.values():
            record = live.filter(scim_id=group.scim_id).first()
            if record is None:
                report.directory_mismatches.append(f"tenant {tenant.index}: group {group.name}")
                continue
            members = set(
                DirectoryMembership.objects.filter(group_record=record).values_list(
                    "user_record__user_name", flat=True
                )
            )
            if members != group.members:
                report.directory_mismatches.append(
                    f"tenant {tenant.index}: {group.name} members {sorted(members)} "
                    f"!= Entra {sorted(group.members)}"
                )


# --- orchestration -----------------------------------------------------------------------------


def database_url_of_default_connection() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def tenants_provision(count: int, run_tag: str) -> list:
    """Organizations with active sync and fresh credentials (as an operator would create)."""
    from directory_sync import services as sync_services
    from members import services as member_services

    issued = []
    for index in range(count):
        organization = member_services.organization_get_or_create(
            slug=f"soak-{run_tag}-{index}", name=f"Soak {run_tag} {index}"
        )
        sync_services.sync_settings_update(
            organization=organization,
            actor_label="soak",
            identify_by="phone",
            deletion_rule="delete_directly",
        )
        credentials = sync_services.sync_activate(organization=organization, actor_label="soak")
        if credentials is None:
            credentials = sync_services.credentials_issue(
                organization=organization, actor_label="soak"
            )
        issued.append(credentials)
    return issued


def run_soak(options: SoakOptions, *, database_url: str | None = None) -> SoakReport:
    """Run the soak against the database Django is configured with; returns the report."""
    from django.db import connection

    if connection.vendor != "postgresql":
        raise RuntimeError("the soak needs PostgreSQL (row locks are no-ops on SQLite)")
    if shutil.which("redis-server") is None:
        raise RuntimeError("the soak needs redis-server (it runs a private one)")
    database_url = database_url or database_url_of_default_connection()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = SoakReport()
    logdir = Path(tempfile.mkdtemp(prefix="beem-soak-"))
    stack = Stack(database_url=database_url, options=options, logdir=logdir)
    say = print if options.verbose else (lambda *a, **k: None)
    say(f"[soak] logs in {logdir}; web {stack.base_url}; redis port {stack.redis_port}", flush=True)
    run_tag = secrets.token_hex(3)
    credentials = tenants_provision(options.tenants, run_tag)
    # Django keeps a connection open in this thread; the load threads do not use it.
    stack.start()
    supervised = threading.Event()
    supervisor = threading.Thread(
        target=supervisor_loop, args=(stack, report, supervised, options.verbose), daemon=True
    )
    supervisor.start()
    try:
        tenants = [
            EntraTenant(index=i, stack=stack, credentials=c, report=report, seed=options.seed)
            for i, c in enumerate(credentials)
        ]
        deadline = time.monotonic() + options.duration
        stop = threading.Event()
        chaos = threading.Thread(target=chaos_loop, args=(stack, options, report, stop))
        load = [threading.Thread(target=t.run, args=(deadline,)) for t in tenants]
        chaos.start()
        for thread in load:
            thread.start()
        for thread in load:
            thread.join()
        stop.set()
        chaos.join()
        say(f"[soak] load done: {sum(report.requests.values())} requests", flush=True)
        stack.redis_start()
        organization_ids = [t.organization_id for t in tenants]
        report.converged, report.converge_seconds = wait_converged(
            organization_ids, options.converge_timeout, options.verbose
        )
        if not report.converged:
            report.diagnostics = stack_diagnose(stack, organization_ids)
        verify(report, tenants)
    finally:
        supervised.set()
        supervisor.join()
        stack.stop()
    report.watchdog_reconnects = _log_text(stack.worker.log_path).count("worker consumer stalled")
    for line in report.lines():
        say(line, flush=True)
    if not report.ok:
        say(f"[soak] process logs kept in {logdir}", flush=True)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return report


def _database_ensure(url: str) -> None:
    """Create the soak database when missing, then migrate it."""
    import psycopg
    from dj_database_url import parse

    cfg = parse(url)
    admin = psycopg.connect(
        host=cfg["HOST"] or "127.0.0.1",
        port=cfg["PORT"] or 5432,
        user=cfg["USER"],
        password=cfg["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [cfg["NAME"]]
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{cfg["NAME"]}"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load (60).")
    parser.add_argument("--minutes", type=float, help="Minutes of load (overrides --duration).")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="Run in the scale-out shape (bench/scaleout.py): two gunicorn groups behind "
        "HAProxy, two workers, PgBouncer in transaction mode; kills a worker and a web group.",
    )
    parser.add_argument(
        "--kill-interval",
        type=float,
        help="--scale-out: seconds between kills (default: one worker and one web group kill).",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="--scale-out: per group (2).")
    parser.add_argument("--concurrency", type=int, default=2, help="--scale-out: per worker (2).")
    parser.add_argument("--pool-size", type=int, default=20, help="--scale-out: PgBouncer (20).")
    parser.add_argument(
        "--redis-port", type=int, default=6390, help="--scale-out: private Redis port (6390)."
    )
    parser.add_argument(
        "--prepared-statements",
        action="store_true",
        help="--scale-out: DATABASE_PREPARED_STATEMENTS=true behind PgBouncer (to see it fail).",
    )
    parser.add_argument("--tenants", type=int, default=3, help="Organizations (3).")
    parser.add_argument("--chaos-interval", type=float, default=6.0, help="Seconds (6).")
    parser.add_argument("--redis-down", type=float, default=3.0, help="Seconds Redis is down (3).")
    parser.add_argument("--converge-timeout", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SOAK_DATABASE_URL"),
        help="PostgreSQL database for the soak (created and migrated when missing; default "
        "beem_soak, beem_scale_soak with --scale-out, on 127.0.0.1:5432).",
    )
    args = parser.parse_args(argv)
    if args.database_url is None:
        name = "beem_scale_soak" if args.scale_out else "beem_soak"
        args.database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    if args.minutes is not None:
        args.duration = args.minutes * 60
    _database_ensure(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beem_admin.settings")
    # This process only provisions and checks; keep Celery eager so nothing here publishes.
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if args.scale_out:
        from bench.scaleout import ScaleOptions, run_scale_soak

        scale_options = ScaleOptions(
            duration=args.duration,
            tenants=args.tenants,
            web_workers=args.web_workers,
            worker_concurrency=args.concurrency,
            pool_size=args.pool_size,
            redis_port=args.redis_port,
            kill_interval=args.kill_interval,
            converge_timeout=args.converge_timeout,
            prepared_statements=args.prepared_statements,
            seed=args.seed,
        )
        return 0 if run_scale_soak(scale_options, database_url=args.database_url).ok else 1
    options = SoakOptions(
        duration=args.duration,
        tenants=args.tenants,
        chaos_interval=args.chaos_interval,
        redis_down_seconds=args.redis_down,
        converge_timeout=args.converge_timeout,
        seed=args.seed,
    )
    report = run_soak(options, database_url=args.database_url)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
