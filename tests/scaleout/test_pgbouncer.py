"""Beem's own connection through PgBouncer in transaction mode (README "Scaling").

Each test forces the case PgBouncer makes possible: the next transaction of one client runs on
another server connection, because a second client holds the first one in a transaction.
"""

import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.db import ProgrammingError, connection, transaction

from bench.scaleout import pgbouncer_argv
from bench.soak import Process, free_port, wait_for_port
from directory_sync.store import db

pytestmark = pytest.mark.postgres


@pytest.fixture
def bouncer(scaleout_services):
    """PgBouncer in front of the test database; Django's connection goes through it."""
    settings = connection.settings_dict
    database = {k: settings[k] for k in ("NAME", "USER", "HOST", "PORT")}
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="beem-pgbouncer-"))
    process = Process(
        "pgbouncer",
        pgbouncer_argv(database, port=port, pool_size=5, directory=directory),
        env={},
        logdir=directory,
    )
    process.start()
    direct = {"HOST": settings["HOST"], "PORT": settings["PORT"]}
    try:
        wait_for_port(port)
        connection.close()
        settings.update(HOST="127.0.0.1", PORT=port)
        yield port
    finally:
        # Back to PostgreSQL itself before transactional_db empties the tables.
        connection.close()
        db._lock_connections_forget()
        settings.update(direct)
        process.stop()
        subprocess.run(["rm", "-rf", str(directory)], check=False)


def _other_client(port: int) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host="127.0.0.1", port=port, user=settings["USER"], dbname=settings["NAME"]
    )


def _hold_a_server_connection(port: int) -> psycopg.Connection:
    """A second client inside a transaction: it keeps the server connection PgBouncer gave
    it (the idle one Django used last) until it ends."""
    other = _other_client(port)
    other.execute("SELECT 1")  # BEGIN + SELECT: the transaction stays open
    return other


def _prepared_select() -> int:
    with db.prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int + 1", [41])
        return cursor.fetchone()[0]


def test_prepared_statements_off_work_on_any_server_connection(bouncer, settings):
    settings.BEEM_PREPARED_STATEMENTS = False
    assert _prepared_select() == 42
    other = _hold_a_server_connection(bouncer)
    try:
        assert _prepared_select() == 42
    finally:
        other.close()


def test_prepared_statements_on_fail_behind_pgbouncer(bouncer, settings):
    """Why README says DATABASE_PREPARED_STATEMENTS=false behind PgBouncer in transaction mode,
    whatever its version: a statement PREPAREd (SQL) on one server connection is not there on
    the next (1.21+'s max_prepared_statements carries protocol-level ones only)."""
    settings.BEEM_PREPARED_STATEMENTS = True
    assert _prepared_select() == 42
    other = _hold_a_server_connection(bouncer)
    try:
        with pytest.raises(ProgrammingError, match="prepared statement .* does not exist"):
            _prepared_select()
    finally:
        other.close()


def test_the_drain_lock_holds_and_ends_with_its_block_behind_pgbouncer(bouncer):
    """A session-level lock would be taken on one server connection and its release sent on
    another: the second client below would land on the lock's server connection and be
    granted it as its own (bench/scaleout.py saw two drains of one organization at once)."""
    with db.advisory_lock_held(7, 21) as held:
        assert held
        other = _other_client(bouncer)
        try:
            assert other.execute("SELECT pg_try_advisory_xact_lock(7, 21)").fetchone()[0] is False
            other.rollback()
        finally:
            other.close()
    other = _other_client(bouncer)
    try:
        assert other.execute("SELECT pg_try_advisory_xact_lock(7, 21)").fetchone()[0] is True
        other.rollback()
        # Nothing of it is left on any server connection.
        assert other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 21"
        ).fetchone() == (0,)
    finally:
        other.close()


def test_scim_database_bounds_do_not_outlive_their_transaction_behind_pgbouncer(bouncer):
    """A SCIM request's statement and lock timeouts are local to its transactions: the server
    connection it used has the server's settings for the next client."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        default = cursor.fetchone()[0]
    with db.transaction_timeouts(1234, 567), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('statement_timeout')")
            assert cursor.fetchone()[0] == "1234ms"
    other = _other_client(bouncer)  # lands on the idle server connection Django just used
    try:
        settings = other.execute(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
            "(SELECT count(*) FROM pg_settings WHERE source = 'session' "
            "AND name IN ('statement_timeout', 'lock_timeout'))"
        ).fetchone()
        assert settings == (default, "0", 0)
    finally:
        other.close()
