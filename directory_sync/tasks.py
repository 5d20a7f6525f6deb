"""Celery tasks: thin wrappers that take ids, re-fetch and call one service.

Task names are explicit; ``CELERY_BEAT_SCHEDULE`` in settings refers to them.
"""

import logging

from celery import Task, shared_task

from .engine import TRANSIENT_ERRORS, events_drain, record_events_fail
from .health import worker_heartbeat_record
from .notes import ngettext_message as ngettext  # the name makemessages extracts
from .outbox import organization_wake
from .redispatch import change_events_redispatch
from .retention import logs_purge
from .runs import runs_close_idle
from .store.counts import counts_compact_all

logger = logging.getLogger(__name__)

MAX_RETRIES = 8


# Apply jobs: acknowledged late (a killed worker's job runs again and converges), retried with
# backoff on transient database errors.
APPLY_JOB_OPTIONS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": MAX_RETRIES,
}


class ApplyChangeEventsTask(Task):
    """When a drain gives up on a record, that record's pending events fail with the reason."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        record_id = getattr(exc, "beem_record_id", None)
        if record_id is None:
            # Not tied to one record (the database itself is gone): the sweep wakes it again.
            logger.error("apply job of organization %s failed: %s", args or kwargs, exc)
            return
        reason = ngettext(
            "Gave up after %(count)s retry: %(error)s",
            "Gave up after %(count)s retries: %(error)s",
            self.request.retries,
            count=self.request.retries,
            error=str(exc),
        )
        try:
            record_events_fail(record_id=record_id, reason=reason)
        except Exception:  # the database itself is gone; the sweep re-runs it
            logger.exception("could not record the failure of directory record %s", record_id)
            return
        # The organization's other pending events still need a drain.
        organization_id = kwargs.get("organization_id", args[0] if args else None)
        if organization_id is not None:
            organization_wake(organization_id=organization_id, force=True)


@shared_task(
    base=ApplyChangeEventsTask,
    name="directory_sync.apply_change_events",
    **APPLY_JOB_OPTIONS,
)
def apply_change_events(organization_id: int) -> int:
    """Drain the organization's pending change events in batches (the outbox wake-up).

    Killed mid-batch, the job runs again (late ack) and converges: a batch commits per chunk
    of records, and what did not commit is still pending.
    """
    return events_drain(organization_id=organization_id)


@shared_task(name="directory_sync.redispatch_pending_events")
def redispatch_pending_events() -> int:
    return change_events_redispatch().dispatched


@shared_task(name="directory_sync.close_idle_runs")
def close_idle_runs() -> int:
    return runs_close_idle()


@shared_task(name="directory_sync.purge_old_logs")
def purge_old_logs() -> None:
    logs_purge()


@shared_task(name="directory_sync.fold_record_counts")
def fold_record_counts() -> int:
    return counts_compact_all()


@shared_task(bind=True, name="directory_sync.worker_heartbeat")
def worker_heartbeat(self) -> None:
    worker_heartbeat_record(hostname=self.request.hostname)
