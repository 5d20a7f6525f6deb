"""``directory_sync.store.db``: the private Django names the prepared cursor is built on, and
the connection primitives on both backends."""

import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from directory_sync.store import db


def test_django_private_cursor_names_still_exist():
    """The prepared cursor and the SCIM bounds rely on Django's private PostgreSQL cursor
    classes and on psycopg's client-side binding. A Django upgrade that moves or renames any
    of them must fail here, by name, not as a 500 on Entra's hottest reads."""
    import psycopg
    from django.db.backends.postgresql import base
    from django.db.backends.utils import CursorWrapper

    assert issubclass(base.CursorDebugWrapper, CursorWrapper), "postgresql.base.CursorDebugWrapper"
    assert callable(getattr(base.CursorDebugWrapper, "debug_sql", None)), "debug_sql"
    assert issubclass(base.Cursor, psycopg.ClientCursor), "base.Cursor binds on the client"
    assert not issubclass(base.ServerSideCursor, psycopg.ClientCursor), "named cursors: DECLARE"
    assert isinstance(type(connections[DEFAULT_DB_ALIAS]).queries_logged, property), (
        "BaseDatabaseWrapper.queries_logged"
    )
    assert callable(getattr(base.DatabaseOperations, "compose_sql", None)), "compose_sql"


@pytest.mark.django_db
def test_prepared_cursor_answers_on_either_backend():
    with db.prepared_cursor() as cursor:
        cursor.execute("SELECT %s + 1", [41])
        assert cursor.fetchone()[0] == 42


def test_placeholders_are_numbered_and_percent_signs_kept():
    text, count = db._placeholders_numbered("SELECT %s, '100%%' LIKE %s, x %% 2 = %s")
    assert (text, count) == ("SELECT $1, '100%' LIKE $2, x % 2 = $3", 3)
    assert db._placeholders_numbered("SELECT 1") == ("SELECT 1", 0)
    with pytest.raises(ValueError):
        db._placeholders_numbered("SELECT %(name)s")


@pytest.mark.django_db(transaction=True)
def test_prepared_statements_are_prepared_once_per_connection_and_logged_as_written(
    require_postgres, settings
):
    from django.test.utils import CaptureQueriesContext

    settings.BEEM_PREPARED_STATEMENTS = True
    sql = "SELECT %s::int * 2, %s::text"
    name = db._statement(sql)[0]
    with CaptureQueriesContext(connection) as captured:
        for value in (1, 2):
            with db.prepared_cursor() as cursor:
                cursor.execute(sql, [value, "it's"])
                assert cursor.fetchone() == (value * 2, "it's")
    # One logged statement per call, shown as written with its values (not EXECUTE).
    assert [q["sql"] for q in captured.captured_queries] == [
        "SELECT 1::int * 2, 'it''s'::text",
        "SELECT 2::int * 2, 'it''s'::text",
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = %s", [name])
        assert cursor.fetchone()[0] == 1
    # A new connection has none: it prepares again.
    connection.close()
    with db.prepared_cursor() as cursor:
        cursor.execute(sql, [3, "x"])
        assert cursor.fetchone() == (6, "x")


@pytest.mark.django_db(transaction=True)
def test_prepared_statements_per_connection_are_capped(require_postgres, settings, monkeypatch):
    settings.BEEM_PREPARED_STATEMENTS = True
    monkeypatch.setattr(db, "PREPARED_MAX", 3)
    connection.close()
    for n in range(7):
        with db.prepared_cursor() as cursor:
            cursor.execute(f"SELECT %s + {n}", [1])
            assert cursor.fetchone()[0] == 1 + n
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert 1 <= cursor.fetchone()[0] <= 3


@pytest.mark.django_db(transaction=True)
def test_bounds_apply_to_a_statement_of_its_own_and_to_a_transaction(require_postgres):
    """In autocommit the bounds travel in the statement's own query string; in ``atomic`` in
    the pipeline with BEGIN. Either way they bound that transaction and nothing after it."""
    from django.db.utils import OperationalError

    def setting(cursor, name):
        cursor.execute(f"SELECT current_setting('{name}')")
        return cursor.fetchone()[0]

    with db.transaction_timeouts(1234, 567):
        with connection.cursor() as cursor:
            assert setting(cursor, "statement_timeout") == "1234ms"
            assert setting(cursor, "lock_timeout") == "567ms"
        with db.prepared_cursor() as cursor:
            cursor.execute("SELECT current_setting(%s)", ["statement_timeout"])
            assert cursor.fetchone()[0] == "1234ms"
        with transaction.atomic(), connection.cursor() as cursor:
            assert setting(cursor, "statement_timeout") == "1234ms"
            assert setting(cursor, "lock_timeout") == "567ms"
    with connection.cursor() as cursor:
        assert setting(cursor, "statement_timeout") == "0"
        assert setting(cursor, "lock_timeout") == "0"
    with db.transaction_timeouts(50, 0):
        with pytest.raises(OperationalError), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1)")
        with pytest.raises(OperationalError), db.prepared_cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [1])
        with connection.cursor() as cursor:  # the connection is usable afterwards
            cursor.execute("SELECT %s", [7])
            assert cursor.fetchone() == (7,)


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
