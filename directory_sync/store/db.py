"""The connection's primitives: which database, the prepared cursor, locks and settings.

The private Django cursor classes (the PostgreSQL debug wrapper, ``CursorWrapper``) are
imported here and nowhere else; ``tests/directory_sync/store/test_db.py`` fails loudly when a
Django upgrade moves them.
"""

import hashlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.postgresql.base import CursorDebugWrapper as PostgresDebugWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus

from .. import process_state


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def has_row_locks() -> bool:
    """Whether ``SELECT ... FOR UPDATE`` locks rows (PostgreSQL; SQLite locks the database)."""
    return connection.features.has_select_for_update


# --- the prepared cursor ---------------------------------------------------------------------


def _placeholders_numbered(sql: str) -> tuple[str, int]:
    """``sql`` with Django's ``%s`` placeholders as PostgreSQL's ``$1, $2, ...`` (``%%`` as
    ``%``), and how many there are."""
    parts = sql.split("%")
    text = [parts[0]]
    count = 0
    index = 1
    while index < len(parts):
        part = parts[index]
        if part == "" and index + 1 < len(parts):  # "%%": a literal percent sign
            text.append("%" + parts[index + 1])
            index += 2
            continue
        if not part.startswith("s"):
            raise ValueError(f"a prepared statement takes %s placeholders only: {sql[:200]!r}")
        count += 1
        text.append(f"${count}{part[1:]}")
        index += 1
    return "".join(text), count


# statement text -> (name, text with $n placeholders, number of parameters); code, not state:
# the hand-written statements are a small fixed set.
_statements: dict[str, tuple[str, str, int]] = {}
# Per connection, at most this many statements stay prepared (then DEALLOCATE ALL).
PREPARED_MAX = 256


def _statement(sql: str) -> tuple[str, str, int]:
    found = _statements.get(sql)
    if found is None:
        text, count = _placeholders_numbered(sql)
        name = "beem_" + hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:24]
        found = _statements[sql] = (name, text, count)
    return found


# psycopg connection -> the names prepared on it (a new connection starts with none).
_prepared_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _PreparedCursor:
    """Django's cursor, running each statement as ``EXECUTE`` of a statement it ``PREPARE``d
    on this connection the first time.

    ``EXECUTE name(values)`` is one simple-protocol statement with its values bound on the
    client, so the SCIM bounds (``transaction_timeouts``) travel in the same query string
    (``SET LOCAL ...; EXECUTE ...``): one round trip, and PostgreSQL plans the statement once
    per connection instead of on every call. Opened like ``connection.cursor()`` (health check,
    thread check, ``execute_wrapper``); with queries logged (DEBUG, tests) the statement is
    logged with its values, as if it had been sent as it is written.
    """

    def __init__(self, cursor: CursorWrapper):
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence = ()) -> None:
        name, text, count = _statement(sql)
        raw = self._cursor.db.connection
        prepared = _prepared_names.setdefault(raw, set())
        if name not in prepared:
            if len(prepared) >= PREPARED_MAX:
                CursorWrapper.execute(self._cursor, "DEALLOCATE ALL")
                prepared.clear()
            # Through the execute wrappers (the SCIM bounds apply: parsing takes table locks),
            # not logged: it is not one of the request's statements.
            CursorWrapper.execute(self._cursor, f"PREPARE {name} AS {text}")
            prepared.add(name)
        execute = f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"
        if isinstance(self._cursor, PostgresDebugWrapper):
            try:
                logged = self._cursor.db.ops.compose_sql(sql, params)
            except Exception:  # a value psycopg cannot quote: log the template
                logged = sql
            with self._cursor.debug_sql(logged, params):
                CursorWrapper.execute(self._cursor, execute, params)
        else:
            self._cursor.execute(execute, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self._cursor.close()


def prepared_cursor():
    """A cursor whose statements PostgreSQL parses and plans once per connection.

    Django binds parameters on the client and so never prepares: PostgreSQL would parse and
    plan each hot statement afresh, which costs more than executing it. Only for fixed
    hand-written statements with ``%s`` placeholders (each distinct text is prepared and kept).
    ``DATABASE_PREPARED_STATEMENTS=false`` (behind PgBouncer in transaction mode, where the
    next transaction may run on a server connection that never saw the ``PREPARE``) or not
    PostgreSQL: Django's cursor.
    """
    wrapper = connections[DEFAULT_DB_ALIAS]  # once: each django.db.connection.x looks it up
    cursor = wrapper.cursor()
    if not settings.BEEM_PREPARED_STATEMENTS or wrapper.vendor != "postgresql":
        return cursor
    return _PreparedCursor(cursor)


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


# Both bounds in one statement, local to the transaction it runs in, for a transaction that
# psycopg opens with BEGIN.
_TIMEOUTS_SQL = (
    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)"
)


class _TransactionTimeouts:
    """An execute wrapper: the first statement of each transaction carries the timeouts.

    The first statement of a transaction is the one psycopg sends while the connection is idle.
    In autocommit it is a transaction of its own: the bounds go as ``SET LOCAL`` in front of it
    in the same simple-protocol query string (one message, one implicit transaction; PostgreSQL
    applies ``statement_timeout`` to each statement of such a string). In ``atomic``, psycopg
    sends ``BEGIN`` before it: the three go out in a psycopg pipeline, ``set_config(...,
    true)`` between them — one round trip. Later statements of the transaction run as they
    are. (A pipeline for the one-statement case too cost 0.1 ms of CPU and about ten system
    calls more per request: bench/RESULTS.md, 2026-12-07.)
    """

    def __init__(self, wrapper, statement_ms: int, lock_ms: int):
        self.wrapper = wrapper
        self.params = [f"{statement_ms}ms", f"{lock_ms}ms"]
        # Integers only: no quoting, and no "%" for the client-side binding to read.
        self.prefix = (
            f"SET LOCAL statement_timeout = {int(statement_ms)}; "
            f"SET LOCAL lock_timeout = {int(lock_ms)}; "
        )

    def __call__(self, execute, sql, params, many, context):
        raw = self.wrapper.connection
        if raw.info.transaction_status != TransactionStatus.IDLE:
            return execute(sql, params, many, context)
        cursor = context["cursor"].cursor
        if raw.autocommit and not many and isinstance(cursor, ClientCursor):
            result = execute(self.prefix + sql, params, many, context)
            while cursor.nextset():  # past the two SETs' results, to the statement's own
                pass
            return result
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
    return wrapper.execute_wrapper(_TransactionTimeouts(wrapper, statement_ms, lock_ms))


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
