"""Never lose a change: wake the apply job again for pending change events (design.md §3).

An event is committed with its directory record and its organization's apply job is woken
after commit. When the broker was down at that moment, or a worker died holding the job, the
event stays ``pending``. The beat task ``directory_sync.redispatch_pending_events`` and
``manage.py directory_sync redispatch`` call :func:`change_events_redispatch` to wake the
organizations of such events again (one job per organization, which drains all its pending
events). Waking twice is harmless: one drain runs per organization, jobs converge and a
finished event is a no-op.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from members.models import Organization

from .models import ChangeEvent
from .outbox import change_event_dispatch


@dataclass
class RedispatchResult:
    # Pending events old enough to send again (found before sending).
    pending: int = 0
    # Failed events reset to pending (``include_failed``); also sent.
    failed_reset: int = 0
    # Events handed to the broker.
    dispatched: int = 0
    dry_run: bool = False
    # The broker refused: the rest stay pending for the next sweep.
    broker_unavailable: bool = False
    event_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return self.pending + self.failed_reset


def change_events_to_redispatch(
    *,
    organization: Organization | None = None,
    include_failed: bool = False,
    older_than_seconds: int,
) -> QuerySet[ChangeEvent]:
    """The events a redispatch sends: pending ones last sent more than ``older_than_seconds``
    ago and, with ``include_failed``, every failed one (the operator command counts them)."""
    cutoff = timezone.now() - timedelta(seconds=max(0, older_than_seconds))
    events = ChangeEvent.objects.all()
    if organization is not None:
        events = events.filter(organization=organization)
    # Last handed to the broker (or created, if never) before the cutoff: an event sent a
    # moment ago is probably still queued, and sending it again would only grow the queue.
    wanted = Q(status=ChangeEvent.Status.PENDING, last_sent__lte=cutoff)
    if include_failed:
        wanted |= Q(status=ChangeEvent.Status.FAILED)
    return events.annotate(last_sent=Coalesce("dispatched_at", "created_at")).filter(wanted)


def change_events_redispatch(
    *,
    organization: Organization | None = None,
    include_failed: bool = False,
    older_than_seconds: int | None = None,
    dry_run: bool = False,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RedispatchResult:
    """Send pending events older than ``older_than_seconds`` to Celery again.

    ``include_failed`` also resets failed events to pending and sends them (the directory
    value was fixed, or a bug was). ``dry_run`` only counts. ``progress(done, total)`` is
    called after each batch. Stops at the first broker error; what was not sent stays pending.
    """
    if older_than_seconds is None:
        older_than_seconds = settings.BEEM_REDISPATCH_AFTER_SECONDS
    candidates = change_events_to_redispatch(
        organization=organization,
        include_failed=include_failed,
        older_than_seconds=older_than_seconds,
    ).values_list("id", "status")
    pending = [pk for pk, status in candidates if status == ChangeEvent.Status.PENDING]
    failed = [pk for pk, status in candidates if status == ChangeEvent.Status.FAILED]
    result = RedispatchResult(pending=len(pending), failed_reset=len(failed), dry_run=dry_run)
    result.event_ids = sorted(pending + failed)
    if dry_run:
        return result
    if failed:
        with transaction.atomic():
            # Only rows still failed: a concurrent retry may have moved some on.
            ChangeEvent.objects.filter(pk__in=failed, status=ChangeEvent.Status.FAILED).update(
                status=ChangeEvent.Status.PENDING,
                outcome="",
                reason="",
                reason_notes=None,
                finished_at=None,
            )
    total = len(result.event_ids)
    batch_size = max(1, batch_size)
    woken: set[int] = set()
    for start in range(0, total, batch_size):
        batch = result.event_ids[start : start + batch_size]
        sent = change_event_dispatch(event_ids=batch, woken=woken)
        result.dispatched += sent
        if progress is not None:
            progress(start + sent, total)
        if sent < len(batch):
            result.broker_unavailable = True
            break
    return result
