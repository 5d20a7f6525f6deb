"""The connection's primitives: which database, the prepared cursor, locks and settings.

The private Django cursor classes (``ServerBindingCursor``, the PostgreSQL debug wrapper,
``CursorWrapper``) are imported here and nowhere else; ``tests/directory_sync/store/
test_db.py`` fails loudly when a Django upgrade moves them.
"""

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.postgresql.base import CursorDebugWrapper as PostgresDebugWrapper
from django.db.backends.postgresql.base import ServerBindingCursor
from django.db.backends.utils import CursorWrapper
from psycopg.pq import TransactionStatus

from .. import process_state


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def has_row_locks() -> bool:
    """Whether ``SELECT ... FOR UPDATE`` locks rows (PostgreSQL; SQLite locks the database)."""
    return connection.features.has_select_for_update


# --- the prepared cursor ---------------------------------------------------------------------


class _PreparingCursor(ServerBindingCursor):
    """Binds on the server and prepares each statement it runs (named, once per connection).

    The connection keeps Django's ``prepare_threshold`` of None (preparing off) between these
    calls: with a threshold set, psycopg keeps books on every other query of the connection
    too (and a ``DEALLOCATE ALL`` after any rollback).
    """

    def execute(self, query, params=None, **kwargs):
        raw = self.connection
        previous = raw.prepare_threshold
        if previous is None:
            raw.prepare_threshold = 0
        try:
            return super().execute(query, params, prepare=True, **kwargs)
        finally:
            raw.prepare_threshold = previous


def prepared_cursor():
    """A cursor whose statements PostgreSQL parses and plans once per connection.

    Django binds parameters on the client and so never prepares: PostgreSQL parses and plans
    each hot statement afresh, which costs more than executing it. Only for fixed
    hand-written statements (each distinct text is prepared and kept); opened like
    ``connection.cursor()`` (health check, thread check, query logging, ``execute_wrapper``).
    ``BEEM_PREPARED_STATEMENTS`` off (``DATABASE_PREPARED_STATEMENTS=false``) or not
    PostgreSQL: Django's cursor.
    """
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each django.db.connection.x looks it up
    if not settings.BEEM_PREPARED_STATEMENTS or wrapper.vendor != "postgresql":
        return wrapper.cursor()
    wrapper.close_if_health_check_failed()
    wrapper.ensure_connection()
    wrapper.validate_thread_sharing()
    cursor = _PreparingCursor(wrapper.connection)
    if wrapper.queries_logged:
        return _PreparedDebugWrapper(cursor, wrapper)
    return wrapper.make_cursor(cursor)


class _PreparedDebugWrapper(PostgresDebugWrapper):
    """Logs (DEBUG, tests) the statement with its values, as Django does when it binds on the
    server: psycopg keeps no query text to read back after a prepared execution."""

    def execute(self, sql, params=None):
        try:
            logged = self.db.ops.compose_sql(sql, params)
        except Exception:  # a value psycopg cannot quote: log the template
            logged = sql
        with self.debug_sql(logged, params):
            return CursorWrapper.execute(self, sql, params)


# --- locks and settings ----------------------------------------------------------------------


# Per thread: the connection advisory_lock_held keeps between uses, with the process that
# opened it (a forked Celery child must not close its parent's socket). Opening one per lock
# would cost a connection setup for every eager apply in the embedded default and the tests.
_lock_connections: dict[int, tuple[int, object]] = {}


def _lock_connections_forget() -> None:
    while _lock_connections:
        _thread, (pid, wrapper) = _lock_connections.popitem()
        if pid == os.getpid():
            # Possibly another thread's (a test's live server): closing it from here is safe,
            # the thread is done with it, but Django refuses unless sharing is allowed.
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()


process_state.register(_lock_connections_forget, holds=("_lock_connections",))


def _lock_connection_take():
    """This thread's kept lock connection (taken out while in use: a nested lock opens its
    own), or a new one."""
    kept = _lock_connections.pop(threading.get_ident(), None)
    if kept is None or kept[0] != os.getpid():
        return connections.create_connection(DEFAULT_DB_ALIAS)
    wrapper = kept[1]
    wrapper.close_if_unusable_or_obsolete()  # errors, CONN_MAX_AGE, like Django's own
    return wrapper


@contextmanager
def advisory_lock_held(lock_class: int, key: int) -> Iterator[bool]:
    """Try to take the advisory lock ``(lock_class, key)``; yields whether it is held, and
    holds it until the block ends. Always True on SQLite, whose writers are serialised by the
    database lock.

    The lock is transaction-level (``pg_try_advisory_xact_lock``), taken on a connection of
    its own whose transaction stays open (idle) for the block. Not a session lock on Django's
    connection: behind PgBouncer in transaction mode each transaction may run on another
    server connection, so the lock would be taken on one, its release sent to another (a
    no-op), and it would stay held on the first for whichever client lands there next — two
    holders at once, or none ever again (bench/scaleout.py found both). A transaction keeps its
    server connection until it ends and ends with its client, so the lock lives exactly as
    long as the block, and a killed process's lock is released at once. Costs one more
    connection per process (behind PgBouncer, a server connection only while held).
    """
    if not is_postgres():
        yield True
        return
    wrapper = _lock_connection_take()
    reusable = False
    try:
        wrapper.set_autocommit(False)
        with wrapper.cursor() as cursor:
            # A server-wide idle_in_transaction_session_timeout would end the lock mid-block.
            cursor.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', '0', true), "
                "pg_try_advisory_xact_lock(%s, %s)",
                [lock_class, key],
            )
            held = bool(cursor.fetchone()[1])
        yield held
    finally:
        try:
            wrapper.rollback()  # releases the lock
            wrapper.set_autocommit(True)
            reusable = True
        except Exception:  # the connection is gone, and its lock with it
            pass
        if reusable and threading.get_ident() not in _lock_connections:
            _lock_connections[threading.get_ident()] = (os.getpid(), wrapper)
        else:
            wrapper.close()


def commit_without_flush_wait() -> None:
    """Let the current transaction commit without waiting for PostgreSQL's WAL flush
    (``SET LOCAL``: this transaction only; call it inside ``transaction.atomic``). For rows
    that are bookkeeping: a crash may lose the last fraction of a second of them, and any
    later synchronous commit flushes them too (WAL is ordered). No-op on SQLite."""
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def apply_transaction_tune(*, lock_timeout: str) -> None:
    """The sync engine's transaction settings (PostgreSQL): wait at most ``lock_timeout`` for
    a row lock, and commit without waiting for the WAL flush."""
    if not is_postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('synchronous_commit', 'off', true)",
            [lock_timeout],
        )


# Both bounds in one statement, local to the transaction it runs in. Not prepared: Django
# leaves psycopg's prepare_threshold at None, under which psycopg ignores ``prepare=True``, and
# behind PgBouncer before 1.21 (DATABASE_PREPARED_STATEMENTS=false) a named statement would
# not survive the next transaction anyway.
_TIMEOUTS_SQL = (
    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)"
)


class _TransactionTimeouts:
    """An execute wrapper: the first statement of each transaction carries the timeouts.

    The first statement of a transaction is the one psycopg sends while the connection is idle
    (in autocommit every statement is a transaction of its own; in ``atomic`` psycopg sends
    ``BEGIN`` before it). It goes out in a psycopg pipeline behind ``set_config(..., true)``:
    one round trip, one transaction. Later statements of the transaction run as they are.
    """

    def __init__(self, wrapper, params: list[str]):
        self.wrapper = wrapper
        self.params = params

    def __call__(self, execute, sql, params, many, context):
        raw = self.wrapper.connection
        if raw.info.transaction_status != TransactionStatus.IDLE:
            return execute(sql, params, many, context)
        # The statement's errors surface when the pipeline syncs, after execute() returned:
        # translated here as execute() would (a DatabaseError carrying the SQLSTATE).
        with self.wrapper.wrap_database_errors, raw.pipeline():
            raw.cursor().execute(_TIMEOUTS_SQL, self.params)
            return execute(sql, params, many, context)


def transaction_timeouts(statement_ms: int, lock_ms: int):
    """A context manager (PostgreSQL): while it is open, every transaction on the default
    connection runs with ``statement_timeout`` and ``lock_timeout`` set LOCAL (0: none).
    Nothing outlives the transaction that set it, behind PgBouncer in transaction mode too."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    return wrapper.execute_wrapper(
        _TransactionTimeouts(wrapper, [f"{statement_ms}ms", f"{lock_ms}ms"])
    )


def ping() -> None:
    """One round trip to the database (``SELECT 1``); raises when it cannot be reached."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


# --- bulk inserts ----------------------------------------------------------------------------


def rows_insert(*, table: str, columns: Sequence[str], rows: Sequence[tuple], chunk: int) -> None:
    """Insert ``rows`` (values in ``columns`` order) into ``table``: PostgreSQL's ``COPY``
    (no SQL text to build and parse per row), else multi-row INSERTs of ``chunk`` rows."""
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        if is_postgres():
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            values = ", ".join([placeholder] * len(part))
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {values}",
                [value for row in part for value in row],
            )
