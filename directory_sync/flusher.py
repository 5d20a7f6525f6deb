"""The process's background flusher: one daemon thread that writes what SCIM requests leave in
memory for the database (request-log rows, run request counts, the time of the last SCIM
request) when no request comes to do it, so an idle process's numbers are exact within a few
seconds without waiting for its next request.

The modules that buffer (``scim.request_log``, ``runs``) register their "flush if due" here at
import and start the thread when they buffer something; this module imports none of them, so
the two do not need each other.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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


def _flusher_loop() -> None:
    from django.db import connections

    while True:
        time.sleep(_flusher_interval())
        if not BACKGROUND_FLUSH:
            continue
        try:
            for flush in list(_flushes.values()):
                flush.flush_if_due()
        except Exception:
            logger.exception("background flush of the SCIM request log and run counts failed")
        finally:
            connections.close_all()  # this thread's connections only


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
