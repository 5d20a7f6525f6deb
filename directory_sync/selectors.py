"""Reads for the "Sync with Entra ID" admin pages, always scoped to one organization."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from members.directory import DirectorySyncStatus
from members.models import AuditEntry, Member, Organization, Resource

from .models import (
    ChangeEvent,
    DirectoryRecord,
    DirectoryRecordCount,
    ProvisioningRun,
    RefusedRequest,
    RequestLog,
    ReviewItem,
    SyncSettings,
)


class SyncState:
    """What the admin sees as the sync's status (derived, not stored)."""

    NOT_CONFIGURED = "not_configured"
    WAITING = "waiting_for_test_connection"
    CONNECTED = "connected"
    STOPPED = "stopped"

    LABELS = {
        NOT_CONFIGURED: _("Not configured"),
        WAITING: _("Waiting for Entra ID's Test Connection"),
        CONNECTED: _("Connected"),
        STOPPED: _("Stopped"),
    }
    BADGES = {NOT_CONFIGURED: "", WAITING: "warn", CONNECTED: "ok", STOPPED: "err"}


def sync_settings_find(*, organization: Organization) -> SyncSettings | None:
    """The organization's settings row, or None when sync was never set up (reads never write)."""
    return (
        SyncSettings.objects.select_related("oauth_application")
        .filter(organization=organization)
        .first()
    )


def members_sync_status(organization: Organization) -> DirectorySyncStatus:
    """The organization's sync as the members pages see it (registered with members in
    ``DirectorySyncConfig.ready()``)."""
    sync_settings = sync_settings_find(organization=organization)
    if sync_settings is None:
        return DirectorySyncStatus(directory_name=SyncSettings.Directory.ENTRA_ID.label)
    return DirectorySyncStatus(
        directory_name=sync_settings.get_directory_display(),
        active=sync_settings.is_active,
        default_phone_country=sync_settings.default_phone_country or None,
        identify_by=sync_settings.identify_by,
        departments_by_path=(
            sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING
        ),
    )


def sync_state(*, sync_settings: SyncSettings | None) -> str:
    """Derive the status shown to admins.

    "Connected" needs a Test Connection (Entra's probe) after the latest activation: after a
    reactivation Entra stays quarantined until the admin runs Test Connection again, so an older
    probe must not count.
    """
    if sync_settings is None or sync_settings.status == SyncSettings.Status.NOT_CONFIGURED:
        return SyncState.NOT_CONFIGURED
    if sync_settings.status == SyncSettings.Status.STOPPED:
        return SyncState.STOPPED
    tested = sync_settings.last_test_connection_at
    activated = sync_settings.activated_at
    if tested is None or (activated is not None and tested < activated):
        return SyncState.WAITING
    return SyncState.CONNECTED


@dataclass(frozen=True)
class MemberIdentityCounts:
    """How existing members were created, so the admin picks the matching identifier."""

    total: int
    with_phone: int
    with_email: int
    phone_only: int
    email_only: int


def member_identity_counts(*, organization: Organization) -> MemberIdentityCounts:
    counts = Member.objects.filter(organization=organization).aggregate(
        total=Count("id"),
        with_phone=Count("id", filter=Q(phone__isnull=False) & ~Q(phone="")),
        with_email=Count("id", filter=Q(email__isnull=False) & ~Q(email="")),
        phone_only=Count(
            "id",
            filter=Q(phone__isnull=False) & ~Q(phone="") & (Q(email__isnull=True) | Q(email="")),
        ),
        email_only=Count(
            "id",
            filter=Q(email__isnull=False) & ~Q(email="") & (Q(phone__isnull=True) | Q(phone="")),
        ),
    )
    return MemberIdentityCounts(**counts)


@dataclass(frozen=True)
class RunProgress:
    """A run's changes by status; ``failed`` includes the writes Beem refused (``refused``)."""

    run: ProvisioningRun | None
    pending: int
    applied: int
    failed: int
    skipped: int
    refused: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.applied + self.failed + self.skipped


def _event_counts(qs: QuerySet[ChangeEvent]) -> dict[str, int]:
    S = ChangeEvent.Status
    return qs.aggregate(
        pending=Count("id", filter=Q(status=S.PENDING)),
        applied=Count("id", filter=Q(status=S.APPLIED)),
        failed=Count("id", filter=Q(status=S.FAILED)),
        skipped=Count("id", filter=Q(status=S.SKIPPED)),
    )


def run_progress(*, organization: Organization) -> RunProgress:
    """Progress of the most recent run (the current one while Entra is still sending)."""
    run = ProvisioningRun.objects.filter(organization=organization).first()
    if run is None:
        return RunProgress(run=None, pending=0, applied=0, failed=0, skipped=0)
    return RunProgress(run=run, **run_event_counts(run=run))


def pending_event_count(*, organization: Organization) -> int:
    return ChangeEvent.objects.filter(
        organization=organization, status=ChangeEvent.Status.PENDING
    ).count()


def run_list(*, organization: Organization) -> QuerySet[ProvisioningRun]:
    """Runs, newest first, with their changes by status; ``failed_count`` includes the
    writes Beem refused (``refused_count``)."""
    S = ChangeEvent.Status
    refused = (
        RefusedRequest.objects.filter(run=OuterRef("pk"))
        .order_by()
        .values("run")
        .annotate(n=Count("id"))
        .values("n")
    )
    return (
        ProvisioningRun.objects.filter(organization=organization)
        .annotate(
            event_count=Count("events", distinct=True),
            applied_count=Count("events", filter=Q(events__status=S.APPLIED), distinct=True),
            failed_event_count=Count("events", filter=Q(events__status=S.FAILED), distinct=True),
            pending_count=Count("events", filter=Q(events__status=S.PENDING), distinct=True),
            refused_count=Coalesce(Subquery(refused, output_field=IntegerField()), Value(0)),
        )
        .annotate(failed_count=F("failed_event_count") + F("refused_count"))
        .order_by("-started_at", "-id")
    )


def run_get(*, organization: Organization, pk: int) -> ProvisioningRun:
    """Raises ProvisioningRun.DoesNotExist for another organization's run."""
    return ProvisioningRun.objects.get(organization=organization, pk=pk)


def run_event_counts(*, run: ProvisioningRun) -> dict[str, int]:
    """The run's changes by status, and the writes Beem refused (counted as failed too)."""
    counts = _event_counts(ChangeEvent.objects.filter(run=run))
    counts["refused"] = RefusedRequest.objects.filter(run=run).count()
    counts["failed"] += counts["refused"]
    return counts


def run_refusal_list(*, run: ProvisioningRun) -> QuerySet[RefusedRequest]:
    """The writes of a run Beem refused (4xx), oldest first."""
    return RefusedRequest.objects.filter(run=run, organization_id=run.organization_id)


def run_event_list(
    *, run: ProvisioningRun, status: str = "", outcome: str = "", text: str = ""
) -> QuerySet[ChangeEvent]:
    """A run's change events, oldest first, filtered by status, outcome and free text; with
    the Beem member or group each touched (``record.member``, ``record.group``: a deleted
    member's record is gone, its event keeps the label)."""
    qs = ChangeEvent.objects.filter(run=run, organization_id=run.organization_id).select_related(
        "record__member", "record__group"
    )
    if status:
        qs = qs.filter(status=status)
    if outcome:
        qs = qs.filter(outcome=outcome)
    text = text.strip()
    if text:
        qs = qs.filter(Q(label__icontains=text) | Q(reason__icontains=text) | Q(request_id=text))
    return qs.order_by("id")


def run_request_list(*, run: ProvisioningRun) -> QuerySet[RequestLog]:
    """The SCIM requests of a run, as logged (already masked at write time)."""
    return RequestLog.objects.filter(run=run, organization_id=run.organization_id).order_by(
        "created_at", "id"
    )


def review_item_list(*, organization: Organization) -> QuerySet[ReviewItem]:
    """Open items, plus resolved department holds (their pick can be changed later)."""
    return (
        ReviewItem.objects.filter(organization=organization)
        .filter(
            Q(status=ReviewItem.Status.OPEN)
            | Q(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT, record__isnull=False)
        )
        .select_related("record", "member", "other_member", "chosen_department", "resolved_by")
        .prefetch_related("candidates__parent")
        .order_by("status", "-created_at", "-id")
    )


def review_item_get(*, organization: Organization, pk: int) -> ReviewItem:
    return ReviewItem.objects.select_related("record", "member", "other_member").get(
        organization=organization, pk=pk
    )


def open_review_count(*, organization: Organization) -> int:
    return ReviewItem.objects.filter(
        organization=organization, status=ReviewItem.Status.OPEN
    ).count()


def unassigned_resource_list(*, organization: Organization) -> QuerySet[Resource]:
    return Resource.objects.filter(organization=organization, owner__isnull=True).order_by(
        "-unassigned_at", "id"
    )


def audit_entry_list(*, organization: Organization) -> QuerySet[AuditEntry]:
    return (
        AuditEntry.objects.filter(organization=organization)
        .select_related("actor")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class ChangesWhileStopped:
    """Beem-side changes made while sync was stopped; Entra may overwrite or duplicate them."""

    since: datetime | None
    members: list[Member]
    audit_entries: list[AuditEntry]

    @property
    def empty(self) -> bool:
        return not self.members and not self.audit_entries


def changes_while_stopped(
    *, organization: Organization, sync_settings: SyncSettings | None, limit: int = 200
) -> ChangesWhileStopped:
    since = sync_settings.stopped_at if sync_settings else None
    if since is None:
        return ChangesWhileStopped(since=None, members=[], audit_entries=[])
    members = list(
        Member.objects.filter(organization=organization, updated_at__gt=since)
        .filter(Q(directory_managed=True) | Q(created_at__gt=since))
        .order_by("-updated_at", "-id")[:limit]
    )
    entries = list(
        AuditEntry.objects.filter(organization=organization, created_at__gt=since)
        .select_related("actor")
        # The stop itself is recorded a moment after stopped_at; it is not a change to review.
        .exclude(action="sync.stopped")
        .order_by("-created_at", "-id")[:limit]
    )
    return ChangesWhileStopped(since=since, members=members, audit_entries=entries)


@dataclass(frozen=True)
class RunSummary:
    created: int
    linked: int
    updated: int
    unchanged: int
    held: int
    deleted: int
    groups_synced: int
    groups_deleted: int
    failed: int
    skipped: int
    pending: int
    # The failed events with their reasons (a lazy queryset: page it in the UI).
    failures: QuerySet[ChangeEvent]


def run_summary(run) -> RunSummary:
    """What a provisioning run did, counted over its events in one query."""
    applied = Q(status=ChangeEvent.Status.APPLIED)
    counts = ChangeEvent.objects.filter(run=run).aggregate(
        created=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.CREATED)),
        linked=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.LINKED)),
        updated=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.UPDATED)),
        unchanged=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.UNCHANGED)),
        held=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.HELD)),
        deleted=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.DELETED)),
        groups_synced=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.GROUP_SYNCED)),
        groups_deleted=Count("id", filter=applied & Q(outcome=ChangeEvent.Outcome.GROUP_DELETED)),
        failed=Count("id", filter=Q(status=ChangeEvent.Status.FAILED)),
        skipped=Count("id", filter=Q(status=ChangeEvent.Status.SKIPPED)),
        pending=Count("id", filter=Q(status=ChangeEvent.Status.PENDING)),
    )
    failures = (
        ChangeEvent.objects.filter(run=run, status=ChangeEvent.Status.FAILED)
        .only("id", "label", "kind", "reason", "reason_notes", "scim_id", "finished_at")
        .order_by("id")
    )
    return RunSummary(failures=failures, **counts)


# --- the live status (first render and every poll) -----------------------------------------

LAST_CYCLE_PROBLEMS = 5


@dataclass(frozen=True)
class LiveStatus:
    """Everything the live parts of the Status and Reactivate pages show: one read renders
    the header badge, the hint and the counters, on the first render and on every poll."""

    sync_settings: SyncSettings | None
    state: str
    progress: RunProgress
    pending_total: int
    open_review_count: int
    users_synced: int
    groups_synced: int
    last_success: ProvisioningRun | None
    # The latest cycle's failed changes and refused requests (the first few, with reasons).
    failures: list[ChangeEvent]
    refusals: list[RefusedRequest]

    @property
    def label(self):
        return SyncState.LABELS[self.state]

    @property
    def badge(self) -> str:
        return SyncState.BADGES[self.state]

    @property
    def running(self) -> bool:
        return self.progress.run is not None and self.progress.run.ended_at is None


def live_records(*, organization: Organization, resource_type: str) -> int:
    """Live directory records (users or groups synced), from the trigger-kept counts: no scan
    of the records, whatever the directory's size."""
    total = DirectoryRecordCount.objects.filter(
        organization=organization, resource_type=resource_type
    ).aggregate(n=Sum("live"))["n"]
    return total or 0


def last_successful_run(*, organization: Organization) -> ProvisioningRun | None:
    """The latest ended run without a failed change or a refused request."""
    failed = ChangeEvent.objects.filter(run=OuterRef("pk"), status=ChangeEvent.Status.FAILED)
    refused = RefusedRequest.objects.filter(run=OuterRef("pk"))
    return (
        ProvisioningRun.objects.filter(organization=organization, ended_at__isnull=False)
        .filter(~Exists(failed), ~Exists(refused))
        .order_by("-started_at", "-id")
        .first()
    )


def live_status(*, organization: Organization) -> LiveStatus:
    sync_settings = sync_settings_find(organization=organization)
    progress = run_progress(organization=organization)
    run = progress.run
    failures: list[ChangeEvent] = []
    refusals: list[RefusedRequest] = []
    if run is not None and progress.failed:
        failures = list(
            ChangeEvent.objects.filter(run=run, status=ChangeEvent.Status.FAILED)
            .select_related("record__member")
            .order_by("id")[:LAST_CYCLE_PROBLEMS]
        )
        refusals = list(run_refusal_list(run=run)[:LAST_CYCLE_PROBLEMS])
    return LiveStatus(
        sync_settings=sync_settings,
        state=sync_state(sync_settings=sync_settings),
        progress=progress,
        pending_total=pending_event_count(organization=organization),
        open_review_count=open_review_count(organization=organization),
        users_synced=live_records(
            organization=organization, resource_type=DirectoryRecord.ResourceType.USER
        ),
        groups_synced=live_records(
            organization=organization, resource_type=DirectoryRecord.ResourceType.GROUP
        ),
        last_success=last_successful_run(organization=organization),
        failures=failures,
        refusals=refusals,
    )
