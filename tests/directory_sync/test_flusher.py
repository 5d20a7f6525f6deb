"""directory_sync.flusher: the background flusher keeps its database connection between flushes."""

import threading

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from directory_sync import flusher, process_state


def _in_one_thread(*calls):
    """Run ``calls`` one after another on one new thread (as the flusher thread runs its
    rounds), re-raising what failed there."""
    failures = []

    def run():
        try:
            for call in calls:
                call()
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if failures:
        raise failures[0]


@pytest.fixture
def backend_pids(monkeypatch):
    """A registered flush that records the PostgreSQL backend serving each flush round."""
    seen: list[int] = []

    def flush_if_due():
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen.append(cursor.fetchone()[0])

    monkeypatch.setattr(flusher, "_flushes", {"test": flusher._Flush(flush_if_due, lambda: 1.0)})
    yield seen
    flusher._flusher_connections_close()


@pytest.mark.postgres
@pytest.mark.django_db
def test_consecutive_flushes_reuse_the_flusher_threads_connection(require_postgres, backend_pids):
    _in_one_thread(flusher._flush_once, flusher._flush_once, flusher._flush_once)

    assert len(backend_pids) == 3
    assert len(set(backend_pids)) == 1
    pid, wrapper = flusher._flusher_connections[DEFAULT_DB_ALIAS]
    assert wrapper.connection is not None


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_obsolete_connection_is_closed_after_its_flush(require_postgres, backend_pids):
    def age_out():
        connections[DEFAULT_DB_ALIAS].close_at = 0  # past CONN_MAX_AGE

    _in_one_thread(flusher._flush_once, age_out, flusher._flush_once, flusher._flush_once)

    assert flusher._flusher_connections[DEFAULT_DB_ALIAS][1].connection is not None
    # The aged-out connection served the flush before its end; the next one opened anew.
    assert backend_pids[0] == backend_pids[1] != backend_pids[2]


@pytest.mark.postgres
@pytest.mark.django_db
def test_reset_all_closes_the_flusher_threads_connection(require_postgres, backend_pids):
    _in_one_thread(flusher._flush_once)
    _pid, wrapper = flusher._flusher_connections[DEFAULT_DB_ALIAS]

    process_state.reset_all()

    assert flusher._flusher_connections == {}
    assert wrapper.connection is None
