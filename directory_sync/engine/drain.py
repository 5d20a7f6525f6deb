"""Applying records: one record now (``record_apply``), an organization's outbox in batches
(``events_drain``, the Celery job's body)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_noop

from ..models import ChangeEvent, DirectoryRecord
from ..notes import Message, exception_reason, reason_parts
from ..store import db
from .events import events_finish_many, record_events_fail, superseded_reason
from .groups import group_converge
from .records import record_lock, record_set, sync_settings_read, transaction_tune
from .results import PERMANENT_ERRORS, TRANSIENT_ERRORS, ApplyResult, Status
from .users import users_apply, users_batch_apply

logger = logging.getLogger(__name__)


def record_apply(*, record_id: int, if_stale: bool = False) -> ApplyResult | None:
    """Converge one directory record now and finish its pending events; ``None`` when the
    record no longer exists.

    An administrator's review decision re-applies the record whatever its version. With
    ``if_stale`` (a drain applying a record outside a batch) a record already applied at its
    current version only has its pending events finished as skipped (superseded). A user is
    applied as a batch of one (``users_apply``).
    """
    version = None
    try:
        with transaction.atomic():
            transaction_tune()
            record = record_lock(record_id)
            if record is None:
                return None
            version = record.version
            if if_stale and record.applied_version >= version:
                events_finish_many(
                    {
                        record.pk: (
                            version,
                            Status.SKIPPED,
                            "",
                            superseded_reason(record.applied_version),
                        )
                    }
                )
                return ApplyResult(status=Status.SKIPPED)
            sync_settings = sync_settings_read(record.organization_id)
            if record.resource_type == DirectoryRecord.ResourceType.USER:
                results = users_apply(
                    [record],
                    organization=record.organization,
                    sync_settings=sync_settings,
                    force=True,
                )
                _version, status, outcome, reason = results[record_id]
                return ApplyResult(status=status, outcome=outcome, reason=reason_parts(reason)[0])
            outcome, notes = group_converge(record)
            record_set(record, applied_version=version)
            events_finish_many({record.pk: (version, Status.APPLIED, outcome, notes.lines)})
            if record.deleted_at is not None:
                # The tombstone has done its job; events keep scim_id and label (SET_NULL).
                record.delete()
            return ApplyResult(status=Status.APPLIED, outcome=outcome, reason=notes.text)
    except PERMANENT_ERRORS as exc:
        reason = exception_reason(exc)
        text = reason_parts(reason)[0]
        with transaction.atomic():
            record = record_lock(record_id)
            if record is not None:
                events_finish_many(
                    {record.pk: (version or record.version, Status.FAILED, "", reason)}
                )
        logger.info("directory record %s not applied: %s", record_id, text)
        return ApplyResult(status=Status.FAILED, reason=text)


# --- draining an organization's outbox (the batch job) -------------------------------------

# Pending events read per batch (oldest first), and records applied per transaction.
DRAIN_BATCH = 500
DRAIN_CHUNK = 100
# The advisory lock (class, organization id): one drain per organization at a time.
_DRAIN_LOCK_CLASS = 0x6265


def events_drain(*, organization_id: int, batch_size: int = DRAIN_BATCH) -> int:
    """Apply every pending change event of the organization; returns how many were finished.

    Events are read oldest first in batches; each record of a batch is applied once, at its
    newest version (which finishes all its pending events up to it). Records are applied in
    chunks of ``DRAIN_CHUNK``, one transaction each. One drain per organization runs at a
    time: a second one (woken meanwhile) returns at once, the running one keeps reading until
    a full pass finds nothing new. Transient errors propagate (the task retries, tagged with
    the record: ``exc.beem_record_id``); a record that cannot apply fails its events.
    """
    with db.advisory_lock_held(_DRAIN_LOCK_CLASS, organization_id) as held:
        if not held:
            return 0
        return _events_drain(organization_id=organization_id, batch_size=max(1, batch_size))


def _events_drain(*, organization_id: int, batch_size: int) -> int:
    pending = ChangeEvent.objects.filter(organization_id=organization_id, status=Status.PENDING)
    seen: set[int] = set()
    cursor, progressed, finished = 0, False, 0
    while True:
        rows = list(
            pending.filter(pk__gt=cursor).order_by("pk").values_list("pk", "record_id")[:batch_size]
        )
        if not rows:
            # An event committed late with a lower id than the cursor: one more pass from the
            # start, until a pass finds nothing new.
            if cursor == 0 or not progressed:
                return finished
            cursor, progressed = 0, False
            continue
        cursor = rows[-1][0]
        rows = [row for row in rows if row[0] not in seen]
        if not rows:
            continue
        progressed = True
        event_ids = [pk for pk, _record_id in rows]
        seen.update(event_ids)
        ChangeEvent.objects.filter(pk__in=event_ids).update(attempts=F("attempts") + 1)
        orphans = [pk for pk, record_id in rows if record_id is None]
        if orphans:
            text, notes = reason_parts(
                Message(gettext_noop("The directory record no longer exists."))
            )
            ChangeEvent.objects.filter(pk__in=orphans, status=Status.PENDING).update(
                status=Status.SKIPPED, reason=text, reason_notes=notes, finished_at=timezone.now()
            )
        record_ids = list(dict.fromkeys(r for _pk, r in rows if r is not None))
        for start in range(0, len(record_ids), DRAIN_CHUNK):
            _records_drain(record_ids[start : start + DRAIN_CHUNK])
        finished += len(rows)


def _records_drain(record_ids: list[int]) -> None:
    """Apply a chunk of records: its users in one batched transaction, the rest (groups, and
    every record of a batch that rolled back) one by one with ``record_apply``."""
    try:
        done = users_batch_apply(record_ids)
    except PERMANENT_ERRORS:
        # Bad data the planning did not foresee: the chunk rolled back whole; each record
        # applies alone now, and the bad one fails with its own reason.
        done = set()
    except Exception:  # the careful path below sorts it out (or fails it)
        # A unique race, a lock timeout, bad data: same, and worth a line in the log.
        logger.warning(
            "batched apply of %s records rolled back; applying one by one",
            len(record_ids),
            exc_info=True,
        )
        done = set()
    for record_id in record_ids:
        if record_id not in done:
            _record_drain(record_id)


def _record_drain(record_id: int) -> None:
    try:
        record_apply(record_id=record_id, if_stale=True)
    except TRANSIENT_ERRORS as exc:
        exc.beem_record_id = record_id
        raise
    except Exception as exc:  # fail this record's events, keep draining
        logger.exception("directory record %s could not be applied", record_id)
        record_events_fail(
            record_id=record_id,
            reason=Message(
                gettext_noop("Unexpected error (%(error)s): %(detail)s"),
                error=exc.__class__.__name__,
                detail=str(exc),
            ),
        )
