"""``directory_sync.store.db``: the private Django names the prepared cursor is built on, and
the connection primitives on both backends."""

import inspect
import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from directory_sync.store import db


def test_django_private_cursor_names_still_exist():
    """The prepared cursor subclasses Django's private PostgreSQL cursor classes and calls
    private methods of the connection wrapper. A Django upgrade that moves or renames any of
    them must fail here, by name, not as a 500 on Entra's hottest reads."""
    from django.db.backends.postgresql import base
    from django.db.backends.utils import CursorWrapper

    assert isinstance(base.ServerBindingCursor, type), "postgresql.base.ServerBindingCursor"
    assert issubclass(base.CursorDebugWrapper, CursorWrapper), "postgresql.base.CursorDebugWrapper"
    assert callable(getattr(base.CursorDebugWrapper, "debug_sql", None)), "debug_sql"
    assert "prepare" in inspect.signature(base.ServerBindingCursor.execute).parameters, (
        "psycopg's Cursor.execute(..., prepare=...)"
    )
    wrapper = connections[DEFAULT_DB_ALIAS]
    for name in (
        "close_if_health_check_failed",
        "ensure_connection",
        "validate_thread_sharing",
        "make_cursor",
    ):
        assert callable(getattr(wrapper, name, None)), f"BaseDatabaseWrapper.{name}"
    assert isinstance(type(wrapper).queries_logged, property), "BaseDatabaseWrapper.queries_logged"
    assert callable(getattr(base.DatabaseOperations, "compose_sql", None)), "compose_sql"


@pytest.mark.django_db
def test_prepared_cursor_answers_on_either_backend():
    with db.prepared_cursor() as cursor:
        cursor.execute("SELECT %s + 1", [41])
        assert cursor.fetchone()[0] == 42


def _other_session_takes(lock_class: int, key: int) -> bool:
    """Whether another session can take the lock now (and gives it back at once)."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [lock_class, key])
            taken = cursor.fetchone()[0]
            if taken:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [lock_class, key])
            return taken
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_advisory_lock_is_exclusive_per_key_until_the_block_ends(require_postgres):
    with db.advisory_lock_held(7, 1) as held:
        assert held
        # Django's own connection commits meanwhile (as a drain does, chunk by chunk): the
        # lock does not live in its session, so nothing there releases or keeps it.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert not _other_session_takes(7, 1)
        assert _other_session_takes(7, 2)
        with db.advisory_lock_held(7, 1) as second:
            assert not second
        with db.advisory_lock_held(7, 2) as other_key:
            assert other_key
    assert _other_session_takes(7, 1)


@pytest.mark.django_db(transaction=True)
def test_advisory_lock_is_released_when_the_block_raises(require_postgres):
    with pytest.raises(RuntimeError), db.advisory_lock_held(7, 3) as held:
        assert held
        raise RuntimeError("the drain failed")
    assert _other_session_takes(7, 3)


@pytest.mark.django_db(transaction=True)
def test_advisory_lock_leaves_no_session_state(require_postgres):
    """Nothing of the lock outlives its block in any session: no advisory lock is left in
    pg_locks (a session lock would stay on whichever server connection PgBouncer used)."""
    with db.advisory_lock_held(7, 4) as held:
        assert held
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4 "
            "AND classid = 7"
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_the_lock_connection_is_kept_per_thread_and_closed_by_reset_all(require_postgres):
    from directory_sync import process_state

    with db.advisory_lock_held(7, 5):
        pass
    ((pid, wrapper),) = db._lock_connections.values()
    with db.advisory_lock_held(7, 6):
        assert db._lock_connections == {}  # in use: taken out
    assert db._lock_connections[threading.get_ident()] == (pid, wrapper)
    assert wrapper.connection is not None

    process_state.reset_all()

    assert db._lock_connections == {}
    assert wrapper.connection is None


@pytest.mark.django_db
def test_an_uncontended_advisory_lock_is_granted():
    # Both backends: on SQLite (the embedded default runs this file too) it is always granted.
    with db.advisory_lock_held(7, 1) as held:
        assert held


@pytest.mark.django_db
def test_transaction_settings_stay_in_their_transaction(require_postgres):
    with transaction.atomic():
        db.commit_without_flush_wait()
        db.apply_transaction_tune(lock_timeout="1234ms")
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "off"
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == "1234ms"


@pytest.mark.django_db
def test_rows_insert_writes_every_row_in_chunks():
    from members.models import Organization

    table = Organization._meta.db_table
    before = Organization.objects.count()
    names = [f"Store {n}" for n in range(5)]
    db.rows_insert(
        table=table,
        columns=["name", "slug", "created_at", "updated_at"],
        rows=[
            (name, f"store-{n}", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
            for n, name in enumerate(names)
        ],
        chunk=2,
    )
    assert Organization.objects.count() == before + 5
    assert set(Organization.objects.filter(name__in=names).values_list("name", flat=True)) == set(
        names
    )


@pytest.mark.django_db
def test_ping():
    db.ping()
