"""Directory sync state: settings, directory records, the change-event outbox, runs, logs.

A ``DirectoryRecord`` *is* the SCIM resource Entra ID wrote (design.md §3): SCIM answers are
built from it, synchronously. Members are a downstream projection applied by Celery jobs from
``ChangeEvent`` rows committed in the same transaction as the record.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from oauth2_provider.settings import oauth2_settings

from members.models import DeletionRule as MemberDeletionRule
from members.models import Department, Group, Member, Organization

from .notes import notes_render

# Primary keys per DirectoryRecordCount block; the triggers of migration 0003 use the same.
RECORD_COUNT_BLOCK = 1024


class SyncSettings(models.Model):
    """One organization's directory sync ("Sync with Entra ID" or "Sync with Okta"):
    configuration and status. One row per organization, so at most one active directory."""

    class Directory(models.TextChoices):
        ENTRA_ID = "entra_id", _("Entra ID")
        OKTA = "okta", _("Okta")

    class Status(models.TextChoices):
        NOT_CONFIGURED = "not_configured", _("Not configured")
        ACTIVE = "active", _("Active")
        STOPPED = "stopped", _("Stopped")

    # The members domain's rule, which members.services.member_delete applies as stored here.
    DeletionRule = MemberDeletionRule

    class IdentifyBy(models.TextChoices):
        PHONE = "phone", _("Phone number")
        EMAIL = "email", _("Email address")

    class DepartmentFormat(models.TextChoices):
        PLAIN_NAME = "plain_name", _("Department name only")
        STRUCTURE_STRING = "structure_string", _("Complete department structure string")

    class DuplicateDepartmentPolicy(models.TextChoices):
        HOLD_FOR_ADMIN = "hold_for_admin", _("Let me choose the target department")
        FIRST_MATCH = "first_match", _("Use the first matching department")
        ALL_MATCHES = "all_matches", _("Add the member to every matching department")

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="sync_settings"
    )
    # Which directory calls the SCIM endpoint; only its credential is accepted there.
    directory = models.CharField(
        max_length=10, choices=Directory.choices, default=Directory.ENTRA_ID
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.NOT_CONFIGURED, db_index=True
    )
    deletion_rule = models.CharField(
        max_length=40, choices=DeletionRule.choices, default=DeletionRule.DELETE_DIRECTLY
    )
    identify_by = models.CharField(
        max_length=10, choices=IdentifyBy.choices, default=IdentifyBy.PHONE
    )
    department_format = models.CharField(
        max_length=20, choices=DepartmentFormat.choices, default=DepartmentFormat.PLAIN_NAME
    )
    department_delimiter = models.CharField(max_length=5, default="/")
    duplicate_department_policy = models.CharField(
        max_length=20,
        choices=DuplicateDepartmentPolicy.choices,
        default=DuplicateDepartmentPolicy.HOLD_FOR_ADMIN,
    )
    # ISO 3166-1 alpha-2 (e.g. "SA"); empty: numbers must carry their country code.
    default_phone_country = models.CharField(max_length=2, blank=True)
    # The OAuth2 application Entra ID authenticates as (client credentials).
    oauth_application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sync_settings",
    )
    credentials_created_at = models.DateTimeField(null=True, blank=True)
    # Okta's API token ("HTTP Header" mode): its keyed digest (directory_sync.okta), unique so
    # the SCIM auth check finds the settings by the presented token in one indexed lookup.
    api_token_digest = models.CharField(max_length=64, null=True, blank=True, unique=True)
    api_token_created_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_test_connection_at = models.DateTimeField(null=True, blank=True)
    last_request_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "sync settings"

    def __str__(self) -> str:
        return f"{self.get_directory_display()} sync of {self.organization}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class DirectoryRecord(models.Model):
    """One SCIM User or Group as Entra ID wrote it, with our SCIM ``id``.

    ``document`` is the full SCIM resource without ``id``/``meta`` (and, for groups, without
    ``members``, which live in ``DirectoryMembership`` so large groups stay cheap to patch).
    A DELETE sets ``deleted_at`` (a tombstone) so the apply job can still converge the member;
    tombstones are invisible to SCIM and purged once applied.
    """

    class ResourceType(models.TextChoices):
        USER = "User", "User"
        GROUP = "Group", "Group"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="directory_records"
    )
    resource_type = models.CharField(max_length=5, choices=ResourceType.choices)
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    # Users: userName as sent; user_name_key is its case-folded form for lookups/uniqueness.
    user_name = models.CharField(max_length=255, null=True, blank=True)
    user_name_key = models.CharField(max_length=255, null=True, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    # Lower-cased work email, for `emails[type eq "work"].value` filters.
    work_email = models.CharField(max_length=254, null=True, blank=True)
    # SCIM id of the manager (enterprise extension), for `manager eq` reference checks.
    manager_scim_id = models.UUIDField(null=True, blank=True)
    active = models.BooleanField(default=True)
    document = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    # Downstream projection (set by the apply job).
    member = models.OneToOneField(
        Member, on_delete=models.SET_NULL, null=True, blank=True, related_name="directory_record"
    )
    group = models.OneToOneField(
        Group, on_delete=models.SET_NULL, null=True, blank=True, related_name="directory_record"
    )
    applied_version = models.PositiveIntegerField(default=0)
    # Users: the directory's department value at the last apply (placed or held). A plain name
    # that matches several departments is judged again only when it differs from this value.
    applied_department = models.TextField(blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "resource_type", "user_name_key"],
                condition=Q(deleted_at__isnull=True, user_name_key__isnull=False),
                name="directory_record_unique_username",
            ),
            models.UniqueConstraint(
                fields=["organization", "resource_type", "external_id"],
                condition=Q(deleted_at__isnull=True, external_id__isnull=False),
                name="directory_record_unique_external_id",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "resource_type", "display_name"],
                name="dirrec_org_type_display",
            ),
            models.Index(
                fields=["organization", "resource_type", "work_email"],
                name="dirrec_org_type_email",
            ),
            models.Index(fields=["organization", "resource_type", "id"], name="dirrec_org_type_id"),
            models.Index(fields=["manager_scim_id"], name="dirrec_manager"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type} {self.user_name or self.display_name} ({self.scim_id})"


class DirectoryRecordCount(models.Model):
    """A number of live records of one organization and resource type in one block of
    ``RECORD_COUNT_BLOCK`` consecutive primary keys (``block = id // RECORD_COUNT_BLOCK``).

    The sum of a block's rows is how many of its records are live (not tombstoned): the index
    that gives SCIM lists an exact ``totalResults`` and turns ``startIndex`` into a seek
    (``directory_sync.scim.paging``) without counting or skipping every row before the page.
    Database triggers on ``DirectoryRecord`` (migration 0003) append a ``+1`` or ``-1`` row in
    the same transaction as every insert, delete, tombstone and restore, whoever writes (the
    record services, the benchmark's COPY, a cascade); appending instead of updating one row
    means concurrent writers never wait for each other. ``store.counts.counts_compact`` folds the
    rows of an organization into one per block, and ``manage.py directory_sync reconcile``
    checks and repairs them.

    No foreign-key constraint: a record deleted by an organization's cascade still appends its
    ``-1`` while the organization's own rows are being deleted.
    """

    organization = models.ForeignKey(
        Organization,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # dirrec_count_block leads with it
        related_name="+",
    )
    resource_type = models.CharField(max_length=5, choices=DirectoryRecord.ResourceType.choices)
    block = models.BigIntegerField()
    live = models.IntegerField()

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "resource_type", "block"], name="dirrec_count_block"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type} block {self.block} of {self.organization_id}: {self.live:+d}"


class DirectoryMembership(models.Model):
    """A directory user in a directory group (SCIM Group ``members``)."""

    group_record = models.ForeignKey(
        DirectoryRecord, on_delete=models.CASCADE, related_name="member_links"
    )
    user_record = models.ForeignKey(
        DirectoryRecord, on_delete=models.CASCADE, related_name="group_links"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["group_record", "user_record"], name="directory_membership_unique"
            )
        ]


class ProvisioningRun(models.Model):
    """One Entra ID provisioning cycle (or Test Connection), delimited by its probe or idleness."""

    class Trigger(models.TextChoices):
        PROBE = "probe", _("Entra ID cycle start (probe lookup)")
        ACTIVITY = "activity", _("Activity after an idle gap")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="provisioning_runs"
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    requests_received = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # Every authenticated SCIM request looks up its organization's open run
            # (directory_sync.runs.run_current); finished runs pile up by the thousand.
            models.Index(
                fields=["organization", "-started_at", "-id"],
                condition=Q(ended_at__isnull=True),
                name="provisioning_run_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.organization}"


class ChangeEvent(models.Model):
    """Outbox row: a directory record changed and the member side must converge to it."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Created")
        UPDATED = "updated", _("Updated")
        DEACTIVATED = "deactivated", _("Deactivated")
        REACTIVATED = "reactivated", _("Reactivated")
        DELETED = "deleted", _("Deleted")
        MEMBERS_CHANGED = "members_changed", _("Group members changed")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        APPLIED = "applied", _("Applied")
        SKIPPED = "skipped", _("Skipped (superseded)")
        FAILED = "failed", _("Failed")

    class Outcome(models.TextChoices):
        CREATED = "created", _("Member created")
        LINKED = "linked", _("Existing member linked")
        UPDATED = "updated", _("Member updated")
        UNCHANGED = "unchanged", _("No change needed")
        DELETED = "deleted", _("Member deleted")
        GROUP_SYNCED = "group_synced", _("Group synced")
        GROUP_DELETED = "group_deleted", _("Group deleted")
        HELD = "held", _("Held for review")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="change_events"
    )
    record = models.ForeignKey(
        DirectoryRecord, on_delete=models.SET_NULL, null=True, related_name="events"
    )
    run = models.ForeignKey(
        ProvisioningRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    resource_type = models.CharField(max_length=5, choices=DirectoryRecord.ResourceType.choices)
    scim_id = models.UUIDField(db_index=True)
    # Readable label kept after the record is gone (userName or group displayName).
    label = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    record_version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    # The apply's notes or the failure's reason in English (logs, search, operator commands);
    # ``reason_notes`` keeps them structured for pages to show in the reader's language
    # (directory_sync/notes.py). Rows from before it have only ``reason``.
    reason = models.TextField(blank=True)
    reason_notes = models.JSONField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["status", "created_at"],
                condition=Q(status="pending"),
                name="change_event_pending",
            ),
            models.Index(
                fields=["organization", "id"],
                condition=Q(status="pending"),
                name="change_event_pending_org",
            ),
            # A batch that frees an identifier looks for the organization's records whose last
            # apply failed (the engine's waiting records): an index-only scan of the failed rows.
            models.Index(
                fields=["organization", "record"],
                condition=Q(status="failed"),
                name="change_event_failed_org",
            ),
            models.Index(fields=["record", "status"], name="change_event_record_status"),
            models.Index(fields=["run", "status"], name="change_event_run_status"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.label} ({self.status})"

    @property
    def reason_text(self) -> str:
        """The notes or reason in the active language (the stored English for older rows)."""
        return notes_render(self.reason_notes, self.reason)


class RefusedRequest(models.Model):
    """A SCIM write (POST, PUT or PATCH) Beem refused with a 4xx answer: a failure of its
    provisioning run, with the reason Entra ID was given and the directory object it was
    about. Entra never applies it, so the administrator must see it next to the run's failed
    changes (issue 12)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="refused_requests"
    )
    run = models.ForeignKey(
        ProvisioningRun, on_delete=models.CASCADE, related_name="refused_requests"
    )
    request_id = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=10)
    resource_type = models.CharField(max_length=5, blank=True)
    # The resource the URL addressed (PUT, PATCH), as sent.
    scim_id = models.CharField(max_length=64, blank=True)
    # Entra's identity of the object: externalId and userName (a group's displayName), from
    # the body or from the addressed record.
    external_id = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    status = models.PositiveSmallIntegerField()
    scim_type = models.CharField(max_length=32, blank=True)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.method} refused with {self.status} in run {self.run_id}"


class RequestLog(models.Model):
    """One SCIM request as received, with personal data and secrets masked."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="request_logs", null=True
    )
    run = models.ForeignKey(
        ProvisioningRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="requests"
    )
    request_id = models.CharField(max_length=64, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    query = models.TextField(blank=True)
    status = models.PositiveSmallIntegerField()
    duration_ms = models.FloatField()
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class ReviewItem(models.Model):
    """Something the sync could not decide alone and an administrator must look at."""

    class Kind(models.TextChoices):
        DUPLICATE_DEPARTMENT = "duplicate_department", _("Several departments match")
        POSSIBLE_DUPLICATE = "possible_duplicate", _("Possible duplicate member")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="review_items"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    record = models.ForeignKey(
        DirectoryRecord, on_delete=models.CASCADE, null=True, related_name="review_items"
    )
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    other_member = models.ForeignKey(
        Member, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # Duplicate departments: the directory's value the hold is about, the candidates and the
    # admin's pick. The pick is sticky until the directory value changes.
    directory_value = models.CharField(max_length=500, blank=True)
    candidates = models.ManyToManyField(Department, blank=True, related_name="+")
    chosen_department = models.ForeignKey(
        Department, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # In English; ``detail_notes`` structured for the reader's language (as ChangeEvent.reason).
    detail = models.TextField(blank=True)
    detail_notes = models.JSONField(null=True, blank=True)
    resolution = models.CharField(max_length=32, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def detail_text(self) -> str:
        """The detail in the active language (the stored English for older rows)."""
        return notes_render(self.detail_notes, self.detail)


class WorkerHeartbeat(models.Model):
    """The last time a Celery worker ran the heartbeat task (for /healthz)."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()
