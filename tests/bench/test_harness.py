"""The benchmark harness itself, run end to end in a tiny configuration so it cannot rot.

It starts the real production shape (gunicorn, a private redis-server, a Celery worker,
PostgreSQL) like ``make bench`` does, only with 200 users and one-second phases.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS = 200
INITIAL_SYNC = 40


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/postgres"))


def _bench_env() -> dict[str, str]:
    """The test's environment without the suite's own Django, Celery and database settings:
    the bench scripts set their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


def _scratch_redis_url() -> str:
    """The test Redis server's database 11, which inproc.py empties (not the suite's own)."""
    parts = urllib.parse.urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urllib.parse.urlunsplit(parts._replace(path="/11"))


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    admin_url = _admin_url()
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server (Debian package redis-server)")
    if not shutil.which("wrk"):
        pytest.skip("needs wrk (Debian package wrk)")
    out = tmp_path_factory.mktemp("bench")
    db_name = f"beem_bench_smoke_{os.getpid()}"
    env = _bench_env()
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            f"--users={USERS}",
            "--duration=2",
            f"--initial-sync={INITIAL_SYNC}",
            "--web-workers=2",
            "--celery-concurrency=1",
            f"--pg-url={admin_url}",
            f"--db-name={db_name}",
            "--keep-db",
            f"--out={out}",
            "--profile=get,post",
            "--profile-duration=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        yield done, out, db_name
    finally:
        from bench.run import database_drop

        database_drop(admin_url, db_name)


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_runs_every_phase_and_prints_the_table(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / f"table-{USERS}.md").read_text()
    assert table in done.stdout
    for label in (
        "minimal Django, no middleware (ceiling)",
        "bare endpoint, full stack, /scim/ (ceiling)",
        "probe userName eq <random GUID>",
        "userName eq (existing)",
        "externalId eq (existing)",
        "GET /Users/<id>",
        "list page of 100",
        "POST /Users",
        "PATCH /Users (attrs, 1/10 disable)",
        "PATCH /Groups members add/remove",
        "initial sync POSTs (fresh org)",
    ):
        assert f"| {label} |" in table
    assert "| vs minimal | vs bare |" in table
    assert "peak RSS: web" in table
    assert "stopped sync:" in table and "revoked token:" in table
    assert "tokens issued/s" in table
    assert "while 6 connections send wrong secrets to /o/token/" in table


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_profiles_the_named_phases_in_windows_of_their_own(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for phase in ("get", "post"):
        summary = (out / f"profile-{phase}-{USERS}.txt").read_text()
        assert summary.startswith("samples: "), summary[:200]
        assert "SyncWorker.handle_request" in summary
    assert not (out / f"profile-list-{USERS}.txt").exists()
    results = json.loads((out / f"results-{USERS}.json").read_text())
    # The measured window is the phase's own: the profile window's requests are not in it.
    assert results["phases"]["get"]["duration_us"] < 3_000_000


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_measures_the_token_endpoint(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    token = json.loads((out / f"results-{USERS}.json").read_text())["token"]
    assert token["issued"]["requests"] > 0 and token["issued"]["non2xx"] == 0
    # Every lookup answered 200 while the flood's guesses all got 401.
    for phase in ("unloaded", "loaded"):
        assert token[phase]["requests"] > 0 and token[phase]["errors"] == 0, phase
    assert token["flood"]["requests"] > 0 and token["flood"]["non2xx"] == token["flood"]["answered"]
    assert token["ratio"] > 0


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_phases_answer_without_errors(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / f"results-{USERS}.json").read_text())
    for phase, result in report["phases"].items():
        assert result["requests"] > 0, phase
        assert result["errors"] == 0, (phase, result.get("sample"))


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_initial_sync_is_applied_to_members(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sync = json.loads((out / f"results-{USERS}.json").read_text())["initial_sync"]
    assert sync["records"] >= INITIAL_SYNC
    assert sync["members"] == sync["records"]
    assert sync["failed"] == 0
    assert sync["apply_after_last_request_s"] is not None


@pytest.mark.postgres
@pytest.mark.redis
def test_harness_sees_stopped_sync_and_revoked_token_refused(bench_run):
    done, out, _db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    security = json.loads((out / f"results-{USERS}.json").read_text())["security"]
    for name in ("stopped sync", "revoked token"):
        check = security[name]
        assert check["status_before"] == 200, name
        assert check["refused_within_target"] is True, (name, check)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("phase", ["get", "post"])
def test_in_process_bench_measures_a_phase_on_the_seeded_database(bench_run, phase):
    """bench/inproc.py (CPU per request without a server) runs on what run.py seeded."""
    done, out, db_name = bench_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = _bench_env()
    logged_before = _request_log_rows(db_name)
    measured = subprocess.run(
        [
            sys.executable,
            "bench/inproc.py",
            f"--users={USERS}",
            f"--phase={phase}",
            "--requests=20",
            "--warmup=5",
            "--rounds=2",
            "--flush-every=10",
            f"--pg-url={_admin_url()}",
            f"--db-name={db_name}",
            f"--out={out}",
            f"--redis-url={_scratch_redis_url()}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert measured.returncode == 0, measured.stdout[-3000:] + measured.stderr[-3000:]
    assert re.search(rf"^{phase}: \d+ µs CPU, \d+ µs wall per request", measured.stdout, re.M)
    # Rows are written by request count, not by the clock: the last request of each round
    # (the 20th) flushed everything before it, the 5 warm-up requests' rows included.
    assert _request_log_rows(db_name) - logged_before == 5 + 2 * 20


def _request_log_rows(db_name: str) -> int:
    import psycopg

    url = urllib.parse.urlsplit(_admin_url())._replace(path=f"/{db_name}")
    with psycopg.connect(urllib.parse.urlunsplit(url)) as conn:
        return conn.execute("SELECT count(*) FROM directory_sync_requestlog").fetchone()[0]
