"""Retention: delete SCIM request logs and finished change events older than
``BEEM_REQUEST_LOG_RETENTION_DAYS``, and the ended runs they leave empty (the nightly beat
task ``directory_sync.purge_old_logs`` and ``manage.py directory_sync purge``)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import ChangeEvent, ProvisioningRun, RequestLog

PURGE_BATCH = 2000


@dataclass(frozen=True)
class PurgeCounts:
    cutoff: datetime
    request_logs: int
    change_events: int
    runs: int
    dry_run: bool


def _purgeable(cutoff: datetime) -> tuple[QuerySet, QuerySet, QuerySet]:
    logs = RequestLog.objects.filter(created_at__lt=cutoff)
    # Failed and pending events are never purged: they still need an operator or a job.
    events = ChangeEvent.objects.filter(
        status__in=[ChangeEvent.Status.APPLIED, ChangeEvent.Status.SKIPPED]
    ).filter(Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
    runs = ProvisioningRun.objects.filter(ended_at__isnull=False, ended_at__lt=cutoff)
    return logs, events, runs


def _delete_in_batches(queryset: QuerySet) -> int:
    # Small batches keep each DELETE's locks short while Entra keeps writing.
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:PURGE_BATCH])
        if not ids:
            return total
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        total += len(ids)


def logs_purge(
    *, retention_days: int | None = None, now: datetime | None = None, dry_run: bool = False
) -> PurgeCounts:
    """Delete SCIM request logs and finished (applied/skipped) change events older than the
    retention (``BEEM_REQUEST_LOG_RETENTION_DAYS``), then ended runs left with neither.

    With ``dry_run`` nothing is deleted and the counts are what would be.
    """
    days = settings.BEEM_REQUEST_LOG_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    logs, events, runs = _purgeable(cutoff)
    if dry_run:
        # Runs counted as they will be after logs and events go: those with nothing newer left.
        kept_logs = RequestLog.objects.filter(created_at__gte=cutoff)
        kept_events = ChangeEvent.objects.exclude(pk__in=events.values("pk"))
        empty_runs = runs.exclude(pk__in=kept_logs.filter(run__isnull=False).values("run_id"))
        empty_runs = empty_runs.exclude(
            pk__in=kept_events.filter(run__isnull=False).values("run_id")
        )
        return PurgeCounts(cutoff, logs.count(), events.count(), empty_runs.count(), True)
    deleted_logs = _delete_in_batches(logs)
    deleted_events = _delete_in_batches(events)
    empty_runs = runs.filter(events__isnull=True, requests__isnull=True)
    deleted_runs = _delete_in_batches(empty_runs)
    return PurgeCounts(cutoff, deleted_logs, deleted_events, deleted_runs, False)
