"""The operators' view of each organization's sync: status, "Set up in Beem" choices, last
contact, the current run and the change-event backlog (``manage.py directory_sync status``).
Read-only; returns plain data the command renders as a table or JSON."""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone

from members.models import Organization

from .models import ChangeEvent, ProvisioningRun, RefusedRequest, SyncSettings
from .services import EDITABLE_FIELDS

# The current run's most recent refused writes listed by ``status``; the run page has them all.
REFUSALS_SHOWN = 20


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def sync_status_overview(*, organizations: Iterable[Organization]) -> list[dict]:
    """One row per organization: sync status, its "Set up in Beem" choices (the defaults the
    engine would use while sync was never set up), last contact, current run, event backlog.

    Ages are whole seconds; timestamps ISO 8601 (UTC). Read-only.
    """
    now = timezone.now()
    rows = []
    for organization in organizations:
        sync = SyncSettings.objects.filter(organization=organization).first()
        events = ChangeEvent.objects.filter(organization=organization)
        backlog = events.filter(status=ChangeEvent.Status.PENDING).aggregate(
            n=Count("id"), oldest=Min("created_at")
        )
        failed = events.filter(status=ChangeEvent.Status.FAILED).count()
        run = (
            ProvisioningRun.objects.filter(organization=organization, ended_at__isnull=True)
            .order_by("-started_at", "-id")
            .first()
        )
        current_run = None
        if run is not None:
            by_status = dict(
                ChangeEvent.objects.filter(run=run)
                .values_list("status")
                .annotate(n=Count("id"))
                .order_by()
            )
            refusals = RefusedRequest.objects.filter(run=run).order_by("-created_at", "-id")
            current_run = {
                "id": run.pk,
                "started_at": _iso(run.started_at),
                "last_activity_at": _iso(run.last_activity_at),
                "requests": run.requests_received,
                "events": {s.value: by_status.get(s.value, 0) for s in ChangeEvent.Status},
                # Writes Beem refused with a 4xx: failures of the run as much as failed events.
                "refused": refusals.count(),
                "refused_latest": [
                    {
                        "at": _iso(refusal.created_at),
                        "method": refusal.method,
                        "resource_type": refusal.resource_type,
                        "external_id": refusal.external_id,
                        "name": refusal.name,
                        "status": refusal.status,
                        "scim_type": refusal.scim_type,
                        "detail": refusal.detail,
                    }
                    for refusal in refusals[:REFUSALS_SHOWN]
                ],
            }
        rows.append(
            {
                "organization": {
                    "id": organization.pk,
                    "slug": organization.slug,
                    "name": organization.name,
                },
                "directory": sync.directory if sync else SyncSettings.Directory.ENTRA_ID.value,
                "status": sync.status if sync else SyncSettings.Status.NOT_CONFIGURED.value,
                "settings": {
                    name: getattr(sync or SyncSettings(), name) for name in EDITABLE_FIELDS
                },
                "last_test_connection_at": _iso(sync.last_test_connection_at if sync else None),
                "last_request_at": _iso(sync.last_request_at if sync else None),
                "current_run": current_run,
                "pending_events": backlog["n"],
                "failed_events": failed,
                "oldest_pending_age_seconds": (
                    int((now - backlog["oldest"]).total_seconds()) if backlog["oldest"] else None
                ),
            }
        )
    return rows
