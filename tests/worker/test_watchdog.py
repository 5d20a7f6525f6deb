"""The worker watchdog (beem_admin.worker_watchdog): a consumer that silently stopped receiving
is reconnected, and a worker that a reconnect does not cure exits for its supervisor.

The integration tests run a real worker of this project against a private redis-server and put
its consumer in the stalled state kombu's Redis transport is known to reach after a broker
restart (tests/worker/stalling_worker.py). The control test shows that stall is real: without
the watchdog the worker fetches nothing while it lasts."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery

from beem_admin.worker_watchdog import Observation, StallDetector
from bench.soak import Process, environment_without_project_settings, free_port, wait_for_port

WORKER = Path(__file__).with_name("stalling_worker.py")


# --- the decision --------------------------------------------------------------------------


def test_two_checks_with_waiting_messages_and_nothing_received_mean_a_stall():
    detector = StallDetector()

    assert detector.observe(Observation(ready=3, can_consume=True, received=10)) is None
    assert detector.observe(Observation(ready=3, can_consume=True, received=10)) == "reconnect"


def test_a_receipt_an_empty_queue_or_a_full_prefetch_window_is_no_stall():
    detector = StallDetector()
    detector.observe(Observation(ready=3, can_consume=True, received=10))

    # It received a task since the last check: consuming, just busy.
    assert detector.observe(Observation(ready=3, can_consume=True, received=11)) is None
    # Nothing waits.
    assert detector.observe(Observation(ready=0, can_consume=True, received=11)) is None
    assert detector.observe(Observation(ready=2, can_consume=True, received=11)) is None
    # Its prefetch window is full (long tasks running): it may not take more.
    assert detector.observe(Observation(ready=2, can_consume=False, received=11)) is None
    assert detector.observe(Observation(ready=2, can_consume=False, received=11)) is None


def test_a_stall_that_reconnecting_does_not_cure_ends_in_exit_and_a_receipt_forgives():
    detector = StallDetector(reconnects_before_exit=2)
    stalled = Observation(ready=1, can_consume=True, received=5)
    verdicts = []
    for _ in range(6):
        verdicts.append(detector.observe(stalled))

    # Every verdict needs two fresh checks: None, reconnect, None, reconnect, None, exit.
    assert verdicts == [None, "reconnect", None, "reconnect", None, "exit"]

    detector = StallDetector(reconnects_before_exit=2)
    for _ in range(2):
        detector.observe(stalled)
    detector.observe(Observation(ready=1, can_consume=True, received=6))  # consumed again
    assert detector.reconnects == 0


# --- a real worker -------------------------------------------------------------------------


@pytest.fixture
def broker():
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (the test runs a private one)")
    logdir = Path(tempfile.mkdtemp(prefix="beem-watchdog-"))
    port = free_port()
    redis = Process(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(logdir)],
        env=dict(os.environ),
        logdir=logdir,
    )
    redis.start()
    wait_for_port(port)
    yield f"redis://127.0.0.1:{port}/0", logdir
    redis.stop()
    shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture
def started_worker(broker, monkeypatch):
    """``started_worker(watchdog_seconds)``: a real worker on the private broker that has run a
    task already; returns (worker, app, logdir). Stopped at the end of the test."""
    broker_url, logdir = broker
    # Celery prefers CELERY_BROKER_URL (set under CI) to the broker an app is given.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    app = Celery(broker=broker_url)
    workers = []

    def start(watchdog_seconds: int) -> tuple[Process, Celery, Path]:
        env = environment_without_project_settings()
        env.update(
            CELERY_BROKER_URL=broker_url,
            # The touch task needs no database; keep Django's default SQLite file out of the tree.
            DATABASE_URL=f"sqlite:///{logdir / 'worker.sqlite3'}",
            BEEM_WORKER_WATCHDOG_SECONDS=str(watchdog_seconds),
            BEEM_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        worker = Process(
            f"worker-{watchdog_seconds}",
            [sys.executable, str(WORKER), "-l", "INFO", "-c", "1"]
            + ["-n", f"w{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle"]
            + ["--without-heartbeat"],
            env=env,
            logdir=logdir,
        )
        workers.append(worker)
        worker.start()
        assert _ran(app, logdir / "started", timeout=120), _log(worker)
        return worker, app, logdir

    yield start
    for worker in workers:
        worker.stop(timeout=10)


def _ran(app: Celery, path: Path, timeout: float) -> bool:
    app.send_task("beem_test.touch", args=[str(path)], task_id=path.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def _stall(app: Celery, logdir: Path, *, always: bool = False) -> None:
    replies = app.control.broadcast(
        "beem_test_stall_consumer", arguments={"always": always}, reply=True, timeout=5
    )
    assert replies and all(r[k]["removed"] >= 1 for r in replies for k in r), replies
    # The poll already sent may still deliver one message: let it, then the stall is complete.
    _ran(app, logdir / "in-flight", timeout=3)


def _log(worker: Process) -> str:
    return worker.log_path.read_text(errors="replace")


@pytest.mark.redis
def test_without_the_watchdog_a_stalled_consumer_fetches_nothing(started_worker):
    worker, app, logdir = started_worker(watchdog_seconds=0)
    _stall(app, logdir)

    assert not _ran(app, logdir / "after-stall", timeout=8)
    assert worker.running
    # Not received at all (rather than received and not run): the consumer stalled.
    assert "after-stall" not in _log(worker)


@pytest.mark.redis
def test_the_watchdog_reconnects_a_stalled_consumer_and_the_waiting_task_runs(started_worker):
    worker, app, logdir = started_worker(watchdog_seconds=1)
    _stall(app, logdir)

    assert _ran(app, logdir / "after-stall", timeout=30), _log(worker)
    assert "worker consumer stalled" in _log(worker)
    assert worker.running
    # Reconnected for good: the next task runs at once.
    assert _ran(app, logdir / "later", timeout=5), _log(worker)


@pytest.mark.redis
def test_a_stall_that_survives_reconnects_shuts_the_worker_down_for_its_supervisor(
    started_worker,
):
    worker, app, logdir = started_worker(watchdog_seconds=1)
    _stall(app, logdir, always=True)
    app.send_task("beem_test.touch", args=[str(logdir / "waiting")], task_id="waiting")

    try:
        code = worker.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker kept running stalled:\n" + _log(worker))
    assert code == 70, _log(worker)
    assert "still stalled after 2 reconnects" in _log(worker)
    assert not (logdir / "waiting").exists()
