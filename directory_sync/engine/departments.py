"""Departments of a user: a structure path or a plain name; an ambiguous plain name is held
for an administrator (a review item)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.translation import gettext_noop

from members import selectors as member_selectors
from members import services as member_services
from members.models import Department, DepartmentMembership, Member

from ..models import DirectoryRecord, ReviewItem, SyncSettings
from ..notes import Message, review_detail
from .fields import document_department
from .results import Notes


@dataclass
class DepartmentCache:
    """Departments read once for a batch: plain names (all matches, by id) and paths."""

    named: dict[str, list[Department]] = field(default_factory=dict)
    paths: dict[tuple[str, ...], Department] = field(default_factory=dict)


@dataclass
class DepartmentPlan:
    # None: leave the member's departments as they are (held for the administrator).
    departments: list[Department] | None = None
    display: str | None = None
    hold_value: str = ""


def department_plan(
    record: DirectoryRecord,
    document: dict,
    sync_settings: SyncSettings,
    notes: Notes,
    cache: DepartmentCache | None = None,
) -> DepartmentPlan:
    value = document_department(document)
    # The value of the previous apply, then this one's (written with the record's apply).
    previous, record.applied_department = record.applied_department, value
    organization = record.organization
    if sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        delimiter = sync_settings.department_delimiter or "/"
        parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        departments = []
        if parts:
            leaf = cache.paths.get(tuple(parts)) if cache is not None else None
            if leaf is None:
                leaf = member_services.department_path_ensure(
                    organization=organization, path=parts, directory_managed=True
                )
                if cache is not None:
                    cache.paths[tuple(parts)] = leaf
            departments = [leaf]
        return DepartmentPlan(
            departments=departments, display=Member.DepartmentDisplay.CURRENT_ONLY
        )
    if previous and previous != value:
        # The directory moved on: a hold for the former value no longer asks anything.
        _department_holds_supersede(record, keep_value=value)
    if not value:
        return DepartmentPlan(departments=[])
    if cache is not None and value in cache.named:
        matches = cache.named[value]
    else:
        matches = member_selectors.departments_named(organization=organization, name=value)
    if not matches:
        # Plain names come from a flat directory attribute: a name Beem does not know yet is
        # created at the root, where the administrator can move it (README "How sync treats
        # your members").
        created = member_services.department_get_or_create(
            organization=organization, name=value, directory_managed=True
        )
        if cache is not None:
            cache.named[value] = [created]
        return DepartmentPlan(departments=[created])
    if len(matches) == 1:
        return DepartmentPlan(departments=matches)
    policy = sync_settings.duplicate_department_policy
    if policy == SyncSettings.DuplicateDepartmentPolicy.FIRST_MATCH:
        return DepartmentPlan(departments=matches[:1])
    if policy == SyncSettings.DuplicateDepartmentPolicy.ALL_MATCHES:
        return DepartmentPlan(departments=matches)
    return _department_hold(record, value, previous, matches, notes)


def _department_holds_supersede(record: DirectoryRecord, *, keep_value: str) -> None:
    ReviewItem.objects.filter(
        record=record,
        kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
        status=ReviewItem.Status.OPEN,
    ).exclude(directory_value=keep_value).update(
        status=ReviewItem.Status.RESOLVED, resolution="superseded", resolved_at=timezone.now()
    )


def _department_hold(
    record: DirectoryRecord,
    value: str,
    previous: str,
    matches: list[Department],
    notes: Notes,
) -> DepartmentPlan:
    """The plan for a plain name that matches several departments, under "let me choose".

    Settled stays settled until the directory's value changes: the administrator's pick for
    this value, or, when the value is the one of the previous apply and the member is in one
    of the matches (placed while the name was unique, or by an earlier pick), where the
    member is. Otherwise the member is held (their departments stay as they are)."""
    item = (
        ReviewItem.objects.filter(record=record, kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT)
        .select_related("chosen_department")
        .order_by("-id")
        .first()
    )
    if item is not None and item.directory_value == value and item.chosen_department_id:
        return DepartmentPlan(departments=[item.chosen_department])
    if item is not None and item.directory_value != value and item.status == ReviewItem.Status.OPEN:
        item.status = ReviewItem.Status.RESOLVED
        item.resolution = "superseded"
        item.resolved_at = timezone.now()
        item.save(update_fields=["status", "resolution", "resolved_at"])
    if (
        value == previous
        and (item is None or item.directory_value != value)
        and record.member_id is not None
        and DepartmentMembership.objects.filter(
            member_id=record.member_id, department__in=matches
        ).exists()
    ):
        return DepartmentPlan(departments=None)
    if item is None or item.directory_value != value:
        item = ReviewItem.objects.create(
            organization_id=record.organization_id,
            kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
            record=record,
            member=record.member,
            directory_value=value,
            **review_detail(
                Message(
                    gettext_noop(
                        "Department “%(name)s” matches %(count)s departments; choose the one "
                        "for directory user %(user)s."
                    ),
                    name=value,
                    count=len(matches),
                    user=record.user_name,
                )
            ),
        )
    elif item.status != ReviewItem.Status.OPEN:
        # The pick was cleared (its department was deleted): ask again.
        item.status = ReviewItem.Status.OPEN
        item.resolution = ""
        item.resolved_at = None
        item.save(update_fields=["status", "resolution", "resolved_at"])
    item.candidates.set(matches)
    notes.held = True
    notes.add(
        Message(
            gettext_noop(
                "Department “%(name)s” matches %(count)s departments: held for an administrator."
            ),
            name=value,
            count=len(matches),
        )
    )
    return DepartmentPlan(departments=None, hold_value=value)


def department_hold_member(record: DirectoryRecord, member: Member) -> None:
    # The hold may have been opened before the member existed (first apply).
    ReviewItem.objects.filter(
        record=record, kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT, member__isnull=True
    ).update(member=member)
