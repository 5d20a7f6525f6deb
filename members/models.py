"""The members domain: organizations, their members, departments, groups and resources.

This app knows nothing about SCIM or Entra ID; ``directory_sync`` drives it through
``members.services``.
"""

from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _


class Organization(models.Model):
    """A customer of Beem (the tenant). Every other row belongs to one."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Administrator(models.Model):
    """A Django user who administers exactly one organization in the admin suite."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="administrator"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="administrators"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization}"


class DeletionRule(models.TextChoices):
    """What happens to a deleted member's resources (``services.member_delete``). The one
    definition: an organization's directory sync stores its choice of it in ``SyncSettings``."""

    # Resources become unassigned and are listed for reassignment.
    DELETE_DIRECTLY = "delete_directly", _("Delete members directly")
    # Resources go to the member's manager (unassigned when there is none).
    DELETE_TRANSFER_TO_MANAGER = (
        "delete_transfer_to_manager",
        _("Delete members and give their resources to their manager"),
    )


class Member(models.Model):
    """A person working in Beem, identified by an E.164 mobile number and/or an email."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    class DepartmentDisplay(models.TextChoices):
        FULL_PATH = "full_path", _("Full department path")
        CURRENT_ONLY = "current_only", _("Current department only")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="members")
    display_name = models.CharField(_("display name"), max_length=256, blank=True)
    given_name = models.CharField(_("given name"), max_length=128, blank=True)
    family_name = models.CharField(_("family name"), max_length=128, blank=True)
    # E.164 (e.g. +966512345678); normalised by members.phones before it is stored.
    phone = models.CharField(_("mobile phone"), max_length=20, null=True, blank=True)
    # Stored lower-cased; compared case-insensitively.
    email = models.EmailField(_("email"), max_length=254, null=True, blank=True)
    job_title = models.CharField(_("job title"), max_length=256, blank=True)
    country = models.CharField(_("country"), max_length=128, blank=True)
    employee_number = models.CharField(_("employee number"), max_length=128, blank=True)
    manager = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reports"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    directory_managed = models.BooleanField(
        _("managed by directory sync"), default=False, db_index=True
    )
    department_display = models.CharField(
        max_length=16, choices=DepartmentDisplay.choices, default=DepartmentDisplay.FULL_PATH
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "phone"],
                condition=Q(phone__isnull=False),
                name="member_unique_phone_per_org",
            ),
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=Q(email__isnull=False),
                name="member_unique_email_per_org",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "display_name", "id"], name="member_org_name"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.email or self.phone or f"member {self.pk}"

    @property
    def full_name(self) -> str:
        return self.display_name or " ".join(p for p in (self.given_name, self.family_name) if p)


class Department(models.Model):
    """A node of an organization's department tree; names are unique under one parent."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="departments"
    )
    name = models.CharField(_("name"), max_length=256)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    # Created by directory sync (from a member's department value): read-only in the admin
    # suite while the sync is active, or the next cycle would undo the administrator's change.
    # A department the administrator created stays theirs even when the sync puts members in it.
    directory_managed = models.BooleanField(_("managed by directory sync"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "parent", "name"],
                condition=Q(parent__isnull=False),
                name="department_unique_name_under_parent",
            ),
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=Q(parent__isnull=True),
                name="department_unique_root_name",
            ),
        ]
        indexes = [models.Index(fields=["organization", "name"], name="department_org_name")]

    def __str__(self) -> str:
        return self.name


class DepartmentMembership(models.Model):
    """A member's place in a department; at most one is the member's primary department."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="department_links")
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="memberships")
    is_primary = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "department"], name="department_membership_unique"
            ),
            models.UniqueConstraint(
                fields=["member"],
                condition=Q(is_primary=True),
                name="department_membership_one_primary",
            ),
        ]


class Group(models.Model):
    """A named set of members (mirrors a directory group when directory-managed)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(_("name"), max_length=256)
    directory_managed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "name"], name="group_org_name")]

    def __str__(self) -> str:
        return self.name


class GroupMembership(models.Model):
    """One member in one group."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="group_links")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "member"], name="group_membership_unique")
        ]


class Resource(models.Model):
    """Something a member owns (document, channel, approval flow) that must never be lost.

    ``owner`` is PROTECT: deleting a member that still owns resources fails at the database
    unless ``members.services.member_delete`` has first moved them (unassigned or to the
    manager).
    """

    class Kind(models.TextChoices):
        DOCUMENT = "document", _("Document")
        CHANNEL = "channel", _("Channel")
        APPROVAL_FLOW = "approval_flow", _("Approval flow")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="resources"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=256)
    owner = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="resources"
    )
    # Kept when the owner is deleted so the admin knows whose it was: the latest deleted owner.
    previous_owner_name = models.CharField(max_length=256, blank=True)
    # Every deleted owner the resource moved away from, oldest first, as
    # ``{"name": ..., "deleted_at": ISO 8601}``: the first is its original owner, the others the
    # managers it passed through ("give resources to the manager" across several deletions).
    # A list on the row, not a table: it is only ever shown with the resource.
    owner_history = models.JSONField(default=list, blank=True)
    unassigned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["organization", "unassigned_at"],
                condition=Q(owner__isnull=True),
                name="resource_unassigned",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def deleted_owners(self) -> list["DeletedOwner"]:
        """``owner_history`` for display, oldest first (the original owner first)."""
        return [
            DeletedOwner(entry["name"], datetime.fromisoformat(entry["deleted_at"]))
            for entry in self.owner_history
        ]


class DeletedOwner(NamedTuple):
    """One step of a resource's provenance: an owner who was deleted while owning it."""

    name: str
    deleted_at: datetime


class AuditEntry(models.Model):
    """Who did what, when: settings changes, credentials, stop/reactivate, merges, reassigns."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # "admin:<username>", "operator", "directory" — readable even after the user is deleted.
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64, db_index=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action}"
