"""The directory records an apply works on: the transaction's settings, the row locks (order:
see the package docstring), the organization's sync settings, the engine's own columns."""

from __future__ import annotations

from ..models import DirectoryRecord, SyncSettings
from ..store import db

# How long an apply waits for a row lock (PostgreSQL) before giving up and being retried.
LOCK_TIMEOUT = "30s"


def sync_settings_read(organization_id: int) -> SyncSettings:
    # Read only: an organization that never opened its settings page has the defaults.
    found = SyncSettings.objects.filter(organization_id=organization_id).first()
    return found or SyncSettings(organization_id=organization_id)


def transaction_tune() -> None:
    """Per-transaction settings of an apply (PostgreSQL).

    A job must not wait forever behind a stuck lock: past ``LOCK_TIMEOUT`` it fails with
    OperationalError and Celery retries it later with backoff. No WAL flush wait at commit
    either (an fsync per apply): an apply lost to a PostgreSQL crash is lost whole, member and
    event status together, so the event is still pending and the sweep wakes the job again;
    jobs converge, nothing the directory sent is lost.
    """
    db.apply_transaction_tune(lock_timeout=LOCK_TIMEOUT)


def record_lock(record_id: int) -> DirectoryRecord | None:
    return (
        DirectoryRecord.objects.select_for_update(of=("self",), no_key=True)
        .select_related("organization", "member", "group")
        .filter(pk=record_id)
        .first()
    )


def record_set(record: DirectoryRecord, **values) -> None:
    # A queryset update: DirectoryRecord.updated_at is the SCIM meta.lastModified, which an
    # apply must not move.
    DirectoryRecord.objects.filter(pk=record.pk).update(**values)
    for key, value in values.items():
        setattr(record, key, value)


def users_lock(record_ids: list[int]) -> list[DirectoryRecord]:
    return list(
        DirectoryRecord.objects.select_for_update(of=("self",), no_key=True)
        .select_related("member")
        .filter(pk__in=record_ids, resource_type=DirectoryRecord.ResourceType.USER)
        .order_by("pk")
    )
