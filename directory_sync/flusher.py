"""The process's background flusher: one daemon thread that writes what SCIM requests leave in
memory for the database (request-log rows, run request counts, the time of the last SCIM
request) when no request comes to do it, so an idle process's numbers are exact within a few
seconds without waiting for its next request.

The modules that buffer (``scim.request_log``, ``runs``) register their "flush if due" here at
import and start the thread when they buffer something; this module imports none of them, so
the two do not need each other.

The thread keeps its database connection between flushes, as a request thread does between
requests: closed when unusable or older than ``CONN_MAX_AGE`` (Django's own rule, so SQLite's
0 closes it after each flush), by ``process_state.reset_all()`` and at the process's exit.
Reopening it every flush would cost each web process a new PostgreSQL connection (and a
backend start) about once a second.
"""

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import process_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Flush:
    flush_if_due: Callable[[], object]
    interval: Callable[[], float]  # seconds; a setting, so read each time


# name -> flush; filled at import by the modules that buffer, never emptied (code, not state).
_flushes: dict[str, _Flush] = {}
_lock = threading.Lock()
_flusher_pid: int | None = None
# Tests turn the background flusher off unless they test it: its own connection cannot see
# rows of a test's transaction.
BACKGROUND_FLUSH = True


def flush_register(
    flush_if_due: Callable[[], object], *, interval: Callable[[], float]
) -> Callable[[], object]:
    """Have the flusher call ``flush_if_due`` about every ``interval()`` seconds."""
    _flushes[f"{flush_if_due.__module__}.{flush_if_due.__qualname__}"] = _Flush(
        flush_if_due, interval
    )
    return flush_if_due


def _flusher_interval() -> float:
    intervals = [x for x in (f.interval() for f in _flushes.values()) if x > 0]
    return max(min(intervals, default=1.0), 0.2)


# alias -> (pid, wrapper): the flusher thread's open connections, with the process that opened
# them (a forked Celery child must not close its parent's socket). Held under _connections_lock
# while the thread flushes, so reset_all() never closes a connection in use.
_flusher_connections: dict[str, tuple[int, object]] = {}
_connections_lock = threading.Lock()


def _flusher_connections_close(*, timeout: float = -1) -> None:
    """Close the flusher thread's kept connections (from any thread of the process)."""
    if not _connections_lock.acquire(timeout=timeout):
        return  # a flush is stuck holding them: the process's exit closes the sockets
    try:
        while _flusher_connections:
            _alias, (pid, wrapper) = _flusher_connections.popitem()
            if pid != os.getpid():
                continue
            # Another thread's connection: Django refuses to close it unless sharing is allowed.
            wrapper.inc_thread_sharing()
            try:
                wrapper.close()
            finally:
                wrapper.dec_thread_sharing()
    finally:
        _connections_lock.release()


process_state.register(_flusher_connections_close, holds=("_flusher_connections",))
atexit.register(_flusher_connections_close, timeout=1.0)


def _flush_once() -> None:
    """One round of every registered flush, on this thread's kept connection."""
    from django.db import connections

    with _connections_lock:
        try:
            for flush in list(_flushes.values()):
                flush.flush_if_due()
        except Exception:
            logger.exception("background flush of the SCIM request log and run counts failed")
        finally:
            # What Django does for a request thread when a request ends (this thread's
            # connections only): closed if broken, left in a transaction or past CONN_MAX_AGE.
            for wrapper in connections.all(initialized_only=True):
                wrapper.close_if_unusable_or_obsolete()
                if wrapper.connection is None:
                    _flusher_connections.pop(wrapper.alias, None)
                else:
                    _flusher_connections[wrapper.alias] = (os.getpid(), wrapper)


def _flusher_loop() -> None:
    while True:
        time.sleep(_flusher_interval())
        if BACKGROUND_FLUSH:
            _flush_once()


def background_flusher_ensure() -> None:
    """Start this process's flusher thread once (after a fork the child starts its own)."""
    global _flusher_pid
    if not BACKGROUND_FLUSH or _flusher_pid == os.getpid():
        return
    with _lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
    threading.Thread(target=_flusher_loop, name="scim-bookkeeping-flusher", daemon=True).start()
