"""Re-dispatching change events left pending (broker down, worker lost) or failed."""

import socket
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from directory_sync import tasks
from directory_sync.models import ChangeEvent
from directory_sync.redispatch import change_events_redispatch
from members.models import Member

from .engine_factories import sync_settings_make, user_create

pytestmark = pytest.mark.django_db


def age(event_ids, seconds):
    ChangeEvent.objects.filter(pk__in=event_ids).update(
        created_at=timezone.now() - timedelta(seconds=seconds), dispatched_at=None
    )


@pytest.fixture
def stale_events(organization):
    sync_settings_make(organization)
    records = [
        user_create(organization, user_name=f"u{i}@x.example", email=f"u{i}@x.example")
        for i in range(3)
    ]
    ids = list(ChangeEvent.objects.order_by("id").values_list("id", flat=True))
    age(ids, 600)
    return records, ids


def test_dry_run_reports_what_would_be_sent_and_changes_nothing(stale_events):
    _records, ids = stale_events

    result = change_events_redispatch(dry_run=True, older_than_seconds=60)

    assert (result.pending, result.failed_reset, result.dispatched, result.dry_run) == (
        3,
        0,
        0,
        True,
    )
    assert result.event_ids == ids
    assert set(ChangeEvent.objects.values_list("status", flat=True)) == {"pending"}


def test_pending_events_older_than_the_threshold_are_sent_and_applied(stale_events, organization):
    _records, ids = stale_events
    fresh = user_create(organization, user_name="fresh@x.example", email="fresh@x.example")

    result = change_events_redispatch(older_than_seconds=60)

    assert (result.pending, result.dispatched, result.broker_unavailable) == (3, 3, False)
    assert (
        list(ChangeEvent.objects.filter(pk__in=ids).values_list("status", flat=True))
        == ["applied"] * 3
    )
    # Only the old events are counted and woken for, but a wake-up drains the whole
    # organization: the fresh event is applied by the same job.
    assert ChangeEvent.objects.get(record=fresh).status == "applied"


def test_recently_dispatched_events_are_not_sent_again(stale_events):
    _records, ids = stale_events
    ChangeEvent.objects.filter(pk=ids[0]).update(dispatched_at=timezone.now())

    result = change_events_redispatch(dry_run=True, older_than_seconds=60)

    assert result.event_ids == ids[1:]


def test_failed_events_are_reset_and_sent_only_when_asked(stale_events):
    _records, ids = stale_events
    ChangeEvent.objects.filter(pk=ids[0]).update(status="failed", reason="broken")

    assert change_events_redispatch(older_than_seconds=60).failed_reset == 0
    assert ChangeEvent.objects.get(pk=ids[0]).status == "failed"

    result = change_events_redispatch(include_failed=True, older_than_seconds=60)

    event = ChangeEvent.objects.get(pk=ids[0])
    assert (result.failed_reset, event.status, event.reason) == (1, "applied", "")


def test_redispatch_is_limited_to_one_organization_when_given(stale_events, other_organization):
    sync_settings_make(other_organization)
    theirs = user_create(other_organization, user_name="g@x.example", email="g@x.example")
    age([ChangeEvent.objects.get(record=theirs).pk], 600)

    result = change_events_redispatch(organization=other_organization, older_than_seconds=60)

    assert result.event_ids == [ChangeEvent.objects.get(record=theirs).pk]
    assert Member.objects.filter(organization=other_organization).count() == 1
    assert not Member.objects.filter(organization=stale_events[0][0].organization).exists()


def test_progress_is_reported_after_each_batch(stale_events):
    calls = []

    change_events_redispatch(
        older_than_seconds=60,
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )

    assert calls == [(2, 3), (3, 3)]


def test_default_threshold_comes_from_settings(stale_events, settings):
    settings.BEEM_REDISPATCH_AFTER_SECONDS = 3600

    assert change_events_redispatch(dry_run=True).pending == 0


def test_beat_task_redispatches_pending_events(stale_events):
    result = tasks.redispatch_pending_events.apply()

    assert result.get() == 3
    assert set(ChangeEvent.objects.values_list("status", flat=True)) == {"applied"}


def test_every_beat_schedule_entry_names_a_registered_task():
    from beem_admin.celery import app

    names = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}

    assert names <= set(app.tasks), names - set(app.tasks)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker_down(monkeypatch, settings):
    """Publish to a Redis URL nobody listens on: a real refused connection."""
    from beem_admin.celery import app

    url = f"redis://127.0.0.1:{_closed_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    previous = (app.conf.broker_url, app.conf.task_always_eager)
    app.conf.broker_url, app.conf.task_always_eager = url, False
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app._pool = None
    app.amqp._producer_pool = None
    yield
    app.conf.broker_url, app.conf.task_always_eager = previous
    app._pool = None
    app.amqp._producer_pool = None


def test_broker_down_stops_the_redispatch_quickly_and_keeps_events_pending(
    stale_events, broker_down
):
    started = time.monotonic()
    result = change_events_redispatch(older_than_seconds=60)
    elapsed = time.monotonic() - started

    assert (result.pending, result.dispatched, result.broker_unavailable) == (3, 0, True)
    assert set(ChangeEvent.objects.values_list("status", flat=True)) == {"pending"}
    assert not ChangeEvent.objects.filter(dispatched_at__isnull=False).exists()
    assert elapsed < 2, f"a refused broker connection took {elapsed:.2f}s"


# --- the other beat tasks: thin wrappers, run once each ------------------------------------


def test_close_idle_runs_task_ends_runs_idle_longer_than_the_gap(organization, settings):
    from directory_sync.models import ProvisioningRun

    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    last = timezone.now() - timedelta(minutes=settings.BEEM_RUN_IDLE_MINUTES + 1)
    ProvisioningRun.objects.filter(pk=run.pk).update(last_activity_at=last)

    assert tasks.close_idle_runs.apply().get() == 1

    run.refresh_from_db()
    assert run.ended_at == last


def test_worker_heartbeat_task_records_the_worker(db):
    from directory_sync.models import WorkerHeartbeat

    tasks.worker_heartbeat.apply()

    assert WorkerHeartbeat.objects.count() == 1


def test_purge_old_logs_task_deletes_finished_events_past_the_retention(stale_events, settings):
    ChangeEvent.objects.update(
        status="applied",
        created_at=timezone.now() - timedelta(days=settings.BEEM_REQUEST_LOG_RETENTION_DAYS + 1),
    )

    tasks.purge_old_logs.apply()

    assert not ChangeEvent.objects.exists()
