"""The sync engine: make Beem's members and groups match the directory records.

Jobs converge, they don't replay (design.md §3). A job locks the directory record, reads its
*current* document and makes the linked member (or group) match it, then finishes every pending
event of that record up to the version it applied: the newest one ``applied`` with the outcome,
the older ones ``skipped`` (superseded). So duplicated, reordered or retried jobs reach the
same end state, and several queued changes of one user collapse into one apply.

Users have one apply path, a batch (``users_apply``; one record is a batch of one), so every
rule (identify, identifier clashes, possible duplicates, manager, departments, groups) lives
once. Failed events of a record are resolved when a newer version of it applies or it is
deleted (skipped as superseded), or when it applies later at the same version (applied).

Errors: a refusal the directory must fix (a phone that belongs to another member, an invalid
value) fails that record's event with a readable reason and writes nothing of that record.
Transient database errors (deadlock, lock timeout, a lost connection, a unique race) propagate
to the Celery task, which retries with backoff and fails the events when it gives up.

Locks (PostgreSQL; ``select_for_update`` is a no-op on SQLite):
- the records being applied: ``FOR NO KEY UPDATE`` (a batch's records in id order, then the
  records it pulls in because they hold or wait for an identifier it moves). Not ``FOR
  UPDATE``: that blocks the ``FOR KEY SHARE`` a SCIM group write's foreign-key checks take on
  its user records, and the engine, holding users, then asks for that group (a deadlock; see
  ``directory_sync.records``). Deleting a tombstone still takes ``FOR UPDATE``;
- a user's manager record: ``FOR SHARE`` *before* any member row is written, so a manager
  being created right now is seen once its job commits (and the manager's job, which fixes
  up its reports, cannot miss a report created concurrently);
- a group's user records: ``FOR SHARE``, so a user whose member is being created right now is
  either seen by the group job or sees the group itself.

Modules: ``fields`` (reading a user document), ``results`` (what an apply produces),
``records`` (locks and the engine's columns), ``events`` (finishing events), ``drain``
(``record_apply`` and ``events_drain``), ``identifiers`` and ``users`` (the user batch),
``departments``, ``groups``, ``compare`` (differences, for tests and reconcile).
"""

from .compare import record_member_differences
from .drain import DRAIN_BATCH, events_drain, record_apply
from .events import record_events_fail
from .results import PERMANENT_ERRORS, TRANSIENT_ERRORS, ApplyError, ApplyResult

__all__ = [
    "DRAIN_BATCH",
    "PERMANENT_ERRORS",
    "TRANSIENT_ERRORS",
    "ApplyError",
    "ApplyResult",
    "events_drain",
    "record_apply",
    "record_events_fail",
    "record_member_differences",
]
