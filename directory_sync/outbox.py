"""The change-event outbox: every directory write appends an event in the same transaction.

The event is handed to Celery only after the transaction commits (``delay_on_commit``); if the
broker is down the event simply stays pending and the beat sweep
(``directory_sync.redispatch_pending_events``) or ``manage.py directory_sync redispatch``
dispatches it later. Nothing is lost.
"""

import logging

from django.db import transaction
from django.utils import timezone

from .models import ChangeEvent, DirectoryRecord, ProvisioningRun

logger = logging.getLogger(__name__)


def change_event_append(
    *,
    record: DirectoryRecord,
    kind: str,
    run: ProvisioningRun | None = None,
    request_id: str = "",
) -> ChangeEvent:
    """Append an outbox event for ``record`` at its current version; dispatch after commit."""
    event = ChangeEvent.objects.create(
        organization_id=record.organization_id,
        record=record,
        run=run,
        resource_type=record.resource_type,
        scim_id=record.scim_id,
        label=(record.user_name or record.display_name or "")[:255],
        kind=kind,
        record_version=record.version,
        request_id=request_id,
    )
    transaction.on_commit(lambda: change_event_dispatch(event_ids=[event.pk]))
    return event


def change_event_dispatch(*, event_ids: list[int]) -> int:
    """Hand events to Celery. A broker failure is logged, never raised: the sweep retries."""
    from .tasks import apply_change_event

    sent = 0
    for event_id in event_ids:
        try:
            apply_change_event.delay(event_id)
        except Exception:  # noqa: BLE001 - any broker error; the event stays pending
            logger.warning("broker unavailable; change event %s stays pending", event_id)
            break
        sent += 1
    if sent:
        ChangeEvent.objects.filter(pk__in=event_ids[:sent]).update(dispatched_at=timezone.now())
    return sent
