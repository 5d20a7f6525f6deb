"""The sync engine with real parts: a Redis broker, a `celery worker` process, PostgreSQL.

Each test starts a private ``redis-server`` on a free port (so stopping it hurts nobody) and a
real ``celery -A beem_admin worker`` subprocess pointed at pytest-django's test database; the
test process publishes to that Redis exactly as the web process does (on commit).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from directory_sync.models import ChangeEvent
from directory_sync.redispatch import change_events_redispatch
from members.models import Member

from .engine_factories import (
    directory_differences,
    group_create,
    sync_settings_make,
    user_create,
)

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

BASE_DIR = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PrivateRedis:
    """A throw-away redis-server this test may stop and start at will."""

    def __init__(self, binary: str, port: int, workdir: Path):
        self.binary, self.port, self.workdir = binary, port, workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(self._ping, timeout=10, what="redis-server to answer PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class Worker:
    """A real `celery -A beem_admin worker` process on the test database."""

    def __init__(self, *, broker_url: str, database_url: str, log_path: Path):
        self.broker_url, self.database_url, self.log_path = broker_url, database_url, log_path
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
            "BEEM_LOG_LEVEL": "INFO",
            "BEEM_LOG_FORMAT": "text",
        }
        env.pop("REDIS_URL", None)
        self._log = self.log_path.open("a")
        marker = f"--- start {self.starts} ---\n"
        self._log.write(marker)
        self._log.flush()
        self.process = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "beem_admin",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
                f"--hostname=beem-test-{os.getpid()}-{self.starts}@%h",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            return self.log_path.read_text().split(marker)[-1].find(" ready.") >= 0

        _wait_for(ready, timeout=60, what="the celery worker to be ready")

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, as a crashed machine would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None
        self._log.close()


@pytest.fixture
def private_redis(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs redis-server (Debian package redis-server)")
    server = PrivateRedis(binary, _free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def publish_to(private_redis, monkeypatch, settings):
    """Make this process publish to the private Redis, like a web process configured for it."""
    from beem_admin.celery import app

    monkeypatch.setenv("CELERY_BROKER_URL", private_redis.url)
    previous = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.broker_url = private_redis.url
    app.conf.task_always_eager = False
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app._pool = None
    app.amqp._producer_pool = None
    yield private_redis
    app.conf.broker_url, app.conf.task_always_eager = previous
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker(require_postgres, publish_to, transactional_db, tmp_path):
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    process = Worker(
        broker_url=publish_to.url, database_url=database_url, log_path=tmp_path / "worker.log"
    )
    process.start()
    yield process
    process.stop()


def _statuses(organization) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in ChangeEvent.objects.filter(organization=organization).values_list(
        "status", flat=True
    ):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _all_finished(organization) -> bool:
    return not ChangeEvent.objects.filter(
        organization=organization, status=ChangeEvent.Status.PENDING
    ).exists()


def test_change_event_goes_through_redis_to_the_worker_and_lands_in_postgresql(
    organization, worker
):
    sync_settings_make(organization)

    record = user_create(
        organization,
        user_name="sara@acme.example",
        display_name="Sara Al-Harbi",
        email="sara@acme.example",
        phone="+966512345678",
    )

    _wait_for(lambda: _all_finished(organization), timeout=60, what="the worker to apply")
    record.refresh_from_db()
    member = Member.objects.get(pk=record.member_id)
    assert (member.display_name, member.phone, member.directory_managed) == (
        "Sara Al-Harbi",
        "+966512345678",
        True,
    )
    event = ChangeEvent.objects.get(record=record)
    assert (event.status, event.outcome, event.dispatched_at is not None) == (
        "applied",
        "created",
        True,
    )


def test_broker_down_keeps_events_pending_and_redispatch_applies_them_when_it_is_back(
    organization, worker, private_redis
):
    sync_settings_make(organization)
    private_redis.stop()

    started = time.monotonic()
    records = [
        user_create(organization, user_name=f"u{i}@acme.example", email=f"u{i}@acme.example")
        for i in range(5)
    ]
    elapsed = time.monotonic() - started

    # Every SCIM write committed without waiting on the dead broker.
    assert elapsed < 5, f"publishing with Redis down took {elapsed:.1f}s"
    assert _statuses(organization) == {"pending": 5}
    assert not ChangeEvent.objects.filter(dispatched_at__isnull=False).exists()

    private_redis.start()
    result = change_events_redispatch(organization=organization, older_than_seconds=0)

    assert (result.pending, result.dispatched, result.broker_unavailable) == (5, 5, False)
    _wait_for(lambda: _all_finished(organization), timeout=90, what="the redispatched events")
    assert _statuses(organization) == {"applied": 5}
    assert Member.objects.filter(organization=organization).count() == 5
    assert all(r.member_id for r in type(records[0]).objects.filter(organization=organization))


def test_worker_killed_mid_batch_loses_nothing_after_restart_and_redispatch(organization, worker):
    sync_settings_make(organization)
    from django.db import transaction

    with transaction.atomic():
        records = []
        for i in range(300):
            # Managers, departments and a group too: two worker processes apply them
            # concurrently, so the lock order between users, managers and groups is exercised.
            records.append(
                user_create(
                    organization,
                    user_name=f"user{i}@acme.example",
                    email=f"user{i}@acme.example",
                    phone=f"+96651{i:07d}",
                    display_name=f"User {i}",
                    department="Sales" if i % 2 else "Support",
                    manager=records[i // 2] if i else None,
                )
            )
        group_create(organization, display_name="Everyone", members=records)

    def some_applied() -> bool:
        return ChangeEvent.objects.filter(status=ChangeEvent.Status.APPLIED).count() >= 10

    _wait_for(some_applied, timeout=60, interval=0.05, what="the first applies")
    worker.kill()
    pending_after_kill = ChangeEvent.objects.filter(status=ChangeEvent.Status.PENDING).count()
    assert pending_after_kill > 0, "the worker finished the whole batch before the kill"

    worker.start()
    result = change_events_redispatch(organization=organization, older_than_seconds=0)

    # The restarted worker may already have taken some of the still-queued jobs.
    assert result.pending <= pending_after_kill
    _wait_for(lambda: _all_finished(organization), timeout=180, what="the batch to finish")
    statuses = _statuses(organization)
    assert set(statuses) <= {"applied", "skipped"}, statuses
    assert statuses.get("applied") == 301
    assert Member.objects.filter(organization=organization).count() == 300
    assert directory_differences(organization) == []
