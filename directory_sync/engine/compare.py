"""Comparing Beem with the directory records (the engine's tests, the operators' reconcile)."""

from __future__ import annotations

from members import selectors as member_selectors
from members.models import Member
from members.phones import InvalidPhoneNumber, phone_to_e164

from ..models import DirectoryMembership, DirectoryRecord, ReviewItem, SyncSettings
from .fields import document_department, document_manager_scim_id, document_member_fields
from .groups import group_name_clip
from .records import sync_settings_read


def record_member_differences(record: DirectoryRecord) -> list[str]:
    """How the Beem side differs from the directory record; empty when they match.

    Shared by the engine's tests and the operators' reconcile command. Values the engine
    deliberately leaves alone are not differences: an identifier another member holds (a
    possible duplicate), an invalid mobile when phone is not the identifier, and a department
    held for an administrator.
    """
    record = (
        DirectoryRecord.objects.select_related("member", "group", "organization")
        .filter(pk=record.pk)
        .first()
    )
    if record is None:
        return []
    if record.resource_type == DirectoryRecord.ResourceType.GROUP:
        return _group_differences(record)
    sync_settings = sync_settings_read(record.organization_id)
    member = record.member
    if record.deleted_at is not None or not record.active:
        return [f"member {member.pk} exists for an inactive directory user"] if member else []
    if member is None:
        return ["no member for an active directory user"]
    document = record.document or {}
    expected = document_member_fields(document)
    differences = []
    default_country = sync_settings.default_phone_country or None
    try:
        expected["phone"] = (
            phone_to_e164(expected["phone"], default_country=default_country)
            if expected["phone"]
            else None
        )
    except InvalidPhoneNumber:
        expected.pop("phone")
    expected["email"] = expected["email"] or None
    others = Member.objects.filter(organization_id=record.organization_id).exclude(pk=member.pk)
    for key, value in expected.items():
        actual = getattr(member, key)
        if key in ("phone", "email") and value:
            lookup = {"phone": value} if key == "phone" else {"email__iexact": value}
            if actual != value and others.filter(**lookup).exists():
                continue
        if (actual or "") != (value or ""):
            differences.append(f"{key}: member has {actual!r}, directory has {value!r}")
    if not member.directory_managed:
        differences.append("member is not marked as managed by directory sync")
    manager_scim_id = document_manager_scim_id(document)
    expected_manager = None
    if manager_scim_id and manager_scim_id != record.scim_id:
        expected_manager = (
            DirectoryRecord.objects.filter(
                organization_id=record.organization_id, scim_id=manager_scim_id
            )
            .values_list("member_id", flat=True)
            .first()
        )
    if member.manager_id != expected_manager:
        differences.append(
            f"manager: member has {member.manager_id!r}, directory has {expected_manager!r}"
        )
    differences += _department_differences(record, member, document, sync_settings)
    group_ids = set(_user_group_ids(record))
    actual_groups = set(
        member.group_links.filter(group__directory_managed=True).values_list("group_id", flat=True)
    )
    if group_ids - actual_groups:
        differences.append(f"groups missing: {sorted(group_ids - actual_groups)}")
    return differences


def _department_differences(
    record: DirectoryRecord, member: Member, document: dict, sync_settings: SyncSettings
) -> list[str]:
    value = document_department(document)
    links = list(member.department_links.select_related("department"))
    if sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        delimiter = sync_settings.department_delimiter or "/"
        parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        paths = [
            [d.name for d in member_selectors.department_path(link.department)] for link in links
        ]
        expected = [parts] if parts else []
        if paths != expected:
            return [f"departments: member has {paths!r}, directory has {expected!r}"]
        if parts and member.department_display != Member.DepartmentDisplay.CURRENT_ONLY:
            return ["department display is not 'current department only'"]
        return []
    names = sorted(link.department.name for link in links)
    if not value:
        return [f"departments: member has {names!r}, directory has none"] if names else []
    held = ReviewItem.objects.filter(
        record=record,
        kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
        directory_value=value,
        status=ReviewItem.Status.OPEN,
    ).exists()
    if held or (names and set(names) == {value}):
        return []
    return [f"departments: member has {names!r}, directory has {value!r}"]


def _group_differences(record: DirectoryRecord) -> list[str]:
    if record.deleted_at is not None:
        return (
            [f"group {record.group_id} exists for a deleted directory group"]
            if record.group_id
            else []
        )
    group = record.group
    if group is None:
        return ["no group for the directory group"]
    differences = []
    name = group_name_clip(str((record.document or {}).get("displayName") or record.display_name))
    if group.name != name:
        differences.append(f"name: group has {group.name!r}, directory has {name!r}")
    expected = set(
        DirectoryRecord.objects.filter(
            group_links__group_record=record, deleted_at__isnull=True, member__isnull=False
        ).values_list("member_id", flat=True)
    )
    actual = set(group.memberships.values_list("member_id", flat=True))
    if expected != actual:
        differences.append(
            f"members: missing {sorted(expected - actual)}, extra {sorted(actual - expected)}"
        )
    return differences


def _user_group_ids(record: DirectoryRecord) -> list[int]:
    return list(
        DirectoryMembership.objects.filter(
            user_record=record,
            group_record__deleted_at__isnull=True,
            group_record__group__isnull=False,
        )
        .order_by("group_record__group_id")
        .values_list("group_record__group_id", flat=True)
    )
