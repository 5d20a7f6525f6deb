"""Celery tasks: thin wrappers that take ids, re-fetch and call one service."""

from celery import shared_task


@shared_task(name="directory_sync.apply_change_event", acks_late=True)
def apply_change_event(event_id: int) -> None:
    from .apply import change_event_apply

    change_event_apply(event_id=event_id)
