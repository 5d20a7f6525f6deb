"""The batch job: wake-ups after commit, the organization drain and its statement budget."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from directory_sync import outbox, tasks
from directory_sync.engine import drain, events_drain
from directory_sync.models import ChangeEvent, DirectoryRecord, ReviewItem
from directory_sync.redispatch import change_events_redispatch
from members import services as member_services
from members.models import Member

from .engine_factories import directory_differences, sync_settings_make, user_create

pytestmark = pytest.mark.django_db


def _users(organization, count: int, *, prefix: str) -> list[DirectoryRecord]:
    """New users as an initial sync sends them: departments, managers (some in the batch)."""
    records: list[DirectoryRecord] = []
    for i in range(count):
        records.append(
            user_create(
                organization,
                user_name=f"{prefix}{i}@x.example",
                email=f"{prefix}{i}@x.example",
                phone=f"+9665{len(prefix)}{i:07d}",
                display_name=f"User {i}",
                department=["Sales", "Support", "Legal"][i % 3],
                manager=records[i // 3] if i else None,
            )
        )
    return records


def _drain_statements(organization) -> int:
    with CaptureQueriesContext(connection) as queries:
        events_drain(organization_id=organization.pk)
    return len(queries)


def test_a_batch_of_new_users_costs_a_constant_number_of_statements(
    organization, other_organization
):
    sync_settings_make(organization)
    sync_settings_make(other_organization)
    _users(organization, 10, prefix="a")
    _users(other_organization, 60, prefix="b")

    small = _drain_statements(organization)
    large = _drain_statements(other_organization)

    # The batched path: a few statements per chunk, not ~25 per user. Six times the users
    # may cost a few statements more (one UPDATE per distinct outcome), never per user.
    assert small <= 45, small
    assert large - small <= 3, (small, large)
    for org, count in ((organization, 10), (other_organization, 60)):
        assert directory_differences(org) == []
        assert Member.objects.filter(organization=org).count() == count
        assert set(
            ChangeEvent.objects.filter(organization=org).values_list("status", "outcome")
        ) == {("applied", "created")}


def test_a_refused_record_fails_alone_and_the_rest_of_its_batch_applies(organization):
    sync_settings_make(organization)
    taken = user_create(
        organization, user_name="owner@x.example", email="owner@x.example", phone="+966500000001"
    )
    events_drain(organization_id=organization.pk)
    records = _users(organization, 5, prefix="c")
    clash = user_create(
        organization, user_name="clash@x.example", email="clash@x.example", phone="+966500000001"
    )

    events_drain(organization_id=organization.pk)

    event = ChangeEvent.objects.get(record=clash)
    assert (event.status, event.reason) == (
        "failed",
        "The mobile number +966500000001 already belongs to directory user owner@x.example.",
    )
    assert all(ChangeEvent.objects.get(record=r).status == "applied" for r in records)
    assert DirectoryRecord.objects.get(pk=taken.pk).member is not None


def test_a_batch_opens_possible_duplicates_like_one_job_would(organization):
    sync_settings_make(organization)
    other = member_services.member_create(
        organization=organization, display_name="Local", email="dup@x.example"
    )
    record = user_create(
        organization, user_name="n@x.example", email="dup@x.example", phone="+966500000002"
    )
    _users(organization, 4, prefix="d")

    events_drain(organization_id=organization.pk)

    record.refresh_from_db()
    event = ChangeEvent.objects.get(record=record)
    assert (event.status, event.outcome) == ("applied", "created")
    assert "possible duplicate" in event.reason
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)
    assert (item.member_id, item.other_member_id) == (record.member_id, other.pk)
    assert record.member.email is None


def test_several_versions_of_a_record_in_one_batch_apply_once_at_the_newest(organization):
    from .engine_factories import user_update

    sync_settings_make(organization)
    record = user_create(organization, user_name="v@x.example", email="v@x.example")
    user_update(record, title="One")
    user_update(record, title="Two")

    assert events_drain(organization_id=organization.pk) == 3

    statuses = list(
        ChangeEvent.objects.filter(record=record)
        .order_by("id")
        .values_list("record_version", "status", "outcome")
    )
    assert statuses == [(1, "skipped", ""), (2, "skipped", ""), (3, "applied", "created")]
    assert Member.objects.get().job_title == "Two"
    assert all(e.attempts == 1 for e in ChangeEvent.objects.all())


def test_a_second_drain_of_the_same_organization_leaves_it_to_the_running_one(
    require_postgres, organization
):
    import psycopg

    sync_settings_make(organization)
    user_create(organization, user_name="l@x.example", email="l@x.example")
    params = connection.get_connection_params()
    other = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [drain._DRAIN_LOCK_CLASS, organization.pk])
        assert events_drain(organization_id=organization.pk) == 0
        assert ChangeEvent.objects.get().status == "pending"
        other.execute(
            "SELECT pg_advisory_unlock(%s, %s)", [drain._DRAIN_LOCK_CLASS, organization.pk]
        )
    finally:
        other.close()
    assert events_drain(organization_id=organization.pk) == 1


# --- wake-ups ------------------------------------------------------------------------------


def _close_windows():
    from members.models import Organization

    for pk in Organization.objects.values_list("pk", flat=True):
        outbox.wakeup_window_close(organization_id=pk)


@pytest.fixture
def sent(monkeypatch, settings):
    """Publish for real (not eagerly), recording the wake-ups instead of sending them."""
    from beem_admin.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    settings.BEEM_APPLY_WAKEUP_SECONDS = 1
    calls = []
    monkeypatch.setattr(
        tasks.apply_change_events,
        "apply_async",
        lambda args, countdown=None: calls.append((args[0], countdown)),
    )
    _close_windows()
    yield calls
    _close_windows()
    app.conf.task_always_eager = previous


def test_a_burst_of_writes_wakes_the_organization_once_without_any_extra_statement(
    organization, other_organization, sent, django_capture_on_commit_callbacks
):
    sync_settings_make(organization)
    with django_capture_on_commit_callbacks() as callbacks:
        for i in range(5):
            user_create(organization, user_name=f"w{i}@x.example", email=f"w{i}@x.example")
        user_create(other_organization, user_name="o@x.example", email="o@x.example")
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:
            callback()

    # One job per organization, sent with the dedup window as countdown, so it reads only
    # after every write that found the key set has committed. No dispatched_at commit.
    assert sent == [(organization.pk, 1), (other_organization.pk, 1)]
    assert len(queries) == 0
    assert set(ChangeEvent.objects.values_list("status", flat=True)) == {"pending"}


def test_a_write_after_the_window_wakes_again(organization, sent):
    outbox.organization_wake(organization_id=organization.pk)
    outbox.organization_wake(organization_id=organization.pk)
    outbox.wakeup_window_close(organization_id=organization.pk)  # the window is over
    outbox.organization_wake(organization_id=organization.pk)

    assert sent == [(organization.pk, 1), (organization.pk, 1)]


def test_writes_inside_a_known_window_do_not_ask_redis_again(
    organization, sent, monkeypatch, settings
):
    from directory_sync.outbox import _redis

    if _redis() is None:
        pytest.skip("needs REDIS_URL: the window is read from Redis")
    settings.BEEM_APPLY_WAKEUP_SECONDS = 60  # a window no slow machine outlives here
    outbox.organization_wake(organization_id=organization.pk)  # claims the window
    calls = []
    client = _redis()
    real = client.pipeline
    monkeypatch.setattr(client, "pipeline", lambda **kw: calls.append(1) or real(**kw))
    outbox.organization_wake(organization_id=organization.pk)
    outbox.organization_wake(organization_id=organization.pk)

    assert sent == [(organization.pk, 60)]
    assert calls == []  # covered: the window's job starts only after the key expires
    # Another process's window, found set: covered for what Redis says is left of it.
    outbox.wakeups_covered_forget()
    outbox.organization_wake(organization_id=organization.pk)
    outbox.organization_wake(organization_id=organization.pk)
    assert calls == [1]
    assert sent == [(organization.pk, 60)]


def test_the_sweep_wakes_each_organization_once_immediately(organization, other_organization, sent):
    sync_settings_make(organization)
    for i in range(7):
        user_create(organization, user_name=f"s{i}@x.example", email=f"s{i}@x.example")
    user_create(other_organization, user_name="t@x.example", email="t@x.example")
    # The wake-up key of a lost job does not hold the sweep back.
    outbox.organization_wake(organization_id=organization.pk)
    sent.clear()

    result = change_events_redispatch(older_than_seconds=0, batch_size=3)

    assert (result.pending, result.dispatched) == (8, 8)
    assert sorted(sent) == [(organization.pk, 0), (other_organization.pk, 0)]
    assert not ChangeEvent.objects.filter(dispatched_at__isnull=True).exists()
